"""An emulation of KEDA's Redis list scaler with its documented defaults, with an HPA behind it.

* KEDA's loop runs every ``pollingInterval`` (30 s). The trigger is active when LLEN >
  ``activationListLength`` (0). Active at 0 replicas: KEDA itself scales to max(minReplicaCount, 1).
  Active otherwise: it only records ``lastActiveTime``. Inactive with replicas above 0 and
  ``minReplicaCount`` 0: once ``lastActiveTime + cooldownPeriod`` (300 s) is past, scale to 0.
* The HPA KEDA creates syncs every 15 s on the metric LLEN alone (no in-flight jobs, no quota
  state) with an ``AverageValue`` target ``listLength`` = targetJobsPerWorker x workersPerPod, between
  max(minReplicaCount, 1) and maxReplicaCount (the pool's maxReplicas); at 0 replicas it is idle.
* Each loop starts at its own ``phase`` (KEDA's in [0, 30), the HPA's in [0, 15)): when they
  started relative to the trace is luck, and it moves results by several percent, so
  :func:`pirate_operator.simulate.simulate` draws both from the seed. When the loops coincide
  KEDA's runs first.
"""

from __future__ import annotations

from typing import Final

from pirate_operator.api import EffectiveRole
from pirate_operator.simulate.cluster import Deletion
from pirate_operator.simulate.hpa import HPA_SYNC_SECONDS, HorizontalAutoscaler
from pirate_operator.simulate.policy import ClusterView

#: ScaledObject defaults.
KEDA_POLLING_INTERVAL_SECONDS: Final = 30.0
KEDA_COOLDOWN_SECONDS: Final = 300.0
#: Redis list scaler default.
ACTIVATION_LIST_LENGTH: Final = 0


class KedaPolicy:
    """One ScaledObject (Redis list trigger on the role's queue) per role."""

    name = "keda"
    deletion = Deletion.STOCK

    def __init__(
        self, roles: dict[str, EffectiveRole], *, poll_phase: float = 0.0, sync_phase: float = 0.0
    ) -> None:
        self._roles = roles
        self._autoscalers = {
            name: HorizontalAutoscaler.for_role(role, max(1, role.min_replicas))
            for name, role in roles.items()
        }
        self._last_active: dict[str, float | None] = dict.fromkeys(roles)
        self._next_poll = poll_phase
        self._next_sync = sync_phase

    def initial_replicas(self, role: EffectiveRole) -> int:
        """The Deployment starts at minReplicaCount."""
        return role.min_replicas

    def step(self, view: ClusterView) -> float:
        """Run KEDA's polling loop and/or the HPA sync, whichever is due."""
        if view.now < min(self._next_poll, self._next_sync):
            return min(self._next_poll, self._next_sync)
        if view.now >= self._next_poll:
            for name, role in self._roles.items():
                self._poll(view, name, role)
            self._next_poll = view.now + KEDA_POLLING_INTERVAL_SECONDS
        if view.now >= self._next_sync:
            for name, autoscaler in self._autoscalers.items():
                view.scale(name, autoscaler.sync(view.now, view.replicas(name), view.queued(name)))
            self._next_sync = view.now + HPA_SYNC_SECONDS
        return min(self._next_poll, self._next_sync)

    def _poll(self, view: ClusterView, name: str, role: EffectiveRole) -> None:
        current = view.replicas(name)
        if view.queued(name) > ACTIVATION_LIST_LENGTH:
            if current == 0:
                view.scale(name, max(role.min_replicas, 1))
            self._last_active[name] = view.now
            return
        last_active = self._last_active[name]
        if (
            current > 0
            and role.min_replicas == 0
            and (last_active is None or last_active + KEDA_COOLDOWN_SECONDS < view.now)
        ):
            view.scale(name, 0)
