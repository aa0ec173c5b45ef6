"""Query parameters: durations (``5m``), instants (RFC 3339, epoch, ``1h`` ago), typed reads.

Parameters arrive as query-string text or as JSON values; :class:`Params` reads both
and reports unknown or malformed ones as a 400 naming the parameter. The limits here
apply to every query endpoint before any SQL is built, so no parameter can reach the
database in a shape it refuses (a NUL ends SQLite's LIKE pattern early, patterns past
50,000 bytes are an error, thousands of filters overflow its expression depth).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from telemetryflow.collector.ingest._decode import BadRequestError

__all__ = [
    "MAX_FILTERS",
    "MAX_NS",
    "MAX_VALUE_CHARS",
    "TAG_KEY_PATTERN",
    "Params",
    "check_tag_key",
    "check_text",
    "iso",
    "parse_duration",
    "parse_instant",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
    "h": 3600.0, "d": 86400.0, "w": 604800.0,
}  # fmt: skip
_NS = 1_000_000_000
MAX_NS = 2**63 - 1
"""The latest instant SQLite's 64-bit integers hold in nanoseconds (year 2262)."""
_MAX_DURATION_S = 100 * 365.25 * 86400

MAX_VALUE_CHARS = 4096
"""Longest value of any query parameter."""
_MAX_CHARS = {"contains": 1000, "name_contains": 1000}
"""Tighter limits for some parameters (``contains`` is a text pattern)."""
MAX_FILTERS = 32
"""Most tag filters one query may carry."""
TAG_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:/@-]{1,255}$")
"""What a tag key in a filter or ``group_by`` may be: letters, digits and ``_.:/@-``."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HEX_IDS = {"trace_id": 32, "span_id": 16}


def check_text(name: str, value: str, limit: int | None = None) -> str:
    """``value`` if it is acceptable text for parameter ``name``, else a 400 naming it."""
    limit = _MAX_CHARS.get(name, MAX_VALUE_CHARS) if limit is None else limit
    if len(value) > limit:
        raise BadRequestError(400, f"{name} is too long (at most {limit} characters)")
    if _CONTROL.search(value):
        raise BadRequestError(400, f"{name} must not contain NUL or control characters")
    return value


def check_tag_key(param: str, key: str) -> str:
    """A tag key used in a filter or ``group_by``, checked against :data:`TAG_KEY_PATTERN`."""
    if not TAG_KEY_PATTERN.match(key):
        shown = _CONTROL.sub("?", key[:40])
        raise BadRequestError(
            400,
            f"{param}: tag key {shown!r} must be 1 to 255 letters, digits or _.:/@- characters",
        )
    return key


def parse_duration(text: str, name: str = "duration") -> float:
    """``"5m"`` → 300.0 seconds. A bare number means seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise BadRequestError(400, f"{name} must be a duration like 30s, 5m, 1h or 7d")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if not seconds <= _MAX_DURATION_S:
        raise BadRequestError(400, f"{name} is out of range (at most 100 years)")
    return seconds


def parse_instant(value: Any, name: str, now_ns: int) -> int:
    """An instant as Unix nanoseconds.

    Accepts RFC 3339 / ISO 8601 text, Unix seconds (or milli-, micro-, nanoseconds,
    told apart by magnitude), ``now``, or a duration meaning that long ago (``1h``).
    Instants before 1970 or past 2262 (what 64-bit nanoseconds hold) are refused.
    """
    ns = _instant_ns(value, name, now_ns)
    if not 0 <= ns <= MAX_NS:
        raise BadRequestError(400, f"{name} is out of range (1970 to 2262)")
    return ns


def _instant_ns(value: Any, name: str, now_ns: int) -> int:
    if isinstance(value, bool):
        raise BadRequestError(400, f"{name} must be a time")
    if isinstance(value, (int, float)):
        return _epoch_to_ns(value, name)
    text = str(value).strip()
    if text == "now":
        return now_ns
    if _DURATION.match(text) and not text.replace(".", "").isdigit():
        return max(0, now_ns - int(parse_duration(text, name) * _NS))
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = None
    if number is not None:
        return _epoch_to_ns(number, name)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequestError(400, f"{name} must be RFC 3339, Unix seconds, or like 1h") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return math.floor(parsed.timestamp()) * _NS + parsed.microsecond * 1000


