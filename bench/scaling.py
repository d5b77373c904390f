"""Scaling efficiency: our decide() against KEDA's and a plain HPA's defaults on the public traces.

    .venv/bin/python -m bench.scaling [--seeds 5] [--traces examples/traces] [--calls-per-minute N]

Replays every trace under every policy with the same seeds (seed s fixes each job's duration and
when each policy's control loops start relative to the trace; both move results by several
percent, so one seed is not a result). Figures are means over the seeds; ratios are ratios of
those means to the KEDA emulation's, with the range of the per-seed ratios beside them. Prints a
table and writes bench/results/scaling.json (no timestamps: the same code gives the same file).

Goals (from the issue): worker-seconds <= 0.7 x KEDA's at a p95 wait <= 1.0 x KEDA's, and
blocked worker-seconds <= 5 % of KEDA's on traces with a provider outage. On traces with a
provider rate limit (``provider_limit``, or ``--calls-per-minute`` applied to every trace), the
cap: worker-seconds <= 0.5 x the same policy without it (``pirate-nocap``) at a p95 wait at most
5 % higher.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from pirate_operator.simulate import POLICIES, Report, Trace, load_trace, report, simulate
from pirate_operator.simulate.trace import ProviderLimit

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "results" / "scaling.json"
BASELINE: Final = "keda"
GOALS: Final = {"worker_seconds_ratio_max": 0.7, "p95_wait_ratio_max": 1.0, "blocked_ratio_max": 0.05}
#: The cap against the same policy without it, on traces with a provider rate limit.
CAP_GOALS: Final = {"worker_seconds_ratio_max": 0.5, "p95_wait_ratio_max": 1.05}
UNCAPPED: Final = "pirate-nocap"
FIGURES: Final = ("worker_seconds", "p50_wait_s", "p95_wait_s", "max_wait_s", "blocked_worker_seconds",
                  "queued_at_block", "scale_events", "interrupted_jobs")  # fmt: skip


def run_trace(
    path: Path, seeds: Sequence[int], calls_per_minute: float | None = None
) -> dict[str, list[Report]]:
    """Every policy's report for every seed; ``calls_per_minute`` sets the provider's rate limit."""
    trace = with_limit(load_trace(path), calls_per_minute)
    return {policy: [report(simulate(trace, policy, seed)) for seed in seeds] for policy in POLICIES}


def with_limit(trace: Trace, calls_per_minute: float | None) -> Trace:
    """The trace with the provider's rate limit set to ``calls_per_minute`` (as it is when None)."""
    if calls_per_minute is None:
        return trace
    return replace(trace, limit=ProviderLimit(calls_per_minute=calls_per_minute))


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if len(present) == len(values) and present else None


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def summarize(runs: dict[str, list[Report]]) -> dict[str, Any]:
    """Mean figures per policy, ratios to the baseline, and whether our policy met each goal."""
    means: dict[str, dict[str, Any]] = {}
    for policy, reports in runs.items():
        totals = [result.total for result in reports]
        means[policy] = {figure: _mean([getattr(total, figure) for total in totals]) for figure in FIGURES}
        means[policy]["llm_p95_wait_s"] = _mean([result.roles["llm"].p95_wait_s for result in reports])
        means[policy]["llm_worker_seconds"] = _mean(
            [result.roles["llm"].worker_seconds for result in reports]
        )
        means[policy]["pending_jobs"] = sum(total.pending_jobs for total in totals)
    base = means[BASELINE]
    versus: dict[str, dict[str, Any]] = {}
    for policy, reports in runs.items():
        if policy == BASELINE:
            continue
        per_seed = list(zip(reports, runs[BASELINE], strict=True))
        versus[policy] = {
            "worker_seconds": _ratio(means[policy]["worker_seconds"], base["worker_seconds"]),
            "p95_wait": _ratio(means[policy]["p95_wait_s"], base["p95_wait_s"]),
            "llm_p95_wait": _ratio(means[policy]["llm_p95_wait_s"], base["llm_p95_wait_s"]),
            "blocked_worker_seconds": _ratio(
                means[policy]["blocked_worker_seconds"], base["blocked_worker_seconds"]
            ),
            "worker_seconds_per_seed": _range(
                [_ratio(ours.total.worker_seconds, theirs.total.worker_seconds) for ours, theirs in per_seed]
            ),
            "p95_wait_per_seed": _range(
                [_ratio(ours.total.p95_wait_s, theirs.total.p95_wait_s) for ours, theirs in per_seed]
            ),
        }
    ours = versus["pirate"]
    blocked = ours["blocked_worker_seconds"]
    goals = {
        "worker_seconds": _at_most(ours["worker_seconds"], GOALS["worker_seconds_ratio_max"]),
        "p95_wait": _at_most(ours["p95_wait"], GOALS["p95_wait_ratio_max"]),
        "blocked_worker_seconds": None if blocked is None else blocked <= GOALS["blocked_ratio_max"],
    }
    summary = {"policies": _rounded(means), "vs_keda": _rounded(versus), "goals_met": goals}
    if runs["pirate"][0].limit is not None:
        summary["cap"] = _rounded(_cap_summary(means, runs))
    return summary


