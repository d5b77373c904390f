"""``pirate-workers simulate``: load a trace, run one policy, print the report, draw the plot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from rich.console import Console

from pirate_operator.simulate import POLICIES, TraceError, load_trace, report, simulate
from pirate_operator.simulate.report import print_table

#: Exit code for bad input (a trace or an option that cannot be used).
EXIT_BAD_INPUT = 2
#: Width of the table when stdout is not a terminal.
TABLE_WIDTH = 140


def simulate_command(trace: Path, *, policy: str, plot: Path | None, as_json: bool, seed: int) -> int:
    """Run the command; returns the exit code. Bad input prints one line to stderr and returns 2."""
    if policy not in POLICIES:
        return _fail(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    # The plotting stack is the `demo` extra, left out of the production images: say so before
    # spending the run, not with an ImportError after it.
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        return _fail(
            "simulate --plot needs the demo extra (matplotlib not installed): "
            "pip install 'pirate-workers[demo]'"
        )
    try:
        loaded = load_trace(trace)
    except TraceError as exc:
        return _fail(f"bad trace {exc}")
    outcome = simulate(loaded, policy, seed)
    result = report(outcome)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=TABLE_WIDTH)  # piped: one row per line, not wrapped at 80
        print_table(result, console)
    if plot is not None:
        from pirate_operator.simulate.plot import plot_outcome

        try:
            plot_outcome(outcome, plot)
        except (OSError, ValueError) as exc:
            return _fail(f"cannot write plot {plot}: {exc}")
    return 0


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    return EXIT_BAD_INPUT
