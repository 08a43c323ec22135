"""Token sessions over HTTP: an upstream completion of the wrong shape is a 502-class error
(UpstreamBadResponse), never an AttributeError that would surface as a 500."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.backends.openai_http import OpenAIBackend, OpenAIBackendConfig
from gateway.backends.openai_sessions import Remote
from gateway.core.errors import UpstreamBadResponse
from tests.servers import Upstream


@pytest.mark.parametrize("choices", [[1], ["text"], [{"logprobs": "x"}], {"0": {}}, None, []])
async def test_a_malformed_completion_is_a_bad_response(upstream: Upstream, choices: Any) -> None:
    backend = OpenAIBackend("remote", OpenAIBackendConfig(base_url=f"{upstream.url}/v1", model="m"))
    await backend.start()
    try:
        fake = {"mode": "bad_choices", "bad_choices": choices}
        with pytest.raises(UpstreamBadResponse, match="malformed completion"):
            await Remote(backend).complete({"prompt": [1, 2], "max_tokens": 1, "fake": fake})
    finally:
        await backend.aclose()
