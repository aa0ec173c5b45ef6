"""Serving the HTTP app: uvicorn on its own thread and event loop, inside the collector.

The listening socket is bound here, before the thread starts, so a port in use fails
:meth:`HTTPServer.start` in the caller's thread and port ``0`` is known at once.
uvicorn's ``limit_concurrency`` is not used: it counts idle connections too, so a
client holding many of them would turn every request (``/health`` included) into a
503. The connection cap lives in :mod:`_http_protocol` instead, where it can close
the idle connections first.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from typing import Any

import uvicorn

from telemetryflow.collector.server._http_protocol import ConnectionLimits, protocol_class

__all__ = ["HTTPServer"]

_KEEP_ALIVE_SECONDS = 5


class HTTPServer:
    """One uvicorn server for ``app`` on ``host:port``, run on a daemon thread."""

    def __init__(
        self, app: Any, host: str, port: int, limits: ConnectionLimits, backlog: int
    ) -> None:
        self._sock = _bind(host, port, backlog)
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            http=protocol_class(limits),
            lifespan="off",
            log_config=None,
            proxy_headers=False,
            server_header=False,
            headers=[("server", "TelemetryFlowCollector")],
            backlog=backlog,
            # never longer than the header deadline, which an idle connection also has
            timeout_keep_alive=min(_KEEP_ALIVE_SECONDS, limits.header_timeout),  # type: ignore[arg-type]
            loop="asyncio",
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop, once started."""

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="tf-collector-http", daemon=True,
        )  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop(0.0)
                raise OSError("the HTTP receiver did not start")
            time.sleep(0.01)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self._server.serve(sockets=[self._sock])

    def stop(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish for up to ``grace`` seconds."""
        self._server.config.timeout_graceful_shutdown = max(1, math.ceil(grace))
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(grace + 5.0)
            self._thread = None
        self._sock.close()


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets whose
    # protocol says TCP. Without it every answer after the first on a kept-alive
    # connection waited ~40 ms for the client's delayed acknowledgement.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
