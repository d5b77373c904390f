"""Replaying demand traces through scaling policies (``pirate-workers simulate``, ``bench/scaling.py``).

Policies, one simulated cluster: ``pirate`` (the operator's own ``decide()``; ``pirate-nocap`` the
same without the provider rate-limit cap, to measure it), ``keda`` (an
emulation of KEDA's Redis list scaler with its defaults and the HPA behind it) and ``hpa`` (a
plain HPA on the queue length). Runs are deterministic for a seed. No I/O here except reading a
trace file and, in :mod:`.plot`, writing a PNG.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from pirate_operator.simulate.engine import Outcome, Simulation
from pirate_operator.simulate.hpa import HPA_SYNC_SECONDS, HpaPolicy
from pirate_operator.simulate.keda import KEDA_POLLING_INTERVAL_SECONDS, KedaPolicy
from pirate_operator.simulate.pirate import PiratePolicy
from pirate_operator.simulate.policy import Policy
from pirate_operator.simulate.report import Figures, Report, report
from pirate_operator.simulate.trace import Trace, TraceError, load_trace, parse_trace


def _phase(seed: int, loop: str, interval: float) -> float:
    """When a control loop first runs, in [0, interval): drawn from the seed, not chosen."""
    return random.Random(f"{seed}/phase/{loop}").uniform(0.0, interval)


def _pirate(trace: Trace, seed: int) -> Policy:
    return PiratePolicy(
        trace.roles, trace.chain, phase=_phase(seed, "pirate", trace.pool.polling_interval_seconds)
    )


def _pirate_nocap(trace: Trace, seed: int) -> Policy:
    # The same phase as ``pirate`` for a seed: the two differ by the cap alone.
    return PiratePolicy(
        trace.roles, trace.chain, phase=_phase(seed, "pirate", trace.pool.polling_interval_seconds), cap=False
    )


def _keda(trace: Trace, seed: int) -> Policy:
    return KedaPolicy(
        trace.roles,
        poll_phase=_phase(seed, "keda", KEDA_POLLING_INTERVAL_SECONDS),
        sync_phase=_phase(seed, "hpa", HPA_SYNC_SECONDS),
    )


def _hpa(trace: Trace, seed: int) -> Policy:
    return HpaPolicy(trace.roles, sync_phase=_phase(seed, "hpa", HPA_SYNC_SECONDS))


#: Policy names and how to build each for a trace and a seed (which also fixes the loops' phases).
POLICIES: Final[dict[str, Callable[[Trace, int], Policy]]] = {
    "pirate": _pirate,
    "pirate-nocap": _pirate_nocap,
    "keda": _keda,
    "hpa": _hpa,
}


def simulate(trace: Trace, policy: str | Policy, seed: int = 1) -> Outcome:
    """Replay ``trace`` under ``policy`` (a name from :data:`POLICIES` or a policy object).

    The seed fixes every job's duration and, for a named policy, when its control loops first
    run relative to the trace; a policy object keeps the phases it was built with.
    """
    if isinstance(policy, str):
        try:
            build = POLICIES[policy]
        except KeyError:
            raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}") from None
        policy = build(trace, seed)
    return Simulation(trace, policy, seed).run()


__all__ = [
    "POLICIES",
    "Figures",
    "Outcome",
    "Report",
    "Trace",
    "TraceError",
    "load_trace",
    "parse_trace",
    "report",
    "simulate",
]
