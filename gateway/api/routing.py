"""The catalog, built: model aliases resolved to a policy, its parameters and its backends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.backends import Backend, build_backend
from gateway.core.bounds import RequestLimits
from gateway.core.config import AliasSpec, Catalog, CatalogError
from gateway.core.errors import InvalidRequest, ModelNotFound
from gateway.core.protocol import TandemOptions
from gateway.core.registry import UnknownName
from gateway.policies import ParamError, Policy, PolicyParams, policies


@dataclass
class Route:
    alias: str
    spec: AliasSpec
    policy: Policy
    params: PolicyParams
    limits: RequestLimits = field(default_factory=RequestLimits)
    created: int = field(default_factory=lambda: int(time.time()))
    _others: dict[str, Policy] = field(default_factory=dict)

    def policy_named(self, name: str, backends: Mapping[str, Backend]) -> Policy:
        """The alias's own policy, or another one over the same backends (built once)."""
        if name == self.policy.name:
            return self.policy
        if name not in self._others:
            self._others[name] = policies.get(name)(self.alias, backends)
        return self._others[name]


class Router:
    def __init__(self, routes: dict[str, Route], backends: dict[str, Backend]) -> None:
        self.routes = routes
        self.backends = backends

    def aliases(self) -> list[str]:
        return sorted(self.routes)

    def resolve(self, model: str, options: TandemOptions) -> tuple[Route, Policy, PolicyParams]:
        """The policy and parameters for one request, with its `tandem` overrides applied."""
        route = self.routes.get(model)
        if route is None:
            raise ModelNotFound(model, self.aliases())
        overrides = options.param_overrides()
        if options.policy is None and not overrides:
            return route, route.policy, route.params
        name = options.policy or route.policy.name
        try:
            policy = route.policy_named(name, self._role_backends(route.spec))
        except UnknownName as exc:
            raise InvalidRequest(str(exc), param="tandem.policy") from None
        base = route.spec.params if name == route.policy.name else {}
        try:
            params = policy.parse_params({**base, **overrides})
        except ParamError as exc:
            raise InvalidRequest(exc.message, param=f"tandem.{exc.key}") from None
        return route, policy, params

    def _role_backends(self, spec: AliasSpec) -> dict[str, Backend]:
        return {role: self.backends[name] for role, name in spec.backends.items()}


def build_router(catalog: Catalog, source: str, limits: RequestLimits | None = None) -> Router:
    """Construct every backend and policy; a catalog that cannot be served raises CatalogError.
    `limits`: the defaults each alias's own `limits` override."""
    defaults = limits or RequestLimits()
    backends = {name: build_backend(name, spec, source) for name, spec in catalog.backends.items()}
    routes = {
        alias: _build_route(alias, spec, backends, source, defaults)
        for alias, spec in catalog.models.items()
    }
    return Router(routes, backends)


def _build_route(
    alias: str, spec: AliasSpec, backends: dict[str, Backend], source: str, limits: RequestLimits
) -> Route:
    key = f"models.{alias}"
    try:
        cls = policies.get(spec.policy)
    except UnknownName as exc:
        raise CatalogError(source, f"{key}.policy", str(exc)) from None
    role_backends: dict[str, Any] = {}
    for role, name in spec.backends.items():
        if name not in backends:
            known = ", ".join(sorted(backends)) or "(none)"
            raise CatalogError(
                source, f"{key}.backends.{role}", f"no backend named '{name}'; known: {known}"
            )
        role_backends[role] = backends[name]
    policy = cls(alias, role_backends)
    try:
        params = policy.parse_params(spec.params)
    except ParamError as exc:
        raise CatalogError(source, f"{key}.params.{exc.key}", exc.message) from None
    return Route(alias, spec, policy, params, spec.limits.over(limits))
