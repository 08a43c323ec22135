"""A cookie an upstream sets is not kept: every tenant's calls share one HTTP session per
backend, so a kept cookie would ride on the next tenant's call (and cost work on every call)."""

from __future__ import annotations

from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
from gateway.core.protocol import ChatCompletionRequest
from loadtests.fake_upstream import FakeUpstream, ServerThread

COOKIE = "affinity=tenant-a; Path=/"


def ask(fake: dict[str, object]) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "fake": fake}
    )


async def test_a_cookie_set_by_an_upstream_never_rides_on_another_call() -> None:
    upstream = FakeUpstream()
    with ServerThread(upstream.app) as server:
        # a host name, not an IP address: a cookie jar refuses cookies from IP addresses
        url = server.url.replace("127.0.0.1", "localhost") + "/v1"
        backend = OpenAIBackend("up", OpenAIBackendConfig(base_url=url, model="fake"))
        await backend.start()
        try:
            for fake in ({"chunks": 1, "set_cookie": COOKIE}, {"chunks": 1}):
                events = [event async for event in backend.chat(ask(fake))]
                assert events  # the call was answered
        finally:
            await backend.aclose()
    first, second = upstream.records
    assert "cookie" not in first.headers
    assert "cookie" not in second.headers
