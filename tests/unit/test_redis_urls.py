"""Redis URLs: checked before anything connects, and never shown with their password."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pirate_worker.contracts.connection import check_redis_url, redact_url
from pirate_worker.errors import ConfigError
from pirate_worker.settings import load_settings

REDACTED = [
    ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
    ("rediss://app:hun%40ter2@redis/0?ssl_ca_certs=/ca.pem", "rediss://app:***@redis/0?ssl_ca_certs=/ca.pem"),
    ("redis://hunter2@redis", "redis://***@redis"),  # redis-py reads a user; people mean a password
    ("redis://redis?password=hunter2&db=1", "redis://redis?password=***&db=1"),
    ("unix:///run/redis.sock?password=hunter2", "unix:///run/redis.sock?password=***"),
    ("redis://redis:6379/0", "redis://redis:6379/0"),
    ("postgresql://pirate:hunter2@db:5432/hsds", "postgresql://pirate:***@db:5432/hsds"),
]


@pytest.mark.parametrize(("url", "shown"), REDACTED)
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url)


def _ca(tmp_path: Path) -> Path:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: redis-py reads it on connect\n")
    return ca


INVALID = [
    ("http://redis:6379", "must start with redis://"),
    ("redis://redis?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ("redis://:pw@redis:port/0", "Port could not be cast"),
    ("redis://redis?ssl_ca_certs={ca}", "ssl_ca_certs needs a rediss:// (TLS) URL"),
    ("rediss://redis?ssl_ca_certs=/nonexistent/ca.pem", "ssl_ca_certs file /nonexistent/ca.pem does not"),
    ("redis://redis?bogus=1", "unsupported connection option"),
]


@pytest.mark.parametrize(("url", "needle"), INVALID)
def test_check_redis_url_refuses_what_redis_py_would_trip_over_later(
    tmp_path: Path, url: str, needle: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        check_redis_url(url.format(ca=_ca(tmp_path)))


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://:pw@localhost/2?socket_timeout=5",
        "rediss://user:pw@redis.example:6380/0?ssl_ca_certs={ca}",
        "rediss://redis.example?ssl_cert_reqs=none",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_check_redis_url_accepts_plain_tls_password_and_socket_urls(tmp_path: Path, url: str) -> None:
    concrete = url.format(ca=_ca(tmp_path))
    assert check_redis_url(concrete) == concrete


def test_settings_error_names_the_variable_and_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@redis?bogus=1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("invalid environment variable REDIS_URL=redis://:***@redis?bogus=1: ")
    assert "hunter2" not in message and "\n" not in message
