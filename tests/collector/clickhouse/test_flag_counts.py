"""Feature flag evaluations on the events page are counted by the store, all of them.

Two real collectors, one over SQLite and one over chDB, get the same 2,560 evaluation
records (the SDK's ``feature_flag.evaluation`` shape) over OTLP/HTTP, plus records
that must not count (another project, another body, no flag key, outside the window).
The web view's ``/ui/api/events`` must answer with every evaluation counted per flag
and user, the newest one's answer, and the same from both stores (the value as text
over ClickHouse, as the exporter's tables keep attributes).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_helpers import KEY_A, KEY_B, headers_for, kv, log_request
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from telemetryflow.collector import ApiKey, Collector

PB = {"Content-Type": "application/x-protobuf"}
FLAG_EVENT = "feature_flag.evaluation"
HOUR = 3600 * 10**9
# (service, flag, user, evaluations, variants cycled through, value of each variant)
PLAN = [
    ("shop", "button", "alice", 1200, ("red", "green"), {"red": "#c00", "green": "#0c0"}),
    ("shop", "button", "bob", 900, ("blue",), {"blue": "#00c"}),
    ("shop", "button", None, 150, ("red",), {"red": "#c00"}),
    ("shop", "dark_mode", "alice", 300, (None,), {None: True}),
    ("worker", "button", "alice", 10, ("red",), {"red": "#c00"}),
]


def _evaluation(
    when: int, flag: str | None, user: str | None, variant: str | None, value: Any,
    *, body: str = FLAG_EVENT, trace_id: str = "",
) -> LogRecord:  # fmt: skip
    attributes: dict[str, Any] = {"feature_flag.provider.name": "telemetryflow",
                                  "feature_flag.result.reason": "TARGETING_MATCH"}  # fmt: skip
    if flag is not None:
        attributes["feature_flag.key"] = flag
    if variant is not None:
        attributes["feature_flag.result.variant"] = variant
    attributes["feature_flag.result.value"] = value
    if user is not None:
        attributes["feature_flag.context.id"] = user
    return LogRecord(
        time_unix_nano=when, severity_number=9, severity_text="INFO",  # type: ignore[arg-type]
        body=AnyValue(string_value=body), attributes=kv(attributes), event_name=body,
        trace_id=bytes.fromhex(trace_id) if trace_id else b"",
    )  # fmt: skip


def _records(now: int) -> tuple[dict[str, list[LogRecord]], list[dict[str, Any]]]:
    """The records per service, and the rows the page must show for them (newest wins)."""
    by_service: dict[str, list[LogRecord]] = {}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    counts: Counter[tuple[str, str]] = Counter()
    tick = 0
    for service, flag, user, evaluations, variants, values in PLAN:
        for i in range(evaluations):
            tick += 1
            when = now - 20 * 60 * 10**9 + tick * 1000  # distinct times, all in the window
            variant = variants[i % len(variants)]
            trace = f"{tick:032x}" if i % 7 == 0 else ""
            record = _evaluation(when, flag, user, variant, values[variant], trace_id=trace)
            by_service.setdefault(service, []).append(record)
            key = (flag, user or "")
            counts[key] += 1
            latest[key] = {
                "flag": flag, "user": user or "", "variant": variant, "value": values[variant],
                "reason": "TARGETING_MATCH", "service": service, "trace_id": trace or None,
                "time_unix_nano": when,
            }  # fmt: skip
    by_service["shop"] += [
        _evaluation(now - 30 * HOUR, "button", "alice", "red", "#c00"),  # outside 24 h
        _evaluation(now - 10**9, None, "alice", "red", "#c00"),  # no flag key
        _evaluation(now - 10**9, "button", "alice", "red", "#c00", body="flag checked"),
    ]
    expected = [{**row, "evaluations": counts[key]} for key, row in sorted(latest.items())]
    return by_service, expected


def _feed(collector: Collector, now: int) -> list[dict[str, Any]]:
    by_service, expected = _records(now)
    with httpx.Client(base_url=collector.http_endpoint, timeout=30) as http:
        for service, records in by_service.items():
            body = log_request(service, records).SerializeToString()
            answer = http.post("/v1/logs", content=body, headers={**PB, **headers_for(KEY_A)})
            assert answer.status_code == 200, answer.text
        other = log_request("shop", [_evaluation(now - 10**9, "button", "mallory", "red", "x")])
        answer = http.post(
            "/v1/logs", content=other.SerializeToString(), headers={**PB, **headers_for(KEY_B)}
        )
        assert answer.status_code == 200
    return expected


def _flags(collector: Collector, key: ApiKey = KEY_A, **params: str) -> dict[str, Any]:
    answer = httpx.get(
        collector.http_endpoint + "/ui/api/events",
        params=params, headers=headers_for(key), timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """An expected row as the page shows it."""
    return {k: v for k, v in row.items() if k != "time_unix_nano"}


def _as_text(value: Any) -> Any:
    """A value as the exporter's tables keep it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


@pytest.fixture
def pair(
    make_collector: Callable[..., Collector], chdb_path: Path, database: str
) -> dict[str, Collector]:
    return {
        "sqlite": make_collector(),
        "chdb": make_collector(store=f"chdb://{chdb_path}?database={database}"),
    }


def test_every_evaluation_is_counted_the_same_by_both_stores(
    pair: dict[str, Collector],
) -> None:
    now = time.time_ns()
    expected = [_shown(row) for row in _feed(pair["sqlite"], now)]
    assert [_shown(row) for row in _feed(pair["chdb"], now)] == expected
    assert sum(row["evaluations"] for row in expected) == 2560  # more than 2,000
    answers = {name: _flags(collector) for name, collector in pair.items()}

    sqlite = answers["sqlite"]
    assert sqlite["flags_truncated"] is False
    assert [{k: v for k, v in row.items() if k != "time"} for row in sqlite["flags"]] == expected
    by_pair = {(row["flag"], row["user"]): row for row in sqlite["flags"]}
    assert by_pair[("button", "alice")]["evaluations"] == 1210  # 1,200 in shop, 10 in worker
    assert by_pair[("button", "alice")]["service"] == "worker"  # the newest evaluation's
    assert by_pair[("dark_mode", "alice")]["value"] is True

    for row in sqlite["flags"]:
        row["value"] = _as_text(row["value"])
    assert answers["chdb"] == sqlite

    for name, collector in pair.items():  # the window and service filters, in SQL too
        shop = _flags(collector, service="shop")["flags"]
        counts = {(row["flag"], row["user"]): row["evaluations"] for row in shop}
        assert counts == {("button", ""): 150, ("button", "alice"): 1200,
                          ("button", "bob"): 900, ("dark_mode", "alice"): 300}, name  # fmt: skip
        old = _flags(collector, since="31h", until="29h")["flags"]
        assert [(r["flag"], r["user"], r["evaluations"]) for r in old] == [
            ("button", "alice", 1)
        ], name
        assert _flags(collector, KEY_B)["flags"][0]["user"] == "mallory", name
