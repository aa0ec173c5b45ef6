"""Turn whatever the application passes as attributes into valid OpenTelemetry ones.

Recording calls must never raise on bad input, and OpenTelemetry silently drops
invalid values. Here a value that is not an attribute type is kept as its ``str()``
(bounded), ``None`` values are dropped, and keys become strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_VALUE_LENGTH", "clean_attributes", "clean_value"]

MAX_VALUE_LENGTH = 4096
_PRIMITIVES = (str, bool, int, float)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_VALUE_LENGTH else text[:MAX_VALUE_LENGTH] + "…"


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _text(value: str) -> str:
    """Bounded, and encodable: a lone surrogate would make the whole request fail."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return _clip(value)


def clean_value(value: Any) -> Any:
    """An attribute-typed version of ``value``, or ``None`` to drop it."""
    if value is None:
        return None
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, (list, tuple)):
        items = [v for v in value if v is not None]
        if not items:
            return []
        first = type(items[0])
        if first in _PRIMITIVES and all(type(v) is first for v in items):
            return [clean_value(v) for v in items]
        return [_clip(_safe_str(v)) for v in items]
    return _clip(_safe_str(value))


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def clean_attributes(attributes: Mapping[Any, Any] | None) -> dict[str, Any]:
    """A new dict of valid attributes; never raises."""
    if not attributes:
        return {}
    if type(attributes) is not dict and not isinstance(attributes, Mapping):
        return {}
    cleaned: dict[str, Any] = {}
    for key, value in attributes.items():
        if key == "":  # OpenTelemetry drops an empty key with a warning; drop it quietly
            continue
        if type(key) is str:  # the common cases first, without a call
            kind = type(value)
            if kind is str:
                ok = len(value) <= MAX_VALUE_LENGTH and value.isascii()
                cleaned[key] = value if ok else _text(value)
                continue
            if kind is int:
                cleaned[key] = value if _INT64_MIN <= value <= _INT64_MAX else str(value)
                continue
            if kind is bool or kind is float:
                cleaned[key] = value
                continue
        fixed = clean_value(value)
        if fixed is not None:
            cleaned[key if isinstance(key, str) else _safe_str(key)] = fixed
    return cleaned
