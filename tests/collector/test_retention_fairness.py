"""The size limit is shared fairly and goes by receive time, not client timestamps."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
from collector_helpers import KEY_A, KEY_B, headers_for, make_span, resource, trace_request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

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


def _resource_flood(collector: Collector, key: ApiKey, requests: int, blocks: int) -> None:
    """Requests of ``blocks`` unique 4 KB resources, each with one span, as ``key``."""
    for n in range(requests):
        request = ExportTraceServiceRequest()
        for b in range(blocks):
            block = trace_request(f"flood-{n}-{b}", [
                make_span(f"{n + 1:016x}{b + 1:016x}", f"{b + 1:016x}", f"f{n}-{b}",
                          start_ns=time.time_ns())
            ]).resource_spans[0]  # fmt: skip
            block.resource.attributes.add(key="blob", value=AnyValue(string_value="r" * 4096))
            request.resource_spans.append(block)
        response = httpx.post(
            f"{collector.http_endpoint}/v1/traces",
            content=request.SerializeToString(),
            headers={**PB, **headers_for(key)},
            timeout=30,
        )
        assert response.status_code == 200, response.text


def test_resources_count_for_their_project_and_trimming_spares_the_others(
    make_collector: Callable[..., Collector],
) -> None:
    """A project inventing large resources pays for them; a small project keeps all."""
    collector = make_collector(max_db_bytes=MIB, retention_seconds=0.0, retention_interval=3600.0)
    _send(collector, KEY_B, "b", 300, time.time_ns())
    _resource_flood(collector, KEY_A, requests=4, blocks=100)  # 1.6 MB of resources
    usage = collector.store.usage_by_project()
    assert usage["alpha"] > 400 * 4096 > usage["beta"]
    assert collector.store.apply_retention() > 0
    assert len(_names(collector, "beta")) == 300  # within its fair share: all kept
    usage = collector.store.usage_by_project()
    assert sum(usage.values()) <= MIB
    with collector.store.reader() as conn:
        spans = conn.execute("SELECT count(*) FROM spans WHERE project = 'alpha'").fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM resources").fetchone()[0]
    assert 0 < spans < 400
    assert stored == spans + 1  # one resource per span left, plus beta's: the rest were swept
    assert collector.store.apply_retention() == 0  # under the limit: the next pass deletes nothing


def test_a_resource_without_spans_is_not_stored(make_collector: Callable[..., Collector]) -> None:
    collector = make_collector()
    request = trace_request("with-span", [make_span("ab" * 16, "cd" * 8, "kept")])
    request.resource_spans.append(ResourceSpans(resource=resource("empty-block")))
    response = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=request.SerializeToString(),
        headers={**PB, **headers_for(KEY_A)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    with collector.store.reader() as conn:
        rows = conn.execute("SELECT attributes FROM resources").fetchall()
    assert [json.loads(r[0])["service.name"] for r in rows] == ["with-span"]
