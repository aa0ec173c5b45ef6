"""Headers every web view response carries, and the checks before a state change.

The content security policy allows scripts, styles, images and connections from the
collector itself only, no inline script and no framing, so data a client wrote can
never run as code even if a rendering bug let it into markup.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.server._auth import DuplicateCredentialsError
from telemetryflow.collector.store._writes import OverloadedError, StoreClosedError

__all__ = ["CSP", "Endpoint", "RefusedError", "error", "same_origin", "secured"]


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Endpoint = Callable[[Request], Awaitable[Response]]


class RefusedError(Exception):
    """A request the view turns down before doing any work (401, 429)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The query API's error shape, so scripts read both the same way."""
    return JSONResponse({"error": {"code": status, "message": message}}, status, headers)


def secured(endpoint: Endpoint) -> Endpoint:
    """Add the security headers; turn the query layer's refusals into 4xx/503 answers."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            response = await endpoint(request)
        except RefusedError as exc:
            response = error(exc.status, exc.message, exc.headers)
        except DuplicateCredentialsError as exc:
            response = error(400, exc.message)
        except BadRequestError as exc:
            response = error(exc.status, exc.message)
        except OverloadedError as exc:
            retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
            response = error(503, "the collector is overloaded; retry later", retry)
        except (StoreClosedError, TimeoutError) as exc:
            response = error(503, str(exc), {"Retry-After": "1"})
        for name, value in _HEADERS.items():
            response.headers[name] = value
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return wrapper


def same_origin(request: Request) -> bool:
    """A state-changing request came from a page of this collector.

    Browsers send ``Origin`` on every POST; it must name the host the request was
    sent to. Requests without one (scripts, older clients) fall back to ``Referer``.
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    host = request.headers.get("host", "")
    return urlsplit(source).netloc == host and bool(host)
