"""API keys, liveness/readiness and the Prometheus endpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from gateway.api.auth import KeyChecker, open_access_warning
from tests.servers import closed_port, serve_gateway, write_catalog

ECHO_ONLY = {
    "backends": {"echo": {"kind": "echo"}},
    "models": {"echo": {"policy": "direct", "backends": {"main": "echo"}}},
}
ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def keyed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("keyed")
    keys = directory / "keys.txt"
    keys.write_text("# operators\n  # an indented comment is no key\nsk-from-file\n")
    catalog = write_catalog(directory, ECHO_ONLY)
    with serve_gateway(
        catalog, api_keys=["sk-from-env"], api_keys_file=keys, metrics_require_auth=True
    ) as url:
        yield url


@pytest.mark.parametrize("key", ["sk-from-env", "sk-from-file"])
def test_valid_keys_are_accepted(keyed_url: str, key: str) -> None:
    with OpenAI(base_url=keyed_url + "/v1", api_key=key, max_retries=0) as client:
        result = client.chat.completions.create(model="echo", messages=ASK)  # type: ignore[arg-type]
    assert result.choices[0].message.content == "You said: hi"


def test_a_wrong_key_is_401(keyed_url: str) -> None:
    with (
        OpenAI(base_url=keyed_url + "/v1", api_key="sk-wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.models.list()
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "authentication_error"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "sk-from-env"},
        {"authorization": "Basic sk-from-env"},
        {"authorization": "Bearer"},
    ],
)
def test_missing_or_malformed_authorization_is_401(keyed_url: str, headers: dict[str, str]) -> None:
    response = httpx.post(keyed_url + "/v1/chat/completions", headers=headers, content=b"{bad")
    assert response.status_code == 401, "auth is checked before the body is parsed"
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_health_stays_open_and_metrics_can_be_protected(keyed_url: str) -> None:
    assert httpx.get(keyed_url + "/healthz").status_code == 200
    assert httpx.get(keyed_url + "/readyz").status_code == 200
    assert httpx.get(keyed_url + "/metrics").status_code == 401
    authorised = httpx.get(keyed_url + "/metrics", headers={"authorization": "Bearer sk-from-env"})
    assert authorised.status_code == 200


def test_keys_are_kept_as_digests() -> None:
    from gateway.api.auth import KeyChecker

    checker = KeyChecker(["sk-secret"])
    assert "sk-secret" not in repr(vars(checker))
    assert checker.check("Bearer sk-secret") == checker.check("bearer  sk-secret ")


def test_readyz_reports_each_backend(gateway_url: str) -> None:
    response = httpx.get(gateway_url + "/readyz")
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unavailable"
    assert report["backends"]["up"] == "ok"
    assert report["backends"]["echo"] == "ok"
    assert "unreachable" in report["backends"]["down"]
    assert report["models"]["down"] == "unavailable"
    assert report["models"]["relay"] == report["models"]["echo"] == "ready"
    assert "127.0.0.1" not in response.text


def test_a_planner_down_degrades_hawkeye_and_keeps_the_gateway_ready(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{closed_port()}/v1"
    catalog = {
        "backends": {
            "echo": {"kind": "echo"},
            "planner": {"kind": "openai", "base_url": down, "model": "m", "connect_timeout": 1.0},
        },
        "models": {
            "plan": {"policy": "hawkeye", "backends": {"planner": "planner", "expander": "echo"}},
            "echo": {"policy": "direct", "backends": {"main": "echo"}},
        },
    }
    with serve_gateway(write_catalog(tmp_path, catalog)) as url:
        response = httpx.get(url + "/readyz")
        with OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
            answer = client.chat.completions.create(model="plan", messages=ASK)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["models"] == {"plan": "degraded", "echo": "ready"}
    assert answer.model_extra is not None
    assert answer.model_extra["tandem"]["degraded"] is True


def test_readyz_is_200_when_every_backend_answers(tmp_path: Path) -> None:
    with serve_gateway(write_catalog(tmp_path, ECHO_ONLY)) as url:
        assert httpx.get(url + "/readyz").json() == {
            "status": "ready",
            "backends": {"echo": "ok"},
            "models": {"echo": "ready"},
        }


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_latency_and_tokens(client: OpenAI, gateway_url: str) -> None:
    before = httpx.get(gateway_url + "/metrics").text
    client.chat.completions.create(model="echo", messages=ASK)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=ASK)  # type: ignore[arg-type]
    after = httpx.get(gateway_url + "/metrics").text
    ok = {"model": "echo", "policy": "direct", "status": "200"}
    assert (
        sample(after, "tandem_requests_total", **ok)
        == sample(before, "tandem_requests_total", **ok) + 1
    )
    missing = {"model": "-", "status": "404"}
    assert (
        sample(after, "tandem_requests_total", **missing)
        == sample(before, "tandem_requests_total", **missing) + 1
    )
    assert (
        sample(after, "tandem_tokens_total", model="echo", source="main")
        == sample(before, "tandem_tokens_total", model="echo", source="main") + 3
    )
    assert sample(after, "tandem_request_duration_seconds_count", model="echo") >= 1
    assert sample(after, "tandem_time_to_first_token_seconds_count", model="echo") >= 1


def test_an_indented_comment_is_not_a_key(keyed_url: str) -> None:
    with (
        OpenAI(
            base_url=f"{keyed_url}/v1", api_key="# an indented comment is no key", max_retries=0
        ) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.models.list()


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("0.0.0.0", True),
        ("tandem.internal", True),
        ("::", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
    ],
)
def test_open_access_beyond_loopback_is_warned(host: str, warned: bool) -> None:
    warning = open_access_warning(host, KeyChecker([]))
    assert (warning is not None) == warned
    assert open_access_warning(host, KeyChecker(["sk"])) is None


def test_the_server_logs_the_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = write_catalog(tmp_path, ECHO_ONLY)
    with caplog.at_level(logging.WARNING), serve_gateway(catalog, host="0.0.0.0"):
        pass
    assert any("no API keys are configured" in r.getMessage() for r in caplog.records)
