"""The size limit is shared fairly and goes by receive time, not client timestamps."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
from collector_helpers import KEY_A, KEY_B, headers_for, make_span, trace_request

from telemetryflow.collector import ApiKey, Collector

PB = {"Content-Type": "application/x-protobuf"}
MIB = 1024 * 1024
YEAR_2200_NS = 7_258_118_400 * 10**9


def _send(
    collector: Collector, key: ApiKey, tag: str, count: int, start_ns: int, service: str = ""
) -> None:
    spans = [
        make_span(
            f"{abs(hash(tag)) % 2**64:016x}{i + 1:016x}",
            f"{i + 1:016x}",
            f"{tag}-{i:04d}",
            start_ns=start_ns + i,
            attrs={"payload": "x" * 300, "tag": tag},
        )
        for i in range(count)
    ]
    response = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=trace_request(service or f"svc-{key.project}", spans).SerializeToString(),
        headers={**PB, **headers_for(key)},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def _names(collector: Collector, project: str) -> list[str]:
    with collector.store.reader() as conn:
        rows = conn.execute("SELECT name FROM spans WHERE project = ?", (project,))
        return sorted(r[0] for r in rows)


def test_a_flood_in_the_future_cannot_evict_a_quiet_project(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(max_db_bytes=MIB, retention_seconds=0.0, retention_interval=3600.0)
    for batch in range(5):  # project A floods, stamping its spans in the year 2200
        _send(collector, KEY_A, f"a{batch}", 400, YEAR_2200_NS)
    _send(collector, KEY_B, "b", 500, time.time_ns() - 10**9)  # project B sends a little, honestly
    for batch in range(5, 10):
        _send(collector, KEY_A, f"a{batch}", 400, YEAR_2200_NS)
    assert collector.store.live_bytes() > MIB
    assert collector.store.apply_retention() > 0
    assert collector.store.live_bytes() <= MIB
    assert len(_names(collector, "beta")) == 500  # within its fair share: all kept
    kept = _names(collector, "alpha")
    assert 0 < len(kept) < 4000
    batches = {name.split("-")[0] for name in kept}
    assert "a9" in batches and "a0" not in batches  # A's oldest-received went first
    assert sum(n.startswith("a9-") for n in kept) == 400  # its newest are whole
    usage = collector.store.usage_by_project()
    assert set(usage) == {"alpha", "beta"}


def test_the_largest_project_is_trimmed_toward_the_others(
    make_collector: Callable[..., Collector],
) -> None:
    """Two heavy projects both over their share: both lose their oldest, neither all."""
    collector = make_collector(max_db_bytes=MIB, retention_seconds=0.0, retention_interval=3600.0)
    for batch in range(6):
        _send(collector, KEY_A, f"a{batch}", 400, time.time_ns() - 10**9)
        _send(collector, KEY_B, f"b{batch}", 400, time.time_ns() - 10**9)
    assert collector.store.apply_retention() > 0
    assert collector.store.live_bytes() <= MIB
    a, b = _names(collector, "alpha"), _names(collector, "beta")
    assert 0 < len(a) < 2400 and 0 < len(b) < 2400
    assert abs(len(a) - len(b)) <= 0.25 * max(len(a), len(b))  # trimmed to about the same
    assert any(n.startswith("a5-") for n in a) and not any(n.startswith("a0-") for n in a)
    assert any(n.startswith("b5-") for n in b) and not any(n.startswith("b0-") for n in b)


def test_resources_no_row_refers_to_are_swept(make_collector: Callable[..., Collector]) -> None:
    """A client inventing a resource per request cannot grow the resource table forever."""
    collector = make_collector(retention_seconds=3600.0, retention_interval=3600.0)
    collector.store._retention.sweep_at = 5  # the real threshold is 10,000 entries
    for n in range(20):
        _send(collector, KEY_A, f"r{n}", 1, time.time_ns(), service=f"svc-{n}")
    cutoff = time.time_ns()
    _send(collector, KEY_B, "kept", 1, time.time_ns(), service="svc-kept")
    with collector.store.reader() as conn:
        assert conn.execute("SELECT count(*) FROM resources").fetchone()[0] == 21
    assert collector.store.apply_retention(now_ns=cutoff + 3600 * 10**9) == 20
    with collector.store.reader() as conn:
        left = conn.execute("SELECT attributes FROM resources").fetchall()
        assert [json.loads(r[0])["service.name"] for r in left] == ["svc-kept"]
        assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 1
