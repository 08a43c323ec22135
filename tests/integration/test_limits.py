"""Request size and hard ceilings: process defaults, an alias's own limits, a 400 naming the
field; and hostile bodies refused before validation builds them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import serve_gateway, write_catalog

TIGHT = {
    "max_messages": 2,
    "max_request_chars": 10,
    "max_n": 2,
    "max_tokens": 10,
    "max_best_of": 2,
    "max_stop": 1,
    "max_logit_bias": 1,
}
CATALOG = {
    "backends": {"echo": {"kind": "echo"}},
    "models": {
        "echo": {"policy": "direct", "backends": {"main": "echo"}},
        "tight": {"policy": "direct", "backends": {"main": "echo"}, "limits": TIGHT},
    },
}
MIB4 = 4 * 1024 * 1024 - 1024


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = write_catalog(tmp_path_factory.mktemp("limits"), CATALOG)
    with serve_gateway(path, limits={"max_n": 3}) as served:
        yield served


def chat(url: str, model: str = "echo", **fields: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def complete(url: str, model: str = "echo", **fields: Any) -> httpx.Response:
    body = {"model": model, "prompt": "hi", "max_tokens": 5, **fields}
    return httpx.post(f"{url}/v1/completions", json=body, timeout=30)


def refused(response: httpx.Response, param: str | None) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        "limit_exceeded",
    )
    return str(error["message"])


def test_an_alias_sets_its_own_ceilings(url: str) -> None:
    two = [{"role": "user", "content": "hi"}] * 2
    assert chat(url, "tight", messages=two, n=2, max_tokens=10, stop=["x"]).status_code == 200
    assert "at most 2" in refused(chat(url, "tight", messages=[*two, *two[:1]]), "messages")
    refused(chat(url, "tight", messages=[{"role": "user", "content": "x" * 11}]), "messages")
    refused(chat(url, "tight", n=3), "n")
    refused(chat(url, "tight", max_tokens=11), "max_tokens")
    refused(chat(url, "tight", max_completion_tokens=11), "max_completion_tokens")
    refused(chat(url, "tight", stop=["a", "b"]), "stop")
    refused(chat(url, "tight", logit_bias={"1": 1, "2": 1}), "logit_bias")
    refused(complete(url, "tight", best_of=3, n=1), "best_of")
    refused(complete(url, "tight", prompt="x" * 11), "prompt")
    refused(complete(url, "tight", prompt=[list(range(11))]), "prompt")


def test_the_process_defaults_hold_elsewhere(url: str) -> None:
    assert chat(url, n=3).status_code == 200  # the settings' max_n
    refused(chat(url, n=4), "n")
    refused(chat(url, messages=[{"role": "user", "content": ""}] * 2049), "messages")
    refused(chat(url, stop=["a", "b", "c", "d", "e"]), "stop")
    refused(chat(url, max_tokens=32769), "max_tokens")
    refused(chat(url, logit_bias={str(i): 1 for i in range(301)}), "logit_bias")
    refused(chat(url, messages=[{"role": "user", "content": "x" * (1024 * 1024 + 1)}]), "messages")


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"echo","messages":[' + b",".join([b'{"role":"user"}'] * (MIB4 // 16)) + b"]}",
        b'{"model":"echo","messages":[{"role":"user"}],"stop":['
        + b",".join([b'"a"'] * (MIB4 // 4))
        + b"]}",
        b'{"model":"echo","messages":[{"role":"user"}],"x":['
        + b",".join([b"[]"] * (MIB4 // 3))
        + b"]}",
    ],
    ids=["260k-empty-messages", "1M-stop-strings", "1.4M-empty-arrays"],
)
def test_a_body_of_many_small_items_is_refused_before_it_is_validated(
    url: str, body: bytes
) -> None:
    started = time.perf_counter()
    response = httpx.post(
        f"{url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    seconds = time.perf_counter() - started
    assert "more than 50000 JSON items" in refused(response, None)
    # validating any of these took 0.4-1 s of the event loop; counting takes 10-40 ms
    assert seconds < 0.4, seconds


def test_deep_nesting_is_refused_by_the_parser(url: str) -> None:
    """Needs no guard of Tandem's (the parser stops at 200 levels): kept so that it stays so."""
    depth = MIB4 // 2
    body = b'{"model":"echo","messages":[{"role":"user"}],"x":' + b"[" * depth + b"]" * depth + b"}"
    response = httpx.post(
        f"{url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]


def test_catalog_limits_are_validated(tmp_path: Path) -> None:
    from gateway.core.config import CatalogError, Settings, load_catalog

    bad = {"models": {"a": {"policy": "direct", "backends": {"main": "e"}, "limits": {"max_x": 1}}}}
    with pytest.raises(CatalogError) as error:
        load_catalog(Settings(config=write_catalog(tmp_path, bad)))
    assert error.value.key == "models.a.limits.max_x"
