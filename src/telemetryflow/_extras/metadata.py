"""Attribute values from arbitrary Python values, and ``trace()``'s pending metadata.

Split from :mod:`telemetryflow._extras.track` (which re-exports these names) because
the logging bridge and error capture convert values the same way without tracking
anything.

The pending metadata lives in a one-slot box that ``trace`` replaces (copy on write)
and a tracked call empties. Replacing keeps concurrent tasks apart (each task gets
its own box as soon as it calls ``trace``); emptying in place means a task created
with ``asyncio.create_task(tracked())`` consumes its parent's metadata instead of
leaving a stale copy behind for the parent's next call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from telemetryflow._recording.attributes import MAX_VALUE_LENGTH, clean_value
from telemetryflow._recording.diagnostics import warn_throttled

__all__ = ["add_metadata", "attribute_value", "take_metadata", "to_attributes"]

_PRIMITIVES = (str, bool, int, float)
_pending: ContextVar[list[dict[str, Any]] | None] = ContextVar(
    "telemetryflow_pending_metadata", default=None
)


# -- attribute values ----------------------------------------------------------------
def attribute_value(value: Any) -> Any:
    """``value`` as an attribute: primitives and homogeneous lists as they are,
    other containers as compact JSON, anything else as its ``str()``."""
    if value is None:
        return None
    if isinstance(value, _PRIMITIVES):
        return clean_value(value)
    if isinstance(value, (list, tuple)) and all(
        type(v) in _PRIMITIVES and type(v) is type(value[0]) for v in value
    ):
        return clean_value(value)
    if not isinstance(value, (Mapping, list, tuple, set, frozenset)):
        return clean_value(value)  # its str(), never raising
    try:
        text = json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return clean_value(value)
    return text if len(text) <= MAX_VALUE_LENGTH else text[:MAX_VALUE_LENGTH] + "…"


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def to_attributes(values: Mapping[Any, Any] | None) -> dict[str, Any]:
    """A new dict of attribute values; ``None`` values are dropped. Never raises."""
    if not values or not isinstance(values, Mapping):
        return {}
    out: dict[str, Any] = {}
    try:
        for key, value in values.items():
            kind = type(value)
            if type(key) is str and (kind is float or kind is bool):  # as they are
                out[key] = value
                continue
            fixed = attribute_value(value)
            if fixed is not None:
                out[key if isinstance(key, str) else str(clean_value(key))] = fixed
    except Exception:  # a hostile mapping must not break the caller
        warn_throttled("bad-attributes", "could not read some attributes; dropped them")
    return out


# -- trace(): metadata for the next tracked call --------------------------------------
def add_metadata(key: str, value: Any) -> None:
    """Attach ``key=value`` to the next tracked call of this thread or task."""
    try:
        if not isinstance(key, str) or not key:
            warn_throttled(
                "trace-key", "trace() needs a non-empty string key; ignored %r", str(key)[:40]
            )
            return
        box = _pending.get()
        merged = dict(box[0]) if box else {}
        fixed = attribute_value(value)
        if fixed is None:
            merged.pop(key, None)
        else:
            merged[key] = fixed
        _pending.set([merged])
    except Exception:
        warn_throttled("trace-failed", "trace(%r) could not be recorded", str(key)[:40])


def take_metadata() -> dict[str, Any] | None:
    """Remove and return the pending metadata (``None`` if there is none)."""
    box = _pending.get()
    if not box:
        return None
    try:
        return box.pop()  # atomic: of two racing takers, exactly one gets it
    except IndexError:
        return None
