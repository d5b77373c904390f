"""Reconciliation: the named async steps of a pool's polling cycle and the loop that runs them."""

from pirate_operator.reconcile.context import OperatorContext, RedisClients, utc_now
from pirate_operator.reconcile.loop import DEFAULT_INTERVAL, PoolLoop

__all__ = ["DEFAULT_INTERVAL", "OperatorContext", "PoolLoop", "RedisClients", "utc_now"]
