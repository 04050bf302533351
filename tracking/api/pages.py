"""The map pages: the rider's share link, the ops dashboard and their assets.

The pages are static files built by `map_ui/` (`make run` and `make test`
build them). The HTML is served without a token check on purpose: a page
with an expired or wrong link must still load to tell the rider so; every
piece of trip data it shows comes from the token-checked API.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from tracking.api.auth import principal
from tracking.api.channels import authorize_trip_reader
from tracking.core import trip as core
from tracking.core.errors import NotFound
from tracking.service import TrackingService
from tracking.settings import Settings

router = APIRouter()

_CHECKOUT_UI = Path(__file__).resolve().parents[2] / "map_ui" / "dist"
# esbuild names bundles name-HASH.ext: such a file never changes.
_HASHED = re.compile(r"-[A-Z0-9]{8}\.(js|css)(\.map)?$")
_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Map pages not built</title>
<p>The map pages are not built. Run <code>make run</code>, or
<code>cd map_ui &amp;&amp; npm ci &amp;&amp; npm run build</code>.</p>"""


def ui_dir(settings: Settings) -> Path:
    """Where the built pages are."""
    return Path(settings.map_ui_dir) if settings.map_ui_dir else _CHECKOUT_UI


def _security_headers(settings: Settings) -> dict[str, str]:
    connect = ["'self'", "ws:", "wss:"]
    if settings.map_style_url:
        # An external style loads its tiles, glyphs and sprites from its hosts.
        parts = urlsplit(settings.map_style_url)
        connect.append(f"{parts.scheme}://{parts.netloc}" if parts.netloc else "https:")
        connect.append("https:")
    return {
        "Content-Security-Policy": "; ".join(
            [
                "default-src 'self'",
                f"connect-src {' '.join(connect)}",
                "img-src 'self' data: blob: https:",
                "worker-src 'self' blob:",
                "child-src 'self' blob:",
                "style-src 'self' 'unsafe-inline'",
                "frame-ancestors 'self'",
            ]
        ),
        # The share link carries the rider's token: never send it onwards.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


def _page(request: Request, name: str) -> Response:
    settings: Settings = request.app.state.service.settings
    path = ui_dir(settings) / f"{name}.html"
    if not path.is_file():
        return HTMLResponse(_NOT_BUILT, status_code=503)
    return HTMLResponse(path.read_text(encoding="utf-8"), headers=_security_headers(settings))


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept


@router.get(
    "/track/{trip_id}",
    tags=["rider"],
    responses={200: {"content": {"text/html": {}, "application/json": {}}}},
)
async def track_page(trip_id: str, request: Request) -> Response:
    """The share link: the rider's live map page for browsers.

    Clients that ask for JSON (`Accept: application/json`) get the trip and
    where to subscribe instead, with the token checked (401/403/404).
    """
    if _wants_html(request):
        return _page(request, "rider")
    service: TrackingService = request.app.state.service
    await authorize_trip_reader(principal(request), service, trip_id)
    token = request.query_params.get("token", "")
    body: dict[str, Any] = {
        "trip": core.view(await service.get_trip(trip_id)),
        "channel": f"/v1/trips/{quote(trip_id)}/ws?token={token}",
        "events": f"/v1/trips/{quote(trip_id)}/events?token={token}",
    }
    return JSONResponse(body)


@router.get("/ops", tags=["ops"], response_class=HTMLResponse)
async def ops_page(request: Request) -> Response:
    """The ops live dashboard (it asks for an ops token: `/ops?token=…`)."""
    return _page(request, "ops")


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str, request: Request) -> Response:
    """Built JavaScript, CSS and the map worker; gzip when the client accepts it."""
    settings: Settings = request.app.state.service.settings
    root = ui_dir(settings) / "assets"
    path = root / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound("no such asset")
    immutable = bool(_HASHED.search(name))
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable" if immutable else "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    media_type = _media_type(name)
    gz = path.with_name(name + ".gz")
    if gz.is_file() and "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return FileResponse(gz, media_type=media_type, headers=headers)
    return FileResponse(path, media_type=media_type, headers=headers)


def _media_type(name: str) -> str:
    for suffix, media_type in (
        (".js", "text/javascript"),
        (".mjs", "text/javascript"),
        (".css", "text/css"),
        (".svg", "image/svg+xml"),
        (".map", "application/json"),
    ):
        if name.endswith(suffix):
            return media_type
    return "application/octet-stream"
