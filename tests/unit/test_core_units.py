"""Small pure pieces: catalog settings, registries, event folding, stop handling, error params."""

from __future__ import annotations

import pytest

from gateway.api.aggregate import merge_logprobs, merge_tool_call
from gateway.api.errors import param_path
from gateway.backends.echo import truncate_at_stop, words
from gateway.core.config import Settings, deep_merge
from gateway.core.events import Report
from gateway.core.registry import Registry, UnknownName


def test_api_keys_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_API_KEYS", " a, b ,,c")
    assert Settings().api_keys == ["a", "b", "c"]


def test_nested_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_BACKENDS__LARGE__BASE_URL", "http://vllm:8000/v1")
    assert Settings().backends == {"large": {"base_url": "http://vllm:8000/v1"}}


def test_deep_merge_keeps_what_the_override_does_not_name() -> None:
    base = {"backends": {"a": {"kind": "openai", "model": "m"}}, "models": {"x": {}}}
    merged = deep_merge(base, {"backends": {"a": {"model": "n"}}})
    assert merged == {"backends": {"a": {"kind": "openai", "model": "n"}}, "models": {"x": {}}}
    assert base["backends"]["a"]["model"] == "m", "the base is not modified"


def test_registry_lists_known_names_for_an_unknown_one() -> None:
    registry: Registry[object] = Registry("widget")

    @registry.register("b")
    class B:
        pass

    @registry.register("a")
    class A:
        pass

    assert registry.get("a") is A
    with pytest.raises(UnknownName, match="unknown widget 'c'; known: a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(B)


def test_tool_call_fragments_fold_by_index() -> None:
    calls: dict[int, dict[str, object]] = {}
    merge_tool_call(
        calls,
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}},
    )
    merge_tool_call(calls, {"index": 1, "id": "c2", "function": {"name": "g"}})
    merge_tool_call(calls, {"index": 0, "function": {"arguments": "}"}})
    assert calls == {
        0: {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        1: {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}},
    }


def test_logprobs_concatenate_in_both_shapes() -> None:
    chat = merge_logprobs(None, {"content": [{"token": "a"}], "refusal": None})
    chat = merge_logprobs(chat, {"content": [{"token": "b"}], "refusal": None})
    assert chat == {"content": [{"token": "a"}, {"token": "b"}], "refusal": None}
    legacy = merge_logprobs(
        None,
        {
            "tokens": ["a"],
            "token_logprobs": [-1.0],
            "top_logprobs": [{"a": -1.0}],
            "text_offset": [0],
        },
    )
    legacy = merge_logprobs(
        legacy,
        {
            "tokens": ["b"],
            "token_logprobs": [-2.0],
            "top_logprobs": [{"b": -2.0}],
            "text_offset": [1],
        },
    )
    assert legacy["tokens"] == ["a", "b"]
    assert legacy["text_offset"] == [0, 1]


@pytest.mark.parametrize(
    ("text", "stops", "kept", "stopped"),
    [
        ("one two three", ["two"], "one ", True),
        ("one two three", ["o t"], "one tw", True),
        ("one two three", ["e t"], "on", True),
        ("one two three", ["zz"], "one two three", False),
        ("one two three", ["three", "one"], "", True),
    ],
)
def test_stop_sequences_cut_the_echo(text: str, stops: list[str], kept: str, stopped: bool) -> None:
    pieces, found = truncate_at_stop(words(text), stops)
    assert ("".join(pieces), found) == (kept, stopped)


def test_param_paths_read_like_the_request() -> None:
    assert param_path(["messages", 0, "content", "list[ContentPart]", 1, "text"]) == (
        "messages[0].content[1].text"
    )
    assert param_path(["stop", "str"]) == "stop"
    assert param_path([]) is None


def test_upload_ratio_counts_large_tokens_over_the_answer() -> None:
    report = Report("collab", tokens={"small": 90, "large": 10, "plan": 50})
    assert report.to_wire()["upload_ratio"] == 0.1
    assert Report("direct").to_wire()["upload_ratio"] == 0.0
