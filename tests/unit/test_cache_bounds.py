"""The response cache's bounded work: a key hashed from the validated fields without a second
copy of the request, and a recorder that stops keeping an answer too big to store."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

from gateway.backends.echo import EchoBackend, EchoConfig
from gateway.core.events import Delta, EventStream, Finish, Report, Usage
from gateway.core.protocol import ChatCompletionRequest
from gateway.observability.metrics import Metrics
from gateway.policies.direct import DirectParams
from gateway.stores.cache import MemoryStore
from gateway.stores.digest import Digest
from gateway.stores.response_cache import CacheConfig, ResponseCache, request_key

BACKENDS = {"main": EchoBackend("echo", EchoConfig())}
MIB = 1024 * 1024


def chat(*contents: str, **fields: Any) -> ChatCompletionRequest:
    messages = [{"role": "user", "content": c} for c in contents]
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": messages, "temperature": 0, **fields}
    )


def key(body: ChatCompletionRequest, scope: str = "key:a") -> str:
    return request_key(body, "direct", DirectParams(), BACKENDS, scope)


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_prompt_is_hashed_without_a_copy_of_it() -> None:
    body = chat("x" * (4 * MIB))
    # the JSON text of the request and its UTF-8 encoding made two 4 MiB copies
    assert peak_bytes(lambda: key(body)) < MIB / 4


def test_keys_are_stable_and_tell_every_difference() -> None:
    long = "y" * 200_000
    assert key(chat(long, "z")) == key(chat(long, "z"))
    assert key(chat(long, "z")) != key(chat(long, "z"), scope="key:b")
    assert key(chat(long + "a")) != key(chat(long + "b")), "past the first slice"
    assert key(chat("ab", "c")) != key(chat("a", "bc")), "framed, not concatenated"
    assert key(chat("x", extra=1)) != key(chat("x", extra=True)) != key(chat("x", extra="1"))
    assert key(chat("x", top_k=1)) != key(chat("x", top_k=1.0)), "an extra field as it came"
    ordered = chat("x", extra={"a": 1, "b": [1, {"c": None}]})
    assert key(ordered) == key(chat("x", extra={"b": [1, {"c": None}], "a": 1}))


def test_digest_tags_kinds() -> None:
    digests = {Digest().add(v).hexdigest() for v in (None, False, True, 0, 0.0, "0", [], {})}
    assert len(digests) == 8


async def big_answer(pieces: int, size: int) -> EventStream:
    for _ in range(pieces):
        yield Delta(0, "a" * size)  # a fresh string each time, as a model's text is
    yield Finish(0, "length")
    yield Usage(1, pieces)
    yield Report("direct", {"main": pieces})


async def test_the_recorder_stops_keeping_an_answer_too_big_to_store() -> None:
    store = MemoryStore()
    cache = ResponseCache(store, CacheConfig(max_entry_bytes=MIB), Metrics())
    lookup = await cache.lookup(chat("x"), "direct", DirectParams(), BACKENDS, "a")
    tracemalloc.start()
    try:
        count = 0
        async for _ in cache.record(lookup, big_answer(40, 256 * 1024)):  # 10 MiB in all
            count += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    await cache.aclose()
    assert count == 43, "the client still gets all of it"
    assert len(store) == 0
    assert peak < 3 * MIB, peak  # the whole answer was kept until its end
