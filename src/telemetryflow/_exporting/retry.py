"""Retry policy of the OTLP specification: which failures retry, and how long to wait."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = ["RETRYABLE_HTTP_STATUSES", "RetryPolicy", "parse_retry_after"]

RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})

# A server may ask for a pause, but not for one that outlives any sane export.
_MAX_SERVER_DELAY = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, ``max_retries`` retries after the first attempt."""

    enabled: bool = True
    max_retries: int = 3
    initial_backoff: float = 1.0
    max_backoff: float = 30.0

    @property
    def max_attempts(self) -> int:
        return 1 + (self.max_retries if self.enabled else 0)

    def delay(self, retry_number: int, server_delay: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based).

        The server's own delay (``Retry-After``/``RetryInfo``) wins over the backoff.
        Jitter spreads retries of many clients over ±50 % of the backoff.
        """
        if server_delay is not None:
            return min(max(server_delay, 0.0), _MAX_SERVER_DELAY)
        base = min(self.initial_backoff * (2 ** (retry_number - 1)), self.max_backoff)
        return float(base * random.uniform(0.5, 1.5))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
