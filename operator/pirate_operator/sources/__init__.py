"""Metric sources (I/O adapters, read-only): what Redis says about a pool's queues and workers."""

from pirate_operator.sources.errors import RedisUnavailable, SourceError
from pirate_operator.sources.observation import PodWorkers, PoolObservation, RoleReading, WorkerState
from pirate_operator.sources.redis_client import open_redis
from pirate_operator.sources.redis_demand import read_pool_observation
from pirate_worker.contracts.workers import pod_of_worker

__all__ = [
    "PodWorkers",
    "PoolObservation",
    "RedisUnavailable",
    "RoleReading",
    "SourceError",
    "WorkerState",
    "open_redis",
    "pod_of_worker",
    "read_pool_observation",
]
