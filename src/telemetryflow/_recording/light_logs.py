"""Log records straight from the facade to the logs queue, as the SDK would hand them.

OpenTelemetry's ``Logger.emit`` builds an API ``LogRecord`` (reading the current
span), copies it into a ``ReadWriteLogRecord`` whose ``BoundedAttributes`` cleans
every value again under a lock, counts it in the SDK's self-metrics and walks the
processors. When the logger is one our pipeline built (its only processor is the
logs queue, SDK self-metrics off) and the attributes are already clean primitives
within the limits, none of that changes what is exported: a :class:`LightLogRecord`
carries the same fields (trace correlation, exception attributes first, the SDK's
attribute order) to the same processor. Anything else (other processors, a disabled
logger, values the SDK would clean, drop or truncate) returns ``False`` and the
caller takes ``Logger.emit``. ``tests/test_light_logs.py`` compares the exported
bytes of both paths through a real receiver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.sdk._logs import Logger as SdkLogger

try:  # the SDK's internals this path mirrors; without them, Logger.emit it is
    from opentelemetry.sdk._logs._internal import SynchronousMultiLogRecordProcessor
    from opentelemetry.sdk._logs._internal._exceptions import _get_exception_attributes
    from opentelemetry.sdk._logs._internal._logger_metrics import NoOpLoggerMetrics
except ImportError:  # pragma: no cover - another SDK version
    SynchronousMultiLogRecordProcessor = NoOpLoggerMetrics = None  # type: ignore[assignment,misc]

__all__ = ["SITE_KEYS", "LightLogRecord", "LightLogs", "call_site", "light_logs"]

_PLAIN = frozenset((str, bool, int, float))
_get_current_span = otel_trace.get_current_span

SITE_KEYS = (
    "code.file.path",
    "code.function.name",
    "code.line.number",
    "thread.id",
    "thread.name",
)
"""The attributes the ``logging`` bridge adds to every record, in its order: the
same for every record from one line on one thread, so the encoder writes them once
per call site (see :func:`call_site`)."""
_STACK_KEY = "code.stacktrace"
_SITE_COUNT = len(SITE_KEYS)


def call_site(record: Any, attributes: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The values of :data:`SITE_KEYS` for ``record`` when they can be appended to
    ``attributes`` as a block (plain values, no key of theirs already present)."""
    path, function, line = record.pathname, record.funcName, record.lineno
    thread, thread_name = record.thread or 0, record.threadName or ""
    if not (
        type(path) is str
        and type(function) is str
        and type(line) is int
        and type(thread) is int
        and type(thread_name) is str
    ):
        return None
    if attributes and (_STACK_KEY in attributes or not attributes.keys().isdisjoint(SITE_KEYS)):
        return None
    return (path, function, line, thread, thread_name)


class LightLogRecord:
    """Both the ``ReadWriteLogRecord`` and its ``log_record``, as processors and the
    encoders read them (``record.log_record.body``, ``record.resource``, ...)."""

    __slots__ = (
        "attributes",
        "body",
        "exception",
        "instrumentation_scope",
        "observed_timestamp",
        "resource",
        "severity_number",
        "severity_text",
        "site",
        "span_id",
        "timestamp",
        "trace_flags",
        "trace_id",
    )
    dropped_attributes = 0
    event_name = None
    limits = None

    def __init__(
        self,
        resource: Any,
        scope: Any,
        timestamp: int | None,
        observed_timestamp: int,
        severity_number: Any,
        severity_text: str,
        body: Any,
        attributes: dict[str, Any],
        exception: BaseException | None,
        site: tuple[Any, ...] | None = None,
    ) -> None:
        context = _get_current_span().get_span_context()
        self.resource = resource
        self.instrumentation_scope = scope
        self.timestamp = timestamp
        self.observed_timestamp = observed_timestamp
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.body = body
        self.attributes = attributes
        self.exception = exception
        self.site = site
        """:data:`SITE_KEYS` values: the attributes end with them (and maybe a stack)."""
        self.trace_id = context.trace_id
        self.span_id = context.span_id
        self.trace_flags = context.trace_flags

    @property
    def log_record(self) -> LightLogRecord:
        return self

    def __repr__(self) -> str:
        return f"LightLogRecord(severity={self.severity_text}, scope={self.instrumentation_scope})"


