"""The operator process contract: environment → settings → ``kopf run`` options, errors in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pirate_operator.runner import kopf_run_args
from pirate_operator.settings import OperatorConfigError, OperatorSettings, load_operator_settings

ROOT = Path(__file__).resolve().parents[2]
_VARIABLES = (
    "OPERATOR_NAMESPACES",
    "POD_NAMESPACE",
    "OPERATOR_PEERING",
    "OPERATOR_PEERING_PRIORITY",
    "OPERATOR_PEERING_LIFETIME",
    "OPERATOR_HTTP_PORT",
    "OPERATOR_WATCH_TIMEOUT",
    "LOG_LEVEL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _args(*kopf_args: str, namespaces: tuple[str, ...] = (), all_namespaces: bool = False) -> list[str]:
    return kopf_run_args(load_operator_settings(), list(namespaces), all_namespaces, list(kopf_args))


def test_defaults_watch_every_namespace_standalone() -> None:
    settings = load_operator_settings()
    assert settings.OPERATOR_HTTP_PORT == 8080
    assert settings.LOG_LEVEL == "INFO"
    assert _args() == ["run", "--all-namespaces", "--standalone"]


def test_pod_namespace_is_the_default_and_operator_namespaces_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    assert _args()[:3] == ["run", "--namespace", "ops"]
    monkeypatch.setenv("OPERATOR_NAMESPACES", "a, b")
    assert _args()[:5] == ["run", "--namespace", "a", "--namespace", "b"]
    # the command line wins over both
    assert _args(namespaces=("c",))[:3] == ["run", "--namespace", "c"]
    assert _args(all_namespaces=True)[:2] == ["run", "--all-namespaces"]


def test_peering_with_a_priority_replaces_standalone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERATOR_PEERING", "pirate-workers")
    monkeypatch.setenv("OPERATOR_PEERING_PRIORITY", "7")
    args = _args()
    assert "--standalone" not in args
    assert args[args.index("--peering") + 1] == "pirate-workers"
    assert args[args.index("--priority") + 1] == "7"


def test_random_priorities_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERATOR_PEERING", "pirate-workers")
    priorities = {OperatorSettings().peering_priority for _ in range(20)}
    assert len(priorities) > 1


def test_explicit_kopf_options_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERATOR_PEERING", "pirate-workers")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    args = _args("--standalone", "--priority=5", "--quiet")
    assert "--peering" not in args
    assert "--verbose" not in args
    assert args[-3:] == ["--standalone", "--priority=5", "--quiet"]
    assert args.count("--priority") == 0


def test_log_level_maps_to_kopf_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    assert "--verbose" in _args()
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert "--quiet" in _args()


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("OPERATOR_HTTP_PORT", "99999", "OPERATOR_HTTP_PORT"),
        ("OPERATOR_HTTP_PORT", "http", "OPERATOR_HTTP_PORT"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("OPERATOR_NAMESPACES", "ok,Not_A_Namespace", "OPERATOR_NAMESPACES"),
        ("OPERATOR_PEERING", "Bad Name", "OPERATOR_PEERING"),
        ("OPERATOR_PEERING_LIFETIME", "1", "OPERATOR_PEERING_LIFETIME"),
    ],
)
def test_invalid_values_fail_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, shown: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(OperatorConfigError) as caught:
        load_operator_settings()
    message = str(caught.value)
    assert message.startswith(f"{shown}: ")
    assert "\n" not in message


def test_namespace_and_all_namespaces_together_are_refused() -> None:
    with pytest.raises(Exception, match="not both"):
        _args(namespaces=("a",), all_namespaces=True)


def test_the_cli_exits_2_with_one_line_on_a_bad_setting() -> None:
    env = {**os.environ, "OPERATOR_HTTP_PORT": "-1"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pirate-workers"), "operator"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: OPERATOR_HTTP_PORT: ")


def test_the_peering_object_is_checked_only_when_the_environment_chose_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pirate_operator.handlers import PeeringCheck
    from pirate_operator.runner import peering_check

    assert peering_check(load_operator_settings(), _args()) is None  # standalone
    monkeypatch.setenv("OPERATOR_PEERING", "pirate-workers")
    settings = load_operator_settings()
    assert peering_check(settings, _args(namespaces=("a", "b"))) == PeeringCheck("pirate-workers", ("a", "b"))
    assert peering_check(settings, _args(all_namespaces=True)) == PeeringCheck("pirate-workers", None)
    assert peering_check(settings, _args("--standalone")) is None
