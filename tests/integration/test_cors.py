"""CORS is off unless configured; configured, only the listed origins' pages may call the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.core.config import Settings
from tests.servers import serve_gateway

PAGE = "https://app.example"
PREFLIGHT = {
    "origin": PAGE,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}
BODY = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def cors_url(catalog_dir: Path) -> Iterator[str]:
    with serve_gateway(
        catalog_dir / "catalog.yaml", cors_origins=[PAGE], api_keys=["sk-page"]
    ) as url:
        yield url


def test_no_origin_is_allowed_by_default(gateway_url: str) -> None:
    url = gateway_url + "/v1/chat/completions"
    preflight = httpx.options(url, headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    answer = httpx.post(url, json=BODY, headers={"origin": PAGE})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_a_listed_origin_passes_the_preflight_and_reads_the_answer(cors_url: str) -> None:
    url = cors_url + "/v1/chat/completions"
    preflight = httpx.options(url, headers=PREFLIGHT)  # a preflight carries no key
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == PAGE
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    keyed = {"origin": PAGE, "authorization": "Bearer sk-page"}
    answer = httpx.post(url, json=BODY, headers=keyed)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert "x-request-id" in answer.headers["access-control-expose-headers"]
    refused = httpx.post(url, json=BODY, headers={"origin": PAGE})
    assert refused.status_code == 401  # CORS opens nothing the key would close
    assert refused.headers["access-control-allow-origin"] == PAGE


def test_an_unlisted_origin_is_refused(cors_url: str) -> None:
    url = cors_url + "/v1/chat/completions"
    preflight = httpx.options(url, headers={**PREFLIGHT, "origin": "https://evil.example"})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


def test_origins_come_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_CORS_ORIGINS", f"{PAGE}, http://localhost:3000")
    assert Settings().cors_origins == [PAGE, "http://localhost:3000"]