class LightLogs:
    """Emits :class:`LightLogRecord` objects for one SDK logger (see the module doc)."""

    __slots__ = ("_logger", "_max_attributes", "_max_length", "_multi", "_processors")

    def __init__(self, logger: SdkLogger) -> None:
        self._logger = logger
        self._multi = logger._multi_log_record_processor
        self._processors = self._multi._log_record_processors
        limits = logger._log_record_limits
        self._max_attributes: int | None = limits.max_log_record_attributes
        self._max_length: int | None = limits.max_log_record_attribute_length

    def emit(
        self,
        timestamp: int | None,
        observed_timestamp: int,
        severity: tuple[Any, str],
        body: Any,
        attributes: dict[str, Any],
        exception: BaseException | None = None,
        site: tuple[Any, ...] | None = None,
        stack: str | None = None,
    ) -> bool:
        """Hand one record to the queue as ``Logger.emit`` would; ``False``: not
        taken, use ``Logger.emit`` (nothing was recorded, ``attributes`` untouched).

        With ``site`` (what :func:`call_site` found), ``attributes`` are the ones
        before the call site: once the record is taken, the :data:`SITE_KEYS` values
        and the ``stack`` trace (if any) are appended to them, as the bridge would.
        """
        logger = self._logger
        if not logger._logger_config.is_enabled:
            return True  # the SDK records nothing either
        processors = self._multi._log_record_processors
        if processors is not self._processors:
            return False
        if exception is not None:
            attributes = _get_exception_attributes(exception) | attributes
        if not self._plain(attributes):
            return False
        if site is not None:
            limit = self._max_attributes
            if (
                self._max_length is not None
                or (stack is not None and type(stack) is not str)
                or (
                    limit is not None
                    and len(attributes) + _SITE_COUNT + (stack is not None) > limit
                )
            ):
                return False
            attributes.update(zip(SITE_KEYS, site, strict=True))
            if stack is not None:
                attributes[_STACK_KEY] = stack
        record = LightLogRecord(
            logger._resource,
            logger._instrumentation_scope,
            timestamp,
            observed_timestamp,
            severity[0],
            severity[1],
            body,
            attributes,
            exception,
            site,
        )
        processors[0].on_emit(record)  # type: ignore[arg-type]  # duck-typed record
        return True

    def _plain(self, attributes: Mapping[Any, Any]) -> bool:
        """Whether ``BoundedAttributes`` would keep every pair exactly as it is."""
        limit = self._max_attributes
        if limit is not None and len(attributes) > limit:
            return False
        length = self._max_length
        for key, value in attributes.items():
            if type(key) is not str or not key or type(value) not in _PLAIN:
                return False
            if length is not None and type(value) is str and len(value) > length:
                return False
        return True


def light_logs(logger: Any, processor_type: type) -> LightLogs | None:
    """A :class:`LightLogs` when ``logger`` is an SDK logger whose only processor is a
    ``processor_type`` and whose self-metrics are off; otherwise ``None``."""
    try:
        if type(logger) is not SdkLogger or SynchronousMultiLogRecordProcessor is None:
            return None
        multi = logger._multi_log_record_processor
        if type(multi) is not SynchronousMultiLogRecordProcessor:
            return None
        processors = multi._log_record_processors
        if len(processors) != 1 or type(processors[0]) is not processor_type:
            return None
        if type(logger._logger_metrics) is not NoOpLoggerMetrics:
            return None
        if not hasattr(logger, "_resource") or not hasattr(logger, "_instrumentation_scope"):
            return None
        return LightLogs(logger)
    except Exception:  # another SDK layout: keep the SDK's own path
        return None
