"""Random and mutated input never crashes a receiver: every answer is a clean 2xx/4xx."""

from __future__ import annotations

import random

import grpc
import httpx
from collector_helpers import KEY_A, log_request, make_log, metadata_for

from telemetryflow.collector import Collector

PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")


def _mutations(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    valid = log_request("fuzz", [make_log("fuzz me", 9)]).SerializeToString()
    bodies = []
    for _ in range(count):
        body = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        bodies.append(bytes(body[: rng.randrange(1, len(body) + 1)]))
        bodies.append(rng.randbytes(rng.randrange(1, 200)))
    return bodies


def test_http_receivers_survive_random_bodies(http: httpx.Client) -> None:
    statuses = set()
    for i, body in enumerate(_mutations(1, 40)):
        path = PATHS[i % 3]
        for content_type in ("application/x-protobuf", "application/json"):
            response = http.post(path, content=body, headers={"Content-Type": content_type})
            statuses.add(response.status_code)
            assert response.status_code in (200, 400), (path, body)
    assert statuses == {200, 400}  # some mutations still parse; the rest are refused
    assert http.get("/health").status_code == 200


def test_grpc_receivers_survive_random_bodies(collector: Collector) -> None:
    with grpc.insecure_channel(collector.grpc_endpoint or "") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
        codes = set()
        for body in _mutations(2, 30):
            try:
                export(body, metadata=metadata_for(KEY_A), timeout=10)
                codes.add(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.add(exc.code())  # type: ignore[attr-defined]
        assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
        assert grpc.StatusCode.INVALID_ARGUMENT in codes
        valid = log_request("after", [make_log("still alive")]).SerializeToString()
        export(valid, metadata=metadata_for(KEY_A), timeout=10)
    with collector.store.reader() as conn:
        assert conn.execute("SELECT count(*) FROM logs WHERE body = 'still alive'").fetchone() == (
            1,
        )
