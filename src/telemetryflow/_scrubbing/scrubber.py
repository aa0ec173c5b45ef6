"""Scrubbing of secret-looking telemetry content before it leaves the process.

Applied to each encoded OTLP export request (spans, span events and links, logs,
metric points and exemplars, resources), so it also covers third-party
instrumentation that shares the providers. It runs on the export thread, never on
the thread that records.

Order, per attribute: ``safe_keys`` skip the built-in rules; a sensitive key (see
:mod:`telemetryflow._scrubbing.rules`) has its whole value replaced by ``[REDACTED]``
(booleans excepted: they cannot carry a secret); any other string goes through the
value rules; then the user's callback, if any, sees the result and may replace it.
Scrubbing fails closed: if a value cannot be processed it is replaced, not sent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._recording.diagnostics import warn_throttled
from telemetryflow._scrubbing.rules import (
    QUERY_KEYS,
    REDACTED,
    URL_KEYS,
    is_card_number,
    is_sensitive_key,
    scrub_query,
    scrub_text,
    scrub_url,
)

__all__ = ["REDACTED", "Scrubber", "make_scrubber", "scrub_text"]

IDENTITY_KEYS = frozenset(
    {
        "service.name", "service.version", "service.namespace", "service.instance.id",
        "deployment.environment", "deployment.environment.name",
        "telemetry.sdk.name", "telemetry.sdk.version", "telemetry.sdk.language",
        "telemetryflow.collector.id",
    }
)  # fmt: skip
"""Resource keys that identify the service; never touched, so data stays findable."""

LOG_BODY_KEY = "log.body"
"""The key the callback sees for a log record's string body."""

_MAX_DEPTH = 16
_CACHE_LIMIT = 4096
_CACHE_VALUE_LENGTH = 256
_INT64 = (-(2**63), 2**63 - 1)


class _Kind(enum.Enum):
    PLAIN = 0
    SENSITIVE = 1
    SAFE = 2
    URL = 3
    QUERY = 4


