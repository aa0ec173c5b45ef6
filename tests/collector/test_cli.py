"""The telemetryflow command: query subcommands, status, collector flags, registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from collector_helpers import (
    KEY_A,
    gauge,
    headers_for,
    kv,
    log_request,
    make_log,
    make_span,
    metrics_request,
    trace_request,
)

from telemetryflow import cli
from telemetryflow.collector import Collector, parse_key_spec, resolve_keys

PB = {"Content-Type": "application/x-protobuf"}
TRACE = "5b8efff798038103d269b633813fc60c"


@pytest.fixture
def env_for(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> Collector:
    monkeypatch.setenv("TELEMETRYFLOW_QUERY_ENDPOINT", collector.http_endpoint)
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_ID", KEY_A.key_id)
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_SECRET", KEY_A.key_secret)
    monkeypatch.delenv("TELEMETRYFLOW_ENDPOINT", raising=False)
    headers = {**PB, **headers_for(KEY_A)}
    url = collector.http_endpoint
    logs = log_request("shop", [make_log("order 42 failed", 17), make_log("order 41 ok", 9)])
    spans = trace_request(
        "shop",
        [
            make_span(TRACE, "1000000000000001", "POST /orders", duration_ms=120),
            make_span(
                TRACE,
                "1000000000000002",
                "INSERT orders",
                parent="1000000000000001",
                duration_ms=40,
                error=True,
            ),
        ],
    )
    httpx.post(f"{url}/v1/logs", content=logs.SerializeToString(), headers=headers)
    httpx.post(f"{url}/v1/traces", content=spans.SerializeToString(), headers=headers)
    points = [
        {"name": "order.value", "value": v, "tags": {"currency": c}}
        for v, c in ((10, "EUR"), (30, "EUR"), (7, "USD"))
    ]
    httpx.post(f"{url}/v1/metrics/batch", json={"points": points}, headers=headers_for(KEY_A))
    return collector


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_logs_table_and_json(env_for: Collector, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "logs", "--severity", "error")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split() == ["TIME", "SEVERITY", "SERVICE", "BODY", "TRACE_ID"]
    assert "ERROR" in row and "order 42 failed" in row and "order 41" not in out
    code, out, _ = run(capsys, "logs", "--json", "--limit", "1")
    assert json.loads(out)["logs"][0]["body"] == "order 41 ok"


def test_metrics_table(env_for: Collector, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "metrics", "order.value", "--agg", "sum")
    assert code == 0
    assert out.splitlines()[0].split() == ["currency", "SUM"]
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:3]}
    assert rows == {"EUR": "40", "USD": "7"}
    code, out, _ = run(
        capsys, "metrics", "order.value", "--agg", "p50", "--tag", "currency=EUR", "--json"
    )
    assert [s["value"] for s in json.loads(out)["series"]] == [20.0]
    code, out, _ = run(capsys, "metrics", "order.value", "--step", "1h", "--window", "2h")
    assert code == 0 and out.splitlines()[0].split() == ["currency", "TIME", "AVG"]


def test_traces_list_and_tree(env_for: Collector, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "traces", "--errors")
    assert code == 0
    assert TRACE in out and "POST /orders" in out and "1 trace(s)" in out
    code, out, _ = run(capsys, "traces", TRACE)
    lines = out.splitlines()
    assert lines[1] == "POST /orders [shop] 120.00 ms"
    assert lines[2] == "  INSERT orders [shop] 40.00 ms  ERROR"


def test_status_reports_reachability_and_credentials(
    env_for: Collector, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "accepted" in out and "project      alpha" in out and "2 logs" in out
    assert "no (plain HTTP)" in out
    code, out, _ = run(capsys, "status", "--json", "--otlp-endpoint", env_for.grpc_endpoint or "")
    result = json.loads(out)
    assert result["ok"] and result["otlp"]["reachable"] and result["received"]["spans"] == 2
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_SECRET", "tfs_wrong")
    code, out, _ = run(capsys, "status")
    assert code == 1 and "REJECTED" in out
    code, out, _ = run(capsys, "status", "--endpoint", "http://127.0.0.1:9", "--timeout", "1")
    assert code == 1 and "reachable    NO" in out and "telemetryflow collector" in out


def test_query_command_errors(
    env_for: Collector, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as refused:
        run(capsys, "metrics", "x", "--agg", "avgg")
    assert refused.value.code == 2 and "last" in capsys.readouterr().err
    code, _, err = run(capsys, "metrics", "x", "--since", "yesterday-ish")
    assert code == 1 and "400" in err
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_SECRET", "tfs_wrong")
    code, _, err = run(capsys, "logs")
    assert code == 1 and "401" in err


def test_every_subcommand_registered(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"collector", "logs", "metrics", "traces", "status", "demo"} <= set(sub.choices)  # type: ignore[attr-defined]
    assert cli.main([]) == 2


def test_discovered_modules_can_add_subcommands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import telemetryflow

    plugin = tmp_path / "_cli_hello.py"
    plugin.write_text(
        "def register(subparsers):\n"
        "    p = subparsers.add_parser('hello')\n"
        "    p.set_defaults(func=lambda args: print('hi') or 0)\n"
    )
    monkeypatch.setattr(telemetryflow, "__path__", [*telemetryflow.__path__, str(tmp_path)])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "_discovered", lambda: ["_cli_hello"])
    assert run(capsys, "hello")[:2] == (0, "hi\n")


def test_key_specs() -> None:
    key = parse_key_spec("tfk_abc:tfs_def@shop")
    assert (key.key_id, key.key_secret, key.project) == ("tfk_abc", "tfs_def", "shop")
    assert "tfs_def" not in repr(key)
    assert parse_key_spec("tfk_abc:tfs_def").project == "default"
    env = {"TELEMETRYFLOW_COLLECTOR_KEYS": "tfk_a:tfs_a@p1, tfk_b:tfs_b"}
    assert [k.key_id for k in resolve_keys(environ=env)] == ["tfk_a", "tfk_b"]
    sdk_env = {"TELEMETRYFLOW_API_KEY_ID": "tfk_s", "TELEMETRYFLOW_API_KEY_SECRET": "tfs_s"}
    assert [k.key_id for k in resolve_keys(environ=sdk_env)] == ["tfk_s"]


def test_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# team keys\ntfk_one:tfs_one@web\n\ntfk_two:tfs_two  # ops\n")
    keys = resolve_keys(keys_file=str(path), environ={})
    assert [(k.key_id, k.project) for k in keys] == [("tfk_one", "web"), ("tfk_two", "default")]


def test_collector_command_refuses_bad_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TELEMETRYFLOW_COLLECTOR_KEYS", "TELEMETRYFLOW_API_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "collector", "--db", ":memory:")
    assert code == 2 and "no API key" in err
    code, _, err = run(capsys, "collector", "--no-auth", "--host", "0.0.0.0")
    assert code == 2 and "--allow-remote" in err
    code, _, err = run(capsys, "collector", "--key", "nokey")
    assert code == 2 and "KEY_ID:KEY_SECRET" in err


def test_collector_command_serves_until_sigterm(tmp_path: Path, subprocess_env: dict) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telemetryflow.collector",
            "--db",
            str(tmp_path / "c.db"),
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--key",
            "tfk_cli:tfs_cli@cli",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env,
    )
    assert proc.stderr is not None
    url = None
    deadline = time.monotonic() + 20
    while url is None and time.monotonic() < deadline:
        match = re.search(r"OTLP/HTTP\s+(http://\S+)", proc.stderr.readline())
        url = match.group(1) if match else None
    assert url is not None
    status = httpx.get(f"{url}/v1/status", headers={"Authorization": "Bearer tfk_cli:tfs_cli"})
    assert status.json()["project"] == "cli"
    proc.terminate()
    assert proc.wait(15) == 0
    proc.stderr.close()


def _post(collector: Collector, path: str, body: bytes) -> None:
    response = httpx.post(
        f"{collector.http_endpoint}{path}", content=body, headers={**PB, **headers_for(KEY_A)}
    )
    assert response.status_code == 200, response.text


def test_series_that_differ_only_at_the_end_never_look_alike(
    env_for: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each tag gets its own column, values whole: no two rows read the same."""
    prefix = "/api/v2/organisations/{organisation_id}/projects/{project_id}/environments/"
    points = [
        {"name": "route.hits", "value": v, "tags": {"route": prefix + end, "region": "eu"}}
        for v, end in ((1, "{env_id}/deploys"), (2, "{env_id}/rollbacks"))
    ]
    httpx.post(
        f"{env_for.http_endpoint}/v1/metrics/batch", json={"points": points},
        headers=headers_for(KEY_A),
    ).raise_for_status()  # fmt: skip
    code, out, _ = run(capsys, "metrics", "route.hits", "--agg", "sum")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "tags of every series: region=eu"
    assert lines[1].split() == ["route", "SUM"]
    rows = [line.split() for line in lines[2:4]]
    assert rows == [[prefix + "{env_id}/deploys", "1"], [prefix + "{env_id}/rollbacks", "2"]]


