"""``LocalAutoscaler``: every tick, read the pool's Redis, run the real ``decide()`` per role and
start or stop local worker processes to match — the operator's loop without Kubernetes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pirate_operator.api.roles import EffectiveRole, effective_roles
from pirate_operator.api.spec import PoolSpec
from pirate_operator.api.status import RoleMemory
from pirate_operator.local.processes import ProcessActuator
from pirate_operator.scaling import decide
from pirate_operator.sources import RedisUnavailable, open_redis, read_pool_observation
from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState

#: Without Redis data decide() holds the replicas whatever the provider says.
_NO_DATA = ProviderState(condition=ProviderCondition.OK)


def demo_pool(redis_url: str, provider: str, max_llm: int) -> PoolSpec:
    """The pool ``demo`` scales: scale-to-zero roles, short windows so a laptop run shows them."""
    quick = {"scaleDown": {"stabilizationWindowSeconds": 3}}
    return PoolSpec.model_validate(
        {
            "image": "local",
            "redis": {"url": redis_url},
            "provider": {"name": provider},
            "pollingIntervalSeconds": 1,
            "roles": {
                "llm": {
                    "maxReplicas": max_llm,
                    "workersPerPod": 1,
                    "targetJobsPerWorker": 4,
                    "behavior": quick,
                },
                "reconciler": {
                    "maxReplicas": 2,
                    "workersPerPod": 1,
                    "targetJobsPerWorker": 10,
                    "behavior": quick,
                },
                "recorder": {
                    "maxReplicas": 1,
                    "workersPerPod": 1,
                    "targetJobsPerWorker": 20,
                    "behavior": quick,
                },
            },
        }
    )


@dataclass(frozen=True)
class Tick:
    """What one tick saw and did, for progress displays and the timeline."""

    replicas: dict[str, int]
    demand: dict[str, int]
    blocked: bool
    reasons: dict[str, str]


class LocalAutoscaler:
    def __init__(
        self,
        pool: PoolSpec,
        env: Mapping[str, str],
        log_dir: Path,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert pool.redis.url is not None, "local mode takes a Redis URL"
        self.pool = pool
        self.clock = clock
        self.roles: dict[str, EffectiveRole] = effective_roles(pool)
        self.actuators = {name: ProcessActuator(role, env, log_dir) for name, role in self.roles.items()}
        self.memory = {name: RoleMemory() for name in self.roles}
        self._redis = open_redis(pool.redis.url)

    def tick(self) -> Tick:
        now = self.clock()
        try:
            seen = read_pool_observation(self._redis, self.roles, now, provider=self.pool.provider.name.value)
        except RedisUnavailable:
            seen = None
        replicas, demand, reasons = {}, {}, {}
        for name, role in self.roles.items():
            actuator = self.actuators[name]
            reading = seen.roles[name] if seen is not None else None
            provider = seen.provider if seen is not None else _NO_DATA
            decision = decide(
                role,
                self.memory[name],
                reading.observation if reading is not None else None,
                provider,
                now,
                current_replicas=actuator.replicas,
                budget=seen.budget if seen is not None else None,
            )
            actuator.scale_to(decision.desired_replicas, reading.busy_pods if reading is not None else {})
            self.memory[name] = decision.memory
            replicas[name] = decision.desired_replicas
            demand[name] = decision.demand or 0
            reasons[name] = decision.reason
        blocked = seen is not None and seen.provider.blocked
        return Tick(replicas=replicas, demand=demand, blocked=blocked, reasons=reasons)

    def crashed(self) -> list[str]:
        return [name for actuator in self.actuators.values() for name in actuator.crashed()]

    def stop(self) -> None:
        for actuator in self.actuators.values():
            actuator.stop()
        self._redis.close()

    def idle(self) -> bool:
        """Every role is back at its minimum."""
        return all(
            a.replicas <= self.roles[n].min_replicas and not a.draining for n, a in self.actuators.items()
        )
