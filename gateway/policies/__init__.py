"""Policy registry."""

from __future__ import annotations

from gateway.core.registry import Registry
from gateway.policies.base import ParamError, Policy, PolicyParams

policies: Registry[Policy] = Registry(
    "policy",
    lazy={
        "direct": "gateway.policies.direct",
        "collab": "gateway.policies.collab",
        "hawkeye": "gateway.policies.hawkeye",
    },
)
register = policies.register

__all__ = ["ParamError", "Policy", "PolicyParams", "policies", "register"]
