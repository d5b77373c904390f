"""``pirate-workers simulate`` as users run it, and the trace checks behind its error lines."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pirate_operator.simulate import TraceError, parse_trace

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("pirate-workers")
EXAMPLE = ROOT / "examples" / "traces" / "quota-outage.json"

SMALL: dict[str, Any] = {
    "name": "small",
    "duration_s": 120,
    "pod_start_s": 10,
    "roles": {
        "llm": {"service_time_s": 8, "cv": 0.6},
        "reconciler": {"service_time_s": 0.4, "cv": 0.5},
        "recorder": {"service_time_s": 0.05, "cv": 0.3},
    },
    "chain": {"llm": ["reconciler", "recorder"]},
    "pool": {
        "roles": {
            "llm": {"maxReplicas": 4, "workersPerPod": 1, "targetJobsPerWorker": 2},
            "reconciler": {"maxReplicas": 2},
            "recorder": {"maxReplicas": 1},
        }
    },
    "arrivals": [{"t": t, "role": "llm", "jobs": 3} for t in range(0, 100, 10)],
    "provider_blocked": [{"from": 40, "to": 70, "kind": "quota_exceeded"}],
}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "simulate", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def write(tmp_path: Path, document: Any, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def changed(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SMALL)
    raw.update(changes)
    return raw


def test_json_report_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "timeline.png"
    result = run(write(tmp_path, SMALL), "--policy", "keda", "--json", "--seed", "2", "--plot", png)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {"policy", "worker_seconds", "p50_wait_s", "p95_wait_s", "max_wait_s", "blocked_worker_seconds",
            "scale_events", "roles"} <= set(document)  # fmt: skip
    assert document["policy"] == "keda"
    assert set(document["roles"]) == {"llm", "reconciler", "recorder"}
    assert document["roles"]["llm"]["jobs_done"] == 30
    assert document["blocked_worker_seconds"] > 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_table_on_an_example_trace() -> None:
    assert EXAMPLE.is_file(), "examples/traces/ holds the public traces"
    result = run(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "quota-outage — policy pirate" in result.stdout
    assert all(role in result.stdout for role in ("llm", "reconciler", "recorder", "total"))


BAD_INPUTS: list[tuple[str, Any, tuple[str, ...], str]] = [
    ("missing file", None, (), "no such file"),
    ("not json", "{not json", (), "not JSON"),
    ("a list", [1, 2], (), "a trace is a JSON object"),
    ("missing field", {k: v for k, v in SMALL.items() if k != "duration_s"}, (), "duration_s: required"),
    ("wrong type", changed(arrivals=[{"t": 0, "role": "llm", "jobs": "many"}]), (), "arrivals[0].jobs"),
    ("unknown field", changed(speed=3), (), "speed: unknown field"),
    ("unknown role", changed(arrivals=[{"t": 0, "role": "cook", "jobs": 1}]), (), "role 'cook'"),
    ("unknown policy", SMALL, ("--policy", "karpenter"), "unknown policy 'karpenter'"),
    ("bad plot path", SMALL, ("--plot", "/nonexistent/dir/plot.png"), "cannot write plot"),
]


@pytest.mark.parametrize(("content", "options", "message"), [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])  # fmt: skip
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, content: Any, options: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "absent.json" if content is None else write(tmp_path, content)
    result = run(path, *options)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def pool_roles(**llm: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SMALL)
    raw["pool"]["roles"]["llm"].update(llm)
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (pool_roles(minReplicas=5, maxReplicas=2), "pool.roles.llm: minReplicas 5 is above maxReplicas 2"),
        (pool_roles(workersPerPod=0), "pool.roles.llm.workersPerPod"),
        (pool_roles(maxReplica=3), "pool.roles.llm.maxReplica: unknown field"),
        (changed(pool={}), "pool.roles: required"),
        (
            changed(roles={"llm": {"service_time_s": 8, "cv": 0.6}}),
            "pool role 'reconciler' has no job timing",
        ),
        (changed(chain={"llm": ["archiver"]}), "chain.llm: 'archiver' is not a role of the pool"),
        (changed(provider_blocked=[{"from": 50, "to": 50}]), "from 50 is not before to 50"),
        (changed(provider_blocked=[{"from": 5, "to": 50, "kind": "nap"}]), "provider_blocked[0].kind"),
        (changed(duration_s=-1), "duration_s: must be greater than 0"),
    ],
)
def test_trace_problems_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_trace(raw)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_example_traces_parse() -> None:
    paths = sorted((ROOT / "examples" / "traces").glob("*.json"))
    assert [path.stem for path in paths] == ["diurnal", "hourly-batches", "quota-outage", "rate-limited"]
    for path in paths:
        parsed = parse_trace(json.loads(path.read_text()))
        assert parsed.roles["llm"].gated_by_provider
        assert sum(arrival.jobs for arrival in parsed.arrivals) > 1000
        assert (parsed.limit is not None) == (path.stem == "rate-limited")