class Scrubber:
    """Edits OTLP export requests in place. One per client; used by one thread at a
    time per signal, and its caches tolerate concurrent use (dict operations only)."""

    def __init__(
        self,
        safe_keys: Iterable[str] = (),
        callback: Callable[[str, Any], Any] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self._safe = frozenset(key.lower() for key in safe_keys)
        self._callback = callback
        self._secrets = tuple(s for s in secrets if s)
        self._kinds: dict[str, _Kind] = {}
        self._clean: set[str] = set()

    # -- decisions -------------------------------------------------------------------
    def kind(self, key: str) -> _Kind:
        """How values under ``key`` are treated; cached per key."""
        found = self._kinds.get(key)
        if found is not None:
            return found
        lowered = key.lower()
        if lowered in self._safe:
            found = _Kind.SAFE
        elif is_sensitive_key(key):
            found = _Kind.SENSITIVE
        elif lowered in URL_KEYS:
            found = _Kind.URL
        elif lowered in QUERY_KEYS:
            found = _Kind.QUERY
        else:
            found = _Kind.PLAIN
        if len(self._kinds) >= _CACHE_LIMIT:
            self._kinds.clear()  # unbounded key sets (ids in keys) must not grow memory
        self._kinds[key] = found
        return found

    def text(self, value: str, kind: _Kind = _Kind.PLAIN) -> str:
        """``value`` scrubbed by the value rules (and URL rules for URL keys)."""
        if kind is _Kind.PLAIN and value in self._clean:
            return value
        out = value
        for secret in self._secrets:
            if secret in out:
                out = out.replace(secret, REDACTED)
        if kind is _Kind.URL:
            out = scrub_url(out)
        elif kind is _Kind.QUERY:
            out = scrub_query(out)
        out = scrub_text(out)
        if out == value:
            if kind is _Kind.PLAIN and len(value) <= _CACHE_VALUE_LENGTH:
                if len(self._clean) >= _CACHE_LIMIT:
                    self._clean.clear()
                self._clean.add(value)  # only innocent values are remembered
            return value
        return out

    # -- OTLP requests ---------------------------------------------------------------
    def __call__(self, signal: str, request: Any) -> None:
        """Scrub one ``Export{Trace,Logs,Metrics}ServiceRequest`` in place."""
        if signal == "traces":
            self._traces(request)
        elif signal == "logs":
            self._logs(request)
        elif signal == "metrics":
            self._metrics(request)

    def _resource_and_scope(self, block: Any, scopes: Iterable[Any]) -> None:
        self.attributes(block.resource.attributes, resource=True)
        for scoped in scopes:
            self.attributes(scoped.scope.attributes)

    def _traces(self, request: Any) -> None:
        for block in request.resource_spans:
            self._resource_and_scope(block, block.scope_spans)
            for scoped in block.scope_spans:
                for span in scoped.spans:
                    self.attributes(span.attributes)
                    for event in span.events:
                        self.attributes(event.attributes)
                    for link in span.links:
                        self.attributes(link.attributes)
                    if span.status.message:
                        self._status(span.status)

    def _status(self, status: Any) -> None:
        original = status.message
        try:
            message = self.text(original)
        except Exception:
            message = REDACTED
        if message is not original:
            status.message = message

    def _logs(self, request: Any) -> None:
        for block in request.resource_logs:
            self._resource_and_scope(block, block.scope_logs)
            for scoped in block.scope_logs:
                for record in scoped.log_records:
                    self.attributes(record.attributes)
                    if record.HasField("body"):
                        self._body(record)

    def _body(self, record: Any) -> None:
        body = record.body
        kind = body.WhichOneof("value")
        if kind == "kvlist_value":
            self.attributes(body.kvlist_value.values)
        elif kind in ("string_value", "array_value"):
            self._value(_Kind.PLAIN, body, 0)
        callback_drops = (
            kind == "string_value"
            and self._callback is not None
            and not self._call(LOG_BODY_KEY, body)
        )
        if callback_drops:
            record.ClearField("body")

    def _metrics(self, request: Any) -> None:
        for block in request.resource_metrics:
            self._resource_and_scope(block, block.scope_metrics)
            for scoped in block.scope_metrics:
                for metric in scoped.metrics:
                    data = metric.WhichOneof("data")
                    if data is None:
                        continue
                    for point in getattr(metric, data).data_points:
                        self.attributes(point.attributes)
                        for exemplar in getattr(point, "exemplars", ()):
                            self.attributes(exemplar.filtered_attributes)

    # -- attributes ------------------------------------------------------------------
    def attributes(self, attributes: Any, *, resource: bool = False, depth: int = 0) -> None:
        """Scrub a repeated ``KeyValue`` field in place (and drop what the callback drops)."""
        dropped: list[int] = []
        for index, item in enumerate(attributes):
            key = item.key
            if resource and key in IDENTITY_KEYS:
                continue
            try:
                self._value(self.kind(key), item.value, depth)
            except Exception:  # fail closed: an unprocessable value is not sent
                item.value.Clear()
                item.value.string_value = REDACTED
            if depth == 0 and self._callback is not None and not self._call(key, item.value):
                dropped.append(index)
        for index in reversed(dropped):
            del attributes[index]

    def _value(self, kind: _Kind, value: Any, depth: int) -> None:
        which = value.WhichOneof("value")
        if which is None or which == "bool_value" or kind is _Kind.SAFE:
            return
        if kind is _Kind.SENSITIVE:
            if which == "array_value":
                # Keep the shape (header attributes are lists): redact each element.
                for item in value.array_value.values:
                    if item.WhichOneof("value") not in (None, "bool_value"):
                        item.string_value = REDACTED
            elif which != "string_value" or value.string_value not in ("", REDACTED):
                value.string_value = REDACTED  # also clears any other oneof member
            return
        if which == "string_value":
            text = value.string_value
            scrubbed = self.text(text, kind)
            if scrubbed is not text:
                value.string_value = scrubbed
        elif which == "int_value":
            number = value.int_value
            if number >= 10**12 and is_card_number(str(number)):
                value.string_value = REDACTED
        elif which == "array_value":
            if depth >= _MAX_DEPTH:
                value.string_value = REDACTED
                return
            for item in value.array_value.values:
                self._value(kind, item, depth + 1)
        elif which == "kvlist_value":
            if depth >= _MAX_DEPTH:
                value.string_value = REDACTED
                return
            self.attributes(value.kvlist_value.values, depth=depth + 1)

    # -- Python values, for the direct encoder ------------------------------------------
    def scrub_value(self, kind: _Kind, value: Any, depth: int) -> Any:
        """``value`` (a Python attribute value) after the rules :meth:`_value` applies to
        its protobuf form; the same object when untouched. The direct encoder scrubs
        values this way before it encodes them, so both paths send the same bytes."""
        if value is None or isinstance(value, bool) or kind is _Kind.SAFE:
            return value
        if kind is _Kind.SENSITIVE:
            if isinstance(value, str):
                return value if value in ("", REDACTED) else REDACTED
            if isinstance(value, (int, float, bytes)) or not isinstance(value, Sequence):
                return REDACTED
            # an array keeps its shape: each element but empty ones and booleans redacted
            return [v if v is None or isinstance(v, bool) else REDACTED for v in value]
        if isinstance(value, str):
            return self.text(value, kind)
        if isinstance(value, int):
            if value >= 10**12 and is_card_number(str(int(value))):
                return REDACTED
            return value
        if isinstance(value, (float, bytes)):
            return value
        if isinstance(value, Sequence):
            if depth >= _MAX_DEPTH:
                return REDACTED
            items = [self.scrub_value(kind, item, depth + 1) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return items
        if isinstance(value, Mapping):
            if depth >= _MAX_DEPTH:
                return REDACTED
            return self.scrub_mapping(value, depth + 1)
        return value

    def scrub_mapping(self, mapping: Mapping[Any, Any], depth: int) -> Any:
        """A mapping value (or log body) scrubbed key by key; the same object when untouched."""
        out: dict[str, Any] = {}
        changed = False
        for key, value in mapping.items():
            name = str(key)
            try:
                new = self.scrub_value(self.kind(name), value, depth)
            except Exception:
                new = REDACTED
            changed = changed or new is not value or name is not key
            out[name] = new
        return out if changed else mapping

    # -- the user's callback ---------------------------------------------------------
    def _call(self, key: str, value: Any) -> bool:
        """Run the callback on one value; False when it asks to drop it (``None``)."""
        callback = self._callback
        assert callback is not None
        try:
            before = to_python(value)
            after = callback(key, before)
            if after is None:
                return False
            if after is not before and after != before:
                set_any_value(value, after)
        except Exception as exc:
            warn_throttled(
                "scrub-callback",
                "the scrub callback failed for key %r (%s); sent the built-in result",
                key[:64],
                type(exc).__name__,
            )
        return True


def to_python(value: Any) -> Any:
    """An OTLP ``AnyValue`` as a plain Python value (lists and dicts for arrays, kvlists)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [to_python(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: to_python(item.value) for item in value.kvlist_value.values}
    return getattr(value, which)


def set_any_value(target: Any, value: Any, depth: int = 0) -> None:
    """Store a Python value into an OTLP ``AnyValue``; unknown types become ``str()``."""
    target.Clear()
    if depth > _MAX_DEPTH:
        target.string_value = REDACTED
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, (bytes, bytearray)):
        target.bytes_value = bytes(value)
    elif isinstance(value, (list, tuple)):
        array = target.array_value
        for item in value:
            set_any_value(array.values.add(), item, depth + 1)
    elif isinstance(value, dict):
        kvlist = target.kvlist_value
        for key, item in value.items():
            set_any_value(kvlist.values.add(key=str(key)).value, item, depth + 1)
    else:
        target.string_value = str(value)


def make_scrubber(config: TelemetryConfig) -> Callable[[str, Any], None] | None:
    """A function ``scrub(signal, request)`` that edits an export request in place,
    or None when scrubbing is off."""
    if not config.scrub_enabled:
        return None
    return Scrubber(
        safe_keys=config.scrub_safe_keys,
        callback=config.scrub_callback,
        secrets=(config.credentials.key_secret,),
    )
