"""The current OpenTelemetry context, read and switched with fewer calls.

OpenTelemetry keeps the current context in one ``ContextVar`` of its runtime context;
``get_current``, ``attach`` and ``detach`` reach it through two calls each, and
``set_span_in_context`` and ``get_current_span`` through three. Every tracked call and
every request does several of these. When the runtime context is the standard
``ContextVarsRuntimeContext`` (the default; ``OTEL_PYTHON_CONTEXT`` can choose
another), the functions here use its variable directly: the same contexts, the same
tokens (either side can detach what the other attached), the same failure logged
when a token cannot be reset. With any other runtime context they are the API's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import context as _api
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Span
from opentelemetry.trace.propagation import _SPAN_KEY

__all__ = ["SPAN_KEY", "attach", "detach", "get_current", "native", "with_span"]

SPAN_KEY = _SPAN_KEY
"""The context key OpenTelemetry keeps the current span under."""

_runtime = getattr(_api, "_RUNTIME_CONTEXT", None)
_var = getattr(_runtime, "_current_context", None)
native = type(_runtime) is ContextVarsRuntimeContext and _var is not None
"""Whether the shortcuts are in use (tests compare both paths)."""

get_current: Callable[[], Context]
attach: Callable[[Context], Any]

if native:
    get_current = _var.get  # type: ignore[union-attr]
    attach = _var.set  # type: ignore[union-attr]
    _reset = _var.reset  # type: ignore[union-attr]

    def detach(token: Any) -> None:
        """``context.detach``: reset the variable; if that fails, OpenTelemetry's own
        call fails the same way and logs it as it always does."""
        try:
            _reset(token)
        except Exception:
            _api.detach(token)

else:
    get_current = _api.get_current
    attach = _api.attach

    def detach(token: Any) -> None:
        _api.detach(token)


def with_span(span: Span, context: Context) -> Context:
    """``trace.set_span_in_context(span, context)``: a copy of ``context`` with ``span``."""
    values = dict(context)
    values[_SPAN_KEY] = span
    return Context(values)
