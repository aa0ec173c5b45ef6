"""Who may send a body, and reading it within bounds.

The checks run in a fixed order, each from headers alone: authentication (401, or 400
for a credential header given twice), rate limit (429), content type (415), declared
length (411/413), then a share of the in-flight memory budget (503 with
``Retry-After``). Only then is the body read, never past the size cap (413), and
inflated under the same cap (413/400). The total deadline for the body (408) is kept
by the connection protocol (``_http_protocol.py``), where it costs one timer.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request

from telemetryflow.collector.server._auth import DuplicateCredentialsError, Principal

if TYPE_CHECKING:
    from telemetryflow.collector._pipeline import Pipeline

__all__ = ["Admission", "BodyBudget", "RefusedError", "Reservation", "retry_after"]


class RefusedError(Exception):
    """A request refused with ``status`` (and these response headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class BodyBudget:
    """Bytes of request bodies (read and inflated) held at once, across all requests.

    The budget is what keeps a burst of large requests from taking the process's
    memory: a request that does not fit is refused with 503 before its body is read.
    """

    def __init__(self, limit: int, on_drained: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self._used = 0
        self._since_drained = 0
        self._on_drained = on_drained
        """Called when the budget empties after a full budget's worth went through."""
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def try_take(self, size: int) -> bool:
        with self._lock:
            if self._used + size > self.limit:
                return False
            self._used += size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self._used = max(0, self._used - size)
            self._since_drained += size
            drained = self._used == 0 and self._since_drained >= self.limit
            if drained:
                self._since_drained = 0
        if drained and self._on_drained is not None:
            self._on_drained()


class Reservation:
    """One request's share of a :class:`BodyBudget`; :meth:`release` returns all of it."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.held = 0

    def take(self, size: int) -> None:
        """Hold ``size`` more bytes, or refuse the request with 503."""
        if size <= 0:
            return
        if not self._budget.try_take(size):
            raise RefusedError(
                503, "the collector is receiving too much data at once; retry later",
                retry_after(1),
            )  # fmt: skip
        self.held += size

    def release(self) -> None:
        self._budget.give_back(self.held)
        self.held = 0


class Admission:
    """The checks before a body is read, and the bounded read itself."""

    def __init__(self, pipeline: Pipeline, max_body: int, budget: BodyBudget) -> None:
        self.pipeline = pipeline
        self.max_body = max_body
        self.budget = budget

    def authenticate(self, request: Request) -> Principal:
        """The caller, from headers only; then its rate limit."""
        headers = request.headers
        try:
            principal = self.pipeline.auth.authenticate(headers.getlist)
        except DuplicateCredentialsError as exc:
            raise RefusedError(400, exc.message) from None
        if principal is None:
            raise RefusedError(401, "missing or invalid API key",
                               {"WWW-Authenticate": 'Bearer realm="telemetryflow"'})  # fmt: skip
        wait = self.pipeline.limiter.acquire(principal.key_id)
        if wait > 0:
            raise RefusedError(429, "rate limit exceeded; retry later", retry_after(wait))
        return principal

    @staticmethod
    def content_type(request: Request, allowed: Sequence[str]) -> str:
        value = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if value not in allowed:
            raise RefusedError(415, f"Content-Type must be {' or '.join(allowed)}")
        return value

    def declared_length(self, request: Request) -> int | None:
        """``Content-Length`` checked against the cap; ``None`` for a chunked body."""
        length_header = request.headers.get("content-length")
        if length_header is None:
            if "chunked" in (request.headers.get("transfer-encoding") or "").lower():
                return None
            raise RefusedError(411, "Content-Length is required")
        try:
            length = int(length_header)
        except ValueError:
            raise RefusedError(400, "invalid Content-Length") from None
        if length < 0:
            raise RefusedError(400, "invalid Content-Length")
        if length > self.max_body:
            raise RefusedError(413, f"body exceeds {self.max_body} bytes")
        return length

    async def read_body(self, request: Request, reservation: Reservation) -> bytearray:
        """The raw (still encoded) body, read within the caps."""
        expected = self.declared_length(request)
        reservation.take(expected or 0)
        body = bytearray()
        try:
            async for chunk in request.stream():
                if expected is None:
                    if len(body) + len(chunk) > self.max_body:
                        raise RefusedError(413, f"body exceeds {self.max_body} bytes")
                    reservation.take(len(chunk))
                body += chunk
        except ClientDisconnect:
            raise RefusedError(400, "body shorter than Content-Length") from None
        if expected is not None and len(body) != expected:
            raise RefusedError(400, "body shorter than Content-Length")
        return body

    @staticmethod
    def has_body(request: Request) -> bool:
        headers = request.headers
        return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
