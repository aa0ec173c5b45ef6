"""Error capture and product events, as plain OpenTelemetry signals.

A captured error becomes three things, so each backend view finds it: a log record
with the ``exception.*`` attributes (the record of the error), an ``exception``
event on the current span (where it happened), and one count in the
``telemetryflow.errors`` counter (how often). Every record carries ``error.id``
(returned to the caller, e.g. to show a user) and ``error.fingerprint``.

The fingerprint groups repeats of one bug: it hashes the exception type and the
innermost *application* frame (module, function, line), skipping the standard
library, installed packages and this SDK, so the same bug raised through different
call paths, processes or hosts groups together, while two different ``raise``
statements do not.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import sysconfig
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace
from opentelemetry._logs import SeverityNumber

from telemetryflow._extras.metadata import to_attributes
from telemetryflow._recording.attributes import clean_value

if TYPE_CHECKING:
    from telemetryflow._extras.protocol import ClientLike

__all__ = [
    "ERRORS_METRIC",
    "capture_error",
    "capture_exception",
    "fingerprint_exception",
    "fingerprint_reported",
    "fingerprint_stack_text",
    "track_event",
]

ERRORS_METRIC = "telemetryflow.errors"
"""Counter of captured errors, by ``error.type``."""

_OTHER = "_OTHER"
_MAX_STACK = 16_384
_SDK_DIR = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_DIRS = tuple(
    {
        os.path.abspath(p) + os.sep
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(key))
    }
)
_FRAME_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
# Parts of a message that vary between repeats of one error: hex ids (6+ characters with
# a digit, UUIDs included) and numbers.
# The digit is checked in ``_mask``, not by a look-ahead: a look-ahead over the rest of
# the run made text like ``a-a-a-…`` quadratic.
_VARIABLE = re.compile(r"\b[0-9a-f]{6,}(?:-[0-9a-f]+)*\b|\d+(?:\.\d+)?", re.I)
_MAX_FINGERPRINT_TEXT = 1024
_kind_cache: dict[str, int] = {}

# A frame's kind, best first: application code, other code, this SDK.
_APPLICATION, _LIBRARY, _SDK = 0, 1, 2

Location = tuple[str, str, int]
"""(module or file stem, function, line) of a frame."""


def _kind(filename: str) -> int:
    found = _kind_cache.get(filename)
    if found is not None:
        return found
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    if path.startswith(_SDK_DIR + os.sep):
        kind = _SDK
    elif (
        path.startswith("<")
        or path.startswith(_LIBRARY_DIRS)
        or f"{os.sep}site-packages{os.sep}" in path
        or f"{os.sep}dist-packages{os.sep}" in path
    ):
        kind = _LIBRARY
    else:
        kind = _APPLICATION
    if len(_kind_cache) < 4096:
        _kind_cache[filename] = kind
    return kind


def _location(frame: FrameType, lineno: int) -> Location:
    code = frame.f_code
    module = frame.f_globals.get("__name__")
    if not isinstance(module, str):
        module = os.path.splitext(os.path.basename(code.co_filename))[0]
    return module, getattr(code, "co_qualname", code.co_name), lineno


def _best(frames: Iterable[tuple[str, Location]]) -> Location | None:
    """The innermost application frame, else the innermost frame outside the SDK.
    ``frames`` runs innermost first."""
    best: tuple[int, Location] | None = None
    for filename, location in frames:
        kind = _kind(filename)
        if kind == _APPLICATION:
            return location
        if best is None or kind < best[0]:
            best = (kind, location)
    return best[1] if best is not None else None


def _traceback_frames(tb: TracebackType | None) -> list[tuple[str, Location]]:
    frames = [
        (frame.f_code.co_filename, _location(frame, lineno))
        for frame, lineno in traceback.walk_tb(tb)
    ]
    frames.reverse()
    return frames


def _caller_frames() -> list[tuple[str, Location]]:
    frames: list[tuple[str, Location]] = []
    frame: FrameType | None = sys._getframe(1)  # cheap stack walk
    while frame is not None and len(frames) < 64:
        frames.append((frame.f_code.co_filename, _location(frame, frame.f_lineno)))
        frame = frame.f_back
    return frames


def _digest(error_type: str, location: Location | None) -> str:
    where = "|".join(map(str, location)) if location else "?"
    return hashlib.sha256(f"{error_type}|{where}".encode()).hexdigest()[:16]


def qualified_type(exc: BaseException) -> str:
    """``module.Qualname`` (just ``Qualname`` for builtins), as ``exception.type`` wants."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def fingerprint_exception(exc: BaseException) -> str:
    """The grouping key of ``exc``: its type and innermost application frame."""
    frames = _traceback_frames(exc.__traceback__) or _caller_frames()
    return _digest(qualified_type(exc), _best(frames))


def _stack_text_frames(stack: str | None) -> list[tuple[str, Location]]:
    """The frames a Python stack trace's text names, innermost first."""
    frames: list[tuple[str, Location]] = []
    if stack:
        for line in stack.splitlines():
            match = _FRAME_LINE.match(line)
            if match:
                stem = os.path.splitext(os.path.basename(match["file"]))[0]
                frames.append((match["file"], (stem, match["func"], int(match["line"]))))
        frames.reverse()
    return frames