_TOO_LARGE = Decimal("1e20")
"""Past any time 64-bit nanoseconds hold, in every unit: refused before it is multiplied
(``1e999999999`` would otherwise become an integer of a billion digits)."""


def _epoch_to_ns(raw: float | Decimal, name: str) -> int:
    """Unix seconds, milli-, micro- or nanoseconds (told apart by magnitude) as
    nanoseconds, exactly: a number is read as decimal digits, never through a binary
    float (which keeps only about 16 of a nanosecond time's 19 digits)."""
    value = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    magnitude = value.copy_abs()
    if not value.is_finite() or magnitude >= _TOO_LARGE:  # before any digit is expanded
        raise BadRequestError(400, f"{name} is out of range (1970 to 2262)")
    for below, scale in ((Decimal("1e11"), 10**9), (Decimal("1e14"), 10**6),
                         (Decimal("1e17"), 10**3)):  # fmt: skip
        if magnitude < below:
            return int(value * scale)
    return int(value)


def _check_hex(name: str, value: str, length: int) -> None:
    text = value.strip()
    if len(text) != length or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise BadRequestError(400, f"{name} must be {length} hexadecimal digits")


def iso(ns: int) -> str:
    """Unix nanoseconds as RFC 3339 UTC with microseconds."""
    dt = datetime.fromtimestamp(ns / _NS, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


class Params:
    """Typed access to request parameters, each read at most once, unknown ones refused."""

    def __init__(self, raw: Mapping[str, Any], known: Iterable[str]) -> None:
        known = tuple(known)
        unknown = sorted(set(raw) - set(known))
        if unknown:
            shown = ", ".join(_CONTROL.sub("?", name[:64]) for name in unknown[:10])
            raise BadRequestError(400, f"unknown parameter(s): {shown}; known: {', '.join(known)}")
        for name, value in raw.items():
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                check_text(name, str(value))
            length = _HEX_IDS.get(name)
            if length is not None and value not in (None, ""):
                _check_hex(name, str(value), length)
        self._raw = raw
        self.now_ns = time.time_ns()

    def has(self, name: str) -> bool:
        return self._raw.get(name) not in (None, "")

    def text(self, *names: str, default: str | None = None) -> str | None:
        for name in names:
            if self.has(name):
                value = self._raw[name]
                if isinstance(value, (dict, list)):
                    raise BadRequestError(400, f"{name} must be a string")
                return str(value)
        return default

    def integer(self, name: str, default: int, low: int = 1, high: int = 10_000) -> int:
        if not self.has(name):
            return default
        try:
            value = int(self._raw[name])
        except (TypeError, ValueError, OverflowError):
            raise BadRequestError(400, f"{name} must be an integer") from None
        if not low <= value <= high:
            raise BadRequestError(400, f"{name} must be between {low} and {high}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        if not self.has(name):
            return default
        value = self._raw[name]
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise BadRequestError(400, f"{name} must be true or false")

    def duration_ns(self, *names: str, default: str | None = None) -> int | None:
        for name in names:
            if self.has(name):
                return int(parse_duration(str(self._raw[name]), name) * _NS)
        return None if default is None else int(parse_duration(default) * _NS)

    def raw(self, name: str) -> Any:
        return self._raw.get(name)

    def time_range(self, window_names: tuple[str, ...], default_window: str) -> tuple[int, int]:
        """``(since_ns, until_ns)`` from since/until, else the window ending at until."""
        until = (
            parse_instant(self._raw["until"], "until", self.now_ns)
            if self.has("until")
            else self.now_ns
        )
        if self.has("since"):
            since = parse_instant(self._raw["since"], "since", self.now_ns)
        else:
            window = self.duration_ns(*window_names, default=default_window)
            assert window is not None
            since = max(0, until - window)
        if since > until:
            raise BadRequestError(400, "since must be before until")
        return since, until
