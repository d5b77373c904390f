"""Pipeline coordination: downstream roles get replicas before their queues fill."""

from __future__ import annotations

import math

from pirate_operator.api.roles import EffectiveRole


def pipeline_lead(llm_completion_rate_per_s: float, role: EffectiveRole) -> int:
    """Fewest replicas a downstream role (reconciler, recorder) should have now.

    Every completed LLM job enqueues one job for each downstream role. A replica added now takes
    the pool's ``podStartSeconds`` to take work and the operator looks again only after
    ``pollingIntervalSeconds``, so the jobs arriving within that horizon would otherwise wait with
    nobody to take them. The rule:

        arrivals = rate x (pollingIntervalSeconds + podStartSeconds)
        lead = ceil(arrivals / (targetJobsPerWorker x workersPerPod))

    at least 1 while the LLM stage completes anything (the stage is never cold when work is
    coming), 0 when the rate is 0 (or not a positive number), never above ``maxReplicas``.
    :func:`~pirate_operator.scaling.decide.decide` takes it as ``lead``: a floor on the
    recommendation, so stabilization and rate policies still apply to it.
    """
    if not llm_completion_rate_per_s > 0 or math.isinf(llm_completion_rate_per_s):
        return 0
    horizon = role.polling_interval_seconds + role.pod_start_seconds
    arrivals = llm_completion_rate_per_s * horizon
    return min(max(1, math.ceil(arrivals / role.capacity_per_pod)), role.max_replicas)
