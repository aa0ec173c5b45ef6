"""gunicorn settings for the pre-fork test: each worker flushes and stops its client
when it exits, so what it recorded reaches the collector before the process ends."""

from __future__ import annotations

from typing import Any

preload_app = True
graceful_timeout = 10
control_socket_disable = True  # gunicorn >= 27 would otherwise create ~/.gunicorn


def worker_exit(server: Any, worker: Any) -> None:
    import flask_gunicorn_app

    flask_gunicorn_app.client.shutdown(timeout=5)
