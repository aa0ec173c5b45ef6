"""Store URLs: the three kinds, table names and default project, the password never shown."""

from __future__ import annotations

import pytest

from telemetryflow.collector.store._url import StoreURLError, parse_store_url


def test_sqlite_and_chdb_urls_are_paths() -> None:
    assert parse_store_url("sqlite:///var/lib/tf.db").path == "/var/lib/tf.db"
    chdb = parse_store_url("chdb:///var/lib/tf-chdb")
    assert (chdb.kind, chdb.path, chdb.tables.database) == ("chdb", "/var/lib/tf-chdb", "otel")
    assert parse_store_url("chdb:///d?database=obs").tables.database == "obs"


def test_server_url_with_tables_default_project_and_tls() -> None:
    url = parse_store_url(
        "clickhouse://reader:s3cr%40t@ch.internal:8443/telemetry"
        "?traces_table=spans&logs_table=app_logs&default_project=shop&secure=1"
    )
    assert (url.kind, url.host, url.port, url.username) == ("clickhouse", "ch.internal", 8443,
                                                             "reader")  # fmt: skip
    assert url.password == "s3cr@t"
    assert url.secure
    assert (url.tables.database, url.tables.traces, url.tables.logs) == (
        "telemetry", "spans", "app_logs",
    )  # fmt: skip
    assert url.tables.default_project == "shop"
    assert parse_store_url("clickhouses://h/otel").secure
    plain = parse_store_url("clickhouse://h")
    assert (plain.port, plain.username, plain.tables.database, plain.secure) == (
        8123, "default", "otel", False,
    )  # fmt: skip


def test_the_password_is_never_printed() -> None:
    url = parse_store_url("clickhouse://u:hunter2-secret@127.0.0.1:8123/otel")
    for shown in (repr(url), str(url), url.masked()):
        assert "hunter2-secret" not in shown
    assert url.masked() == "clickhouse://u:***@127.0.0.1:8123/otel"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("postgres://x", "sqlite:///"),
        ("sqlite://", "sqlite:///path"),
        ("chdb://", "chdb:///path"),
        ("clickhouse://:8123/otel", "needs a host"),
        ("clickhouse://h:99999/otel", "port"),
        ("clickhouse://h/otel?traces_table=x;drop", "traces name"),
        ("clickhouse://u:pw-secret@h/otel?bogus=1", "bogus"),
    ],
)
def test_unusable_urls_say_why_without_the_password(text: str, names: str) -> None:
    with pytest.raises(StoreURLError) as caught:
        parse_store_url(text)
    assert names in str(caught.value)
    assert "pw-secret" not in str(caught.value)
