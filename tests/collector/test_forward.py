"""Forwarding: everything a collector accepts reaches each upstream, at least once.

A real collector forwards to real loopback OTLP receivers (``OTLPReceiver``) over
gRPC and HTTP; the tests count what arrived upstream by name, stop and restart
upstreams and collectors, and never wait without a bound.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_helpers import KEY_A, headers_for, log_request, make_log, make_span, trace_request

from telemetryflow import TelemetryFlowBuilder
from telemetryflow._exporting.retry import RetryPolicy
from telemetryflow.collector import Collector
from telemetryflow.collector.forward import (
    ForwardConfig,
    LinkLimits,
    parse_upstream,
    resolve_forward,
)
from telemetryflow.testing import OTLPReceiver

PB = {"Content-Type": "application/x-protobuf"}
FAST = LinkLimits(
    timeout=2.0, retry=RetryPolicy(max_retries=1, initial_backoff=0.1, max_backoff=0.5)
)
"""Short attempts and backoff, so an upstream back from an outage is seen quickly."""


def upstream_url(receiver: OTLPReceiver, protocol: str) -> str:
    if protocol == "grpc":
        return f"grpc://{receiver.grpc_endpoint}"
    return receiver.http_endpoint


def forwarding(
    *urls: str, headers: tuple[str, ...] = (), limits: LinkLimits = FAST
) -> ForwardConfig:
    return resolve_forward(urls, headers, environ={}, limits=limits)


def post_spans(collector: Collector, names: list[str], *, timeout: float = 10.0) -> None:
    """One OTLP/HTTP request with a span per name; fails the test unless it is stored."""
    spans = [make_span(f"{i + 1:032x}", f"{i + 1:016x}", name) for i, name in enumerate(names)]
    response = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=trace_request("shop", spans).SerializeToString(),
        headers={**PB, **headers_for(KEY_A)},
        timeout=timeout,
    )
    assert response.status_code == 200, response.text


def forward_status(collector: Collector) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{collector.http_endpoint}/v1/status", headers=headers_for(KEY_A), timeout=10
    )
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()["forwarding"]
    return entries


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def settled(collector: Collector) -> bool:
    return all(entry["pending"] == 0 for entry in forward_status(collector))


@pytest.fixture
def upstream() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as rx:
        yield rx


@pytest.fixture
def second_upstream() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as rx:
        yield rx


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(("sdk", "hop"), [("grpc", "http"), ("http", "grpc")])
def test_everything_the_sdk_sends_arrives_upstream_once(
    make_collector: Callable[..., Collector], upstream: OTLPReceiver, sdk: str, hop: str
) -> None:
    collector = make_collector(forward=forwarding(upstream_url(upstream, hop)))
    builder = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_A.key_id, KEY_A.key_secret)
        .with_service("shop", "2.0.0")
        .with_insecure()
        .with_batch_settings(max_size=64)
    )
    if sdk == "grpc":
        builder = builder.with_endpoint(collector.grpc_endpoint or "").with_grpc()
    else:
        builder = builder.with_endpoint(collector.http_endpoint.split("://")[1]).with_http()
    client = builder.build()
    client.initialize()
    for i in range(300):
        with client.span(f"op-{i}"):
            client.log_info(f"line-{i}")
    client.increment_counter("orders.total", value=3, attributes={"route": "/buy"})
    client.shutdown(timeout=10)
    assert client.get_status()["spans_sent"] == 300

    assert upstream.wait_for(lambda: len(upstream.spans()) >= 300, timeout=20)
    assert upstream.wait_for_logs(300, timeout=20)
    assert upstream.wait_for_metric("orders.total", timeout=20) is not None
    assert wait_until(lambda: settled(collector), timeout=20)
    assert Counter(upstream.span_names()) == Counter(f"op-{i}" for i in range(300))
    assert Counter(str(log.body) for log in upstream.logs()) == Counter(
        f"line-{i}" for i in range(300)
    )
    assert upstream.resource_attributes("traces")["service.name"] == "shop"
    assert upstream.resource_attributes("traces")["service.version"] == "2.0.0"
    [entry] = forward_status(collector)
    assert entry["upstream"] == upstream_url(upstream, hop)
    assert (entry["protocol"], entry["pending"], entry["dropped"]) == (hop, 0, 0)
    assert entry["delivered"] >= 600  # spans, logs and the counter's data points


def test_an_upstream_outage_of_ten_seconds_loses_nothing(
    make_collector: Callable[..., Collector], upstream: OTLPReceiver
) -> None:
    collector = make_collector(forward=forwarding(upstream_url(upstream, "grpc")))
    post_spans(collector, ["before"])
    assert upstream.wait_for_spans(1, timeout=10)
    upstream.go_down()
    outage_ends = time.monotonic() + 10
    sent = 0
    while time.monotonic() < outage_ends:  # ingestion carries on through the outage
        post_spans(collector, [f"during-{sent}-{j}" for j in range(5)])
        sent += 1
        time.sleep(0.5)
    assert forward_status(collector)[0]["pending"] == sent * 5
    upstream.come_back()
    post_spans(collector, ["after"])
    expected = ["before", "after"] + [f"during-{i}-{j}" for i in range(sent) for j in range(5)]
    assert upstream.wait_for(lambda: len(upstream.spans()) >= len(expected), timeout=30)
    assert wait_until(lambda: settled(collector), timeout=10)
    assert Counter(upstream.span_names()) == Counter(expected)
    entry = forward_status(collector)[0]
    assert (entry["delivered"], entry["dropped"]) == (len(expected), 0)
    assert entry["last_error"] == "gRPC UNAVAILABLE"


def test_a_dead_upstream_slows_neither_ingestion_nor_another_upstream(
    make_collector: Callable[..., Collector],
    upstream: OTLPReceiver,
    second_upstream: OTLPReceiver,
    closed_port: int,
) -> None:
    """A closed port and an upstream that never answers, beside a healthy one.

    Every export to the collector completes within the SDK's export deadline (the
    default 10 s attempt timeout, as the request's own timeout) although an attempt
    upstream may take 30 s, and the healthy upstream gets everything while the other
    two hold their copies.
    """
    second_upstream.blackhole()
    patient = LinkLimits(timeout=30.0, retry=FAST.retry)  # an attempt outlasts the export's
    collector = make_collector(
        forward=forwarding(
            f"http://127.0.0.1:{closed_port}",
            upstream_url(second_upstream, "grpc"),
            upstream_url(upstream, "http"),
            limits=patient,
        )
    )
    names = [f"op-{i}-{j}" for i in range(40) for j in range(5)]
    for i in range(40):
        post_spans(collector, names[i * 5 : i * 5 + 5], timeout=10.0)
    assert upstream.wait_for(lambda: len(upstream.spans()) >= len(names), timeout=20)
    assert Counter(upstream.span_names()) == Counter(names)
    assert wait_until(lambda: forward_status(collector)[2]["pending"] == 0, timeout=10)
    dead, hanging, healthy = forward_status(collector)
    assert healthy["delivered"] == len(names)
    assert dead["pending"] == hanging["pending"] == len(names)
    assert dead["delivered"] == hanging["delivered"] == 0


def test_a_restarted_collector_sends_what_was_pending(
    make_collector: Callable[..., Collector], upstream: OTLPReceiver, tmp_path: Path
) -> None:
    config = forwarding(upstream_url(upstream, "http"))
    db = str(tmp_path / "resume.db")
    upstream.go_down()
    first = make_collector(db_path=db, forward=config)
    post_spans(first, [f"kept-{i}" for i in range(7)])
    assert forward_status(first)[0]["pending"] == 7
    first.stop()
    upstream.come_back()
    second = make_collector(db_path=db, forward=config)
    post_spans(second, ["new"])
    expected = ["new"] + [f"kept-{i}" for i in range(7)]
    assert upstream.wait_for(lambda: len(upstream.spans()) >= 8, timeout=30)
    assert wait_until(lambda: settled(second), timeout=10)
    assert Counter(upstream.span_names()) == Counter(expected)
    assert forward_status(second)[0]["delivered"] == 8


def test_only_accepted_items_are_forwarded(
    make_collector: Callable[..., Collector], upstream: OTLPReceiver
) -> None:
    """A request answered with partial success goes upstream minus what was refused."""
    collector = make_collector(forward=forwarding(upstream_url(upstream, "grpc")))
    spans = [
        make_span(f"{1:032x}", f"{1:016x}", "good-1"),
        make_span("0" * 32, f"{2:016x}", "no-trace-id"),
        make_span(f"{3:032x}", f"{3:016x}", "good-2"),
    ]
    response = httpx.post(
        f"{collector.http_endpoint}/v1/traces",
        content=trace_request("shop", spans).SerializeToString(),
        headers={**PB, **headers_for(KEY_A)},
    )
    assert response.status_code == 200
    logs = httpx.post(
        f"{collector.http_endpoint}/v1/logs",
        content=log_request(
            "shop", [make_log("kept"), make_log("late", time_ns=2**63)]
        ).SerializeToString(),
        headers={**PB, **headers_for(KEY_A)},
    )
    assert logs.status_code == 200
    assert upstream.wait_for(lambda: len(upstream.spans()) >= 2, timeout=10)
    assert upstream.wait_for_logs(1, timeout=10)
    assert wait_until(lambda: settled(collector), timeout=10)
    assert sorted(upstream.span_names()) == ["good-1", "good-2"]
    assert [str(log.body) for log in upstream.logs()] == ["kept"]
    assert upstream.resource_attributes("traces") == {"service.name": "shop"}


def test_a_full_buffer_drops_and_counts_without_blocking(
    make_collector: Callable[..., Collector], closed_port: int
) -> None:
    small = LinkLimits(queue_bytes=4096, spool_bytes=4096, timeout=1.0, retry=FAST.retry)
    collector = make_collector(forward=forwarding(f"grpc://127.0.0.1:{closed_port}", limits=small))
    for i in range(30):
        post_spans(collector, [f"op-{i}-{j}" for j in range(10)])
    assert wait_until(lambda: forward_status(collector)[0]["dropped"] > 0, timeout=10)
    entry = forward_status(collector)[0]
    assert entry["delivered"] == 0
    assert entry["pending"] + entry["dropped"] == 300  # every item accounted for
    assert entry["dropped_by_reason"] == {"queue_full": entry["dropped"]}


def test_headers_reach_the_upstream_and_no_secret_is_shown(
    make_collector: Callable[..., Collector],
    upstream: OTLPReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://forwarder:url-secret-9@127.0.0.1:{upstream.http_port}"
    config = forwarding(url, headers=("X-Api-Key=header-secret-7",))
    collector = make_collector(forward=config)
    post_spans(collector, ["one"])
    assert upstream.wait_for_spans(1, timeout=10)
    headers = upstream.requests[0].headers
    assert headers["x-api-key"] == "header-secret-7"
    assert headers["authorization"].startswith("Basic ")
    assert not [name for name in headers if name.startswith("x-telemetryflow")]  # ours only
    status = httpx.get(f"{collector.http_endpoint}/v1/status", headers=headers_for(KEY_A)).text
    overview = httpx.get(f"{collector.http_endpoint}/ui/api/overview", headers=headers_for(KEY_A))
    assert [u["upstream"] for u in overview.json()["forwarding"]] == [
        f"http://***@127.0.0.1:{upstream.http_port}"
    ]
    shown = [status, overview.text, caplog.text, repr(config), repr(config.upstreams)]
    shown.append(repr(collector.config))
    for text in shown:
        assert "header-secret-7" not in text and "url-secret-9" not in text
    assert forward_status(collector)[0]["upstream"] == (
        f"http://***@127.0.0.1:{upstream.http_port}"
    )


def test_upstreams_come_from_flags_else_the_environment() -> None:
    env = {
        "TELEMETRYFLOW_COLLECTOR_FORWARD": "grpc://127.0.0.1:4317, https://example.test/otlp",
        "TELEMETRYFLOW_COLLECTOR_FORWARD_HEADERS": "x-api-key=abc,x-team=core",
    }
    config = resolve_forward(environ=env)
    assert [u.display for u in config.upstreams] == [
        "grpc://127.0.0.1:4317",
        "https://example.test/otlp",
    ]
    assert [(u.protocol, u.tls) for u in config.upstreams] == [("grpc", False), ("http", True)]
    assert dict(config.headers) == {"x-api-key": "abc", "x-team": "core"}
    flags = resolve_forward(["grpcs://127.0.0.1:4317"], ["k=v"], environ=env)
    assert [u.display for u in flags.upstreams] == ["grpcs://127.0.0.1:4317"]
    assert dict(flags.headers) == {"k": "v"}
    assert not resolve_forward(environ={})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://127.0.0.1:21", "must start with"),
        ("grpc://127.0.0.1:4317/path", "cannot have a path"),
        ("http://127.0.0.1:99999", "port"),
        ("http://:4318", "no host"),
        ("http://127.0.0.1:4318/?q=1", "query"),
    ],
)
def test_unusable_forward_urls_are_refused_by_name(url: str, problem: str) -> None:
    from telemetryflow._configuration.errors import ConfigError

    with pytest.raises(ConfigError, match=problem) as caught:
        parse_upstream(url)
    assert caught.value.field == "forward"


def test_a_header_is_refused_without_showing_its_value() -> None:
    from telemetryflow._configuration.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        forwarding("grpc://127.0.0.1:4317", headers=("Bad Name=secret-value-1",))
    assert "secret-value-1" not in str(caught.value)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        forwarding("grpc://127.0.0.1:4317", headers=("no-equals-sign",))


def test_the_collector_command_forwards_and_status_shows_it(
    upstream: OTLPReceiver,
    tmp_path: Path,
    subprocess_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``telemetryflow collector`` with the upstream from the environment and a header
    flag; ``telemetryflow status`` lists it; no secret in the banner, logs or status."""
    from telemetryflow import cli

    env = {
        **subprocess_env,
        "TELEMETRYFLOW_COLLECTOR_FORWARD": f"http://user:url-secret-9@127.0.0.1:{upstream.http_port}",
    }
    argv = [sys.executable, "-m", "telemetryflow.collector", "--db", str(tmp_path / "c.db"),
            "--grpc-port", "0", "--http-port", "0", "--key", "tfk_cli:tfs_cli@cli",
            "--forward-header", "X-Api-Key=header-secret-7", "--log-level", "DEBUG"]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    text = shown = ""
    try:
        banner = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (banner and "Press Ctrl+C" in banner[-1]):
            banner.append(proc.stderr.readline())
        text = "".join(banner)
        url = re.search(r"OTLP/HTTP\s+(http://\S+)", text)
        assert url is not None, text
        assert f"forward    http://***@127.0.0.1:{upstream.http_port}" in text
        assert "X-Api-Key (values hidden)" in text
        response = httpx.post(
            f"{url.group(1)}/v1/traces",
            content=trace_request(
                "shop", [make_span(f"{1:032x}", f"{1:016x}", "one")]
            ).SerializeToString(),
            headers={**PB, "Authorization": "Bearer tfk_cli:tfs_cli"},
        )
        assert response.status_code == 200
        assert upstream.wait_for_spans(1, timeout=10)
        assert upstream.requests[0].headers["x-api-key"] == "header-secret-7"
        monkeypatch.setenv("TELEMETRYFLOW_API_KEY_ID", "tfk_cli")
        monkeypatch.setenv("TELEMETRYFLOW_API_KEY_SECRET", "tfs_cli")
        monkeypatch.delenv("TELEMETRYFLOW_ENDPOINT", raising=False)

        def status_line() -> str:
            assert cli.main(["status", "--endpoint", url.group(1)]) == 0
            out = capsys.readouterr().out
            return next((ln for ln in out.splitlines() if "forwarding" in ln), "")

        assert wait_until(lambda: "delivered 1 " in status_line(), timeout=10)
        shown = status_line()
        assert f"http://***@127.0.0.1:{upstream.http_port}" in shown and "pending 0" in shown
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        logs = text + proc.stderr.read()
        proc.stderr.close()
    assert "header-secret-7" not in logs + shown and "url-secret-9" not in logs + shown
