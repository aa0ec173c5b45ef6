"""How the middlewares name, normalise and redact what a request carries.

Span names, normalised methods and schemes, host and port, redacted query strings
and URLs, captured headers (secrets never recorded, URLs in them cleaned), excluded
paths, and the validated :class:`MiddlewareOptions`: the pure rules, with no
OpenTelemetry object in sight. :mod:`telemetryflow.middleware._http_common` turns
them into spans and metric points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from telemetryflow._recording.attributes import MAX_VALUE_LENGTH
from telemetryflow._scrubbing.rules import REDACTED, is_sensitive_key, is_sensitive_param, scrub_url

__all__ = [
    "KNOWN_METHODS",
    "OTHER",
    "MiddlewareOptions",
    "PathMatcher",
    "clip",
    "error_type",
    "header_attribute",
    "is_secret_header",
    "normalize_method",
    "normalize_scheme",
    "redact_query",
    "sanitize_url",
    "span_name",
    "split_host",
]

KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
OTHER = "_OTHER"
_SCHEMES = frozenset(("http", "https"))

# Headers never recorded even if their names pass the core's key rules.
_SECRET_HEADERS = frozenset(("cookie", "set-cookie", "proxy-authorization", "x-api-key"))
# Captured headers that carry URLs: they lose user-info and sensitive query values.
_URL_HEADERS = frozenset(("referer", "location", "content-location", "origin"))


# -- normalisation ------------------------------------------------------------------
def normalize_method(method: str) -> str:
    """The method as the conventions record it: case-sensitive, unknown ones ``_OTHER``."""
    return method if method in KNOWN_METHODS else OTHER


def normalize_scheme(scheme: str) -> str:
    return scheme if scheme in _SCHEMES else OTHER


def span_name(method: str, route: str | None) -> str:
    """``"{method} {route}"``; ``HTTP`` stands in for an unknown method."""
    label = "HTTP" if method == OTHER else method
    return f"{label} {route}" if route else label


def error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


def clip(text: str) -> str:
    return text if len(text) <= MAX_VALUE_LENGTH else text[:MAX_VALUE_LENGTH]


def split_host(host: str) -> tuple[str, int | None]:
    """``(address, port)`` from a ``Host`` header, dropping any user-info."""
    host = host.rpartition("@")[2].strip()
    if host.startswith("["):  # [IPv6]:port
        address, _, rest = host[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        address, sep, port_text = host.rpartition(":")
        if not sep:
            address, port_text = host, ""
    port = int(port_text) if port_text.isdigit() and len(port_text) <= 5 else None
    if port is not None and port > 65535:
        port = None
    return clip(address), port


# -- redaction ----------------------------------------------------------------------
def _secret_param(name: str, extra: frozenset[str]) -> bool:
    plain = unquote_plus(name) if "%" in name or "+" in name else name
    return plain.lower() in extra or is_sensitive_param(plain)


def redact_query(query: str, extra: frozenset[str] = frozenset()) -> str:
    """``query`` with sensitive values (the core's rules, plus ``extra`` names) replaced
    by ``[REDACTED]``; recording it redacted means no secret is held in memory either."""
    if not query or "=" not in query:
        return clip(query)
    parts = []
    for item in query.split("&"):
        name, sep, value = item.partition("=")
        secret = sep and value and _secret_param(name, extra)
        parts.append(f"{name}={REDACTED}" if secret else item)
    return clip("&".join(parts))


def sanitize_url(url: str, extra: frozenset[str] = frozenset()) -> str:
    """``url`` without user-info and with sensitive query values redacted."""
    cleaned = scrub_url(url)
    if extra and "?" in cleaned:
        head, _, tail = cleaned.partition("?")
        query, hash_sign, fragment = tail.partition("#")
        cleaned = f"{head}?{redact_query(query, extra)}{hash_sign}{fragment}"
    return clip(cleaned)


def is_secret_header(name: str) -> bool:
    """True for headers whose values must never be recorded (``Authorization``,
    cookies, API keys, anything the core's key rules call sensitive)."""
    return name.lower() in _SECRET_HEADERS or is_sensitive_key(name)


def _header_names(names: Iterable[str] | None, kind: str) -> dict[str, str]:
    if names is None:
        return {}
    if isinstance(names, str):
        raise TypeError(f"capture_{kind}_headers must be a list of header names, not a string")
    found: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip() or any(c in name for c in " \t\r\n:\x00"):
            raise ValueError(f"capture_{kind}_headers: {name!r} is not a header name")
        lowered = name.strip().lower()
        found[lowered] = f"http.{kind}.header.{lowered}"
    return found


def header_attribute(name: str, values: list[str], extra: frozenset[str]) -> list[str]:
    """The recorded value of a captured header (``name`` lower-cased)."""
    if is_secret_header(name):
        return [REDACTED]
    if name in _URL_HEADERS:
        return [sanitize_url(v, extra) for v in values]
    return [clip(v) for v in values]


# -- configuration ------------------------------------------------------------------
class PathMatcher:
    """Exact paths and ``prefix*`` patterns, checked in one set lookup and one
    ``str.startswith`` call so excluded traffic costs next to nothing."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, patterns: Iterable[str] | None) -> None:
        if isinstance(patterns, str):
            raise TypeError("excluded_paths must be a list of paths, not a string")
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in patterns or ():
            if not isinstance(pattern, str) or not pattern.startswith(("/", "*")):
                raise ValueError(f"excluded_paths: {pattern!r} must start with '/'")
            if "*" in pattern[:-1]:
                raise ValueError(
                    f"excluded_paths: {pattern!r}: '*' is only allowed at the "
                    "end, as a prefix pattern such as '/static/*'"
                )
            if pattern.endswith("*"):
                prefixes.append(pattern[:-1])
            else:
                exact.add(pattern)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __call__(self, path: str) -> bool:
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))


@dataclass(frozen=True)
class MiddlewareOptions:
    """What a middleware records; validated when the middleware is constructed."""

    record_duration: bool
    record_count: bool
    record_errors: bool
    excluded: PathMatcher
    request_headers: Mapping[str, str]
    """Lower-cased header name -> ``http.request.header.<name>``."""
    response_headers: Mapping[str, str]
    redact_params: frozenset[str]
    """Extra query parameter names (lower-cased) whose values are redacted."""

    @classmethod
    def build(
        cls,
        *,
        record_request_duration: bool,
        record_request_count: bool,
        record_error_count: bool,
        excluded_paths: Iterable[str] | None,
        capture_request_headers: Iterable[str] | None,
        capture_response_headers: Iterable[str] | None,
        redact_query_params: Iterable[str] | None,
    ) -> MiddlewareOptions:
        """Validate constructor arguments; raises ``TypeError``/``ValueError``."""
        if isinstance(redact_query_params, str):
            raise TypeError("redact_query_params must be a list of names, not a string")
        return cls(
            record_duration=bool(record_request_duration),
            record_count=bool(record_request_count),
            record_errors=bool(record_error_count),
            excluded=PathMatcher(excluded_paths),
            request_headers=_header_names(capture_request_headers, "request"),
            response_headers=_header_names(capture_response_headers, "response"),
            redact_params=frozenset(str(p).lower() for p in redact_query_params or ()),
        )
