"""telemetryflow.query: sync and async clients against a live collector."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from collector_helpers import KEY_A, headers_for, log_request, make_log

import telemetryflow.query as query_module
from telemetryflow._configuration.credentials import Credentials
from telemetryflow._configuration.errors import ConfigError, CredentialsError
from telemetryflow.collector import Collector
from telemetryflow.query import AsyncQueryClient, QueryClient

PB = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def seeded(collector: Collector) -> Collector:
    body = log_request("svc", [make_log("disk full", 17), make_log("ok", 9)]).SerializeToString()
    response = httpx.post(
        f"{collector.http_endpoint}/v1/logs", content=body, headers={**PB, **headers_for(KEY_A)}
    )
    assert response.status_code == 200
    report = {"name": "cpu", "value": 0.5}
    httpx.post(
        f"{collector.http_endpoint}/v1/metrics/report", json=report, headers=headers_for(KEY_A)
    ).raise_for_status()
    return collector


def test_public_names() -> None:
    assert query_module.__all__ == [
        "AGGREGATIONS",
        "DEFAULT_QUERY_ENDPOINT",
        "ENV_QUERY_ENDPOINT",
        "AsyncQueryClient",
        "QueryClient",
        "QuerySettings",
        "resolve_settings",
    ]
    import telemetryflow.collector as collector_module

    assert collector_module.__all__ == [
        "ApiKey",
        "Collector",
        "CollectorConfig",
        "parse_key_spec",
        "resolve_keys",
    ]


def test_sync_client_queries_every_signal(seeded: Collector) -> None:
    with QueryClient(
        seeded.http_endpoint, key_id=KEY_A.key_id, key_secret=KEY_A.key_secret
    ) as client:
        logs = client.logs.query(severity="error", time_window="1h", limit=10)
        metrics = client.metrics.query(metric="cpu", agg="max", time_window="1h", tags=None)
        traces = client.traces.query(time_window="1h")
        status = client.status()
    assert [e["body"] for e in logs["logs"]] == ["disk full"]
    assert metrics["series"][0]["value"] == 0.5
    assert traces == {"traces": [], "count": 0, "since": traces["since"], "until": traces["until"]}
    assert status["received"]["logs"] == 2


def test_async_client_queries(seeded: Collector) -> None:
    async def run() -> tuple[dict, dict]:
        creds = Credentials(KEY_A.key_id, KEY_A.key_secret)
        async with AsyncQueryClient(seeded.http_endpoint, credentials=creds) as client:
            return (
                await client.logs.query(contains="disk"),
                await client.metrics.query(name="cpu", agg="count"),
            )

    logs, metrics = asyncio.run(run())
    assert [e["body"] for e in logs["logs"]] == ["disk full"]
    assert metrics["series"][0]["value"] == 1


def test_clients_raise_http_status_error_on_401(seeded: Collector) -> None:
    wrong = {"key_id": KEY_A.key_id, "key_secret": "tfs_wrong"}
    with (
        QueryClient(seeded.http_endpoint, **wrong) as client,
        pytest.raises(httpx.HTTPStatusError) as info,
    ):
        client.logs.query()
    assert info.value.response.status_code == 401

    async def run() -> None:
        async with AsyncQueryClient(seeded.http_endpoint, **wrong) as client:
            await client.traces.query(limit=1)

    with pytest.raises(httpx.HTTPStatusError) as async_info:
        asyncio.run(run())
    assert async_info.value.response.status_code == 401


def test_settings_from_the_sdk_environment(
    seeded: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_ID", KEY_A.key_id)
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_SECRET", KEY_A.key_secret)
    monkeypatch.setenv("TELEMETRYFLOW_QUERY_ENDPOINT", seeded.http_endpoint)
    with QueryClient() as client:
        assert client.settings.endpoint == seeded.http_endpoint
        assert client.logs.query(contains="disk")["count"] == 1
    monkeypatch.delenv("TELEMETRYFLOW_QUERY_ENDPOINT")
    with QueryClient() as client:
        assert client.settings.endpoint == "http://127.0.0.1:4318"


def test_credentials_never_sent_in_plain_text_to_remote_hosts() -> None:
    with pytest.raises(ConfigError, match="plain HTTP"):
        QueryClient("http://collector.example.com:4318", key_id="tfk_a", key_secret="tfs_b")
    client = QueryClient("https://collector.example.com", key_id="tfk_a", key_secret="tfs_b")
    client.close()
    with pytest.raises(ConfigError, match="http"):
        QueryClient("ftp://127.0.0.1", key_id="tfk_a", key_secret="tfs_b")
    assert "tfs_b" not in repr(client.settings)


def test_the_reference_form_api_key_works_sync_and_async(seeded: Collector) -> None:
    """``QueryClient(api_key=...)`` as the query API reference constructs its clients."""
    api_key = f"{KEY_A.key_id}:{KEY_A.key_secret}"
    with QueryClient(seeded.http_endpoint, api_key=api_key) as client:
        response = client.logs.query(severity="error", time_window="30m", limit=100)
        assert KEY_A.key_secret not in repr(client) and KEY_A.key_id[-4:] in repr(client)
    assert [e["body"] for e in response["logs"]] == ["disk full"]

    async def run() -> dict:
        async with AsyncQueryClient(seeded.http_endpoint, api_key=api_key) as client:
            assert KEY_A.key_secret not in repr(client)
            return await client.metrics.query(metric="cpu", time_window="1h")  # type: ignore[no-any-return]

    assert asyncio.run(run())["series"][0]["value"] == 0.5


def test_a_malformed_api_key_is_refused_without_showing_it() -> None:
    secret = "tfs_do_not_show_me"
    for bad in (secret, f"nokey:{secret}", f"tfk_abc:{secret} "):
        with pytest.raises(CredentialsError) as info:
            QueryClient("http://127.0.0.1:4318", api_key=bad)
        assert secret not in str(info.value)
    with pytest.raises(ConfigError, match="not several"):
        QueryClient("http://127.0.0.1:4318", api_key=f"tfk_a:{secret}", key_id="tfk_b")


def test_list_metrics_returns_the_collector_listing(seeded: Collector) -> None:
    """Needs the collector's ``GET /v1/metrics/names``."""
    with QueryClient(seeded.http_endpoint, key_id=KEY_A.key_id, key_secret=KEY_A.key_secret) as c:
        [cpu] = [m for m in c.list_metrics() if m["name"] == "cpu"]
    assert cpu["series"] == 1 and cpu["points"] == 1 and cpu["last_seen"]

    async def run() -> list[dict]:
        async with AsyncQueryClient(
            seeded.http_endpoint, api_key=f"{KEY_A.key_id}:{KEY_A.key_secret}"
        ) as c:
            return await c.list_metrics()

    assert "cpu" in [m["name"] for m in asyncio.run(run())]


def test_repr_never_shows_a_password_in_the_endpoint() -> None:
    for cls in (QueryClient, AsyncQueryClient):
        client = cls(
            "http://bob:hunter2@127.0.0.1:4318", api_key=f"{KEY_A.key_id}:{KEY_A.key_secret}"
        )
        shown = repr(client)
        assert "hunter2" not in shown and "bob" not in shown
        assert "http://127.0.0.1:4318" in shown
