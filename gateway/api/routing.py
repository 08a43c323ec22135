"""The catalog, built: model aliases resolved to a policy, its parameters and its backends.

Everything a request may pick is built here, at start-up: the policies an alias lets a request
switch to, and with each policy its circuit breaker. A request only chooses among them, within
what the alias's `overrides` allow (gateway/core/overrides.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.api.keys import ApiKey
from gateway.api.learned_routers import catalog_routers
from gateway.backends import Backend, build_backend
from gateway.core.bounds import RequestLimits
from gateway.core.config import AliasSpec, Catalog, CatalogError
from gateway.core.errors import InvalidRequest, ModelNotFound
from gateway.core.overrides import check_overrides
from gateway.core.protocol import TandemOptions
from gateway.core.registry import UnknownName
from gateway.policies import ParamError, Policy, PolicyParams, policies

if TYPE_CHECKING:  # numpy: only catalogs with routers import it
    from gateway.policies.router_spec import Router as LearnedRouter


@dataclass
class Route:
    alias: str
    spec: AliasSpec
    policy: Policy
    params: PolicyParams
    limits: RequestLimits = field(default_factory=RequestLimits)
    created: int = field(default_factory=lambda: int(time.time()))
    others: dict[str, Policy] = field(default_factory=dict)

    def policy_named(self, name: str) -> Policy:
        """The alias's own policy, or one it lets a request switch to (built at start-up)."""
        return self.policy if name == self.policy.name else self.others[name]


class Router:
    def __init__(
        self, routes: dict[str, Route], backends: dict[str, Backend], source: str = "catalog"
    ) -> None:
        self.routes = routes
        self.backends = backends
        self.source = source

    async def check_started(self, aliases: list[str] | None = None) -> None:
        """What only started models can tell (a router trained for another pair, a hidden
        state the small model cannot give, a remote vocabulary that is not the small model's):
        a catalog they cannot serve stops the start."""
        for alias in self.routes if aliases is None else aliases:
            route = self.routes[alias]
            try:
                await route.policy.check_started(route.params)
            except ParamError as exc:
                where = exc.key if exc.key == "backends" else f"params.{exc.key}"
                key = f"models.{alias}.{where}"
                raise CatalogError(self.source, key, exc.message) from None

    def needing_models(self) -> list[str]:
        """The aliases whose catalog entry can be checked only with their models loaded."""
        return [a for a, r in self.routes.items() if r.policy.checks_started(r.params)]

    def aliases(self, key: ApiKey | None = None) -> list[str]:
        """The aliases `key` may use (every one when auth is off)."""
        return sorted(a for a in self.routes if key is None or key.may_use(a))

    def resolve(
        self, model: str, options: TandemOptions, key: ApiKey | None = None
    ) -> tuple[Route, Policy, PolicyParams]:
        """The policy and parameters for one request, with its `tandem` overrides applied; an
        alias the caller's key may not use is as unknown as one that does not exist."""
        route = self.routes.get(model)
        if route is None or (key is not None and not key.may_use(model)):
            raise ModelNotFound(model, self.aliases(key))
        overrides = options.param_overrides()
        name = options.policy or route.policy.name
        if name == route.policy.name and not overrides:
            return route, route.policy, route.params
        switch = {} if name == route.policy.name else {"policy": name}
        check_overrides(route.alias, route.spec.overrides, {**switch, **overrides})
        policy = route.policy_named(name)
        base = route.spec.params if name == route.policy.name else {}
        try:
            params = policy.parse_params({**policy.request_base(base, overrides), **overrides})
        except ParamError as exc:
            raise InvalidRequest(exc.message, param=f"tandem.{exc.key}") from None
        return route, policy, params


def build_router(catalog: Catalog, source: str, limits: RequestLimits | None = None) -> Router:
    """Construct every backend and policy; a catalog that cannot be served raises CatalogError.
    `limits`: the defaults each alias's own `limits` override."""
    defaults = limits or RequestLimits()
    backends = {name: build_backend(name, spec, source) for name, spec in catalog.backends.items()}
    routers = catalog_routers(catalog.routers, source)
    routes = {
        alias: _build_route(alias, spec, backends, routers, source, defaults)
        for alias, spec in catalog.models.items()
    }
    return Router(routes, backends, source)


def _build_route(
    alias: str,
    spec: AliasSpec,
    backends: dict[str, Backend],
    routers: dict[str, LearnedRouter],
    source: str,
    limits: RequestLimits | None = None,
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
    policy = cls(alias, role_backends, routers)
    try:
        params = policy.parse_params(spec.params)
    except ParamError as exc:
        raise CatalogError(source, f"{key}.params.{exc.key}", exc.message) from None
    others = _switchable(alias, spec, role_backends, routers, source)
    _check_override_keys(spec, [policy, *others.values()], source, f"{key}.overrides")
    limits = spec.limits.over(limits or RequestLimits())
    return Route(alias, spec, policy, params, limits, others=others)


def _switchable(
    alias: str,
    spec: AliasSpec,
    role_backends: dict[str, Any],
    routers: dict[str, LearnedRouter],
    source: str,
) -> dict[str, Policy]:
    """The policies `overrides.policy.choices` lets a request switch to, built with defaults."""
    rule = spec.overrides.get("policy")
    if rule is None:
        return {}
    key = f"models.{alias}.overrides.policy"
    if rule.choices is None:
        raise CatalogError(source, key, "switching policy needs its 'choices'")
    others: dict[str, Policy] = {}
    for name in rule.choices:
        if name == spec.policy:
            continue
        try:
            other = policies.get(str(name))(alias, role_backends, routers)
            other.parse_params({})
        except UnknownName as exc:
            raise CatalogError(source, key, str(exc)) from None
        except ParamError as exc:
            raise CatalogError(source, key, f"'{name}': {exc.message}") from None
        others[str(name)] = other
    return others


def _check_override_keys(spec: AliasSpec, policies_: list[Policy], source: str, key: str) -> None:
    """Every overridable key is a parameter of a policy the alias may run, set per request."""
    for name in spec.overrides:
        if name == "policy":
            continue
        owners = [p for p in policies_ if name in p.Params.model_fields]
        if not owners:
            known = sorted({f for p in policies_ for f in p.Params.model_fields})
            raise CatalogError(
                source, f"{key}.{name}", f"not a parameter; known: {', '.join(known) or 'none'}"
            )
        if any(name in p.Params.fixed for p in owners):
            raise CatalogError(source, f"{key}.{name}", "set once per alias; not per request")
