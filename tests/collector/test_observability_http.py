"""The observability API end to end: a collector process, curl and the standard library.

One collector process (``python -m telemetryflow.collector``) serves the module; each
test uses names of its own, so counts stay exact. The reference examples run as
written with ``curl`` and with ``urllib.request``, adapted to our base URL and key.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import KEY_A, KEY_B, SRC
from test_observability_validation import BAD_BODIES

from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow._extras.capture import fingerprint_stack_text

FLAGS = {
    "new_checkout": {"rollout": 30},
    "dark_mode": True,
    "beta": {"enabled": False},
    "vip": {"rollout": 0, "targets": {"u_7": True}},
    "button": {"variants": ["red", "blue"], "rollout": {"blue": 50}},
}
STACK = """Traceback (most recent call last):
  File "/srv/shop/billing/webhooks.py", line 88, in deliver
    response = post(url, payload)
TimeoutError: timed out
"""
AUTH_A = f"Authorization: Bearer {KEY_A.key_id}:{KEY_A.key_secret}"
AUTH_B = f"Authorization: Bearer {KEY_B.key_id}:{KEY_B.key_secret}"
CURL = shutil.which("curl")
DOC = Path(__file__).resolve().parents[2] / "docs" / "collector.md"


@dataclass
class Running:
    url: str
    flags_file: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A collector process with two keys of two projects and a flags file."""
    tmp = tmp_path_factory.mktemp("observability")
    flags_file = tmp / "flags.json"
    flags_file.write_text(json.dumps(FLAGS))
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [
        sys.executable, "-m", "telemetryflow.collector", "--db", str(tmp / "c.db"),
        "--no-grpc", "--http-port", "0", "--rate-limit", "0", "--flags", str(flags_file),
        "--key", f"{KEY_A.key_id}:{KEY_A.key_secret}@{KEY_A.project}",
        "--key", f"{KEY_B.key_id}:{KEY_B.key_secret}@{KEY_B.project}",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    url = None
    deadline = time.monotonic() + 30
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        match = re.search(r"OTLP/HTTP\s+(http://\S+)", proc.stderr.readline())
        url = match.group(1) if match else None
    try:
        assert url is not None, "the collector did not start"
        yield Running(url, flags_file)
    finally:
        proc.terminate()
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stderr.close()


# -- requests ---------------------------------------------------------------------------------
def curl(*args: str) -> tuple[int, Any]:
    """Run curl; the HTTP status and the parsed JSON answer."""
    assert CURL is not None
    out = subprocess.run(
        [CURL, "-s", "-w", "\n%{http_code}", *args],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    body, _, status = out.stdout.rpartition("\n")
    return int(status), json.loads(body) if body else None


def call(
    server: Running, method: str, path: str, body: Any = None, auth: str | None = AUTH_A,
    raw: bytes | None = None, content_type: str = "application/json",
) -> tuple[int, Any]:  # fmt: skip
    """One request with urllib.request; the status and the parsed JSON answer."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(server.url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    if auth is not None:
        name, _, value = auth.partition(": ")
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def sdk_client(server: Running, service: str) -> TelemetryFlowClient:
    client = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_A.key_id, KEY_A.key_secret)
        .with_service(service, "1.0.0")
        .with_endpoint(server.url.split("://")[1])
        .with_http()
        .with_insecure()
        .with_global_providers(False)
        .with_feature_flags(file=str(server.flags_file))
        .build()
    )
    client.initialize()
    return client


def group_of(server: Running, error_type: str, auth: str = AUTH_A) -> dict[str, Any] | None:
    status, listing = call(server, "GET", f"/v1/observability/errors?type={error_type}", auth=auth)
    assert status == 200
    groups = listing["groups"]
    assert len(groups) <= 1
    return groups[0] if groups else None


def event_of(server: Running, name: str, auth: str = AUTH_A) -> dict[str, Any] | None:
    status, listing = call(server, "GET", f"/v1/observability/events?event={name}", auth=auth)
    assert status == 200
    return listing["events"][0] if listing["events"] else None


# -- the reference examples ------------------------------------------------------------------
@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_reference_examples_work_with_curl(server: Running) -> None:
    json_header = "Content-Type: application/json"
    status, answer = curl(
        "-X", "POST", f"{server.url}/v1/observability/errors", "-H", AUTH_A, "-H", json_header,
        "-d", '{"message": "payment webhook failed", "code": "WEBHOOK_TIMEOUT", '
        '"tags": {"service": "billing"}}',
    )  # fmt: skip
    assert status == 200 and answer["ok"] is True
    assert re.fullmatch(r"[0-9a-f]{32}", answer["error_id"])
    status, answer = curl(
        "-X", "POST", f"{server.url}/v1/observability/events", "-H", AUTH_A, "-H", json_header,
        "-d", '{"event": "checkout_completed", "properties": {"plan": "pro", "amount_usd": 20}}',
    )  # fmt: skip
    assert (status, answer) == (200, {"ok": True})
    status, answer = curl(
        "-X", "POST", f"{server.url}/v1/observability/metrics", "-H", AUTH_A, "-H", json_header,
        "-d", '{"name": "queue.depth", "value": 42, "tags": {"queue": "emails"}}',
    )  # fmt: skip
    assert (status, answer) == (200, {"ok": True})
    status, answer = curl(
        "-H", AUTH_A, f"{server.url}/v1/observability/flags/new_checkout?user_id=u_123"
    )
    assert status == 200 and answer["enabled"] is False  # u_123 is outside the 30%
    status, answer = curl(
        "-H", AUTH_A, f"{server.url}/v1/observability/flags/new_checkout?user_id=u_7"
    )
    assert status == 200 and answer["enabled"] is True
    # what the examples stored is where the listings and the metric query look
    group = group_of(server, "WEBHOOK_TIMEOUT")
    assert group is not None and group["sample"]["tags"] == {"service": "billing"}
    status, metric = curl(
        "-H", AUTH_A, f"{server.url}/v1/metrics/query?name=queue.depth&agg=max&window=1h"
    )
    assert [(s["tags"], s["value"]) for s in metric["series"]] == [({"queue": "emails"}, 42)]
    checkout = event_of(server, "checkout_completed")
    assert checkout is not None and checkout["count"] >= 1


def test_reference_examples_work_with_urllib(server: Running) -> None:
    status, answer = call(
        server, "POST", "/v1/observability/errors",
        {"message": "card processor down", "code": "URLLIB_PROCESSOR", "tags": {"service": "pay"}},
    )  # fmt: skip
    assert status == 200 and answer["ok"] is True and len(answer["error_id"]) == 32
    body = {"event": "urllib_signup", "properties": {"plan": "pro"}, "distinct_id": "u_1"}
    assert call(server, "POST", "/v1/observability/events", body) == (200, {"ok": True})
    point = {"name": "urllib.queue.depth", "value": 7, "tags": {"queue": "emails"}}
    assert call(server, "POST", "/v1/observability/metrics", point) == (200, {"ok": True})
    status, flag = call(server, "GET", "/v1/observability/flags/dark_mode?user_id=u_123")
    assert (status, flag["enabled"], flag["reason"]) == (200, True, "static")
    group = group_of(server, "URLLIB_PROCESSOR")
    assert group is not None and group["count"] == 1
    assert group["sample"]["error_id"] == answer["error_id"]
    status, found = call(server, "GET", f"/v1/observability/errors/{answer['error_id']}")
    assert (status, found["message"], found["group"]["count"]) == (200, "card processor down", 1)
    assert (
        call(server, "GET", f"/v1/observability/errors/{answer['error_id']}", auth=AUTH_B)[0] == 404
    )
    event = event_of(server, "urllib_signup")
    assert event is not None and (event["count"], event["distinct_ids"]) == (1, 1)
    status, metric = call(server, "GET", "/v1/metrics/query?name=urllib.queue.depth&agg=sum")
    assert [s["value"] for s in metric["series"]] == [7]


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_the_documented_curl_examples_run_as_written(server: Running) -> None:
    section = DOC.read_text(encoding="utf-8").split("## Errors, events and flags over HTTP")[1]
    script = re.search(r"```bash\n(.*?)```", section, re.S)
    assert script is not None
    text = script.group(1).replace("TF=http://127.0.0.1:4318", f"TF={server.url}")
    env = {**os.environ, "TELEMETRYFLOW_API_KEY_ID": KEY_A.key_id,
           "TELEMETRYFLOW_API_KEY_SECRET": KEY_A.key_secret}  # fmt: skip
    out = subprocess.run(
        ["bash", "-e", "-c", text], capture_output=True, text=True, env=env, timeout=60, check=True
    ).stdout
    answers = []
    decoder = json.JSONDecoder()
    position = 0
    while position < len(out):
        answer, position = decoder.raw_decode(out, position)
        answers.append(answer)
    assert len(answers) == 6
    assert answers[0]["ok"] is True and len(answers[0]["error_id"]) == 32
    assert answers[1:3] == [{"ok": True}, {"ok": True}]
    assert answers[3] == {"enabled": False, "key": "new_checkout", "variant": "off",
                          "reason": "split"}  # fmt: skip
    assert any(g["type"] == "WEBHOOK_TIMEOUT" for g in answers[4]["groups"])
    assert [e["event"] for e in answers[5]["events"]] == ["checkout_completed"]


# -- one model ------------------------------------------------------------------------------
def test_sdk_captured_errors_and_events_appear_in_the_listings(server: Running) -> None:
    client = sdk_client(server, "sdk-shop")
    with client.span("POST /webhook"):
        client.capture_error("timed out", code="SDK_TIMEOUT", stack=STACK)
        try:
            raise KeyError("sku-4411")
        except KeyError:
            client.capture_exception(tags={"tenant": "acme"})
    client.track_event("sdk_checkout", {"plan": "pro"}, distinct_id="u_1")
    client.track_event("sdk_checkout", distinct_id="u_2")
    assert client.is_enabled("dark_mode", user_id="u_1")  # a flag evaluation: no product event
    client.shutdown(timeout=10)
    timeout = group_of(server, "SDK_TIMEOUT")
    assert timeout is not None and timeout["count"] == 1  # log record + span event: once
    assert timeout["fingerprint"] == fingerprint_stack_text("SDK_TIMEOUT", STACK)
    assert timeout["sample"]["source"] == "otlp" and timeout["sample"]["service"] == "sdk-shop"
    key_error = group_of(server, "KeyError")
    assert key_error is not None and key_error["count"] == 1
    assert key_error["sample"]["tags"] == {"tenant": "acme"}
    # the same error posted over HTTP joins the SDK's group
    posted = {"message": "timed out", "code": "SDK_TIMEOUT", "stack": STACK}
    assert call(server, "POST", "/v1/observability/errors", posted)[0] == 200
    timeout = group_of(server, "SDK_TIMEOUT")
    assert timeout is not None and timeout["count"] == 2
    assert call(server, "POST", "/v1/observability/events",
                {"event": "sdk_checkout", "distinct_id": "u_3"})[0] == 200  # fmt: skip
    event = event_of(server, "sdk_checkout")
    assert event is not None and (event["count"], event["distinct_ids"]) == (3, 3)
    assert event_of(server, "feature_flag.evaluation") is None
    # another project sees none of it
    assert group_of(server, "SDK_TIMEOUT", auth=AUTH_B) is None
    assert event_of(server, "sdk_checkout", auth=AUTH_B) is None


def test_flag_answers_over_http_match_the_sdk(server: Running) -> None:
    client = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_A.key_id, KEY_A.key_secret)
        .with_service("flags")
        .with_feature_flags(file=str(server.flags_file))
        .build()
    )
    answers = set()
    for i in range(120):
        user = f"user-{i}"
        for key, param in (("new_checkout", "user_id"), ("button", "distinct_id"),
                           ("vip", "targeting_key"), ("beta", "user_id"),
                           ("missing", "user_id")):  # fmt: skip
            status, answer = call(server, "GET", f"/v1/observability/flags/{key}?{param}={user}")
            assert status == 200
            assert answer["enabled"] is client.is_enabled(key, **{param: user}), (key, user)
            if key == "new_checkout":
                answers.add(answer["enabled"])
    assert answers == {True, False}  # both answers occur, so a mismatch would show
    status, unknown = call(server, "GET", "/v1/observability/flags/missing")
    assert (status, unknown["enabled"], unknown["error"]) == (200, False, "flag_not_found")


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "status", "text"), BAD_BODIES)
def test_bad_bodies_get_the_status_naming_the_field(
    server: Running, path: str, body: Any, status: int, text: str
) -> None:
    answer_status, answer = call(server, "POST", f"/v1/observability/{path}", body)
    assert answer_status == status
    assert answer["error"]["code"] == status and text in answer["error"]["message"]


@pytest.mark.parametrize("path", ["errors", "events", "metrics"])
def test_malformed_json_and_missing_keys(server: Running, path: str) -> None:
    url = f"/v1/observability/{path}"
    status, answer = call(server, "POST", url, raw=b'{"message": "unterminated')
    assert status == 400 and "JSON" in answer["error"]["message"]
    status, answer = call(server, "POST", url, {"message": "m", "event": "e"}, auth=None)
    assert status == 401
    wrong = f"Authorization: Bearer {KEY_A.key_id}:tfs_wrong-secret"
    status, answer = call(server, "POST", url, {"message": "m"}, auth=wrong)
    assert status == 401 and "tfs_wrong-secret" not in json.dumps(answer)
    status, _ = call(server, "POST", url, raw=b"message=m", content_type="text/plain")
    assert status == 415


def test_listings_and_flags_need_a_key(server: Running) -> None:
    for path in ("/v1/observability/errors", "/v1/observability/events",
                 "/v1/observability/flags/dark_mode"):  # fmt: skip
        assert call(server, "GET", path, auth=None)[0] == 401
    status, answer = call(server, "GET", "/v1/observability/errors?limit=0")
    assert status == 400 and "limit" in answer["error"]["message"]
    status, answer = call(server, "GET", "/v1/observability/flags/dark_mode?user=u_1")
    assert status == 400 and "user" in answer["error"]["message"]


def test_wrong_methods_get_405_with_allow(server: Running) -> None:
    for method, path, allow in (("POST", "/v1/observability/flags/dark_mode", "GET"),
                                ("DELETE", "/v1/observability/errors/abc", "GET"),
                                ("GET", "/v1/observability/metrics", "POST"),
                                ("PUT", "/v1/observability/events/", "GET, POST")):  # fmt: skip
        request = urllib.request.Request(server.url + path, method=method)
        request.add_header(*AUTH_A.split(": "))
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        with caught.value as answer:
            assert (answer.code, answer.headers["Allow"]) == (405, allow), path
            assert json.loads(answer.read())["error"]["code"] == 405


def test_the_openapi_document_describes_the_observability_api(server: Running) -> None:
    status, document = call(server, "GET", "/openapi.json", auth=None)
    assert status == 200
    paths = document["paths"]
    expected = {
        "/v1/observability/errors": {"get", "post"},
        "/v1/observability/events": {"get", "post"},
        "/v1/observability/metrics": {"post"},
        "/v1/observability/flags/{key}": {"get"},
        "/v1/observability/errors/{error_id}": {"get"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) >= methods, path
        for method in methods:
            responses = paths[path][method]["responses"]
            assert {"200", "400", "401"} <= set(responses), (path, method)
            if method == "post":
                assert "422" in responses
                body = paths[path][method]["requestBody"]["content"]["application/json"]
                schema = body["schema"]
                if "$ref" in schema:
                    schema = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
                assert schema["required"], path


def test_a_bad_flags_file_stops_the_collector_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "flags.json"
    bad.write_text('{"new_checkout": {"rollout": 150}}')
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for path, reason in ((bad, "from 0 to 100"), (tmp_path / "missing.json", "cannot read")):
        done = subprocess.run(
            [sys.executable, "-m", "telemetryflow.collector", "--db", str(tmp_path / "c.db"),
             "--no-grpc", "--http-port", "0", "--no-auth", "--flags", str(path)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "feature_flags" in done.stderr and reason in done.stderr, done.stderr
