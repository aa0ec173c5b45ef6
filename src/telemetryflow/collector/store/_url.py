"""The store URL: ``sqlite:///file.db``, ``chdb:///dir``, ``clickhouse://user:pw@host:8123/db``.

Query parameters name the exporter's tables when they differ from its defaults
(``traces_table``, ``logs_table``, ``gauge_table``, ...), the database of a chDB store
(``database``, default ``otel``; a server's is the URL's path), the default project of rows
the exporter wrote (``default_project``), and TLS (``secure=1``, or the
``clickhouses://`` scheme). The password is kept apart from everything printable:
:meth:`StoreURL.masked` and ``repr`` show ``***`` in its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from telemetryflow.collector.store.clickhouse._tables import Tables

__all__ = ["StoreURL", "StoreURLError", "parse_store_url"]

_TABLE_PARAMS = {
    "traces_table": "traces", "logs_table": "logs", "gauge_table": "gauge",
    "sum_table": "sum", "histogram_table": "histogram",
    "exponential_histogram_table": "exponential_histogram", "summary_table": "summary",
}  # fmt: skip
_CH_PARAMS = (*_TABLE_PARAMS, "default_project", "secure", "database")
_SCHEMES = ("sqlite", "chdb", "clickhouse", "clickhouses")


class StoreURLError(ValueError):
    """A store URL this collector cannot use; the message names what is wrong."""


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``kind`` is ``sqlite``, ``chdb`` or ``clickhouse``."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 8123
    username: str = "default"
    password: str = field(default="", repr=False)
    secure: bool = False
    tables: Tables = field(default_factory=Tables)

    def masked(self) -> str:
        """The URL to print: never the password."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path.lstrip('/')}" if self.path else "sqlite://"
        if self.kind == "chdb":
            database = self.tables.database
            return f"chdb://{self.path}" + ("" if database == "otel" else f"?database={database}")
        scheme = "clickhouses" if self.secure else "clickhouse"
        secret = ":***" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{self.username}{secret}@{host}:{self.port}/{self.tables.database}"

    def __str__(self) -> str:
        return self.masked()


def _tables(query: dict[str, str], database: str) -> Tables:
    fields = {_TABLE_PARAMS[k]: v for k, v in query.items() if k in _TABLE_PARAMS}
    if "default_project" in query:
        fields["default_project"] = query["default_project"]
    try:
        return Tables(database=database or "otel", **fields)
    except ValueError as exc:
        raise StoreURLError(str(exc)) from None


def parse_store_url(text: str) -> StoreURL:
    """Parse ``text``; :class:`StoreURLError` (never showing the password) when unusable."""
    scheme, sep, _ = text.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise StoreURLError(
            "the store must be sqlite:///path/to/file.db, chdb:///path/to/dir or "
            "clickhouse://user:password@host:8123/database"
        )
    scheme = scheme.lower()
    parts = urlsplit(text)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path.strip("/"):
            raise StoreURLError("a sqlite store is sqlite:///path/to/file.db")
        return StoreURL("sqlite", path=path[1:] if path.startswith("//") else path)
    unknown = sorted(set(query) - set(_CH_PARAMS))
    if unknown:
        raise StoreURLError(f"unknown store URL parameter(s): {', '.join(unknown)}")
    if scheme == "chdb":
        path = unquote(parts.path)
        if parts.netloc or not path.strip("/"):
            raise StoreURLError("a chDB store is chdb:///path/to/directory")
        return StoreURL("chdb", path=path, tables=_tables(query, query.get("database", "")))
    return _server(parts, query, secure=scheme == "clickhouses")


def _server(split: SplitResult, query: dict[str, str], secure: bool) -> StoreURL:
    try:
        port = split.port or 8123
    except ValueError:
        raise StoreURLError("the ClickHouse port must be a number from 1 to 65535") from None
    host = split.hostname or ""
    if not host:
        raise StoreURLError("a ClickHouse store needs a host: clickhouse://user:pw@host:8123/db")
    database = unquote(split.path.strip("/")) or query.get("database", "")
    secure = secure or query.get("secure", "").lower() in ("1", "true", "yes")
    return StoreURL(
        "clickhouse",
        host=host,
        port=port,
        username=unquote(split.username or "default"),
        password=unquote(split.password or ""),
        secure=secure,
        tables=_tables(query, database),
    )
