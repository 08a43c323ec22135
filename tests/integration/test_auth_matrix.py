"""The auth matrix: every route, every method, with trailing slashes, percent-encoding and
doubled or dotted segments; without a key nothing but the open paths answers with content."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.server.app import create_app
from tests.servers import serve_gateway, write_catalog

KEY = "sk-matrix"
CATALOG = {
    "backends": {"echo": {"kind": "echo"}},
    "models": {"echo": {"policy": "direct", "backends": {"main": "echo"}}},
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
OPEN = ("/healthz", "/readyz", "/docs", "/openapi.json", "/redoc", "/playground")
BODY = b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi"}'


def routes() -> list[str]:
    """Every path the app declares, with a concrete value for a path parameter."""
    paths = declared(create_app().router.routes) - {""}
    concrete = (p.replace("{model:path}", "echo").replace("{name}", "playground.js") for p in paths)
    return sorted(concrete)


def declared(found: list[Any]) -> set[str]:
    paths: set[str] = set()
    for route in found:
        inner = getattr(route, "original_router", None)  # FastAPI includes routers lazily
        paths |= declared(inner.routes) if inner is not None else {getattr(route, "path", "")}
    return paths


def variants(path: str) -> list[str]:
    """The path, and spellings a router or a proxy might take for it."""
    head, _, tail = path.lstrip("/").partition("/")
    spelled = [
        path,
        path + "/",
        "/" + path,  # a doubled leading slash
        "/%" + format(ord(path[1]), "02X") + path[2:],  # the first letter percent-encoded
        path.replace("/", "/./", 1),
        path.upper(),
    ]
    if tail:
        spelled += [f"/{head}%2F{tail}", f"/{head}//{tail}"]
    return spelled


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    catalog = write_catalog(tmp_path_factory.mktemp("matrix"), CATALOG)
    with serve_gateway(catalog, api_keys=[KEY], metrics_require_auth=True) as url:
        yield url


def send(url: str, method: str, raw_path: str, key: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    request = httpx.Request(method, url, headers=headers, content=BODY if method != "GET" else b"")
    # the path goes out as written: no normalisation of dots, slashes or escapes
    request.url = request.url.copy_with(raw_path=raw_path.encode())
    with httpx.Client(timeout=10) as client:
        return client.send(request)


def is_open(path: str) -> bool:
    return path.startswith(OPEN) or path == "/"


@pytest.mark.parametrize("route", [r for r in routes() if not is_open(r)])
def test_no_key_reaches_a_protected_route_however_spelled(keyed: str, route: str) -> None:
    for raw in variants(route):
        for method in METHODS:
            for key in (None, "sk-wrong"):
                response = send(keyed, method, raw, key)
                assert response.status_code in (401, 404, 405), (method, raw, response.text)
                if response.status_code != 401:
                    assert "echo" not in response.text or "not_found" in response.text, raw


@pytest.mark.parametrize("route", [r for r in routes() if not is_open(r)])
def test_the_key_opens_each_protected_route_as_declared(keyed: str, route: str) -> None:
    method = "POST" if "completions" in route else "GET"
    assert send(keyed, method, route, None).status_code == 401
    assert send(keyed, method, route, KEY).status_code == 200


def test_open_paths_answer_without_a_key(keyed: str) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/playground/", "/playground/index.html"):
        assert send(keyed, "GET", path, None).status_code == 200, path


def test_the_routes_this_matrix_covers() -> None:
    # a new route must be added here, and so be checked above
    assert routes() == [
        "/docs",
        "/docs/oauth2-redirect",
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/playground",
        "/playground/",
        "/playground/playground.js",
        "/readyz",
        "/redoc",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/models/echo",
    ]
