"""Pages, sign-in and sign-out, and the static files the pages are built from.

Pages are fixed HTML shells shipped in the package (``shell.html``, the header and nav
every page shares, around each page's own ``NAME.main.html``, put together once at
import): they hold no data, so nothing a client sent is ever written into markup by
the server. The page's script reads its
filters from the URL and fetches the JSON of :mod:`._api`, rendering it as text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from telemetryflow.collector.web._security import Endpoint, error, same_origin
from telemetryflow.collector.web._session import COOKIE, SessionStore

__all__ = ["ASSETS", "Pages"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_MAX_FORM = 4096
_COOKIE_MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


# The pages that share the header and nav of ``shell.html``: name -> (title, extra
# ``<head>`` lines). Each page's own ``<main>`` is ``NAME.main.html``; its script is
# ``NAME.js``. Built once at import, so they are as fixed as the other files.
_PAGES = {
    "overview": ("Overview", ""),
    "traces": ("Traces", '  <link rel="modulepreload" href="/ui/static/common.js">\n'),
    "trace": ("Trace", ""),
    "logs": ("Logs", ""),
    "metrics": ("Metrics", ""),
    "metric": ("Metric", ""),
    "errors": ("Errors", ""),
    "events": ("Events", ""),
}


def _asset(name: str, body: bytes) -> Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, _TYPES["." + name.rsplit(".", 1)[-1]], etag)


def _load_assets() -> dict[str, Asset]:
    folder = resources.files("telemetryflow.collector.web") / "static"
    files = {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and "." + entry.name.rsplit(".", 1)[-1] in _TYPES
    }
    shell = files.pop("shell.html").decode()
    for name, (title, head) in _PAGES.items():
        main = files.pop(f"{name}.main.html").decode()
        page = (shell.replace("{{title}}", title).replace("{{head}}", head)
                .replace("{{view}}", name).replace("{{main}}", main))  # fmt: skip
        files[f"{name}.html"] = page.encode()
    return {name: _asset(name, body) for name, body in files.items()}


ASSETS = _load_assets()
"""Every static file by name, read once; only these names are ever served."""


def _html(name: str, status: int = 200) -> Response:
    return Response(ASSETS[name].body, status, media_type=ASSETS[name].content_type)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the web view, never another site."""
    if not target:
        return "/ui/traces"
    parts = urlsplit(target)
    path_ok = parts.path == "/ui" or parts.path.startswith("/ui/")
    if parts.scheme or parts.netloc or not path_ok or "\\" in target:
        return "/ui/traces"
    return target


class Pages:
    """Page endpoints bound to one session store."""

    def __init__(self, sessions: SessionStore) -> None:
        self.sessions = sessions

    def view(self, name: str) -> Endpoint:
        """A page shell, or the sign-in page (401) when keys are on and no session."""

        async def endpoint(request: Request) -> Response:
            if self.sessions.principal(request) is None:
                return _html("signin.html", 401)
            return _html(f"{name}.html")

        return endpoint

    async def signin_page(self, request: Request) -> Response:
        return _html("signin.html")

    async def signin(self, request: Request) -> Response:
        """Check the posted key; set the session cookie and go back where the user was."""
        if not same_origin(request):
            return Response("cross-site sign-in refused", 403, media_type="text/plain")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM:
                return Response("form too large", 413, media_type="text/plain")
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        target = safe_next(form.get("next"))
        token = self.sessions.sign_in(form.get("key", ""))
        if token is None:
            return RedirectResponse(f"/ui/signin?failed=1&next={quote(target, safe='')}", 303)
        response = RedirectResponse(target, 303)
        response.set_cookie(COOKIE, token, max_age=_COOKIE_MAX_AGE, path="/ui",
                            httponly=True, samesite="strict")  # fmt: skip
        return response

    async def signout(self, request: Request) -> Response:
        if not same_origin(request):
            return Response("cross-site sign-out refused", 403, media_type="text/plain")
        self.sessions.sign_out(request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/signin", 303)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    async def static(self, request: Request) -> Response:
        asset = ASSETS.get(request.path_params["name"])
        if asset is None or asset.content_type.startswith("text/html"):
            return Response("not found", 404, media_type="text/plain")
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    async def no_endpoint(self, request: Request) -> Response:
        return error(404, f"no such endpoint: {request.url.path}")

    async def not_found(self, request: Request) -> Response:
        return _html("notfound.html", 404)
