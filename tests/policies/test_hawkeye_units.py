"""The pieces of `hawkeye` that need no server: think tags, templates, plan keys, parameters,
a failing store, and the policy driven directly (outside the app, with its own plan store)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.api.routing import build_router
from gateway.backends.echo import EchoBackend, EchoConfig
from gateway.core.config import Settings, load_catalog
from gateway.core.events import Delta, Event, Report
from gateway.core.protocol import ChatCompletionRequest, ChatMessage
from gateway.observability.metrics import Metrics
from gateway.policies import ParamError
from gateway.policies.hawkeye import HawkeyeParams, HawkeyePolicy
from gateway.policies.hawkeye_prompts import ThinkStripper, conversation_text, fill
from gateway.policies.plan_cache import CachedPlan, PlanCache, plan_key
from gateway.stores.cache import Bucket, Store, StoreUnavailable, Taken
from tests.policies.hawkeye_fakes import ScriptedBackend, ScriptedConfig

TAGGED = "<think>abc</think>def"


def strip(pieces: Sequence[str]) -> str:
    stripper = ThinkStripper()
    return "".join(stripper.feed(p) for p in pieces) + stripper.flush()


@pytest.mark.parametrize("cut", range(len(TAGGED) + 1))
def test_think_tags_go_wherever_the_stream_splits_them(cut: int) -> None:
    assert strip([TAGGED[:cut], TAGGED[cut:]]) == "abcdef"
    assert strip(list(TAGGED)) == "abcdef"


def test_text_that_only_looks_like_a_tag_is_kept() -> None:
    assert strip(["a <", " b <th", "ing> c </t"]) == "a < b <thing> c </t"


def messages(*turns: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role=role, content=text) for role, text in turns]  # type: ignore[arg-type]


def test_conversation_is_the_question_alone_or_every_turn() -> None:
    assert conversation_text(messages(("user", "2+2?"))) == "2+2?"
    assert conversation_text(messages(("system", "Brief."), ("user", "2+2?"))) == (
        "System: Brief.\nUser: 2+2?"
    )


def test_fill_leaves_what_the_user_typed_alone() -> None:
    text = fill("Q: {conversation} P: {plan}", "say {plan} and {x}", "PLAN")
    assert text == "Q: say {plan} and {x} P: PLAN"


def key(**changes: Any) -> str:
    args: dict[str, Any] = {
        "planner_model": "openai:big",
        "messages": messages(("user", "How many  apples?")),
        "template": "T {conversation}",
        "budget": 256,
        "scope": "key:a",
    }
    return plan_key(**{**args, **changes})


def test_plan_key_is_what_determines_the_plan() -> None:
    assert key() == key(messages=messages(("user", " How many apples? ")))
    for change in (
        {"planner_model": "openai:other"},
        {"template": "U {conversation}"},
        {"budget": 128},
        {"scope": "key:b"},
        {"messages": messages(("user", "How many pears?"))},
        {"messages": messages(("system", "x"), ("user", "How many apples?"))},
        {"sampling": (0.7, None, None)},
        {"sampling": (None, 0.9, None)},
        {"sampling": (None, None, 7)},
    ):
        assert key(**change) != key(), change


def policy(planner: Any = None) -> HawkeyePolicy:
    planner = planner or ScriptedBackend("p", ScriptedConfig(pieces=["Plan", " it."]))
    return HawkeyePolicy("hk", {"planner": planner, "expander": EchoBackend("e", EchoConfig())})


@pytest.mark.parametrize(
    ("raw", "key_name"),
    [
        ({"expand_prompt": "{conversation} only"}, "expand_prompt"),
        ({"plan_prompt": "no placeholder"}, "plan_prompt"),
        ({"plan_cache_scope": "everyone"}, "plan_cache_scope"),
        ({"plan_timeout_seconds": 0}, "plan_timeout_seconds"),
    ],
)
def test_bad_parameters_name_themselves(raw: dict[str, Any], key_name: str) -> None:
    with pytest.raises(ParamError) as caught:
        policy().parse_params(raw)
    assert caught.value.key == key_name


def test_both_roles_are_required() -> None:
    lone = HawkeyePolicy("hk", {"planner": EchoBackend("e", EchoConfig())})
    with pytest.raises(ParamError, match="expander"):
        lone.parse_params({})


class DownStore(Store):
    async def get(self, key: str) -> bytes | None:
        raise StoreUnavailable("down")

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        raise StoreUnavailable("down")

    async def take(self, buckets: Sequence[Bucket]) -> Taken:
        raise StoreUnavailable("down")


async def test_a_store_that_is_down_is_bypassed() -> None:
    metrics = Metrics()
    cache = PlanCache(DownStore(), metrics, "plan:k", 60)
    assert await cache.get() is None
    await cache.put(CachedPlan("plan", 2))
    assert metrics.registry.get_sample_value(
        "tandem_cache_requests_total", {"cache": "plan", "result": "bypass"}
    )


async def run(hawkeye: HawkeyePolicy, **tandem: Any) -> list[Event]:
    body = {"model": "hk", "messages": [{"role": "user", "content": "2+2?"}]}
    request = ChatCompletionRequest.model_validate(body)
    return [e async for e in hawkeye.chat(request, hawkeye.parse_params(tandem))]


def report_of(events: list[Event]) -> Report:
    report = events[-1]
    assert isinstance(report, Report)
    return report


async def test_outside_the_app_plans_are_kept_by_the_policy() -> None:
    planner = ScriptedBackend("p", ScriptedConfig(pieces=["Plan", " it."]))
    hawkeye = policy(planner)
    first = await run(hawkeye)
    second = await run(hawkeye)
    assert len(planner.requests) == 1
    assert report_of(second).extra["plan_cached"] is True
    plans = [
        [e.reasoning for e in run_ if isinstance(e, Delta) and e.reasoning]
        for run_ in (first, second)
    ]
    assert plans == [["Plan", " it."], ["Plan it."]]
    await run(hawkeye, plan_cache=False)
    assert len(planner.requests) == 2


EXAMPLE = Path(__file__).parents[2] / "examples" / "hawkeye-vllm.yaml"


def test_catalogs_that_name_hawkeye_build() -> None:
    default = build_router(load_catalog(Settings()), str(Settings().catalog_path())).routes[
        "tandem-hawkeye"
    ]
    assert default.spec.backends == {"planner": "gemma3", "expander": "smollm2"}
    router = build_router(load_catalog(Settings(config=EXAMPLE)), str(EXAMPLE))
    route = router.routes["tandem-hawkeye"]
    assert isinstance(route.params, HawkeyeParams)
    assert route.params.plan_max_tokens == 1024
    planner = router.backends[route.spec.backends["planner"]]
    assert planner.kind == "openai"
