"""`GET /playground`: the static page that shows which model wrote each token.

The page is three files shipped in the package (`gateway/playground/`) and talks to the public
API only (`/v1/models`, streamed `/v1/chat/completions` with provenance). Nothing is fetched
from elsewhere, so it works offline, and the Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from starlette.responses import FileResponse, RedirectResponse, Response

router = APIRouter()
ASSETS = Path(__file__).resolve().parent.parent / "playground"
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@router.get("/playground", include_in_schema=False)
async def playground_root() -> Response:
    # the page's relative asset links need the trailing slash
    return RedirectResponse("/playground/", status_code=308)


@router.get("/playground/{name}", include_in_schema=False)
@router.get("/playground/", include_in_schema=False)
async def playground_asset(name: str = "index.html") -> Response:
    media_type = MEDIA_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, f"no playground file named '{name}'")
    return FileResponse(ASSETS / name, media_type=media_type, headers=SECURITY_HEADERS)
