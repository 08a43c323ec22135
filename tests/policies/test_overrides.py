"""What a request may change on an alias: only the `tandem` keys its catalog entry declares,
within their ranges or choices; routers by catalog name; one breaker per alias; a bounded
trigger cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.api.learned_routers import catalog_routers
from gateway.api.routing import Route, Router, _build_route
from gateway.core.config import AliasSpec, CatalogError
from gateway.core.errors import InvalidRequest
from gateway.core.overrides import OverrideRule
from gateway.core.protocol import TandemOptions
from gateway.policies.collab import TRIGGER_CACHE_SIZE, CollabParams, CollabPolicy
from gateway.policies.learned import LearnedTrigger


class Sessions:
    """Stands for a backend with token sessions; the policies' checks look no further."""

    name = "sessions"

    async def open_session(self) -> None: ...


BACKENDS: dict[str, Any] = {"small": Sessions(), "large": Sessions()}


def route(
    params: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    routers: dict[str, Path] | None = None,
    policy: str = "collab",
) -> Route:
    spec = AliasSpec.model_validate(
        {
            "policy": policy,
            "backends": {"small": "small", "large": "large"},
            "params": params or {},
            "overrides": overrides or {},
        }
    )
    loaded = catalog_routers(routers or {}, "catalog.yaml")
    return _build_route("a", spec, BACKENDS, loaded, "catalog.yaml")


def resolve(r: Route, **tandem: Any) -> Any:
    _, policy, params = Router({"a": r}, {}).resolve("a", TandemOptions.model_validate(tandem))
    return policy, params


