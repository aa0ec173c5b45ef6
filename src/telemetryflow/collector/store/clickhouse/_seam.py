"""The one seam between our ClickHouse SQL and the engine that runs it.

The same SQL text runs on chDB (ClickHouse's engine inside this process) and on a
ClickHouse server over its HTTP interface. Both sides take query parameters in
ClickHouse's own ``{name:Type}`` syntax, so values are never spliced into SQL, and both
answer in ``JSONCompact`` with 64-bit integers unquoted, decoded by one function: a query
module cannot tell which engine it talks to.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "ChdbConnection",
    "ClickHouseConnection",
    "ServerConnection",
    "chdb_params",
    "client_options",
    "decode_compact",
    "encode_rows",
    "missing_extra",
    "query_settings",
]

Params = Mapping[str, Any]
_log = logging.getLogger("telemetryflow.collector")

# JSON output with plain numbers for UInt64/Int64 (ClickHouse quotes them by default)
_SETTINGS = {"output_format_json_quote_64bit_integers": 0}
_SETTINGS_SQL = " SETTINGS output_format_json_quote_64bit_integers = 0"
_DEADLINE_REFUSED = "Cannot modify 'max_execution_time' setting in readonly mode"


class ClickHouseConnection(Protocol):
    """What the ClickHouse store and its queries need from an engine."""

    def query(self, sql: str, params: Params | None = None) -> list[list[Any]]:
        """Run a SELECT; the rows as lists, values decoded from JSON."""
        ...

    def command(self, sql: str, params: Params | None = None) -> None:
        """Run a statement that answers nothing (DDL, ALTER, TRUNCATE)."""
        ...

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert rows given as column → value (``JSONEachRow``)."""
        ...

    def insert_lines(self, table: str, columns: Sequence[str], data: bytes) -> None:
        """Insert rows already encoded as ``JSONCompactEachRow`` lines of ``columns``."""
        ...

    def warm(self, tables: Sequence[str]) -> None:
        """Load what the first lookups in ``tables`` read besides their rows (best effort)."""
        ...

    def close(self) -> None:
        """Release the engine."""
        ...


def missing_extra(module: str) -> ImportError:
    """The error a user sees when the ClickHouse extra is not installed."""
    return ImportError(
        f"the ClickHouse store needs {module!r}: pip install 'telemetryflow[clickhouse]'"
    )


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_extra(module.split(".")[0]) from exc


def _literal(value: Any) -> str:
    """One value as a ClickHouse literal (strings quoted and escaped)."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(_literal(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ",".join(_literal(item) for item in value) + ")"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def chdb_params(params: Params | None) -> dict[str, Any]:
    """Parameters as chDB takes them: scalars as they are, arrays as literal text.

    The server client formats Python lists (and tuples inside them) itself; chDB
    wants the text of an ``Array(...)`` literal, so the same ``{ids:Array(String)}``
    works on both.
    """
    return {
        name: _literal(list(value)) if isinstance(value, (list, tuple)) else value
        for name, value in (params or {}).items()
    }


def decode_compact(payload: bytes) -> list[list[Any]]:
    """The ``data`` rows of a ``JSONCompact`` answer (empty for an empty answer).

    64-bit (and wider) integers come as numbers when the query could ask for that and as
    strings when it could not (a ``readonly = 1`` user on a server, whose default quotes
    them): the answer's ``meta`` names each column's type, and those columns' strings are
    turned back into integers, inside arrays, tuples, maps and ``Nullable`` alike.
    """
    if not payload.strip():
        return []
    answer = json.loads(payload)
    rows: list[list[Any]] = answer["data"]
    converters = [
        (i, convert)
        for i, column in enumerate(answer.get("meta", ()))
        if (convert := _wide_ints(str(column.get("type", "")))) is not None
    ]
    if converters and rows:
        for row in rows:
            for i, convert in converters:
                row[i] = convert(row[i])
    return rows


_WIDE = re.compile(r"\bU?Int(?:64|128|256)\b")
_NAMED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]* (?=[A-Z])")
"""A named tuple element's name (``Tuple(a UInt64)``): a word, a space, then its type."""


def _wide_ints(type_name: str) -> Callable[[Any], Any] | None:
    """What turns a value of ``type_name`` with quoted wide integers into plain ones
    (``None``: the type holds none)."""
    t = _NAMED.sub("", type_name.strip())
    if not _WIDE.search(t):
        return None
    for wrapper in ("Nullable(", "LowCardinality("):
        if t.startswith(wrapper):
            return _wide_ints(t[len(wrapper) : -1])
    if t.startswith("Array("):
        item = _wide_ints(t[6:-1])
        assert item is not None
        return lambda v: v if v is None else [item(x) for x in v]
    if t.startswith("Tuple("):
        args = _type_args(t[6:-1])
        parts = [_wide_ints(arg) or _same for arg in args]
        names = [m.group(0)[:-1] if (m := _NAMED.match(arg)) else "" for arg in args]
        by_name = dict(zip(names, parts, strict=True))

        def tuple_of(v: Any) -> Any:  # a named tuple comes as an object
            if isinstance(v, dict):
                return {k: by_name.get(k, _same)(x) for k, x in v.items()}
            return v if v is None else [f(x) for f, x in zip(parts, v, strict=False)]

        return tuple_of
    if t.startswith("Map("):
        value = _wide_ints(_type_args(t[4:-1])[1]) or _same
        return lambda v: v if v is None else {k: value(x) for k, x in v.items()}
    return lambda v: int(v) if isinstance(v, str) else v


def _same(value: Any) -> Any:
    return value


