"""The simulator's parts number by number: the HPA emulation, the provider state, scale-in victims,
percentiles."""

from __future__ import annotations

from typing import Any

import pytest

from pirate_operator.api import ScaleDownRules, ScaleUpRules
from pirate_operator.simulate.cluster import Deletion, RoleState
from pirate_operator.simulate.hpa import HorizontalAutoscaler
from pirate_operator.simulate.provider import ProviderModel, at
from pirate_operator.simulate.report import percentile
from pirate_operator.simulate.trace import BlockedWindow
from pirate_worker.contracts.provider_state import ProviderCondition


def hpa(**fields: Any) -> HorizontalAutoscaler:
    settings: dict[str, Any] = {
        "target_per_pod": 2,
        "min_replicas": 1,
        "max_replicas": 20,
        "up": ScaleUpRules(),
        "down": ScaleDownRules(),
    }
    return HorizontalAutoscaler(**(settings | fields))


# Each case: a sequence of (time, current replicas, LLEN) syncs and the replicas each one sets.
HPA_CASES: list[tuple[str, list[tuple[float, int, int]], list[int]]] = [
    ("ceil(metric / target)", [(0, 1, 5)], [3]),
    ("within tolerance: 21 jobs for 10 pods of 2", [(0, 10, 21)], [10]),
    ("just outside tolerance", [(0, 10, 23)], [12]),
    ("scale-up: 4 pods or 100 % per 15 s", [(0, 1, 100)], [5]),
    ("scale-up from 6: 100 % wins", [(0, 6, 100)], [12]),
    ("the period counts earlier scale-ups", [(0, 1, 100), (10, 5, 100), (15, 5, 100)], [5, 5, 10]),
    ("capped at max", [(0, 15, 100)], [20]),
    ("no queue: held by the 300 s window", [(0, 4, 8), (100, 4, 0), (299, 4, 0), (300, 4, 0)], [4, 4, 4, 1]),
    ("the first sync seeds the window with current", [(0, 6, 0), (299, 6, 0), (300, 6, 0)], [6, 6, 1]),
    ("scaled to zero by someone else: disabled", [(0, 0, 50)], [0]),
    ("above max: straight to max", [(0, 25, 0)], [20]),
]


@pytest.mark.parametrize(
    ("syncs", "want"), [case[1:] for case in HPA_CASES], ids=[case[0] for case in HPA_CASES]
)
def test_hpa_emulation(syncs: list[tuple[float, int, int]], want: list[int]) -> None:
    autoscaler = hpa()
    assert [autoscaler.sync(now, current, metric) for now, current, metric in syncs] == want


def test_hpa_min_replicas_holds_at_no_demand() -> None:
    autoscaler = hpa(min_replicas=3, down=ScaleDownRules(stabilization_window_seconds=0))
    assert autoscaler.sync(0, 8, 0) == 3


WINDOW = BlockedWindow.model_validate({"from": 100, "to": 200, "kind": "quota_exceeded"})


def test_provider_state_follows_what_workers_write() -> None:
    provider = ProviderModel()
    assert provider.state(150).condition == ProviderCondition.OK, "nobody has called the provider yet"
    provider.refused(WINDOW, 150)
    blocked = provider.state(150)
    assert (blocked.condition, blocked.retry_at) == (ProviderCondition.QUOTA_EXCEEDED, at(200))
    provider.succeeded(160)  # a call started before the window: proves nothing
    assert provider.state(199).condition == ProviderCondition.QUOTA_EXCEEDED
    assert provider.state(200).condition == ProviderCondition.PROBING
    provider.succeeded(230)
    assert provider.state(231).condition == ProviderCondition.OK


def test_provider_state_key_expires_60_s_after_retry_at() -> None:
    provider = ProviderModel()
    provider.refused(WINDOW, 120)
    assert provider.state(259).condition == ProviderCondition.PROBING
    assert provider.state(260).condition == ProviderCondition.OK


def role_with_pods(pods: list[tuple[float, int]]) -> RoleState:
    """Pods of two workers each, given as (ready_at, busy workers) in creation order."""
    state = RoleState("llm", workers_per_pod=2)
    for number, (ready_at, busy) in enumerate(pods, start=1):
        pod = state.add_pod(number, 0.0, ready_at)
        for worker in pod.workers[:busy]:
            worker.job = object()  # type: ignore[assignment]
    return state


@pytest.mark.parametrize(
    ("deletion", "count", "want"),
    [
        # Pods: 1 half busy, ready at 0; 2 idle, ready at 0; 3 fully busy, ready at 10; 4 starting.
        # Ours: starting first, then fewest busy workers. Stock: starting first, then newest ready.
        (Deletion.PREFER_IDLE, 1, [4]),
        (Deletion.PREFER_IDLE, 2, [4, 2]),
        (Deletion.PREFER_IDLE, 3, [4, 2, 1]),
        (Deletion.STOCK, 2, [4, 3]),
        (Deletion.STOCK, 3, [4, 3, 2]),
    ],
)
def test_scale_in_victims(deletion: Deletion, count: int, want: list[int]) -> None:
    state = role_with_pods([(0, 1), (0, 0), (10, 2), (50, 0)])
    assert [pod.number for pod in state.victims(count, deletion, now=20)] == want


@pytest.mark.parametrize(
    ("values", "percent", "want"),
    [
        ([], 50, None),
        ([7.0], 95, 7.0),
        ([4.0, 1.0, 3.0, 2.0], 50, 2.0),
        ([float(v) for v in range(1, 21)], 95, 19.0),
    ],
)
def test_nearest_rank_percentile(values: list[float], percent: float, want: float | None) -> None:
    assert percentile(values, percent) == want
