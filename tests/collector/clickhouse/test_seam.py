"""The seam between our SQL and the engine: decoding, encoding, parameters, the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from telemetryflow.collector.store.clickhouse._seam import (
    ChdbConnection,
    chdb_params,
    client_options,
    decode_compact,
    encode_rows,
    missing_extra,
    query_settings,
)


def test_decode_compact_reads_data_rows_and_plain_64_bit_integers() -> None:
    payload = (
        b'{"meta":[{"name":"n","type":"UInt64"}],"data":[[18446744073709551615,"x"]],"rows":1}'
    )
    assert decode_compact(payload) == [[18446744073709551615, "x"]]
    assert decode_compact(b"") == []
    assert decode_compact(b"  \n") == []


def test_encode_rows_is_one_json_object_per_line_unicode_kept() -> None:
    data = encode_rows([{"a": "é", "m": {"k": "v"}}, {"a": "x\ny", "m": {}}])
    assert data == b'{"a":"\xc3\xa9","m":{"k":"v"}}\n{"a":"x\\ny","m":{}}\n'
    assert encode_rows([]) == b""


def test_chdb_params_turn_lists_into_escaped_literals() -> None:
    params = chdb_params({"ids": ["a", "o'k", "b\\c"], "pairs": [("p", "k")], "n": 5, "s": "it's"})
    assert params == {
        "ids": "['a','o\\'k','b\\\\c']",
        "pairs": "[('p','k')]",
        "n": 5,
        "s": "it's",
    }
    assert chdb_params(None) == {}


def test_missing_extra_names_the_install_command() -> None:
    message = str(missing_extra("chdb"))
    assert "pip install 'telemetryflow[clickhouse]'" in message
    assert "'chdb'" in message


def test_chdb_round_trip_with_parameters(ch: ChdbConnection, database: str) -> None:
    ch.command(f"CREATE DATABASE `{database}`")
    table = f"`{database}`.`t`"
    ch.command(
        f"CREATE TABLE {table} (s String, n UInt64, m Map(LowCardinality(String), String)) "
        "ENGINE = MergeTree ORDER BY s"
    )
    tricky = "quote ' backslash \\ percent % {brace:String}"
    ch.insert(table, [{"s": tricky, "n": 2**64 - 1, "m": {"k": "v"}}, {"s": "b", "n": 1, "m": {}}])
    rows = ch.query(
        f"SELECT s, n, m FROM {table} WHERE s IN {{ids:Array(String)}} OR n = {{n:UInt64}} "
        "ORDER BY s",
        {"ids": [tricky], "n": 1},
    )
    assert rows == [["b", 1, {}], [tricky, 2**64 - 1, {"k": "v"}]]
    assert ch.query(f"SELECT s FROM {table} WHERE s = {{s:String}}", {"s": tricky}) == [[tricky]]
    ch.insert_lines(table, ("n", "s"), b'[7,"from lines \\u00e9"]\n[8,"x"]\n')
    rows = ch.query(f"SELECT s FROM {table} WHERE n IN (7, 8) ORDER BY n")
    assert rows == [["from lines \u00e9"], ["x"]]


def test_missing_module_raises_the_extra_message() -> None:
    code = (
        "import sys; sys.modules['chdb'] = None; sys.modules['chdb.session'] = None\n"
        "from telemetryflow.collector.store.clickhouse._seam import ChdbConnection\n"
        "try:\n    ChdbConnection('/nonexistent')\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'telemetryflow[clickhouse]'" in out.stdout


@pytest.mark.parametrize("module", ["clickhouse_connect"])
def test_missing_server_driver_raises_the_extra_message(module: str) -> None:
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from telemetryflow.collector.store.clickhouse._seam import ServerConnection\n"
        "try:\n    ServerConnection('127.0.0.1', 1, 'u', 'secret-pw', 'otel')\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'telemetryflow[clickhouse]'" in out.stdout
    assert "secret-pw" not in out.stdout + out.stderr


def test_the_server_client_shares_no_session_between_threads() -> None:
    """The writer and the query threads share one client: a session would lock them out
    of each other (SESSION_IS_LOCKED), so none is generated."""
    options = client_options("127.0.0.1", 8123, "reader", "pw", "otel", False)
    assert options["autogenerate_session_id"] is False
    assert "session_id" not in options
    assert {k: options[k] for k in ("host", "port", "username", "database", "secure")} == {
        "host": "127.0.0.1", "port": 8123, "username": "reader", "database": "otel",
        "secure": False,
    }  # fmt: skip


def test_the_server_client_options_are_accepted_by_clickhouse_connect() -> None:
    """Every option is a parameter ``get_client`` knows (a typo would be a TypeError late)."""
    import inspect

    import clickhouse_connect.driver as driver
    from clickhouse_connect.driver.httpclient import HttpClient

    known = set(inspect.signature(driver.create_client).parameters)
    known |= set(inspect.signature(HttpClient.__init__).parameters)
    assert set(client_options("h", 1, "u", "p", "d", True)) <= known


def test_query_settings_leave_the_deadline_out_when_the_user_may_not_set_it() -> None:
    assert query_settings(30.0, True) == {
        "output_format_json_quote_64bit_integers": 0, "max_execution_time": 30.0,
    }  # fmt: skip
    assert query_settings(30.0, False) == {}  # readonly = 1: not even the JSON setting
    assert query_settings(0.0, True) == {"output_format_json_quote_64bit_integers": 0}


_WIDE_VALUES = (
    "SELECT toUInt64(18446744073709551615) AS u, toInt64(-5) AS i, [toUInt64(1), 2] AS a, "
    "CAST(NULL AS Nullable(UInt64)) AS n, toNullable(toInt64(7)) AS n7, "
    "tuple(toUInt64(2), 'x') AS t, CAST((3, 4) AS Tuple(a UInt64, b Int32)) AS nt, "
    "map('k', toUInt64(9)) AS m, [map('k', [toInt64(-1)])] AS deep, "
    "toUInt128('170141183460469231731687303715884105727') AS big, toUInt32(4) AS small, "
    "'12' AS text, toLowCardinality('5') AS lc"
)
_EXPECTED = [
    18446744073709551615, -5, [1, 2], None, 7, [2, "x"], {"a": 3, "b": 4}, {"k": 9},
    [{"k": [-1]}], 170141183460469231731687303715884105727, 4, "12", "5",
]  # fmt: skip


@pytest.mark.parametrize("quoted", [1, 0])
def test_decode_compact_reads_quoted_wide_integers_by_their_column_types(
    ch: ChdbConnection, quoted: int
) -> None:
    """A server's default quotes 64-bit integers, and a ``readonly = 1`` user may not
    change that: the answer's types tell which strings are integers, at any depth, and
    strings that are text stay text."""
    payload = ch._session.query(  # the engine's own bytes, as a server would send them
        f"{_WIDE_VALUES} SETTINGS output_format_json_quote_64bit_integers = {quoted}",
        "JSONCompact",
    ).bytes()
    assert (b'"18446744073709551615"' in payload) is bool(quoted)  # the case is real
    assert decode_compact(payload) == [_EXPECTED]


def test_a_read_only_chdb_session_still_answers_queries(chdb_path: object) -> None:
    """``readonly = 1`` refuses every setting: the deadline is dropped, the query runs."""
    conn = ChdbConnection(str(chdb_path), max_execution_time=30.0)
    try:
        conn.command("SET readonly = 1")
        assert conn.query("SELECT {n:UInt64} + 1", {"n": 41}) == [[42]]
    finally:
        conn.close()
