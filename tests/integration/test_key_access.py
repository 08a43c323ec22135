"""Per-key access from a structured keys file: each key's name, the aliases it may use, its own
limits; its name (never the key) in the access line; per-key token metrics only on request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.api.keys import load_keys
from gateway.core.config import CatalogError, Settings
from tests.integration.test_observability import access_lines, line_with  # noqa: F401
from tests.servers import serve_gateway, write_catalog

CATALOG = {
    "backends": {"echo": {"kind": "echo"}, "shout": {"kind": "echo", "prefix": "SAID:"}},
    "models": {
        "echo": {"policy": "direct", "backends": {"main": "echo"}},
        "shout": {"policy": "direct", "backends": {"main": "shout"}},
    },
}
KEYS = {
    "keys": [
        {"name": "team-a", "key": "sk-team-a", "models": ["echo"], "rpm": 3},
        {"name": "team-b", "key": "sk-team-b"},
    ]
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("key-access")
    keys = directory / "keys.yaml"
    keys.write_text(yaml.safe_dump(KEYS))
    catalog = write_catalog(directory, CATALOG)
    with serve_gateway(catalog, api_keys_file=keys, metrics_per_key=True) as url:
        yield url


def call(url: str, key: str, model: str, **headers: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    auth = {"authorization": f"Bearer {key}", **headers}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth, timeout=10)


def test_a_key_sees_and_uses_only_its_aliases(gateway: str) -> None:
    listed = httpx.get(f"{gateway}/v1/models", headers={"authorization": "Bearer sk-team-b"})
    assert [m["id"] for m in listed.json()["data"]] == ["echo", "shout"]
    a = {"authorization": "Bearer sk-team-a"}
    listed = httpx.get(f"{gateway}/v1/models", headers=a)
    assert [m["id"] for m in listed.json()["data"]] == ["echo"]
    assert httpx.get(f"{gateway}/v1/models/shout", headers=a).status_code == 404
    refused = call(gateway, "sk-team-a", "shout")
    assert refused.status_code == 404  # as if it did not exist: nothing of others' models
    error = refused.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["message"].endswith("Available models: echo")
    assert call(gateway, "sk-team-b", "shout").status_code == 200


def test_a_key_has_its_own_rate_limit(gateway: str) -> None:
    statuses = [call(gateway, "sk-team-a", "echo").status_code for _ in range(5)]
    assert statuses.count(429) >= 1
    assert all(call(gateway, "sk-team-b", "echo").status_code == 200 for _ in range(5))


def test_the_access_line_names_the_key(gateway: str, access_lines: list[str]) -> None:  # noqa: F811
    response = call(gateway, "sk-team-b", "echo", **{"x-request-id": "key-name-1"})
    assert response.status_code == 200
    line = line_with(access_lines, '"key-name-1"')
    assert json.loads(line)["key"] == "team-b"
    assert "sk-team-b" not in line


def test_per_key_token_metrics(gateway: str) -> None:
    assert call(gateway, "sk-team-b", "shout").status_code == 200
    metrics = httpx.get(f"{gateway}/metrics").text
    assert 'tandem_key_tokens_total{key="team-b",source="main"}' in metrics


def test_per_key_metrics_are_off_by_default(gateway_url: str) -> None:
    assert (
        httpx.post(
            f"{gateway_url}/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        ).status_code
        == 200
    )
    assert "tandem_key_tokens_total{" not in httpx.get(f"{gateway_url}/metrics").text


@pytest.mark.parametrize(
    ("entries", "where", "reason"),
    [
        ([{"name": "a", "key": "k", "models": ["ghost"]}], "keys.0.models", "no alias named"),
        ([{"name": "a", "key": "k"}, {"name": "a", "key": "j"}], "keys.1.name", "used twice"),
        ([{"name": "a", "key": "k"}, {"name": "b", "key": "k"}], "keys", "listed twice"),
        ([{"name": "a\nb", "key": "k"}], "keys.0.name", "pattern"),
        ([{"name": "a", "key": "k", "rpm": -1}], "keys.0.rpm", "greater than"),
        ([], "keys", "at least 1"),
    ],
)
def test_a_bad_keys_file_stops_the_start(
    tmp_path: Path, entries: list[Any], where: str, reason: str
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": entries}))
    with pytest.raises(CatalogError) as caught:
        load_keys(Settings(api_keys_file=keys), ["echo"])
    assert (caught.value.key, reason in caught.value.reason) == (where, True)


def test_the_line_format_still_works(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# a comment\nsk-one\nsk-two\n")
    loaded = load_keys(Settings(api_keys_file=keys, api_keys=["sk-env"]), ["echo"])
    assert len(loaded) == 3
    assert all(k.models is None and k.name == k.key_id for k in loaded)
