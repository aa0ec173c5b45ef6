"""Who is looking at the web view: key sign-in, opaque session cookies.

A browser never holds the API key after signing in: the sign-in form posts it once,
the server checks it with the collector's :class:`Authenticator` and answers with a
random session token in an ``HttpOnly; SameSite=Strict; Path=/ui`` cookie. The token
maps to the key's :class:`Principal` in memory only, so a restart signs everyone out.
Sessions are bounded in number and expire after a period without use.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import HTTPConnection

from telemetryflow.collector.server._auth import Authenticator, Principal

__all__ = ["COOKIE", "SessionStore"]

COOKIE = "tf_session"
"""Name of the session cookie; its value is an opaque token, never a key."""


def _digest(token: str) -> str:
    # the store keeps digests, so a memory dump of it cannot be replayed as cookies
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class SessionStore:
    """Tokens → principals, least recently used evicted past ``max_sessions``."""

    def __init__(
        self,
        auth: Authenticator,
        *,
        idle_seconds: float = 12 * 3600.0,
        max_sessions: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth
        self._idle = idle_seconds
        self._max = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    @property
    def required(self) -> bool:
        """Whether a sign-in is needed at all (keys are on)."""
        return self._auth.enabled

    def sign_in(self, key: str) -> str | None:
        """Check ``KEY_ID:KEY_SECRET``; a new session token, or ``None`` if refused."""
        bearer = ["Bearer " + key.strip()]
        principal = self._auth.authenticate(lambda name: bearer if name == "authorization" else [])
        if principal is None:
            return None
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[_digest(token)] = (principal, self._clock())
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return token

    def sign_out(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(_digest(token), None)

    def principal(self, conn: HTTPConnection) -> Principal | None:
        """The caller's principal: open mode, a live session cookie, or API key headers.

        Raises:
            DuplicateCredentialsError: a credential header is given more than once.
        """
        if not self._auth.enabled:
            return self._auth.authenticate(lambda name: [])
        token = conn.cookies.get(COOKIE)
        if token:
            found = self._touch(_digest(token))
            if found is not None:
                return found
        # scripts may use the JSON endpoints with the same headers as the query API
        return self._auth.authenticate(conn.headers.getlist)

    def _touch(self, digest: str) -> Principal | None:
        now = self._clock()
        with self._lock:
            entry = self._sessions.get(digest)
            if entry is None:
                return None
            principal, last = entry
            if now - last > self._idle:
                del self._sessions[digest]
                return None
            self._sessions[digest] = (principal, now)
            self._sessions.move_to_end(digest)
            return principal
