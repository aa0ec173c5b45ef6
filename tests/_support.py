"""Helpers shared by the SDK tests: a builder aimed at a loopback receiver."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.testing import OTLPReceiver

KEY_ID = "tfk_test_key_0001"
KEY_SECRET = "tfs_test_secret_do_not_leak_9f8e7d"


def builder_for(receiver: OTLPReceiver, protocol: str = "grpc") -> TelemetryFlowBuilder:
    """A builder sending to ``receiver`` quickly: short batches, fast retries."""
    builder = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_ID, KEY_SECRET)
        .with_service("test-service", "9.9.9")
        .with_insecure()
        .with_global_providers(False)
        .with_batch_settings(timeout=timedelta(milliseconds=100))
        .with_retry(True, max_retries=2, backoff=timedelta(milliseconds=20))
        .with_timeout(timedelta(seconds=2))
    )
    if protocol == "http":
        return builder.with_http().with_endpoint(receiver.http_endpoint)
    return builder.with_grpc().with_endpoint(receiver.grpc_endpoint)


def client_for(receiver: OTLPReceiver, protocol: str = "grpc", **_: Any) -> TelemetryFlowClient:
    client = builder_for(receiver, protocol).build()
    client.initialize()
    return client
