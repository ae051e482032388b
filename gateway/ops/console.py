"""The migration console: one page at GET /admin, with its script, style and icon.

The page and its assets ship in the package (`gateway/ops/static/`): no
build, nothing fetched from elsewhere, so it works offline and behind a
firewall. The page holds no data and needs no token: it asks for an admin
token, keeps it in the browser's session storage only, reads
GET /admin/console/data (`gateway.ops.console_data`) with it and acts through
the admin API, so a read-only token sees everything and changes nothing.

Its Content-Security-Policy allows scripts, styles and requests to this
gateway only, no inline script and no framing. Under a path prefix (an ASGI
`root_path`) the page's links carry the prefix.
"""

from __future__ import annotations

import functools
from html import escape
from importlib.resources import files

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

STATIC = files("gateway.ops") / "static"
PAGE = "console.html"
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.svg": "image/svg+xml",
}
ROOT_MARK = "{{root}}"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
PAGE_HEADERS = {
    **COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@functools.cache
def shipped(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


@router.get("/admin")
async def console_page(request: Request) -> HTMLResponse:
    """The console; its links and requests carry the app's path prefix, if any."""
    root = escape(str(request.scope.get("root_path", "")).rstrip("/"))
    return HTMLResponse(shipped(PAGE).replace(ROOT_MARK, root), headers=PAGE_HEADERS)


@router.get("/admin/console/assets/{name}")
async def console_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        return Response("no such asset\n", status_code=404, media_type="text/plain")
    return Response(shipped(name), media_type=media_type, headers=COMMON_HEADERS)
