"""Our policy: the operator's own :func:`~pirate_operator.scaling.decide` on the simulated cluster.

Every ``pollingIntervalSeconds`` each role is decided exactly as the operator decides it, with the
role's :class:`~pirate_operator.api.RoleMemory` carried from one poll to the next:

* observation: queued = LLEN, in flight = running jobs (heartbeats are always live here), busy
  workers = worker processes running a job, no scheduled retries, mean job time of the role's
  finished jobs (what the operator reads from the workers' rq statistics);
* provider state and rate-limit budget: what the workers wrote to Redis (see :mod:`.provider`);
  with ``cap=False`` the budget is withheld, to measure what the cap changes;
* no pipeline lead, as the operator's ``reconcile.steps.decide_roles`` passes none; with
  ``lead=True`` chained roles get :func:`~pirate_operator.scaling.pipeline_lead` from the
  upstream roles' completion rate over the last :data:`LEAD_RATE_WINDOW_SECONDS` (to measure what
  the lead would change).
"""

from __future__ import annotations

from typing import Final

from pirate_operator.api import EffectiveRole, RoleMemory
from pirate_operator.scaling import RoleObservation, decide, pipeline_lead
from pirate_operator.simulate.cluster import Deletion
from pirate_operator.simulate.policy import ClusterView
from pirate_operator.simulate.provider import at

#: Window over which the operator measures the LLM stage's completion rate for the pipeline lead.
LEAD_RATE_WINDOW_SECONDS: Final = 60.0


class PiratePolicy:
    """``decide()`` per role every polling interval; idle pods go first on scale-in."""

    deletion = Deletion.PREFER_IDLE

    def __init__(
        self,
        roles: dict[str, EffectiveRole],
        chain: dict[str, tuple[str, ...]],
        *,
        phase: float = 0.0,
        lead: bool = False,
        cap: bool = True,
    ) -> None:
        self.name = "pirate" if cap else "pirate-nocap"
        self._cap = cap
        self._roles = roles
        self._phase = phase
        self._memory = {name: RoleMemory() for name in roles}
        self._upstream = {
            name: tuple(source for source, targets in sorted(chain.items()) if name in targets)
            for name in roles
        }
        self._lead = lead
        self.last_reasons: dict[str, str] = {}

    def initial_replicas(self, role: EffectiveRole) -> int:
        """The operator creates each Deployment at minReplicas."""
        return role.min_replicas

    def step(self, view: ClusterView) -> float:
        """One polling round: decide and apply every role (the first at ``phase``)."""
        if view.now < self._phase:
            return self._phase
        now = at(view.now)
        provider = view.provider_state()
        budget = view.rate_budget() if self._cap else None
        for name, role in self._roles.items():
            observation = RoleObservation(
                queued=view.queued(name),
                live_in_flight=view.busy(name),
                busy_workers=view.busy_workers(name),
                mean_job_seconds=view.mean_job_seconds(name),
            )
            decision = decide(
                role,
                self._memory[name],
                observation,
                provider,
                now,
                current_replicas=view.replicas(name),
                lead=self._pipeline_lead(view, name, role),
                budget=budget,
            )
            view.scale(name, decision.desired_replicas)
            self._memory[name] = decision.memory
            self.last_reasons[name] = decision.reason
        return view.now + min(role.polling_interval_seconds for role in self._roles.values())

    def _pipeline_lead(self, view: ClusterView, name: str, role: EffectiveRole) -> int:
        if not self._lead or not self._upstream[name]:
            return 0
        window = min(LEAD_RATE_WINDOW_SECONDS, view.now)
        if window <= 0:
            return 0
        finished = sum(view.completions_since(source, view.now - window) for source in self._upstream[name])
        return pipeline_lead(finished / window, role)