def _cap_summary(means: dict[str, dict[str, Any]], runs: dict[str, list[Report]]) -> dict[str, Any]:
    """The cap's effect: ``pirate`` against ``pirate-nocap`` (same seeds, same phases)."""
    ours, uncapped = means["pirate"], means[UNCAPPED]
    per_seed = list(zip(runs["pirate"], runs[UNCAPPED], strict=True))
    ratios = {
        "worker_seconds": _ratio(ours["worker_seconds"], uncapped["worker_seconds"]),
        "p95_wait": _ratio(ours["p95_wait_s"], uncapped["p95_wait_s"]),
        "llm_worker_seconds": _ratio(ours["llm_worker_seconds"], uncapped["llm_worker_seconds"]),
        "llm_p95_wait": _ratio(ours["llm_p95_wait_s"], uncapped["llm_p95_wait_s"]),
        "worker_seconds_per_seed": _range(
            [_ratio(a.total.worker_seconds, b.total.worker_seconds) for a, b in per_seed]
        ),
        "p95_wait_per_seed": _range([_ratio(a.total.p95_wait_s, b.total.p95_wait_s) for a, b in per_seed]),
    }
    goals = {
        "worker_seconds": _at_most(ratios["worker_seconds"], CAP_GOALS["worker_seconds_ratio_max"]),
        "p95_wait": _at_most(ratios["p95_wait"], CAP_GOALS["p95_wait_ratio_max"]),
    }
    return {"calls_per_minute": runs["pirate"][0].limit, "vs_uncapped": ratios, "goals_met": goals}


def _range(values: Sequence[float | None]) -> list[float] | None:
    present = [value for value in values if value is not None]
    return [min(present), max(present)] if present else None


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def print_summary(results: dict[str, Any], console: Console) -> None:
    """One row per trace and policy: mean figures and ratios to KEDA."""
    table = Table(title=f"Scaling vs KEDA defaults — means over seeds {results['seeds']}")
    for header in ("trace", "policy", "worker-s", "x KEDA", "p95 wait s", "x KEDA", "llm p95 s",
                   "blocked worker-s", "% of KEDA", "queued at block", "scale events", "interrupted",
                   "goals"):  # fmt: skip
        table.add_column(header, justify="left" if header in ("trace", "policy", "goals") else "right")
    for name, summary in results["traces"].items():
        for index, (policy, figures) in enumerate(summary["policies"].items()):
            ratios = summary["vs_keda"].get(policy, {})
            table.add_row(
                name if index == 0 else "",
                policy,
                f"{figures['worker_seconds']:,.0f}",
                _times(ratios.get("worker_seconds"), policy),
                f"{figures['p95_wait_s']:,.1f}",
                _times(ratios.get("p95_wait"), policy),
                f"{figures['llm_p95_wait_s']:,.1f}",
                f"{figures['blocked_worker_seconds']:,.0f}",
                _share(ratios.get("blocked_worker_seconds"), policy, figures["blocked_worker_seconds"]),
                f"{figures['queued_at_block']:,.1f}",
                f"{figures['scale_events']:,.0f}",
                f"{figures['interrupted_jobs']:,.1f}",
                _goals(summary["goals_met"]) if policy == "pirate" else "",
                end_section=index == len(summary["policies"]) - 1,
            )
    console.print(table)


