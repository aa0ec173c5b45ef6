"""Bad query parameters get a 4xx naming the parameter, on every query endpoint.

Each case once answered 500 (or, for a NUL in ``contains``, matched every log).
"""

from __future__ import annotations

import time

import httpx
import pytest
from collector_helpers import log_request, make_log

PB = {"Content-Type": "application/x-protobuf"}
METRICS, LOGS, TRACES = "/v1/metrics/query", "/v1/logs/query", "/v1/traces/query"

CASES = [
    (METRICS, {"name": "m", "tag.a\x00b": "1"}, "tag.KEY"),
    (METRICS, {"name": "m", "tags": '{"a\\u0000b": "1"}'}, "tags"),
    (METRICS, {"name": "m", "tags": {"k": "v\x00"}}, "tags"),
    (METRICS, {"name": "m", **{f"tag.k{i}": "v" for i in range(5000)}}, "tags"),
    (METRICS, {"name": "m", "tags": {f"k{i}": "v" for i in range(5000)}}, "tags"),
    (METRICS, {"name": "m", "group_by": 'route",x'}, "group_by"),
    (METRICS, {"name": "m", "group_by": ",".join(f"k{i}" for i in range(100))}, "group_by"),
    (METRICS, {"name": "m\x00"}, "name"),
    (METRICS, {"name": "m", "service": "a" * 5000}, "service"),
    (METRICS, {"name": "m", "percentile": "nan"}, "percentile"),
    (LOGS, {"contains": "x" * 50_001}, "contains"),
    (LOGS, {"contains": "\x00"}, "contains"),
    (LOGS, {"contains": "%\x00%"}, "contains"),
    (LOGS, {"trace_id": "not-hex"}, "trace_id"),
    (LOGS, {"service": "api\x00"}, "service"),
    (LOGS, {"limit": "1e3"}, "limit"),
    (TRACES, {"trace_id": "g" * 32}, "trace_id"),
    (TRACES, {"name": "x" * 5000}, "name"),
    (TRACES, {"min_duration": "soon"}, "min_duration"),
    (TRACES, {"service": "\x00"}, "service"),
]


RUNS = [
    (method, *case)
    for case in CASES
    for method in ("GET", "POST")
    if method == "POST" or not any(isinstance(v, dict) for v in case[1].values())
]  # objects only travel in a JSON body


@pytest.mark.parametrize(("method", "path", "params", "named"), RUNS)
def test_bad_parameter_gets_400_naming_it(
    http: httpx.Client, method: str, path: str, params: dict, named: str
) -> None:
    get = method == "GET"
    response = http.get(path, params=params) if get else http.post(path, json=params)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]


def test_contains_matches_wildcards_literally(http: httpx.Client) -> None:
    now = time.time_ns()
    records = [make_log("disk 100% full", time_ns=now - 2000),
               make_log("user_id missing", time_ns=now - 1000),
               make_log("plain text", time_ns=now)]  # fmt: skip
    body = log_request("api", records).SerializeToString()
    assert http.post("/v1/logs", content=body, headers=PB).status_code == 200

    def bodies(contains: str) -> list[str]:
        response = http.get(LOGS, params={"contains": contains})
        assert response.status_code == 200, response.text
        return [entry["body"] for entry in response.json()["logs"]]

    assert bodies("%") == ["disk 100% full"]
    assert bodies("_") == ["user_id missing"]
    assert bodies("%%") == []
    assert bodies("\\") == []
    assert len(bodies("s")) == 2


def test_a_window_in_nanoseconds_is_read_to_the_nanosecond(http: httpx.Client) -> None:
    """Three records a nanosecond apart; a window given in Unix nanoseconds (a number in
    a JSON body, digits in a query string) or as decimal seconds keeps exactly the middle
    one. Read through a binary float, such a time is off by up to 128 ns."""
    now = time.time_ns() // 1000 * 1000 + 7  # a nanosecond part a float cannot keep
    records = [make_log(f"at {now + d}", time_ns=now + d) for d in (-1, 0, 1)]
    body = log_request("api", records).SerializeToString()
    assert http.post("/v1/logs", content=body, headers=PB).status_code == 200
    seconds = f"{now // 10**9}.{now % 10**9:09d}"
    for window in ({"since": now, "until": now}, {"since": str(now), "until": str(now)},
                   {"since": seconds, "until": seconds}):  # fmt: skip
        for answer in (http.get(LOGS, params=window), http.post(LOGS, json=window)):
            assert answer.status_code == 200, answer.text
            assert [entry["body"] for entry in answer.json()["logs"]] == [f"at {now}"]


def test_limits_are_published_in_the_openapi_document(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    logs = {p["name"]: p for p in doc["paths"][LOGS]["get"]["parameters"]}
    assert logs["contains"]["schema"]["maxLength"] == 1000
    metrics = {p["name"]: p for p in doc["paths"][METRICS]["get"]["parameters"]}
    assert "32" in metrics["tags"]["description"]
