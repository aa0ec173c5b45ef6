"""Send the standard ``logging`` module's records through a client.

The handler can never recurse into itself. Three guards, cheapest first:

- records emitted while the thread runs SDK code
  (:func:`~telemetryflow._recording.diagnostics.in_sdk`: the export threads, the
  SDK's own warnings) are dropped, so an exporter that logs while the collector is
  down cannot feed its own queue;
- a thread-local flag drops records logged *during* an emit on the same thread (an
  attribute whose ``__str__`` logs, an OpenTelemetry warning about a value);
- the ``telemetryflow`` logger's own diagnostics stay local.

It also overrides :meth:`logging.Handler.handle` to skip the handler lock: the
OpenTelemetry logger is thread-safe, and holding a lock while calling into the SDK
is how logging handlers deadlock under load.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from opentelemetry._logs import Logger, LoggerProvider, SeverityNumber

from telemetryflow._extras.metadata import to_attributes
from telemetryflow._recording.diagnostics import _local as _sdk_thread
from telemetryflow._recording.diagnostics import in_sdk, warn_throttled
from telemetryflow._recording.light_logs import SITE_KEYS, LightLogs, call_site, light_logs

if TYPE_CHECKING:
    from telemetryflow._extras.protocol import ClientLike

__all__ = ["TelemetryFlowHandler", "install_handler"]

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_LEVELS = (
    (50, 21, "FATAL"),
    (40, 17, "ERROR"),
    (30, 13, "WARN"),
    (20, 9, "INFO"),
    (10, 5, "DEBUG"),
)
_MAX_SCOPES = 256
_SEVERITY_CACHE: dict[int, tuple[SeverityNumber, str]] = {}
_local = threading.local()


def _severity(levelno: int) -> tuple[SeverityNumber, str]:
    """Python levels onto OpenTelemetry severities; custom levels in between keep
    their order (25 becomes INFO2, 45 becomes ERROR2). Cached: one lookup per record."""
    found = _SEVERITY_CACHE.get(levelno)
    if found is None:
        found = _SEVERITY_CACHE[levelno] = _map_severity(levelno)
    return found


def _map_severity(levelno: int) -> tuple[SeverityNumber, str]:
    for base, number, text in _LEVELS:
        if levelno >= base:
            return SeverityNumber(number + min(3, (levelno - base) // 3)), text
    return SeverityNumber.TRACE, "TRACE"


def _body(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad %-args must not lose the record
        return str(record.msg)


def _queue_processor_type() -> type:
    from telemetryflow._exporting.pipeline import LogQueueProcessor

    return LogQueueProcessor


def _is_own(name: str) -> bool:
    return name == "telemetryflow" or name.startswith("telemetryflow.")


class TelemetryFlowHandler(logging.Handler):
    """A ``logging`` handler emitting OpenTelemetry log records through ``client``.

    Each record keeps its logger name (as the instrumentation scope), level, message,
    source location, thread, ``extra`` fields (as attributes), exception info (as the
    ``exception.*`` attributes), and, inside a span, the trace and span ids.
    """

    def __init__(self, client: ClientLike, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.client = client
        self._scopes: dict[str, tuple[Logger, LightLogs | None]] = {}
        self._provider: LoggerProvider | None = None
        self._attached: logging.Logger | None = None

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        """Filter and emit without the handler lock (see the module docstring)."""
        if getattr(_sdk_thread, "depth", 0) or getattr(_local, "busy", False):
            return False  # in_sdk(), inlined: this runs for every record
        if _is_own(record.name):
            return False
        if self.filters:
            result: Any = self.filter(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):  # 3.12+: filters may replace records
                record = result
        if type(self).emit is not TelemetryFlowHandler.emit:
            self.emit(record)  # a subclass's own emit
            return True
        _local.busy = True
        try:
            self._emit(record)
        except Exception as exc:  # logging must never raise into the app
            warn_throttled(
                "logging-bridge", "could not forward a log record: %s", type(exc).__name__
            )
        finally:
            _local.busy = False
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if in_sdk() or getattr(_local, "busy", False):
            return
        self._guarded_emit(record)

    def _guarded_emit(self, record: logging.LogRecord) -> None:
        _local.busy = True
        try:
            self._emit(record)
        except Exception as exc:  # logging must never raise into the app
            warn_throttled(
                "logging-bridge", "could not forward a log record: %s", type(exc).__name__
            )
        finally:
            _local.busy = False

    def _emit(self, record: logging.LogRecord) -> None:
        target = self._logger_for(record.name)
        if target is None:
            return
        otel_logger, light = target
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        attributes = to_attributes(extra) if extra else {}
        stack = record.stack_info or None
        exc_info = record.exc_info
        exception = exc_info[1] if isinstance(exc_info, tuple) else None
        severity = _severity(record.levelno)
        timestamp = int(record.created * 1e9)
        observed = time.time_ns()
        body = _body(record)
        site = call_site(record, attributes) if light is not None else None
        if site is not None and light is not None:
            # the light path appends the call site and stack itself, once it takes the record
            if light.emit(timestamp, observed, severity, body, attributes, exception, site, stack):
                return  # the same record Logger.emit would queue (see _light_logs.py)
            attributes.update(zip(SITE_KEYS, site, strict=True))
        else:
            attributes["code.file.path"] = record.pathname
            attributes["code.function.name"] = record.funcName
            attributes["code.line.number"] = record.lineno
            attributes["thread.id"] = record.thread or 0
            attributes["thread.name"] = record.threadName or ""
        if stack is not None:
            attributes["code.stacktrace"] = stack
        if (
            site is None
            and light is not None
            and light.emit(timestamp, observed, severity, body, attributes, exception)
        ):
            return
        otel_logger.emit(
            timestamp=timestamp,
            observed_timestamp=observed,
            severity_number=severity[0],
            severity_text=severity[1],
            body=body,
            attributes=attributes,
            exception=exception,
        )

    def _logger_for(self, name: str) -> tuple[Logger, LightLogs | None] | None:
        """An OpenTelemetry logger whose scope is the ``logging`` logger's name, and
        its light path when it has one.

        Cached per name, and forgotten when the client's provider changes (a forked
        child rebuilds its pipeline); past ``_MAX_SCOPES`` names, the client's own.
        """
        client = self.client
        if client._state != "running":  # is_initialized(), inlined: once per record
            return None
        pipeline = client._pipeline
        provider: LoggerProvider | None = pipeline.logger_provider if pipeline else None
        if provider is None:
            own = client.otel_logger
            return (own, None) if own is not None else None
        if provider is not self._provider:
            self._provider, self._scopes = provider, {}
        found = self._scopes.get(name)
        if found is not None:
            return found
        if len(self._scopes) >= _MAX_SCOPES:
            own = client.otel_logger
            return (own, client._light_logs) if own is not None else None
        scoped: Logger = provider.get_logger(name or "root")
        target = (scoped, light_logs(scoped, _queue_processor_type()))
        self._scopes[name] = target
        return target

    def close(self) -> None:
        """Detach from the logger it was installed on, then close."""
        attached, self._attached = self._attached, None
        if attached is not None:
            attached.removeHandler(self)
        super().close()


def install_handler(
    client: ClientLike,
    level: int | str = logging.NOTSET,
    logger: logging.Logger | str | None = None,
) -> TelemetryFlowHandler:
    """Add (once) a :class:`TelemetryFlowHandler` for ``client`` to ``logger`` (root
    by default) and return it; ``handler.close()`` removes it again."""
    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    for existing in target.handlers:
        if isinstance(existing, TelemetryFlowHandler) and existing.client is client:
            existing.setLevel(level)
            return existing
    handler = TelemetryFlowHandler(client)
    handler.setLevel(level)
    handler._attached = target  # set by its own module
    target.addHandler(handler)
    return handler
