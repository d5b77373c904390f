"""An emulation of the Kubernetes HorizontalPodAutoscaler, and the plain-HPA policy built on it.

Written from upstream ``pkg/controller/podautoscaler`` (``reconcileAutoscaler``,
``GetExternalPerPodMetricReplicas``, ``stabilizeRecommendationWithBehaviors``,
``convertDesiredReplicasWithBehaviorRate``, ``calculateScaleUp/DownLimit...``), independently of
our own :mod:`pirate_operator.scaling` so the comparison does not inherit our choices:

* one external metric with an ``AverageValue`` target: desired = ceil(metric / target) unless
  metric / (target x current) is within the 0.1 tolerance of 1;
* a target at 0 replicas is not autoscaled ("scaling is disabled"); outside [min, max] it moves
  straight to the bound;
* every recommendation is stored; scale-up goes no higher than the lowest recommendation of the
  up window, scale-down no lower than the highest of the down window; the first sync seeds the
  down window with the current replicas;
* rate policies count the HPA's own replica changes within each policy's period (scale-ups and
  scale-downs both move the period's start); Percent up rounds up, Percent down truncates.

The behaviour rules are the pool's as the trace gives them, and the HPA's own defaults for what it
leaves unset (a 300 s scale-down window: this operator's default differs, a stock HPA's does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

from pirate_operator.api import EffectiveRole, PolicyType, ScaleDownRules, ScaleUpRules, SelectPolicy
from pirate_operator.api.spec import HPA_SCALE_DOWN_WINDOW_SECONDS
from pirate_operator.simulate.cluster import Deletion
from pirate_operator.simulate.policy import ClusterView

#: ``--horizontal-pod-autoscaler-sync-period`` default.
HPA_SYNC_SECONDS: Final = 15.0
#: ``--horizontal-pod-autoscaler-tolerance`` default.
HPA_TOLERANCE: Final = Fraction(1, 10)


@dataclass
class HorizontalAutoscaler:
    """One HPA object and the controller's in-memory state for it."""

    target_per_pod: int
    min_replicas: int
    max_replicas: int
    up: ScaleUpRules
    down: ScaleDownRules
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)
    _seeded: bool = False

    @classmethod
    def for_role(cls, role: EffectiveRole, min_replicas: int) -> HorizontalAutoscaler:
        """The HPA of a role: target ``targetJobsPerWorker x workersPerPod`` per pod."""
        return cls(
            target_per_pod=role.capacity_per_pod,
            min_replicas=min_replicas,
            max_replicas=role.max_replicas,
            up=role.behavior.scale_up,
            down=role.behavior.scale_down,
        )

    def sync(self, now: float, current: int, metric: int) -> int:
        """One sync: the replicas the HPA sets (``current`` when it changes nothing)."""
        if current == 0 and self.min_replicas != 0:
            return 0
        if current > self.max_replicas:
            desired = self.max_replicas
        elif current < self.min_replicas:
            desired = self.min_replicas
        else:
            desired = self._normalize(now, current, self._metric_replicas(current, metric))
        if desired > current:
            self.up_events.append((now, desired - current))
        elif desired < current:
            self.down_events.append((now, current - desired))
        self._forget_events(now)
        return desired

    def _metric_replicas(self, current: int, metric: int) -> int:
        ratio = Fraction(metric, self.target_per_pod * current)
        if abs(1 - ratio) <= HPA_TOLERANCE:
            return current
        return -(-metric // self.target_per_pod)

    def _normalize(self, now: float, current: int, recommendation: int) -> int:
        if not self._seeded:
            self.recommendations.append((now, current))
            self._seeded = True
        up_cutoff = now - self.up.stabilization_window_seconds
        down_cutoff = now - self.down.window_seconds(HPA_SCALE_DOWN_WINDOW_SECONDS)
        lowest = highest = recommendation
        for when, replicas in self.recommendations:
            if when > up_cutoff:
                lowest = min(lowest, replicas)
            if when > down_cutoff:
                highest = max(highest, replicas)
        stabilized = min(max(current, lowest), highest)
        self.recommendations = [
            (when, replicas)
            for when, replicas in self.recommendations
            if not (when < up_cutoff and when < down_cutoff)
        ]
        self.recommendations.append((now, recommendation))
        if stabilized > current:
            limit = max(self._scale_up_limit(now, current), current)
            return min(stabilized, self.max_replicas, limit)
        if stabilized < current:
            limit = min(self._scale_down_limit(now, current), current)
            return max(stabilized, self.min_replicas, limit)
        return stabilized

    def _period_start(self, now: float, current: int, period: int) -> int:
        added = sum(change for when, change in self.up_events if when > now - period)
        removed = sum(change for when, change in self.down_events if when > now - period)
        return current - added + removed

    def _scale_up_limit(self, now: float, current: int) -> int:
        if self.up.select_policy == SelectPolicy.DISABLED:
            return current
        proposals = []
        for policy in self.up.policies:
            start = self._period_start(now, current, policy.period_seconds)
            if policy.type == PolicyType.PODS:
                proposals.append(start + policy.value)
            else:
                proposals.append(math.ceil(Fraction(start * (100 + policy.value), 100)))
        return min(proposals) if self.up.select_policy == SelectPolicy.MIN else max(proposals)

    def _scale_down_limit(self, now: float, current: int) -> int:
        if self.down.select_policy == SelectPolicy.DISABLED:
            return current
        proposals = []
        for policy in self.down.policies:
            start = self._period_start(now, current, policy.period_seconds)
            if policy.type == PolicyType.PODS:
                proposals.append(start - policy.value)
            else:
                proposals.append(start * (100 - policy.value) // 100)
        return max(proposals) if self.down.select_policy == SelectPolicy.MIN else min(proposals)

    def _forget_events(self, now: float) -> None:
        longest = max(policy.period_seconds for policy in (*self.up.policies, *self.down.policies))
        self.up_events = [event for event in self.up_events if event[0] > now - longest]
        self.down_events = [event for event in self.down_events if event[0] > now - longest]


class HpaPolicy:
    """A plain HPA per role on the queue length (an external LLEN metric), never below 1 replica."""

    name = "hpa"
    deletion = Deletion.STOCK

    def __init__(self, roles: dict[str, EffectiveRole], *, sync_phase: float = 0.0) -> None:
        self._autoscalers = {
            name: HorizontalAutoscaler.for_role(role, max(1, role.min_replicas))
            for name, role in roles.items()
        }
        self._phase = sync_phase

    def initial_replicas(self, role: EffectiveRole) -> int:
        """The Deployment starts at the HPA's minReplicas (at least 1)."""
        return self._autoscalers[role.name].min_replicas

    def step(self, view: ClusterView) -> float:
        """One HPA sync of every role (the first at ``sync_phase``)."""
        if view.now < self._phase:
            return self._phase
        for name, autoscaler in self._autoscalers.items():
            view.scale(name, autoscaler.sync(view.now, view.replicas(name), view.queued(name)))
        return view.now + HPA_SYNC_SECONDS
