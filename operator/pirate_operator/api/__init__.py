"""Pydantic models of the ``PirateWorkerPool`` custom resource, the single source of its CRD.

No I/O and no Kubernetes client here: the models, the role defaults, the semantic checks and
the CRD generator are pure, so every layer above (and the chart's drift test) can use them.
"""

from pirate_operator.api.crd import crd_manifest, crd_yaml
from pirate_operator.api.errors import ApiError, InvalidPoolError
from pirate_operator.api.pool import API_VERSION, GROUP, KIND, PLURAL, VERSION, PirateWorkerPool
from pirate_operator.api.roles import EffectiveRole, effective_role, effective_roles
from pirate_operator.api.spec import (
    Behavior,
    EnvVar,
    PolicyType,
    PoolSpec,
    ProviderName,
    ProviderSpec,
    QuotaSpec,
    RedisSpec,
    RoleBehavior,
    RoleSpec,
    ScaleDownRules,
    ScaleUpRules,
    ScalingPolicy,
    SecretKeyRef,
    SelectPolicy,
)
from pirate_operator.api.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    PoolStatus,
    ProviderStatus,
    Recommendation,
    RoleMemory,
    RoleStatus,
    ScaleEvent,
)
from pirate_operator.api.validation import parse_pool, pool_problems, spec_problems, validation_problems

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ApiError",
    "Behavior",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "EffectiveRole",
    "EnvVar",
    "InvalidPoolError",
    "PirateWorkerPool",
    "PolicyType",
    "PoolSpec",
    "PoolStatus",
    "ProviderName",
    "ProviderSpec",
    "ProviderStatus",
    "QuotaSpec",
    "Recommendation",
    "RedisSpec",
    "RoleBehavior",
    "RoleMemory",
    "RoleSpec",
    "RoleStatus",
    "ScaleDownRules",
    "ScaleEvent",
    "ScaleUpRules",
    "ScalingPolicy",
    "SecretKeyRef",
    "SelectPolicy",
    "crd_manifest",
    "crd_yaml",
    "effective_role",
    "effective_roles",
    "parse_pool",
    "pool_problems",
    "spec_problems",
    "validation_problems",
]
