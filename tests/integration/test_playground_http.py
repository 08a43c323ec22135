"""The playground's files as a browser gets them: served by Tandem itself, offline, locked down."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.api.playground import ASSETS, MEDIA_TYPES
from tests.servers import serve_gateway, write_catalog


def test_playground_redirects_to_its_folder(gateway_url: str) -> None:
    response = httpx.get(f"{gateway_url}/playground")
    assert response.status_code == 308
    assert response.headers["location"] == "/playground/"


@pytest.mark.parametrize("name", sorted(MEDIA_TYPES))
def test_each_file_is_served_with_its_type_and_a_strict_policy(gateway_url: str, name: str) -> None:
    path = "" if name == "index.html" else name
    response = httpx.get(f"{gateway_url}/playground/{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == MEDIA_TYPES[name]
    assert response.content == (ASSETS / name).read_bytes()
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_an_unknown_file_is_an_openai_shaped_404(gateway_url: str) -> None:
    for path in ("secrets.txt", "..%2Fapp.py", "%2E%2E/app.py"):
        response = httpx.get(f"{gateway_url}/playground/{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_the_page_needs_nothing_from_elsewhere() -> None:
    shipped = sorted(p.name for p in ASSETS.iterdir())
    assert shipped == sorted(MEDIA_TYPES)  # every shipped file is served, nothing else is
    for name in shipped:
        text = (ASSETS / name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        assert "@import" not in text


def test_the_page_is_open_but_the_api_behind_it_keeps_its_keys(tmp_path: Path) -> None:
    catalog = {
        "backends": {"echo": {"kind": "echo"}},
        "models": {"echo": {"policy": "direct", "backends": {"main": "echo"}}},
    }
    with serve_gateway(write_catalog(tmp_path, catalog), api_keys="sk-page") as url:
        assert httpx.get(f"{url}/playground/").status_code == 200
        assert httpx.get(f"{url}/v1/models").status_code == 401
        keyed = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer sk-page"})
        assert keyed.status_code == 200
