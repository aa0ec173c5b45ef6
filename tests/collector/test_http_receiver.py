"""OTLP/HTTP ingestion: protobuf, JSON and gzip for every signal, queried back."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from collector_helpers import (
    gauge,
    gz,
    log_request,
    make_log,
    make_span,
    metrics_request,
    trace_request,
)
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}
TRACE = "0af7651916cd43dd8448eb211c80319c"


def otlp_json(message: object) -> bytes:
    """OTLP/JSON as the specification writes it: camelCase, ids in hex."""
    data = json_format.MessageToDict(message)  # ids come out base64

    def fix(node: object) -> None:
        import base64

        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and value:
                    node[key] = base64.b64decode(value).hex()
                else:
                    fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    fix(data)
    return json.dumps(data).encode()


def test_traces_protobuf_stored_and_queried(http: httpx.Client) -> None:
    spans = [
        make_span(TRACE, "b7ad6b7169203331", "GET /users"),
        make_span(TRACE, "00f067aa0ba902b7", "SELECT users", parent="b7ad6b7169203331"),
    ]
    response = http.post(
        "/v1/traces", content=trace_request("api", spans).SerializeToString(), headers=PB
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert not parsed.HasField("partial_success")
    trace = http.get("/v1/traces/query", params={"trace_id": TRACE}).json()["traces"][0]
    assert trace["span_count"] == 2
    assert trace["spans"][0]["name"] == "GET /users"
    assert trace["spans"][0]["children"][0]["name"] == "SELECT users"


def test_traces_json_with_hex_ids(http: httpx.Client) -> None:
    body = otlp_json(trace_request("api", [make_span(TRACE, "b7ad6b7169203331", "json-span")]))
    response = http.post("/v1/traces", content=body, headers=JS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    spans = http.get("/v1/traces/query", params={"trace_id": TRACE}).json()["traces"][0]["spans"]
    assert spans[0]["span_id"] == "b7ad6b7169203331"
    assert spans[0]["name"] == "json-span"


def test_logs_gzip_protobuf_and_json(http: httpx.Client) -> None:
    pb = log_request("worker", [make_log("from protobuf", 17)]).SerializeToString()
    js = otlp_json(log_request("worker", [make_log("from json", 9)]))
    r1 = http.post("/v1/logs", content=gz(pb), headers={**PB, "Content-Encoding": "gzip"})
    r2 = http.post("/v1/logs", content=gz(js), headers={**JS, "Content-Encoding": "gzip"})
    assert (r1.status_code, r2.status_code) == (200, 200)
    logs = http.get("/v1/logs/query", params={"service": "worker"}).json()["logs"]
    assert sorted(entry["body"] for entry in logs) == ["from json", "from protobuf"]
    assert {e["body"]: e["severity"] for e in logs} == {
        "from protobuf": "ERROR",
        "from json": "INFO",
    }


def test_metrics_protobuf_and_json(http: httpx.Client) -> None:
    pb = metrics_request("api", [gauge("queue.depth", [3.0, 5.0])]).SerializeToString()
    js = otlp_json(metrics_request("api", [gauge("queue.depth", [10.0])]))
    assert http.post("/v1/metrics", content=pb, headers=PB).status_code == 200
    assert http.post("/v1/metrics", content=js, headers=JS).status_code == 200
    answer = http.get("/v1/metrics/query", params={"name": "queue.depth", "agg": "max"}).json()
    assert answer["series"][0]["value"] == 10.0
    count = http.get("/v1/metrics/query", params={"name": "queue.depth", "agg": "count"}).json()
    assert count["series"][0]["value"] == 3


def test_partial_success_counts_rejected_spans(http: httpx.Client) -> None:
    good = make_span(TRACE, "b7ad6b7169203331", "good")
    bad = make_span(TRACE, "b7ad6b7169203332", "bad")
    bad.span_id = b"\x01\x02"  # wrong length
    body = trace_request("api", [good, bad]).SerializeToString()
    response = http.post("/v1/traces", content=body, headers=PB)
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 1
    assert "span" in partial.error_message
    names = [s["name"] for s in http.get("/v1/traces/query").json()["traces"][0]["spans"]]
    assert names == ["good"]


def test_chunked_body_is_accepted(http: httpx.Client) -> None:
    body = log_request("chunky", [make_log("chunked body")]).SerializeToString()

    def chunks() -> object:
        yield body[:10]
        yield body[10:]

    response = http.post("/v1/logs", content=chunks(), headers=PB)  # type: ignore[arg-type]
    assert response.status_code == 200
    logs = http.get("/v1/logs/query", params={"service": "chunky"}).json()["logs"]
    assert [e["body"] for e in logs] == ["chunked body"]


def test_root_points_to_the_api_description(http: httpx.Client) -> None:
    response = http.get("/", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json()["api"] == "/openapi.json"
    assert http.get(response.json()["api"]).status_code == 200


def test_metric_names_route_needs_a_key_and_never_fails_with_500(http: httpx.Client) -> None:
    assert http.get("/v1/metrics/names", headers={"Authorization": ""}).status_code == 401
    assert http.post("/v1/metrics/names").status_code == 405
    assert http.get("/v1/metrics/names").status_code in (200, 400, 404)


def test_ipv6_loopback_and_ephemeral_ports(make_collector: Any) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    collector = make_collector(http_host="::1", grpc_host="::1")
    assert collector.http_port != 0
    assert collector.http_endpoint == f"http://[::1]:{collector.http_port}"
    assert httpx.get(f"{collector.http_endpoint}/health").json() == {"status": "ok"}


def test_accepted_connections_send_without_nagle_delay() -> None:
    """The listening socket says TCP, so asyncio sets TCP_NODELAY on every connection
    it accepts (with protocol 0 it did not, and each kept-alive answer waited ~40 ms
    for the client's delayed acknowledgement)."""
    import asyncio
    import socket

    from telemetryflow.collector.server._http_server import _bind

    async def accept_one() -> int:
        listener = _bind("127.0.0.1", 0, 8)
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            value = await asyncio.wait_for(accepted, 5)
        server.close()
        await server.wait_closed()
        return value

    assert asyncio.run(accept_one()) != 0
