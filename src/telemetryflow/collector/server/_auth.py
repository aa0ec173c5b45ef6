"""Who is calling, and may they call now.

Authentication reads only headers (HTTP) or metadata (gRPC), so it runs before any
body is read or inflated. Secrets are compared with :func:`hmac.compare_digest`, and
an unknown key id costs the same comparison as a known one. A request carrying one
credential header twice is refused whatever the values: taking the first or the last
would let a proxy and the collector disagree about who is calling.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from telemetryflow.collector._config import DEFAULT_PROJECT, ApiKey

__all__ = ["CREDENTIAL_HEADERS", "Authenticator", "DuplicateCredentialsError", "Principal",
           "RateLimiter"]  # fmt: skip

_DUMMY_SECRET = b"tfs_" + b"\0" * 32
CREDENTIAL_HEADERS = {
    "authorization": "Authorization",
    "x-telemetryflow-key-id": "X-TelemetryFlow-Key-ID",
    "x-telemetryflow-key-secret": "X-TelemetryFlow-Key-Secret",
}
"""Lower-case header (or metadata) name -> the name used in messages."""


class DuplicateCredentialsError(Exception):
    """A credential header appears more than once; :attr:`header` names it."""

    def __init__(self, header: str) -> None:
        super().__init__(f"more than one {header} header")
        self.header = header
        self.message = str(self)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the project its data belongs to."""

    project: str
    key_id: str | None


class Authenticator:
    """Resolve request headers to a :class:`Principal`, or ``None`` if not allowed."""

    def __init__(
        self,
        keys: tuple[ApiKey, ...],
        enabled: bool = True,
        anonymous_project: str = DEFAULT_PROJECT,
    ) -> None:
        """``anonymous_project``: every caller's project when authentication is off (the
        store's default project, which the exporter's rows belong to)."""
        self._enabled = enabled
        self._keys = {key.key_id: key for key in keys}
        self._anonymous = Principal(anonymous_project, None)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def authenticate(self, values: Callable[[str], Sequence[str]]) -> Principal | None:
        """Check ``Authorization: Bearer id:secret`` or the two X-TelemetryFlow headers.

        ``values`` returns every value of a header, looked up by lower-case name.

        Raises:
            DuplicateCredentialsError: a credential header is given more than once.
        """
        if not self._enabled:
            return self._anonymous
        single: dict[str, str | None] = {}
        for name, shown in CREDENTIAL_HEADERS.items():
            found = values(name)
            if len(found) > 1:
                raise DuplicateCredentialsError(shown)
            single[name] = found[0] if found else None
        key_id, secret = _credentials_from(single.get)
        if key_id is None or secret is None:
            return None
        key = self._keys.get(key_id)
        expected = key.key_secret.encode() if key else _DUMMY_SECRET
        matches = hmac.compare_digest(expected, secret.encode("utf-8", "surrogateescape"))
        if key is None or not matches:
            return None
        return Principal(key.project, key.key_id)


def _credentials_from(
    header: Callable[[str], str | None],
) -> tuple[str | None, str | None]:
    auth = header("authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None, None
        key_id, sep, secret = token.strip().partition(":")
        return (key_id, secret) if sep else (None, None)
    return header("x-telemetryflow-key-id"), header("x-telemetryflow-key-secret")


class RateLimiter:
    """A token bucket per caller: ``rate`` requests per second, bursts of ``2 * rate``.

    :meth:`acquire` returns ``0.0`` when the request may go ahead, otherwise how many
    seconds to wait before a retry can succeed (what ``Retry-After`` should say).
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = max(1.0, 2 * rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str | None, tuple[float, float]] = {}

    def acquire(self, who: str | None) -> float:
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(who, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self._rate
