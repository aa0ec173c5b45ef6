"""Conveniences on top of the core client (track, events, error capture, flags).

A mixin so that these features live in their own modules while the client stays
one object for the user. Every method here is a thin, typed entry point that
delegates to a private module; none raises because of telemetry trouble, and none
touches the network on the calling thread.

The module-level :func:`track`, :func:`trace` and :func:`event` work without a
client in hand: they use the default client (see :mod:`telemetryflow._extras.default`) at
call time and do nothing, quietly, while there is none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from telemetryflow._extras import capture as _capture
from telemetryflow._extras import track as _track
from telemetryflow._extras.default import get_default_client
from telemetryflow._extras.flags import (
    EMPTY_FLAGS,
    ERROR,
    EVALUATION_SEVERITY,
    PROVIDER_NAME,
    FlagEvaluation,
    FlagSet,
    targeting_key_of,
)
from telemetryflow._extras.track import Tracker, attribute_value
from telemetryflow._recording.diagnostics import warn_throttled

if TYPE_CHECKING:
    from telemetryflow._extras.logging_bridge import TelemetryFlowHandler
    from telemetryflow._extras.protocol import ClientLike

__all__ = ["ConveniencesMixin", "Tracker", "event", "trace", "track"]

F = TypeVar("F", bound=Callable[..., Any])
_FLAG_EVENT = "feature_flag.evaluation"


@overload
def track(name: F) -> F: ...
@overload
def track(name: str | None = None) -> Tracker: ...
def track(name: str | Callable[..., Any] | None = None) -> Tracker | Callable[..., Any]:
    """Track a function or block with the default client (see
    :meth:`ConveniencesMixin.track`). The client is looked up at each call, so
    decorating at import time works before (or without) any configuration."""
    if callable(name):
        return Tracker(None)(name)
    return Tracker(name)


def trace(key: str, value: Any) -> None:
    """Attach ``key=value`` to the next tracked call in this thread or async task."""
    _track.add_metadata(key, value)


def event(name: str, /, status: str = "completed", **kwargs: Any) -> None:
    """Post a standalone event with the default client; nothing if there is none."""
    client = get_default_client()
    if client is not None:
        client.event(name, status, **kwargs)


class ConveniencesMixin:
    """Methods added to :class:`~telemetryflow.TelemetryFlowClient`."""

    _tf_flags: FlagSet | None = None

    def _self(self) -> ClientLike:
        return cast("ClientLike", self)

    # -- track / trace / event (Observable Code) ---------------------------------------
    @overload
    def track(self, name: F) -> F: ...
    @overload
    def track(self, name: str | None = None) -> Tracker: ...
    def track(self, name: str | Callable[..., Any] | None = None) -> Tracker | Callable[..., Any]:
        """Track a function (sync, async, generator, async generator) or a block.

        Each tracked call is a span plus a ``telemetryflow.track.duration`` point
        (milliseconds) labelled ``track.status`` ``completed`` or ``failed``; a failure
        records the error type and message and re-raises the same exception. The
        wrapped function keeps its name, signature, docstring and return value.

        Args:
            name: span name; defaults to the decorated function's qualified name.
                ``@client.track`` without parentheses works too.

        Example:
            >>> @client.track("send_report")
            ... def send_report() -> None: ...
            >>> with client.track("batch_import"):
            ...     import_rows()
        """
        if callable(name):
            return Tracker(None, self._self())(name)
        return Tracker(name, self._self())

    def trace(self, key: str, value: Any) -> None:
        """Attach ``key=value`` to the next tracked call in this thread or async task.

        Values that are not attribute types are stored as JSON. The metadata is
        cleared by that call; concurrent threads and tasks never see each other's.
        """
        try:
            _track.add_metadata(key, value)
        except Exception as exc:  # unusable metadata is dropped, never raised
            warn_throttled(
                "trace-invalid", "trace() dropped unusable metadata (%s)", type(exc).__name__
            )

    def event(self, name: str, /, status: str = "completed", **kwargs: Any) -> None:
        """Post a standalone event; keyword arguments become its attributes.

        ``name`` is positional-only, so ``name=`` can be metadata like any other key.

        The event is an OpenTelemetry event: a log record whose event name is
        ``name``, with ``event.status`` (``failed`` ones have ERROR severity).
        """
        client = self._self()
        if _capture._running(client, "event"):
            try:
                _track.post_event(client, name, status, kwargs)
            except Exception as exc:
                warn_throttled("event-failed", "event() dropped: %s", type(exc).__name__)

    # -- errors and product events -----------------------------------------------------
    def capture_exception(
        self, exc: BaseException | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        """Record an exception (by default the one being handled).

        It becomes an ERROR log record with the ``exception.*`` attributes, an
        ``exception`` event on the current span, and one count in
        ``telemetryflow.errors``; ``error.fingerprint`` groups repeats of one bug.

        Returns:
            The ``error_id`` (32 hex digits) also recorded as ``error.id``; ``""``
            if nothing was recorded.
        """
        try:
            return _capture.capture_exception(self._self(), exc, tags)
        except Exception as failure:
            warn_throttled(
                "capture-failed", "capture_exception() dropped: %s", type(failure).__name__
            )
            return ""

    def capture_error(
        self,
        message: str,
        code: str | None = None,
        stack: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """Record an error known only as text (``code`` becomes ``error.type``).

        Returns:
            The ``error_id``, or ``""`` if nothing was recorded.
        """
        try:
            return _capture.capture_error(self._self(), message, code, stack, tags)
        except Exception as failure:
            warn_throttled("capture-failed", "capture_error() dropped: %s", type(failure).__name__)
            return ""

    def track_event(
        self,
        event: str,
        properties: Mapping[str, Any] | None = None,
        distinct_id: str | None = None,
    ) -> bool:
        """Record a product event (an OpenTelemetry event named ``event``).

        ``properties`` become attributes (non-attribute values as JSON) and
        ``distinct_id`` becomes ``enduser.id``. Returns True if recorded.
        """
        try:
            return _capture.track_event(self._self(), event, properties, distinct_id)
        except Exception as failure:
            warn_throttled(
                "track-event-failed", "track_event() dropped: %s", type(failure).__name__
            )
            return False

    # -- feature flags ------------------------------------------------------------------
    @property
    def feature_flags(self) -> FlagSet:
        """The flags in effect: those set with :meth:`set_feature_flags`, else the
        configuration's ``feature_flags``."""
        override = self._tf_flags
        if override is not None:
            return override
        configured = getattr(self._self().config, "feature_flags", None)
        return configured if isinstance(configured, FlagSet) else EMPTY_FLAGS

    def set_feature_flags(self, flags: FlagSet | Mapping[str, Any] | None) -> None:
        """Replace the flags in effect (``None`` goes back to the configuration's).

        Raises:
            ConfigError: ``flags`` is a mapping with malformed definitions.
        """
        if flags is None or isinstance(flags, FlagSet):
            self._tf_flags = flags
        else:
            self._tf_flags = FlagSet.from_mapping(flags)

    def evaluate_flag(self, key: str, /, default: Any = None, **context: Any) -> FlagEvaluation:
        """Evaluate ``key`` for ``context`` and record the evaluation.

        ``targeting_key=``, else ``user_id=``, else ``distinct_id=`` drives
        percentage rollouts and per-key targets. A missing flag evaluates to
        ``default`` with reason ``error`` and ``error_type`` ``flag_not_found``.
        """
        return self._evaluate(key, default, context, boolean=False)

    def is_enabled(self, key: str, /, default: bool = False, **context: Any) -> bool:
        """Whether the on/off flag ``key`` is on for ``context`` (e.g. ``user_id=``).

        A missing flag, or one that is not on/off, gives ``default`` (and the
        recorded evaluation says why). Evaluation is local: no network, no lock.
        """
        value = self._evaluate(key, default, context, boolean=True).value
        return value if isinstance(value, bool) else default

    def get_variant(self, key: str, /, default: str | None = None, **context: Any) -> str | None:
        """The variant name of flag ``key`` for ``context``, or ``default``."""
        result = self._evaluate(key, default, context, boolean=False)
        return result.variant if result.variant is not None else default

    def get_flag_value(self, key: str, /, default: Any = None, **context: Any) -> Any:
        """The value of flag ``key``'s variant for ``context``, or ``default``."""
        return self._evaluate(key, default, context, boolean=False).value

    def _evaluate(
        self, key: str, default: Any, context: Mapping[str, Any], boolean: bool
    ) -> FlagEvaluation:
        try:
            targeting_key = targeting_key_of(context)
            result = self.feature_flags.evaluate(key, targeting_key)
            if result.error_type is None and boolean and not isinstance(result.value, bool):
                result = FlagEvaluation(
                    result.key,
                    default,
                    None,
                    ERROR,
                    "type_mismatch",
                    "the flag has variants; use get_variant()",
                )
            elif result.error_type is not None:
                result = replace(result, value=default)
        except Exception as exc:  # a flag check must never break the caller
            shown = key[:64] if isinstance(key, str) else f"<{type(key).__name__}>"
            warn_throttled("flag-evaluate", "feature flag %r: %s", shown, type(exc).__name__)
            return FlagEvaluation(shown, default, None, ERROR, "general")
        self._record_flag(result, targeting_key)
        return result

    def _record_flag(self, result: FlagEvaluation, targeting_key: str | None) -> None:
        """One ``feature_flag.evaluation`` event per the OpenTelemetry conventions.

        The event carries the current span's ids, so a trace shows which variant
        each request saw.
        """
        client = self._self()
        otel_logger = client.otel_logger if client.is_initialized() else None
        if otel_logger is None:
            return
        attributes: dict[str, Any] = {
            "feature_flag.key": result.key,
            "feature_flag.provider.name": PROVIDER_NAME,
            "feature_flag.result.reason": result.reason,
        }
        if result.variant is not None:
            attributes["feature_flag.result.variant"] = result.variant
        value = attribute_value(result.value)
        if value is not None:
            attributes["feature_flag.result.value"] = value
        if targeting_key is not None:
            attributes["feature_flag.context.id"] = targeting_key
        flag = self.feature_flags.flags.get(result.key)
        if flag is not None and flag.version:
            attributes["feature_flag.version"] = flag.version
        if result.error_type:
            attributes["error.type"] = result.error_type
            attributes["feature_flag.error.message"] = result.error_message or ""
        try:
            otel_logger.emit(
                timestamp=time.time_ns(),
                severity_number=EVALUATION_SEVERITY,
                severity_text=EVALUATION_SEVERITY.name,
                body=_FLAG_EVENT,
                attributes=attributes,
                event_name=_FLAG_EVENT,
            )
        except Exception as exc:
            warn_throttled(
                "flag-record", "feature flag evaluation not recorded: %s", type(exc).__name__
            )

    # -- logging bridge ------------------------------------------------------------------
    def instrument_logging(
        self, level: int | str = logging.NOTSET, logger: logging.Logger | str | None = None
    ) -> TelemetryFlowHandler:
        """Send the standard ``logging`` records of ``logger`` (root by default)
        through this client; returns the handler (``handler.close()`` removes it).

        Records keep trace and span ids inside a span, exception info and ``extra``
        fields; the handler cannot recurse when the SDK or the exporter logs.
        Calling it again for the same logger returns the same handler.
        """
        from telemetryflow._extras.logging_bridge import install_handler

        return install_handler(self._self(), level, logger)
