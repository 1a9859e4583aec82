"""The web console: static files (labs_gateway/static, no build step) mounted at `gateway.ui_path`
when `gateway.ui` is on, every response with a strict Content-Security-Policy.

Why a wrapper around StaticFiles: the headers must be on every UI response (index, scripts,
304s), and only GET/HEAD are files: any other method is the gateway's usual JSON 404, not
StaticFiles' 405 (a mount at "/" sees every unknown path). Why a Mount subclass: a mount at "/"
matches every path, which would hide an API route's 405 (GET /v1/chat/completions) behind the
console's 404; it stands aside for any path an API route claims.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from labs_core.config import Settings

STATIC = Path(__file__).resolve().parent.parent / "static"

# The page only talks to its own origin; no inline script or style, nothing may frame it.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # Revalidate every time (ETag / Last-Modified make that a 304): an upgrade shows at once.
    (b"cache-control", b"no-cache"),
]
HEADER_NAMES = {name for name, _ in HEADERS}


class ConsoleFiles:
    """StaticFiles plus the security headers; GET and HEAD only."""

    def __init__(self, directory: Path = STATIC):
        self.files = StaticFiles(directory=directory, html=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(404)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in HEADER_NAMES]
                message = {**message, "headers": kept + HEADERS}
            await send(message)

        await self.files(scope, receive, with_headers)


class ConsoleMount(Mount):
    """A Mount that never claims a path one of the API routes matches (even by path only)."""

    def __init__(self, path: str, app: ConsoleFiles, reserved: list[BaseRoute]):
        super().__init__(path, app=app, name="ui")
        self.reserved = reserved

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and any(route.matches(scope)[0] != Match.NONE for route in self.reserved):
            return Match.NONE, {}
        return super().matches(scope)


def ui_path(settings: Settings) -> str:
    """The mount path, normalised: "/" or "/console" (no trailing slash)."""
    return "/" + settings.gateway.ui_path.strip().strip("/")


def ui_routes(settings: Settings, api_routes: list[BaseRoute]) -> list[ConsoleMount]:
    """The console's mount, or nothing when it is turned off or the files are missing."""
    if not settings.gateway.ui or not (STATIC / "index.html").is_file():
        return []
    path = ui_path(settings)
    return [ConsoleMount("" if path == "/" else path, ConsoleFiles(), reserved=api_routes)]
