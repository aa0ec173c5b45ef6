"""The OTLP/gRPC receiver.

An interceptor authenticates from metadata before a request message is deserialized;
a refused call never reaches a servicer. Over the rate limit, or when the write queue
is full, the call ends with ``UNAVAILABLE`` and a ``google.rpc.RetryInfo`` in
``grpc-status-details-bin``, which OTLP exporters honour as the retry delay.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent import futures
from typing import Any, NoReturn

import grpc
from google.protobuf.duration_pb2 import Duration  # type: ignore[import-untyped]
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from telemetryflow.collector._auth import Principal
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


class _AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuse unauthenticated calls without deserializing their message."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        metadata = {k.lower(): v for k, v in (details.invocation_metadata or ())}
        principal = self._pipeline.auth.authenticate(
            lambda name: metadata.get(name) if isinstance(metadata.get(name), str) else None
        )
        if principal is not None:
            return continuation(details)

        def refuse(request: bytes, context: Any) -> NoReturn:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key")
            raise AssertionError("unreachable")  # abort raises

        return grpc.unary_unary_rpc_method_handler(refuse)


class _Servicer:
    """One Export method for all three OTLP services."""

    def __init__(self, pipeline: Pipeline, signal: Signal) -> None:
        self._pipeline = pipeline
        self._signal = signal

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        pipeline = self._pipeline
        principal: Principal | None = pipeline.auth.authenticate(_metadata_getter(context))
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key")
        assert principal is not None
        wait = pipeline.limiter.acquire(principal.key_id)
        if wait > 0:
            context.abort_with_status(_retry_status("rate limit exceeded", wait))
        try:
            return pipeline.export(self._signal, principal, request)
        except OverloadedError as exc:
            context.abort_with_status(_retry_status("the collector is overloaded", exc.retry_after))
        except (StoreClosedError, TimeoutError) as exc:
            context.abort_with_status(_retry_status(str(exc), 1.0))
        raise AssertionError("unreachable")


def start_grpc_server(
    pipeline: Pipeline, host: str, port: int, max_body: int, workers: int
) -> tuple[grpc.Server, int]:
    """Start the OTLP/gRPC server; returns it and the port actually bound.

    ``max_body`` caps a received message (``grpc.max_receive_message_length``).
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tf-collector-grpc"),
        interceptors=(_AuthInterceptor(pipeline),),
        options=(
            ("grpc.max_receive_message_length", max_body),
            ("grpc.so_reuseport", 0),
        ),
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _Servicer(pipeline, SIGNALS["traces"]), server
    )
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _Servicer(pipeline, SIGNALS["metrics"]), server
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _Servicer(pipeline, SIGNALS["logs"]), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind the gRPC receiver to {address}")
    server.start()
    return server, bound
