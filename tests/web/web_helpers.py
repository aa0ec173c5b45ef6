"""Keys, the SDK client and page helpers shared by the web view tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.collector import ApiKey, Collector, CollectorConfig

KEY_A = ApiKey("tfk_webalpha01", "tfs_web-alpha-secret-01", "alpha")
KEY_B = ApiKey("tfk_webbeta002", "tfs_web-beta-secret-002", "beta")
XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
"""A payload that would fire a dialog if any view let it into markup."""


def sdk_client(collector: Collector, service: str, key: ApiKey = KEY_A) -> TelemetryFlowClient:
    """A real SDK client exporting to ``collector`` over OTLP/HTTP."""
    client = (
        TelemetryFlowBuilder()
        .with_api_key(key.key_id, key.key_secret)
        .with_service(service, "1.0.0")
        .with_endpoint(collector.http_endpoint.split("://")[1])
        .with_http()
        .with_insecure()
        .with_global_providers(False)
        .with_queue_size(8192)
        .build()
    )
    client.initialize()
    return client


def wait_for(check: Any, what: str, timeout: float = 15.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def traces_of(base: str, service: str, key: ApiKey | None = KEY_A) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key.key_id}:{key.key_secret}"} if key else {}
    answer = httpx.get(f"{base}/ui/api/traces", params={"service": service}, headers=headers)
    answer.raise_for_status()
    return list(answer.json()["traces"])


def start_web_collector(tmp: Path, **overrides: Any) -> Collector:
    settings: dict[str, Any] = {
        "db_path": str(tmp / "web.db"), "grpc_port": None, "http_port": 0,
        "keys": (KEY_A, KEY_B), "rate_limit": 0.0,
    }  # fmt: skip
    settings.update(overrides)
    return Collector(CollectorConfig(**settings)).start()


class WebServer:
    """The collector and the base URL its web view answers on."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.base = collector.http_endpoint

    def stop(self) -> None:
        self.collector.stop()
