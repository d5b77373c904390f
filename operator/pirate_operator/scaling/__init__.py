"""The pure scaling decision (DESIGN §7): no I/O, no clock, no Kubernetes or Redis imports.

Used alike by the operator, the local mode and the simulator.
"""

from pirate_operator.scaling.decide import TOLERANCE, Decision, decide
from pirate_operator.scaling.observation import Gate, RoleObservation, provider_gate
from pirate_operator.scaling.pipeline import pipeline_lead
from pirate_operator.scaling.provider_cap import (
    BUDGET_FRESH_SECONDS,
    LIMIT_IDLE_SHARE,
    ProviderCap,
    provider_cap,
    slots_for,
)

__all__ = [
    "BUDGET_FRESH_SECONDS",
    "LIMIT_IDLE_SHARE",
    "TOLERANCE",
    "Decision",
    "Gate",
    "ProviderCap",
    "RoleObservation",
    "decide",
    "pipeline_lead",
    "provider_cap",
    "provider_gate",
    "slots_for",
]
