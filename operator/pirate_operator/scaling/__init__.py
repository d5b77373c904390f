"""The pure scaling decision (DESIGN §7): no I/O, no clock, no Kubernetes or Redis imports.

Used alike by the operator, the local mode and the simulator.
"""

from pirate_operator.scaling.decide import TOLERANCE, Decision, decide
from pirate_operator.scaling.observation import Gate, RoleObservation, provider_gate
from pirate_operator.scaling.pipeline import pipeline_lead

__all__ = [
    "TOLERANCE",
    "Decision",
    "Gate",
    "RoleObservation",
    "decide",
    "pipeline_lead",
    "provider_gate",
]