def _type_args(inner: str) -> list[str]:
    """The top-level, comma-separated arguments of a type (``Map(K, V)`` → ``[K, V]``)."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, char in enumerate(inner):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and char == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return parts


def encode_rows(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """Rows as ``JSONEachRow`` bytes: one JSON object per line."""
    return b"".join(
        json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for row in rows
    )


class ChdbConnection:
    """chDB, ClickHouse's engine embedded in this process, over a data directory.

    chDB runs one session per process; calls are serialized by a lock so threads of
    the collector can share it.
    """

    def __init__(self, path: str, max_execution_time: float = 0.0) -> None:
        self.path = path
        """The data directory (chDB serves one per process)."""
        session = _import("chdb.session")
        self._session = session.Session(path)
        self._lock = threading.Lock()
        self._settings = _SETTINGS_SQL + (
            f", max_execution_time = {max_execution_time:g}" if max_execution_time > 0 else ""
        )

    def query(self, sql: str, params: Params | None = None) -> list[list[Any]]:
        with self._lock:
            try:
                result = self._session.query(
                    sql + self._settings, "JSONCompact", params=chdb_params(params)
                )
            except Exception as exc:  # chDB raises its own error type
                if self._settings == _SETTINGS_SQL or _DEADLINE_REFUSED not in str(exc):
                    raise
                # a read-only session may set nothing: run without the engine's deadline
                self._settings = _SETTINGS_SQL
                result = self._session.query(
                    sql + self._settings, "JSONCompact", params=chdb_params(params)
                )
        return decode_compact(result.bytes())

    def command(self, sql: str, params: Params | None = None) -> None:
        with self._lock:
            self._session.query(sql, "CSV", params=chdb_params(params))

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        data = encode_rows(rows)
        if not data:
            return
        with self._lock:
            self._session.query(f"INSERT INTO {table} FORMAT JSONEachRow\n" + data.decode())

    def insert_lines(self, table: str, columns: Sequence[str], data: bytes) -> None:
        if not data:
            return
        names = ", ".join(f"`{name}`" for name in columns)
        with self._lock:
            self._session.query(
                f"INSERT INTO {table} ({names}) FORMAT JSONCompactEachRow\n" + data.decode()
            )

    def warm(self, tables: Sequence[str]) -> None:
        """Load the tables' marks (where each granule of each column starts) into the
        engine's cache. A lookup by trace id reads a few granules of one part per day;
        in a process that has not read that part yet, loading its marks is most of the
        lookup's time. A server keeps them across queries; here, the engine is as new as
        the collector. About 30 ms for ten million spans."""
        for table in tables:
            try:
                with self._lock:
                    self._session.query(f"SYSTEM PREWARM MARK CACHE {table}", "CSV")
            except Exception as error:  # an engine without the command: lookups read them
                _log.debug("could not warm %s: %s", table, type(error).__name__)

    def close(self) -> None:
        with self._lock:
            self._session.close()


def client_options(
    host: str, port: int, username: str, password: str, database: str, secure: bool
) -> dict[str, Any]:
    """The ``clickhouse_connect.get_client`` arguments of a server store.

    No session: the writer thread and the query threads share one client, and ClickHouse
    runs one request at a time per session (``SESSION_IS_LOCKED`` for the others), so
    the client's generated session id is turned off. The deadline is not among these:
    it is sent with each query (:func:`query_settings`), once the server says whether
    this user may set it.
    """
    return {
        "host": host,
        "port": port,
        "username": username,
        "password": password,
        "database": database,
        "secure": secure,
        "autogenerate_session_id": False,
    }


def query_settings(max_execution_time: float, settable: bool) -> dict[str, Any]:
    """The settings sent with every query: plain 64-bit integers, and the deadline.

    A ``readonly = 1`` user may change no setting, not even to its current value: it is
    sent none (rather than having every query refused). Its answers then quote 64-bit
    integers, as a server does by default, and :func:`decode_compact` reads them back;
    the user's own server limits bound its queries, and the query gate still caps how
    many run at once.
    """
    if not settable:
        return {}
    settings: dict[str, Any] = dict(_SETTINGS)
    if max_execution_time > 0:
        settings["max_execution_time"] = max_execution_time
    return settings


class ServerConnection:
    """A ClickHouse server over its HTTP interface (``clickhouse-connect``), sessionless."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        database: str,
        secure: bool = False,
        max_execution_time: float = 0.0,
    ) -> None:
        driver = _import("clickhouse_connect")
        self._client = driver.get_client(
            **client_options(host, port, username, password, database, secure)
        )
        known = getattr(self._client, "server_settings", {}).get("max_execution_time")
        settable = known is None or not getattr(known, "readonly", 0)
        self._settings = query_settings(max_execution_time, settable)

    def query(self, sql: str, params: Params | None = None) -> list[list[Any]]:
        payload = self._client.raw_query(
            sql, parameters=dict(params or {}), settings=self._settings, fmt="JSONCompact"
        )
        return decode_compact(payload)

    def command(self, sql: str, params: Params | None = None) -> None:
        self._client.command(sql, parameters=dict(params or {}))

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        data = encode_rows(rows)
        if data:
            self._client.raw_insert(table, insert_block=data, fmt="JSONEachRow")

    def insert_lines(self, table: str, columns: Sequence[str], data: bytes) -> None:
        if data:
            self._client.raw_insert(
                table, column_names=list(columns), insert_block=data, fmt="JSONCompactEachRow"
            )

    def warm(self, tables: Sequence[str]) -> None:
        """Nothing: a server's caches outlive this collector and serve every client, and
        warming them from here would load the marks of tables the size of a cluster's."""

    def close(self) -> None:
        self._client.close()
