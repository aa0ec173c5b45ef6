"""Refusals over HTTP: auth, scoping, size caps, gzip bombs, bad input, rate limits."""

from __future__ import annotations

import json
import socket
import tracemalloc
import zlib
from collections.abc import Callable

import httpx
import pytest
from collector_helpers import KEY_A, KEY_B, gz, headers_for, log_request, make_log

from telemetryflow._configuration.errors import ConfigError
from telemetryflow.collector import Collector, CollectorConfig

PB = {"Content-Type": "application/x-protobuf"}


def stored_logs(collector: Collector) -> int:
    with collector.store.reader() as conn:
        return int(conn.execute("SELECT count(*) FROM logs").fetchone()[0])


def logs_body(text: str = "hello", service: str = "svc") -> bytes:
    return log_request(service, [make_log(text)]).SerializeToString()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {KEY_A.key_id}:tfs_wrong"},
        {"Authorization": "Bearer tfk_unknown:tfs_whatever"},
        {"Authorization": f"Basic {KEY_A.key_id}:{KEY_A.key_secret}"},
        {"X-TelemetryFlow-Key-ID": KEY_A.key_id, "X-TelemetryFlow-Key-Secret": "tfs_no"},
    ],
)
def test_bad_credentials_get_401_and_store_nothing(
    collector: Collector, headers: dict[str, str]
) -> None:
    response = httpx.post(
        f"{collector.http_endpoint}/v1/logs", content=logs_body(), headers={**PB, **headers}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    query = httpx.get(f"{collector.http_endpoint}/v1/logs/query", headers=headers)
    assert query.status_code == 401
    assert stored_logs(collector) == 0


def test_x_telemetryflow_headers_authenticate(collector: Collector) -> None:
    headers = {
        "X-TelemetryFlow-Key-ID": KEY_A.key_id,
        "X-TelemetryFlow-Key-Secret": KEY_A.key_secret,
    }
    response = httpx.post(
        f"{collector.http_endpoint}/v1/logs", content=logs_body(), headers={**PB, **headers}
    )
    assert response.status_code == 200
    assert stored_logs(collector) == 1


def test_secret_compared_in_constant_time(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    import telemetryflow.collector.server._auth as auth_module

    calls: list[tuple[bytes, bytes]] = []
    real = auth_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    for headers in (headers_for(KEY_A), {"Authorization": "Bearer tfk_nobody:tfs_x"}):
        httpx.get(f"{collector.http_endpoint}/v1/status", headers=headers)
    assert len(calls) == 2  # an unknown key id is compared too, against a dummy


def test_auth_checked_before_body_is_read(collector: Collector) -> None:
    host, port = "127.0.0.1", collector.http_port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-protobuf\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        reply = sock.recv(4096)  # answered although none of the 100 MB body was sent
    assert reply.startswith(b"HTTP/1.1 401")


def test_projects_are_isolated(collector: Collector) -> None:
    url = collector.http_endpoint
    for key, text in ((KEY_A, "alpha secret"), (KEY_B, "beta secret")):
        r = httpx.post(
            f"{url}/v1/logs", content=logs_body(text), headers={**PB, **headers_for(key)}
        )
        assert r.status_code == 200
    for key, expected in ((KEY_A, "alpha secret"), (KEY_B, "beta secret")):
        for params in ({}, {"project_name": "alpha"}, {"project_name": "beta"}):
            answer = httpx.get(f"{url}/v1/logs/query", params=params, headers=headers_for(key))
            bodies = [e["body"] for e in answer.json()["logs"]]
            assert bodies in ([expected], [])
            assert bodies == (
                [expected] if params.get("project_name", key.project) == key.project else []
            )
        status = httpx.get(f"{url}/v1/status", headers=headers_for(key)).json()
        assert status["project"] == key.project
        assert status["received"]["logs"] == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff\xff\xff\xff not protobuf", "application/x-protobuf", 400),
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
            "application/json",
            400,
        ),
        (b'{"resourceLogs": 5}', "application/json", 400),
        (b"[" * 100000 + b"]" * 100000, "application/json", 400),
        (b"hello", "text/plain", 415),
        (b"hello", "", 415),
    ],
)
def test_malformed_input_gets_4xx(
    http: httpx.Client, collector: Collector, body: bytes, content_type: str, status: int
) -> None:
    response = http.post("/v1/logs", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert stored_logs(collector) == 0
    assert http.get("/health").json() == {"status": "ok"}  # still serving


def test_wrong_method_and_unknown_path(http: httpx.Client) -> None:
    response = http.get("/v1/logs")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert http.put("/v1/metrics/query", content=b"{}").status_code == 405
    assert http.get("/v2/nothing").status_code == 404


def test_unsupported_content_encoding_gets_415(http: httpx.Client) -> None:
    response = http.post("/v1/logs", content=logs_body(), headers={**PB, "Content-Encoding": "br"})
    assert response.status_code == 415


def test_oversized_body_gets_413(make_collector: Callable[..., Collector]) -> None:
    collector = make_collector(max_body_bytes=4096)
    body = log_request("svc", [make_log("x" * 10_000)]).SerializeToString()
    response = httpx.post(
        f"{collector.http_endpoint}/v1/logs", content=body, headers={**PB, **headers_for(KEY_A)}
    )
    assert response.status_code == 413
    assert stored_logs(collector) == 0


def test_corrupt_gzip_gets_400(http: httpx.Client, collector: Collector) -> None:
    good = gz(logs_body())
    for bad in (b"\x1f\x8b\x08\x00garbage-garbage", good[: len(good) // 2]):
        response = http.post("/v1/logs", content=bad, headers={**PB, "Content-Encoding": "gzip"})
        assert response.status_code == 400
    assert stored_logs(collector) == 0


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def test_gzip_bomb_gets_413_with_bounded_memory(
    make_collector: Callable[..., Collector],
) -> None:
    limit = 1 << 20
    collector = make_collector(max_body_bytes=limit)
    bomb = _gzip_bomb(128 << 20)  # 128 MiB of zeros in about 130 KB
    assert len(bomb) < limit
    tracemalloc.start()
    try:
        response = httpx.post(
            f"{collector.http_endpoint}/v1/logs",
            content=bomb,
            headers={**PB, **headers_for(KEY_A), "Content-Encoding": "gzip"},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert peak < 4 * limit  # the limit, one chunk and the compressed body; not 128 MiB
    assert stored_logs(collector) == 0


def test_rate_limit_gets_429_with_retry_after(make_collector: Callable[..., Collector]) -> None:
    collector = make_collector(rate_limit=2.0)  # burst of 4
    statuses = []
    with httpx.Client(base_url=collector.http_endpoint, headers=headers_for(KEY_A)) as client:
        for _ in range(8):
            response = client.post("/v1/logs", content=logs_body(), headers=PB)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
        other = client.post("/v1/logs", content=logs_body(), headers={**PB, **headers_for(KEY_B)})
    assert statuses[:4] == [200] * 4
    assert 429 in statuses
    assert other.status_code == 200  # limits are per key
    assert stored_logs(collector) == statuses.count(200) + 1


def test_remote_bind_needs_explicit_flag() -> None:
    with pytest.raises(ConfigError, match="allow-remote"):
        CollectorConfig(http_host="0.0.0.0", auth=False)
    assert (
        CollectorConfig(
            http_host="0.0.0.0", grpc_host="0.0.0.0", auth=False, allow_remote=True
        ).http_host
        == "0.0.0.0"
    )
    with pytest.raises(ConfigError, match="no API key"):
        CollectorConfig()


def test_no_auth_mode_accepts_anonymous(make_collector: Callable[..., Collector]) -> None:
    collector = make_collector(auth=False, keys=())
    response = httpx.post(
        f"{collector.http_endpoint}/v1/logs", content=logs_body("anon"), headers=PB
    )
    assert response.status_code == 200
    answer = httpx.get(f"{collector.http_endpoint}/v1/logs/query").json()
    assert [e["body"] for e in answer["logs"]] == ["anon"]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/metrics/query", {"name": "m", "since": "inf"}),
        ("/v1/metrics/query", {"name": "m", "until": 1e308}),
        ("/v1/metrics/query", {"name": "m", "window": "9999999999w"}),
        ("/v1/traces/query", {"time_window": "100000000h"}),
        ("/v1/traces/query", {"min_duration": "9999999999w"}),
        ("/v1/logs/query", {"since": "9999-12-31T00:00:00Z"}),
        ("/v1/logs/query", {"limit": 10**400}),
        ("/v1/metrics/report", {"name": "m", "value": 1, "timestamp": 1e308}),
        ("/v1/metrics/report", {"name": "m", "value": 10**400}),
    ],
)
def test_out_of_range_numbers_get_400(http: httpx.Client, path: str, payload: dict) -> None:
    body = json.dumps(payload).encode()
    response = http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text


def test_uint64_times_and_bad_buckets_are_rejected_not_500(
    http: httpx.Client, collector: Collector
) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    spans = ExportTraceServiceRequest()
    spans.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, end_time_unix_nano=2**64 - 1
    )
    response = http.post("/v1/traces", content=spans.SerializeToString(), headers=PB)
    assert response.status_code == 200
    assert (
        ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 1
    )
    metrics = ExportMetricsServiceRequest()
    scope = metrics.resource_metrics.add().scope_metrics.add()
    scope.metrics.add(name="h").histogram.data_points.add(count=2**63, bucket_counts=[1])
    unsorted = scope.metrics.add(name="u").histogram.data_points.add(
        count=2, explicit_bounds=[5.0, 1.0], bucket_counts=[1, 1, 0]
    )
    assert unsorted.count == 2
    for scale, offset in ((-10, 0), (0, 2000), (20, 2**31 - 1)):
        point = scope.metrics.add(name="e").exponential_histogram.data_points.add(
            scale=scale, count=1
        )
        point.positive.offset = offset
        point.positive.bucket_counts.extend([1, 2])
    response = http.post("/v1/metrics", content=metrics.SerializeToString(), headers=PB)
    assert response.status_code == 200
    partial = ExportMetricsServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_data_points == 5
    with collector.store.reader() as conn:
        assert conn.execute("SELECT count(*) FROM metric_points").fetchone() == (0,)