def fingerprint_stack_text(error_type: str, stack: str | None) -> str:
    """The grouping key of an error reported as text: the type (or code) and the
    innermost application frame found in ``stack``, else the caller's frame."""
    return _digest(error_type, _best(_stack_text_frames(stack) or _caller_frames()))


def fingerprint_reported(error_type: str, stack: str | None, message: str) -> str:
    """The grouping key of an error another process reported (the collector's REST API).

    With a Python stack trace it is exactly :func:`fingerprint_stack_text`'s key, so
    the same error sent by the SDK and over HTTP groups together. Without one there is
    no caller frame worth using (it would be the collector's own), so the message
    stands in for the location, with numbers and hex ids masked: ``order 1234 timed
    out`` and ``order 5678 timed out`` are one error.
    """
    frames = _stack_text_frames(stack)
    if frames:
        return _digest(error_type, _best(frames))
    text = _VARIABLE.sub(_mask, message.strip()[:_MAX_FINGERPRINT_TEXT])
    return _digest(error_type, ("message", text, 0))


def _mask(match: re.Match[str]) -> str:
    """``#`` for a number, or a hex id with a digit in it; a plain word stays."""
    found = match.group()
    return "#" if any(ch.isdigit() for ch in found) else found


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the error
        return f"<unprintable {type(value).__name__}>"


def _tail(text: str) -> str:
    """Clip a stack trace from the front: the innermost frames are at the end."""
    return text if len(text) <= _MAX_STACK else "…" + text[-_MAX_STACK:]


def _running(client: ClientLike, what: str) -> bool:
    if client.is_initialized():
        return True
    if getattr(client, "_state", "") == "new":
        from telemetryflow._recording.diagnostics import warn_throttled

        warn_throttled(
            f"{what}-not-initialized", "%s(): the client is not initialized; nothing recorded", what
        )
    return False


def _record(client: ClientLike, body: str, error_type: str, attributes: dict[str, Any]) -> None:
    """Log record, span event and counter for one captured error."""
    otel_logger = client.otel_logger
    if otel_logger is not None:
        otel_logger.emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body=body,
            attributes=attributes,
            event_name="exception",
        )
    span = otel_trace.get_current_span()
    if span.is_recording():
        span.add_event("exception", attributes)
    client.increment_counter(ERRORS_METRIC, 1, {"error.type": error_type})


def capture_exception(
    client: ClientLike, exc: BaseException | None, tags: Mapping[str, Any] | None
) -> str:
    """Record ``exc`` (default: the exception being handled); return its ``error_id``."""
    if exc is None:
        exc = sys.exc_info()[1]
    if not isinstance(exc, BaseException):
        from telemetryflow._recording.diagnostics import warn_throttled

        warn_throttled(
            "capture-nothing",
            "capture_exception(): no exception given and none is being handled; nothing recorded",
        )
        return ""
    if not _running(client, "capture_exception"):
        return ""
    error_id = uuid.uuid4().hex
    error_type = qualified_type(exc)
    message = _safe_str(exc)
    attributes = to_attributes(tags)
    attributes.update(
        {
            "exception.type": error_type,
            "exception.message": clean_value(message),
            "exception.stacktrace": _tail(
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            ),
            "error.type": error_type,
            "error.id": error_id,
            "error.fingerprint": fingerprint_exception(exc),
        }
    )
    _record(client, clean_value(message or error_type), error_type, attributes)
    return error_id


def capture_error(
    client: ClientLike,
    message: str,
    code: str | None,
    stack: str | None,
    tags: Mapping[str, Any] | None,
) -> str:
    """Record an error known only as text; return its ``error_id``."""
    if not _running(client, "capture_error"):
        return ""
    error_id = uuid.uuid4().hex
    text = message if isinstance(message, str) else _safe_str(message)
    error_type = str(code) if code else _OTHER
    attributes = to_attributes(tags)
    error_type = clean_value(error_type)
    attributes.update(
        {
            "exception.type": error_type,
            "exception.message": clean_value(text),
            "error.type": error_type,
            "error.id": error_id,
            "error.fingerprint": fingerprint_stack_text(error_type, stack),
        }
    )
    if code:
        attributes["error.code"] = error_type
    if stack:
        attributes["exception.stacktrace"] = _tail(str(stack))
    _record(client, clean_value(text), error_type, attributes)
    return error_id


def track_event(
    client: ClientLike,
    event: str,
    properties: Mapping[str, Any] | None,
    distinct_id: str | None,
) -> bool:
    """A product event: an OpenTelemetry event carrying its properties. True if recorded."""
    if not _running(client, "track_event"):
        return False
    otel_logger = client.otel_logger
    if otel_logger is None:
        return False
    if not isinstance(event, str) or not event:
        from telemetryflow._recording.diagnostics import warn_throttled

        warn_throttled("track-event-name", "track_event() needs a non-empty event name")
        return False
    attributes = to_attributes(properties)
    if distinct_id is not None:
        attributes["enduser.id"] = str(distinct_id)
    otel_logger.emit(
        timestamp=time.time_ns(),
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        body=event,
        attributes=attributes,
        event_name=event,
    )
    return True
