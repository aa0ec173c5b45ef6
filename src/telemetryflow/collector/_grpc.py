"""The OTLP/gRPC receiver.

Handlers take the raw message bytes: the caller is authenticated from metadata and
rate limited before the message is parsed. Over the rate limit, or when the write queue
is full, the call ends with ``UNAVAILABLE`` and a ``google.rpc.RetryInfo`` in
``grpc-status-details-bin``, which OTLP exporters honour as the retry delay.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration  # type: ignore[import-untyped]
from google.rpc import code_pb2, error_details_pb2, status_pb2

from telemetryflow.collector._auth import Principal
from telemetryflow.collector._decode import BadRequestError, parse_otlp
from telemetryflow.collector._pipeline import SIGNALS, Pipeline, Signal
from telemetryflow.collector._store import OverloadedError, StoreClosedError

__all__ = ["start_grpc_server"]

_log = logging.getLogger("telemetryflow.collector")
_DETAILS_KEY = "grpc-status-details-bin"


class _Status(grpc.Status):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple[Any, ...]) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing


def _retry_status(message: str, seconds: float) -> _Status:
    delay = Duration(seconds=max(1, math.ceil(seconds)))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    detail.details.add().Pack(info)
    return _Status(grpc.StatusCode.UNAVAILABLE, message,
                   ((_DETAILS_KEY, detail.SerializeToString()),))  # fmt: skip


def _metadata_getter(context: Any) -> Callable[[str], str | None]:
    metadata = {key.lower(): value for key, value in (context.invocation_metadata() or ())}

    def get(name: str) -> str | None:
        value = metadata.get(name)
        return value if isinstance(value, str) else None

    return get


_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


class _Export:
    """The Export method of one OTLP service.

    It receives the raw request bytes (no deserializer is registered), so the caller
    is authenticated and admitted before the message is parsed, and a malformed
    message is answered with ``INVALID_ARGUMENT`` rather than gRPC's ``INTERNAL``.
    """

    def __init__(self, pipeline: Pipeline, signal: Signal) -> None:
        self._pipeline = pipeline
        self._signal = signal

    def __call__(self, body: bytes, context: Any) -> Any:
        pipeline = self._pipeline
        principal: Principal | None = pipeline.auth.authenticate(_metadata_getter(context))
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key")
        assert principal is not None
        wait = pipeline.limiter.acquire(principal.key_id)
        if wait > 0:
            context.abort_with_status(_retry_status("rate limit exceeded", wait))
        try:
            request = parse_otlp(body, False, self._signal.request())
        except BadRequestError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        try:
            return pipeline.export(self._signal, principal, request)
        except OverloadedError as exc:
            context.abort_with_status(_retry_status("the collector is overloaded", exc.retry_after))
        except (StoreClosedError, TimeoutError) as exc:
            context.abort_with_status(_retry_status(str(exc), 1.0))
        raise AssertionError("unreachable")


def _handlers(pipeline: Pipeline) -> list[Any]:
    handlers = []
    for name, service in _SERVICES.items():
        method = grpc.unary_unary_rpc_method_handler(
            _Export(pipeline, SIGNALS[name]),
            request_deserializer=None,
            response_serializer=lambda message: message.SerializeToString(),
        )
        handlers.append(grpc.method_handlers_generic_handler(service, {"Export": method}))
    return handlers


def start_grpc_server(
    pipeline: Pipeline, host: str, port: int, max_body: int, workers: int
) -> tuple[grpc.Server, int]:
    """Start the OTLP/gRPC server; returns it and the port actually bound.

    ``max_body`` caps a received message (``grpc.max_receive_message_length``).
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tf-collector-grpc"),
        handlers=_handlers(pipeline),
        options=(
            ("grpc.max_receive_message_length", max_body),
            ("grpc.so_reuseport", 0),
        ),
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot bind the gRPC receiver to {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot bind the gRPC receiver to {address}")
    server.start()
    return server, bound