def print_cap_summary(results: dict[str, Any], console: Console) -> None:
    """One row per trace with a provider rate limit: the cap against the same policy without it."""
    capped = {name: summary for name, summary in results["traces"].items() if "cap" in summary}
    if not capped:
        return
    table = Table(title="Provider rate-limit cap: pirate vs pirate-nocap — means over seeds")
    for header in ("trace", "calls/min", "worker-s", "nocap", "x nocap", "llm x nocap", "p95 wait s",
                   "nocap", "x nocap", "llm p95 x nocap", "goals"):  # fmt: skip
        table.add_column(header, justify="left" if header in ("trace", "goals") else "right")
    for name, summary in capped.items():
        ours, uncapped = summary["policies"]["pirate"], summary["policies"][UNCAPPED]
        cap = summary["cap"]
        ratios, met = cap["vs_uncapped"], cap["goals_met"]
        marks = {True: "met", False: "MISSED", None: "n/a"}
        table.add_row(
            name,
            f"{cap['calls_per_minute']:g}",
            f"{ours['worker_seconds']:,.0f}",
            f"{uncapped['worker_seconds']:,.0f}",
            _times(ratios["worker_seconds"], "pirate"),
            _times(ratios["llm_worker_seconds"], "pirate"),
            f"{ours['p95_wait_s']:,.1f}",
            f"{uncapped['p95_wait_s']:,.1f}",
            _times(ratios["p95_wait"], "pirate"),
            _times(ratios["llm_p95_wait"], "pirate"),
            f"ws {marks[met['worker_seconds']]}, p95 {marks[met['p95_wait']]}",
        )
    console.print(table)


def _times(value: float | None, policy: str) -> str:
    if policy == BASELINE:
        return "1"
    return "—" if value is None else f"{value:.2f}"


def _share(value: float | None, policy: str, own: float) -> str:
    if policy == BASELINE:
        return "100 %" if own else "—"
    return "—" if value is None else f"{value * 100:.2f} %"


def _goals(met: dict[str, bool | None]) -> str:
    marks = {True: "met", False: "MISSED", None: "n/a"}
    worker_seconds, p95, blocked = (
        marks[met[goal]] for goal in ("worker_seconds", "p95_wait", "blocked_worker_seconds")
    )
    return f"ws {worker_seconds}, p95 {p95}, blocked {blocked}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N (default 5)")
    parser.add_argument("--traces", type=Path, default=ROOT / "examples" / "traces", help="folder of traces")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    parser.add_argument(
        "--calls-per-minute",
        type=float,
        nargs="+",
        metavar="N",
        help="replay every trace once per N, its provider limited to N calls/min (else its own limit)",
    )
    args = parser.parse_args(argv)
    seeds = list(range(1, args.seeds + 1))
    paths = sorted(args.traces.glob("*.json"))
    if not paths:
        parser.error(f"no traces in {args.traces}")
    if args.calls_per_minute and min(args.calls_per_minute) <= 0:
        parser.error("--calls-per-minute: every N must be above 0")
    runs = (
        {f"{path.stem}@{limit:g}/min": (path, limit) for path in paths for limit in args.calls_per_minute}
        if args.calls_per_minute
        else {path.stem: (path, None) for path in paths}
    )
    results: dict[str, Any] = {
        "benchmark": "bench/scaling.py",
        "baseline": BASELINE,
        "seeds": seeds,
        "goals": GOALS,
        "cap_goals": CAP_GOALS,
        "traces": {name: summarize(run_trace(path, seeds, limit)) for name, (path, limit) in runs.items()},
    }
    console = Console(width=200)
    print_summary(results, console)
    print_cap_summary(results, console)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
