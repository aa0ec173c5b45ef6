"""Exemplars on the metric chart: each is a mark that opens the trace it was measured in."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from web_helpers import sdk_client, traces_of, wait_for

from telemetryflow._configuration.enums import SpanKind

SERVICE = "web-exemplars"


@pytest.fixture(scope="module")
def measured(open_web: Any) -> dict[str, str]:
    """Two requests, each timed inside its own span; the trace id of each by span name."""
    client = sdk_client(open_web.collector, SERVICE)
    for name, value in (("GET /fast", 0.02), ("GET /slow", 0.4)):
        with client.span(name, SpanKind.SERVER):
            client.record_histogram("exemplar.duration", value, unit="s",
                                    attributes={"route": "/r"})  # fmt: skip
        client.flush(timeout=10)
    client.shutdown(timeout=10)

    def exemplars() -> list[dict[str, Any]]:
        answer = httpx.get(open_web.base + "/ui/api/metrics/exemplar.duration",
                           params={"agg": "max", "since": "10m"}).json()  # fmt: skip
        found = [e for s in answer.get("series", []) for e in s.get("exemplars", [])]
        return found if len(found) == 2 else []

    wait_for(exemplars, "the exemplars")
    wait_for(lambda: len(traces_of(open_web.base, SERVICE, None)) == 2, "the two traces")
    by_value = {e["value"]: e["trace_id"] for e in exemplars()}
    return {"GET /fast": by_value[0.02], "GET /slow": by_value[0.4]}


def test_clicking_an_exemplar_opens_its_trace(
    open_web: Any, page: Any, measured: dict[str, str]
) -> None:
    page.goto(open_web.base + "/ui/metrics/exemplar.duration?agg=p90&since=10m")
    page.wait_for_selector("body[data-ready=true]")
    marks = page.locator("#chart svg a.exemplar")
    assert sorted(m.get_attribute("data-trace-id") for m in marks.all()) == sorted(
        measured.values()
    )
    slow = measured["GET /slow"]
    page.locator(f'#chart a.exemplar[data-trace-id="{slow}"]').click()
    page.wait_for_url(re.compile(rf"/ui/traces/{slow}$"))
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#rows .row .span-name").all_inner_texts() == ["GET /slow"]


def test_no_exemplars_on_a_sum(open_web: Any, page: Any, measured: dict[str, str]) -> None:
    page.goto(open_web.base + "/ui/metrics/exemplar.duration?agg=sum&since=10m")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#chart svg path.series-line, #chart svg circle").count() == 1
    assert page.locator("#chart svg a.exemplar").count() == 0
