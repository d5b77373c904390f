"""Local mode: the operator's decision engine scaling ``pirate-workers worker`` processes."""

from pirate_operator.local.autoscaler import LocalAutoscaler, demo_pool

__all__ = ["LocalAutoscaler", "demo_pool"]
