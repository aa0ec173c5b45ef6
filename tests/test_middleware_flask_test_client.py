"""FlaskTelemetryMiddleware under Flask's own test client, as users write their tests.

Werkzeug's test client takes only the first chunk of a response body until the
test reads it (``response.data``) or closes the response; many tests do neither
and still assert on the telemetry their request produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context
from opentelemetry.proto.trace.v1 import trace_pb2

from _support import builder_for
from apps.support import total
from telemetryflow import TelemetryFlowClient
from telemetryflow.middleware import FlaskTelemetryMiddleware
from telemetryflow.testing import OTLPReceiver

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
COUNT = "http.server.request.count"


@pytest.fixture
def client(receiver: OTLPReceiver) -> Iterator[TelemetryFlowClient]:
    tf = builder_for(receiver).build()
    tf.initialize()
    yield tf
    tf.shutdown(timeout=5)


@pytest.fixture
def app(client: TelemetryFlowClient) -> Flask:
    app = Flask(__name__)
    FlaskTelemetryMiddleware(client, app)

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> dict[str, Any]:
        return {"id": order_id, "items": ["x"] * 100}

    @app.get("/empty")
    def empty() -> tuple[str, int]:
        return "", 204

    @app.get("/stream")
    def stream() -> Response:
        def rows() -> Iterator[str]:
            yield from (f"row {i}\n" for i in range(3))

        return Response(stream_with_context(rows()), mimetype="text/plain")

    return app


def _server_spans(client: TelemetryFlowClient, receiver: OTLPReceiver, n: int) -> list[Any]:
    client.flush(timeout=5)
    receiver.wait_for(lambda: len([s for s in receiver.spans() if s.span.kind == SERVER]) >= n, 5)
    return [s for s in receiver.spans() if s.span.kind == SERVER]


def test_a_response_whose_body_the_test_never_reads_is_recorded(
    app: Flask, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    test_client = app.test_client()
    responses = [test_client.get("/orders/7"), test_client.get("/empty")]
    assert [r.status_code for r in responses] == [200, 204]  # status only, body unread
    spans = _server_spans(client, receiver, 2)
    assert sorted(s.name for s in spans) == ["GET /empty", "GET /orders/<int:order_id>"]
    assert {s.attributes["http.response.status_code"] for s in spans} == {200, 204}
    assert total(receiver, COUNT) == 2
    for response in responses:
        response.close()


def test_a_streamed_response_is_recorded_when_the_test_closes_it(
    app: Flask, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    """No length announced: the span ends when the body ends or is closed."""
    with app.test_client().get("/stream") as response:
        assert response.status_code == 200
    [span] = _server_spans(client, receiver, 1)
    assert span.name == "GET /stream"


def test_reading_the_body_later_records_the_request_once(
    app: Flask, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    response = app.test_client().get("/orders/8")
    assert response.json == {"id": 8, "items": ["x"] * 100}
    response.close()
    [span] = _server_spans(client, receiver, 1)
    assert span.attributes["url.path"] == "/orders/8"
    assert total(receiver, COUNT) == 1