def refused(r: Route, **tandem: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        resolve(r, **tandem)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(
    "tandem",
    [
        {"trigger": "always"},
        {"policy": "direct", "role": "large"},
        {"breaker_cooldown": 0},
        {"plan_cache_scope": "global"},
        {"router": "/etc/passwd.json"},
    ],
)
def test_nothing_is_overridable_unless_declared(tandem: dict[str, Any]) -> None:
    error = refused(route(), **tandem)
    assert error.param == f"tandem.{next(iter(tandem))}"
    assert error.code == "override_not_allowed"
    assert "settable here: none" in error.message


def test_options_for_the_caller_alone_need_no_declaration() -> None:
    r = route()
    policy, params = resolve(r, provenance=True, cache="no-cache", policy="collab")
    assert (policy, params) == (r.policy, r.params)


def test_declared_ranges_and_choices_bound_what_a_request_sets() -> None:
    r = route(
        {"threshold": 1.5},
        {"threshold": {"min": 0, "max": 5}, "trigger": {"choices": ["entropy", "top1"]}},
    )
    assert resolve(r, threshold=2.5)[1].threshold == 2.5
    assert resolve(r, trigger="top1")[1].trigger == "top1"
    for key, value in [("threshold", 6), ("threshold", "2"), ("threshold", True)]:
        error = refused(r, **{key: value})
        assert (error.param, "from 0 to 5" in error.message) == (f"tandem.{key}", True)
    assert refused(r, trigger="always").message.startswith("'tandem.trigger' must be one of")
    assert refused(r, span=8).param == "tandem.span"
    # within the alias's range, still validated by the policy
    assert refused(route(overrides={"span": {"min": 0, "max": 99}}), span=40).param == "tandem.span"


def test_policy_switching_needs_the_alias_to_list_the_policy() -> None:
    r = route(
        {"role": "small"},
        {"policy": {"choices": ["collab"]}, "role": {"choices": ["small", "large"]}},
        policy="direct",
    )
    assert resolve(r, policy="collab")[0] is r.others["collab"]  # built at start-up
    assert resolve(r, role="large")[1].role == "large"
    assert refused(r, policy="hawkeye").param == "tandem.policy"
    with pytest.raises(CatalogError, match="needs its 'choices'"):
        route(overrides={"policy": {}})


def test_the_catalog_refuses_undeclarable_overrides() -> None:
    with pytest.raises(CatalogError, match=r"overrides\.colour: not a parameter"):
        route(overrides={"colour": {}})
    with pytest.raises(CatalogError, match=r"overrides\.breaker_cooldown: set once per alias"):
        route(overrides={"breaker_cooldown": {"min": 0}})
    with pytest.raises(ValueError, match="min is above max"):
        OverrideRule(min=2, max=1)


def router_file(path: Path) -> Path:
    spec = {
        "inputs": ["entropy"],
        "threshold": 0.5,
        "layers": [{"weight": [[2.0]], "bias": [-2.0]}],
    }
    path.write_text(json.dumps(spec))
    return path


def test_routers_are_named_by_the_catalog_never_by_a_path(tmp_path: Path) -> None:
    named = router_file(tmp_path / "named.json")
    secret = tmp_path / "secret.json"
    secret.write_text('{"inputs": ["the secret content"]}')
    r = route(
        {"trigger": "learned", "router": "mine"},
        {"router": {}},
        routers={"mine": named},
    )
    assert isinstance(r.policy.trigger(r.params), LearnedTrigger)  # type: ignore[attr-defined]
    error = refused(r, router=str(secret))
    assert error.param == "tandem.router"
    assert "known: mine" in error.message
    assert "secret content" not in error.message


def test_a_router_file_is_read_once_at_start_up(tmp_path: Path) -> None:
    """Triggers built later, for the catalog's parameters and for each request's threshold,
    share the router loaded at start-up: the file is not read again (here it is gone)."""
    named = router_file(tmp_path / "named.json")
    r = route({"trigger": "learned", "router": "mine"}, {"threshold": {}}, {"mine": named})
    named.unlink()
    policy, params = resolve(r, threshold=0.7)
    trigger = policy.trigger(params)
    assert isinstance(trigger, LearnedTrigger)
    assert trigger.threshold == 0.7
    assert trigger.router is policy.trigger(r.params).router is policy.routers["mine"]


def test_a_router_that_is_not_a_json_file_stops_the_start(tmp_path: Path) -> None:
    other = router_file(tmp_path / "router.txt")
    with pytest.raises(CatalogError, match=r"routers\.mine: .*a router file is a \.json file"):
        route({"trigger": "learned", "router": "mine"}, routers={"mine": other})


def test_one_breaker_per_alias_from_the_catalog_whatever_the_request() -> None:
    r = route({"breaker_failures": 5}, {"threshold": {}})
    policy = r.policy
    assert isinstance(policy, CollabPolicy)
    breaker = policy.breaker()
    assert breaker.failures == 5
    assert resolve(r, threshold=0.3)[1].threshold == 0.3
    policy.parse_params({"breaker_failures": 1, "breaker_cooldown": 0})
    assert policy.breaker() is breaker
    assert (breaker.failures, breaker.cooldown) == (5, CollabParams().breaker_cooldown)


def test_the_trigger_cache_forgets_the_least_recently_used() -> None:
    r = route(overrides={"threshold": {}})
    policy = r.policy
    assert isinstance(policy, CollabPolicy)
    first = policy.trigger(resolve(r, threshold=0.5)[1])
    for i in range(3 * TRIGGER_CACHE_SIZE):
        resolve(r, threshold=1 + i / 1000)
        policy.trigger(resolve(r, threshold=0.5)[1])  # kept: used again and again
    assert len(policy._triggers) == TRIGGER_CACHE_SIZE
    assert policy.trigger(resolve(r, threshold=0.5)[1]) is first


def test_a_request_that_picks_another_trigger_starts_from_its_defaults(tmp_path: Path) -> None:
    """The alias's threshold, router and upload target belong to its own trigger: a request
    that switches to `top1` does not get the alias's entropy threshold (which would make `top1`
    fire on every token), nor a router that `entropy` refuses."""
    r = route({"trigger": "entropy", "threshold": 1.5}, {"trigger": {}, "threshold": {}})
    _, params = resolve(r, trigger="top1")
    assert (params.trigger, params.threshold) == ("top1", None)
    _, params = resolve(r, trigger="entropy")
    assert params.threshold == 1.5  # the same trigger keeps the alias's settings
    _, params = resolve(r, trigger="top1", threshold=0.3)
    assert params.threshold == 0.3
    named = router_file(tmp_path / "named.json")
    spec = json.loads(named.read_text())
    spec["calibration"] = [{"threshold": 0.9, "upload": 0.1}, {"threshold": 0.1, "upload": 0.9}]
    named.write_text(json.dumps(spec))
    learned = route(
        {"trigger": "learned", "router": "mine", "upload_target": 0.2},
        {"trigger": {}},
        routers={"mine": named},
    )
    policy, params = resolve(learned, trigger="entropy")
    assert (params.router, params.upload_target) == (None, None)
    assert policy.trigger(params).name == "entropy"


def test_a_threshold_replaces_the_alias_upload_target_and_back(tmp_path: Path) -> None:
    named = router_file(tmp_path / "named.json")
    spec = json.loads(named.read_text())
    spec["calibration"] = [{"threshold": 0.9, "upload": 0.1}, {"threshold": 0.1, "upload": 0.9}]
    named.write_text(json.dumps(spec))
    overridable = {"threshold": {}, "upload_target": {"min": 0, "max": 1}}
    learned = route(
        {"trigger": "learned", "router": "mine", "upload_target": 0.2},
        overridable,
        routers={"mine": named},
    )
    policy, params = resolve(learned, threshold=0.7)
    assert (params.threshold, params.upload_target) == (0.7, None)
    assert policy.trigger(params).threshold == 0.7
    fixed = route(
        {"trigger": "learned", "router": "mine", "threshold": 0.7},
        overridable,
        routers={"mine": named},
    )
    policy, params = resolve(fixed, upload_target=0.5)
    assert (params.threshold, params.upload_target) == (None, 0.5)
    assert policy.trigger(params).threshold == pytest.approx(0.5)
