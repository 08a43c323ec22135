"""Triggers: the registry, each rule at its threshold, and the learned router's file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gateway.backends.sessions import Distribution
from gateway.policies import ParamError
from gateway.policies.breaker import CircuitBreaker
from gateway.policies.collab import CollabPolicy
from gateway.policies.router_spec import load_router
from gateway.policies.triggers import TriggerError, triggers


def dist(*probs: float, entropy: float = 1.0, hidden: list[float] | None = None) -> Distribution:
    return Distribution(list(range(len(probs))), [math.log(p) for p in probs], entropy, hidden)


def fires(name: str, threshold: float | None, d: Distribution) -> bool:
    return triggers.get(name).build(threshold, None).fire(d)


def test_registry_lists_every_trigger_and_refuses_unknown_names() -> None:
    assert triggers.names() == ["always", "entropy", "learned", "margin", "never", "top1"]
    with pytest.raises(LookupError, match="known: always, entropy, learned, margin"):
        triggers.get("perplexity")


def test_entropy_fires_above_its_threshold() -> None:
    assert fires("entropy", 2.0, dist(0.5, 0.5, entropy=2.1))
    assert not fires("entropy", 2.0, dist(0.5, 0.5, entropy=1.9))
    assert triggers.get("entropy").build(None, None).threshold == 1.5


def test_top1_fires_when_the_best_token_is_unlikely() -> None:
    assert fires("top1", 0.4, dist(0.39, 0.3))
    assert not fires("top1", 0.4, dist(0.41, 0.3))


def test_margin_fires_when_the_first_two_are_close() -> None:
    assert fires("margin", 0.2, dist(0.45, 0.3))
    assert not fires("margin", 0.2, dist(0.6, 0.3))
    assert not fires("margin", 0.2, dist(0.9))  # a top-1-only distribution has a wide margin


def test_never_and_always_ignore_the_distribution() -> None:
    for d in (dist(0.99, entropy=0.01), dist(0.1, 0.1, entropy=9.0)):
        assert not fires("never", None, d)
        assert fires("always", None, d)


def router_file(tmp_path: Path, **changes: object) -> Path:
    """A linear router over entropy: score = sigmoid(2 * (entropy - 1))."""
    spec = {
        "inputs": ["entropy"],
        "threshold": 0.5,
        "layers": [{"weight": [[2.0]], "bias": [-2.0]}],
    }
    spec.update(changes)
    path = tmp_path / "router.json"
    path.write_text(json.dumps(spec))
    return path


def test_learned_linear_router(tmp_path: Path) -> None:
    trigger = triggers.get("learned").build(None, load_router(router_file(tmp_path)))
    assert trigger.fire(dist(0.5, entropy=1.5))
    assert not trigger.fire(dist(0.5, entropy=0.5))
    assert not trigger.needs_hidden


def test_learned_mlp_over_logprobs_and_hidden_state(tmp_path: Path) -> None:
    # inputs: 2 top log-probs, then 3 hidden values; unit 1 = relu(hidden[0]), fires above 1
    layers = [
        {"weight": [[0.0, 0.0, 1.0, 0.0, 0.0], [0.0] * 5], "bias": [0.0, 0.0]},
        {"weight": [[4.0, 0.0]], "bias": [-4.0]},
    ]
    path = router_file(tmp_path, inputs=["top_logprobs", "hidden"], top_k=2, layers=layers)
    trigger = triggers.get("learned").build(None, load_router(path))
    assert trigger.needs_hidden
    assert trigger.fire(dist(0.9, hidden=[2.0, 0.0, 0.0]))
    assert not trigger.fire(dist(0.9, hidden=[0.5, 0.0, 0.0]))
    with pytest.raises(TriggerError, match="hidden state"):
        trigger.fire(dist(0.9))


def test_learned_router_reads_the_position_in_the_answer(tmp_path: Path) -> None:
    # inputs: entropy, then the one-hot position (first, second, third, later); fires on the
    # first two tokens whatever the entropy, and later only above entropy 3
    layers = [{"weight": [[1.0, 9.0, 9.0, 0.0, 0.0]], "bias": [-3.5]}]
    path = router_file(tmp_path, inputs=["entropy", "position"], layers=layers)
    router = load_router(path)
    assert router.input_width == 5
    trigger = triggers.get("learned").build(None, router)

    def at(position: int | None, entropy: float) -> Distribution:
        return Distribution([0], [0.0], entropy, None, position)

    assert trigger.fire(at(0, 0.0))
    assert trigger.fire(at(1, 0.0))
    assert not trigger.fire(at(2, 0.0))
    assert not trigger.fire(at(40, 3.0))
    assert trigger.fire(at(40, 4.0))
    with pytest.raises(TriggerError, match="position in the answer"):
        trigger.fire(at(None, 0.0))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("secret: not json", "cannot be read as a router"),
        (json.dumps({"inputs": ["colour"], "layers": []}), "unknown router inputs"),
        (json.dumps({"inputs": ["entropy"], "layers": [{"weight": [[1], [1]], "bias": [0, 0]}]}),
         "exactly one output"),
    ],
)  # fmt: skip
def test_bad_router_files_are_refused_without_quoting_them(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "router.json"
    path.write_text(content)
    with pytest.raises(TriggerError, match=message) as caught:
        load_router(path)
    assert "secret" not in str(caught.value)


class NoSessions:
    name = "plain"


class Sessions(NoSessions):
    """Stands for a backend with token sessions; check_params looks no further."""

    async def open_session(self) -> None: ...


def test_policy_params_name_the_bad_key(tmp_path: Path) -> None:
    bare = CollabPolicy("c", {"small": NoSessions(), "large": NoSessions()})  # type: ignore[dict-item]
    with pytest.raises(ParamError) as no_sessions:
        bare.parse_params({})
    assert no_sessions.value.key == "backends"
    policy = CollabPolicy("c", {"small": Sessions(), "large": Sessions()})  # type: ignore[dict-item]
    with pytest.raises(ParamError, match="known: always, entropy") as unknown:
        policy.parse_params({"trigger": "perplexity"})
    assert unknown.value.key == "trigger"
    with pytest.raises(ParamError) as no_router:
        policy.parse_params({"trigger": "entropy", "router": str(tmp_path / "r.json")})
    assert no_router.value.key == "router"
    with pytest.raises(ParamError) as span:
        policy.parse_params({"span": 33})
    assert span.value.key == "span"
    with pytest.raises(TriggerError, match="needs a router file"):
        triggers.get("learned").build(None, None)
    with pytest.raises(TriggerError, match="takes no router file"):
        triggers.get("entropy").build(None, load_router(router_file(tmp_path)))


def test_circuit_breaker_opens_after_repeated_failures_and_cools_down() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown=10.0, clock=lambda: now[0])
    breaker.failure()
    assert not breaker.open
    breaker.success()
    breaker.failure()
    assert not breaker.open  # a success in between resets the streak
    breaker.failure()
    assert breaker.open
    now[0] = 10.5
    assert not breaker.open  # half-open: one call may try again
    breaker.failure()
    assert breaker.open  # and one more failure re-opens it at once
