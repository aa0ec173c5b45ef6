"""The test receiver's gRPC side: one ``grpc.server`` on loopback, stoppable at once.

Per-message decompression is off so the receiver sees the compressed bytes a client
sent (:func:`sniff_grpc_encoding` tells gzip from deflate) and ``SO_REUSEPORT`` is
off so that a stopped receiver really stops answering on its port.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from telemetryflow.testing._receiver_http import MAX_BODY

__all__ = ["GrpcListener", "sniff_grpc_encoding"]

_STOP_GRACE = 0.5


def sniff_grpc_encoding(raw: bytes) -> str | None:
    # gRPC core strips grpc-encoding from metadata, so the raw message tells instead.
    # No protobuf can start with 0x1f (wire type 7); OTLP requests start with 0x0a.
    if raw[:2] == b"\x1f\x8b":
        return "gzip"
    if len(raw) >= 2 and raw[0] == 0x78 and (raw[0] * 256 + raw[1]) % 31 == 0:
        return "deflate"
    return None


class GrpcListener:
    def __init__(
        self, address: str, credentials: Any, handlers: list[grpc.GenericRpcHandler]
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="otlp-receiver-grpc")
        self._server = grpc.server(
            self._executor,
            handlers=handlers,
            options=[
                ("grpc.so_reuseport", 0),  # a second listener on our port would hide go_down()
                ("grpc.per_message_decompression", 0),  # see compressed bytes, inflate here
                ("grpc.max_receive_message_length", MAX_BODY),
            ],
        )
        try:
            if credentials is None:
                port = self._server.add_insecure_port(address)
            else:
                port = self._server.add_secure_port(address, credentials)
        except RuntimeError:
            port = 0
        if not port:
            self._executor.shutdown(wait=False)
            raise OSError(f"cannot listen for gRPC on {address}")
        self.port: int = port
        self._server.start()

    def close(self) -> None:
        self._server.stop(grace=_STOP_GRACE).wait(timeout=_STOP_GRACE + 0.5)
        self._executor.shutdown(wait=False, cancel_futures=True)
