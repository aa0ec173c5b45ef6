"""The caller's trace context from request headers, as the global propagator reads it.

``propagate.extract`` with OpenTelemetry's default propagator (W3C trace context,
then W3C baggage) costs a few microseconds per request, most of it in calls around
the work: a regular expression looked up again through ``re.search``, group by group
reads, a context copied once per propagator. When the global propagator is exactly
that default, :func:`extract` does the same steps directly for the usual requests:
no ``traceparent`` at all, or a ``traceparent`` without ``tracestate`` and without
``baggage``. Anything else (those headers, another propagator, a composite of other
propagators) goes to the global propagator itself, so its semantics are kept.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetryflow._recording.fast_context import with_span

__all__ = ["GENERAL", "extract", "extract_in_general", "remote_parent"]

_DEFAULT = [TraceContextTextMapPropagator, W3CBaggagePropagator]
_PATTERN = TraceContextTextMapPropagator._TRACEPARENT_HEADER_FORMAT_RE
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_known: tuple[Any, Any, bool] = (None, None, False)
"""The global propagator last seen, its propagator list, and whether it is the default."""


def _is_default(propagator: Any) -> bool:
    global _known
    inner = getattr(propagator, "_propagators", None)
    if propagator is _known[0] and inner is _known[1]:
        return _known[2]
    default = (
        type(propagator) is CompositePropagator
        and isinstance(inner, list)
        and [type(p) for p in inner] == _DEFAULT
    )
    _known = (propagator, inner, default)
    return default


GENERAL: Any = object()
"""What :func:`remote_parent` answers when only the global propagator can tell."""


def remote_parent(carrier: Any, getter: Getter[Any]) -> Any:
    """The caller's span context, when extracting would add exactly that span (and
    nothing else) to the context; None when it would add nothing; else :data:`GENERAL`."""
    if not _is_default(propagate.get_global_textmap()):
        return GENERAL
    remote = None
    # What TraceContextTextMapPropagator.extract does ...
    header = getter.get(carrier, "traceparent")
    if header:
        match = _PATTERN.search(header[0])
        if match is not None:
            version, trace_id, span_id, flags, rest = match.groups()
            if not (
                trace_id == _ZERO_TRACE
                or span_id == _ZERO_SPAN
                or (version == "00" and rest)
                or version == "ff"
            ):
                if getter.get(carrier, "tracestate") is not None:
                    return GENERAL
                remote = SpanContext(
                    trace_id=int(trace_id, 16),
                    span_id=int(span_id, 16),
                    is_remote=True,
                    trace_flags=TraceFlags(int(flags, 16)),
                    trace_state=None,
                )
    # ... then W3CBaggagePropagator.extract, which changes nothing without the header.
    if getter.get(carrier, "baggage") is not None:
        return GENERAL
    return remote


def extract(carrier: Any, context: Context, getter: Getter[Any]) -> Context:
    """``propagate.extract(carrier, context=context, getter=getter)``."""
    remote = remote_parent(carrier, getter)
    if remote is GENERAL:
        return extract_in_general(carrier, context, getter)
    return context if remote is None else with_span(NonRecordingSpan(remote), context)


def extract_in_general(carrier: Any, context: Context, getter: Getter[Any]) -> Context:
    """The global propagator's own ``extract``."""
    return propagate.get_global_textmap().extract(carrier, context, getter=getter)