def test_trace_tree_shows_span_events(
    env_for: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    trace_id = "7a8efff798038103d269b633813fc60c"
    span = make_span(trace_id, "2000000000000001", "GET /cart", duration_ms=50)
    start = span.start_time_unix_nano
    span.events.add(name="cache miss", time_unix_nano=start + 2_000_000,
                    attributes=kv({"cache.key": "cart:42"}))  # fmt: skip
    span.events.add(
        name="exception",
        time_unix_nano=start + 30_000_000,
        attributes=kv({"exception.type": "KeyError", "exception.message": "'sku'",
                       "exception.stacktrace": "Traceback (most recent call last): ..."}),
    )  # fmt: skip
    _post(env_for, "/v1/traces", trace_request("shop", [span]).SerializeToString())
    code, out, _ = run(capsys, "traces", trace_id)
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == "GET /cart [shop] 50.00 ms"
    assert lines[2] == "    * cache miss +2 ms  cache.key=cart:42"
    assert lines[3] == "    * exception +30 ms  KeyError: 'sku'"
    assert "Traceback" not in out


def test_metric_values_use_their_unit(
    env_for: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    """Needs the collector's ``GET /v1/metrics/names`` (the unit comes from there)."""
    heap = gauge("process.heap", [536870912.0])
    heap.unit = "By"
    latency = gauge("db.latency", [0.123])
    latency.unit = "s"
    _post(env_for, "/v1/metrics", metrics_request("shop", [heap, latency]).SerializeToString())
    code, out, _ = run(capsys, "metrics", "process.heap", "--agg", "max")
    assert code == 0 and "512 MiB" in out and "5.36871e+08" not in out
    code, out, _ = run(capsys, "metrics", "db.latency", "--agg", "max")
    assert code == 0 and "123 ms" in out


def test_metrics_without_a_name_lists_the_names(
    env_for: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    """Needs the collector's ``GET /v1/metrics/names``."""
    code, out, _ = run(capsys, "metrics")
    assert code == 0, out
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "TYPE", "UNIT", "SERIES", "POINTS", "LAST_SEEN"]
    assert row.split()[0] == "order.value" and row.split()[3] == "2"
    code, out, _ = run(capsys, "metrics", "--json")
    assert [m["name"] for m in json.loads(out)["metrics"]] == ["order.value"]


def test_gauge_last_and_counter_rate(
    env_for: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    """Needs the collector's ``last`` and ``rate`` aggregations."""
    code, out, err = run(capsys, "metrics", "order.value", "--agg", "last", "--json")
    assert code == 0, err
    assert json.loads(out)["agg"] == "last"
    code, out, err = run(capsys, "metrics", "order.value", "--agg", "rate")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["currency", "RATE"]


def test_format_value_reads_like_a_person_would_write_it() -> None:
    from telemetryflow.cli._render import format_value

    assert format_value(536870912, "By") == "512 MiB"
    assert format_value(1.234, "s") == "1.23 s"
    assert format_value(0.123, "s") == "123 ms"
    assert format_value(250, "ms") == "250 ms"
    assert format_value(1234, "{request}") == "1.23k"
    assert format_value(1200, None) == "1.2k"
    assert format_value(7.0, None) == "7"
    assert format_value(3, "s", "count") == "3"
    assert format_value(1536, "By", "rate") == "1.5 KiB/s"
    assert format_value(None, "s") == "-"


def test_a_malformed_endpoint_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["logs"], ["metrics", "x"], ["traces"], ["status"]):
        code, out, err = run(capsys, *argv, "--endpoint", "http://user:pw@[bad")
        assert code in (1, 2), argv
        assert "must be an http(s) URL" in out + err, argv
        assert "pw@" not in out + err  # the URL may hold user-info: never repeated


def test_escape_sequences_from_clients_never_reach_the_terminal(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A span, service or log body may carry ESC/OSC sequences (retitle the terminal,
    clear the screen, hide a line); the CLI prints them as U+FFFD, never raw."""
    monkeypatch.setenv("TELEMETRYFLOW_QUERY_ENDPOINT", collector.http_endpoint)
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_ID", KEY_A.key_id)
    monkeypatch.setenv("TELEMETRYFLOW_API_KEY_SECRET", KEY_A.key_secret)
    hostile = "pay\x1b]0;owned\x07\x1b[2J\x9b31m"
    headers = {**PB, **headers_for(KEY_A)}
    spans = trace_request(hostile, [make_span(TRACE, "1000000000000001", hostile)])
    logs = log_request(hostile, [make_log(hostile, 17)])
    url = collector.http_endpoint
    httpx.post(f"{url}/v1/traces", content=spans.SerializeToString(), headers=headers)
    httpx.post(f"{url}/v1/logs", content=logs.SerializeToString(), headers=headers)
    printed = ""
    for argv in (("traces",), ("traces", TRACE), ("logs",)):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "pay" in out
        printed += out
    assert not any(ch in printed for ch in "\x1b\x07\x9b")
    assert "pay\ufffd]0;owned" in printed
