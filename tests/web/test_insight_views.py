"""Errors, events and the overview in a real browser, on data the real SDK sent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from web_helpers import XSS, sdk_client, traces_of, wait_for

from apps.support import uvicorn_server
from telemetryflow import TelemetryFlowClient
from telemetryflow.middleware import FastAPITelemetryMiddleware

FLAGS = {"button": {"variants": {"red": "#c00", "blue": "#00c", "green": "#0c0"},
                    "default": "red", "targets": {"alice": "green", "bob": "blue"}}}  # fmt: skip


class PaymentDeclinedError(RuntimeError):
    pass


class StockMissingError(LookupError):
    pass


def _charge(client: TelemetryFlowClient, order: str) -> str:
    try:
        raise PaymentDeclinedError(f"card declined for {order}")
    except PaymentDeclinedError:
        return client.capture_exception()  # the same place, every call


def _reserve(client: TelemetryFlowClient) -> str:
    try:
        raise StockMissingError(XSS)
    except StockMissingError:
        return client.capture_exception()


def _get(base: str, path: str, **params: str) -> Any:
    answer = httpx.get(base + path, params=params)
    answer.raise_for_status()
    return answer.json()


@pytest.fixture(scope="module")
def captured(open_web: Any) -> dict[str, Any]:
    """Two captures from one place, one from another; events and flag evaluations."""
    client = sdk_client(open_web.collector, "web-errors")
    client.set_feature_flags(FLAGS)
    for order in ("o-1", "o-2"):  # each in its own trace: the group links to one of them
        with client.span("POST /pay"):
            _charge(client, order)
    _reserve(client)
    for user in ("alice", "bob", "carol"):
        client.track_event("signup", {"plan": "free"}, distinct_id=user)
        client.evaluate_flag("button", targeting_key=user)
    client.track_event("signup", distinct_id="alice")
    client.track_event("checkout", distinct_id="bob")
    client.track_event(XSS, distinct_id=XSS)
    client.evaluate_flag("button", targeting_key=XSS)
    client.shutdown(timeout=10)

    def stored() -> bool:
        groups = _get(open_web.base, "/ui/api/errors", service="web-errors")["groups"]
        events = _get(open_web.base, "/ui/api/events", service="web-errors")
        return sum(g["count"] for g in groups) == 3 and len(events["flags"]) == 4

    wait_for(stored, "the captures, events and flag evaluations")  # fmt: skip
    wait_for(lambda: len(traces_of(open_web.base, "web-errors", key=None)) == 2,
             "both traces")  # fmt: skip
    return {"trace_ids": {t["trace_id"] for t in traces_of(open_web.base, "web-errors", None)}}


def test_errors_are_grouped_by_fingerprint(
    open_web: Any, page: Any, captured: Any, screenshots: Path
) -> None:
    page.goto(open_web.base + "/ui/errors?service=web-errors")
    page.wait_for_selector("body[data-ready=true]")
    groups = page.locator("#errors tbody tr.group")
    assert groups.count() == 2
    by_type = {row.locator("td.type").inner_text(): row for row in groups.all()}
    declined = by_type[f"{__name__}.PaymentDeclinedError"]
    assert declined.locator("td.count").inner_text() == "2"
    assert declined.locator("td.message").inner_text().startswith("card declined for o-")
    assert by_type[f"{__name__}.StockMissingError"].locator("td.count").inner_text() == "1"
    assert page.locator("#totals").inner_text() == "2 groups, 3 occurrences"
    # the picture is taken with stacks folded: they hold paths of the machine the test ran on
    page.screenshot(path=str(screenshots / "errors.png"))
    fingerprint = declined.get_attribute("data-fingerprint")
    detail = page.locator(f'#errors tr.group-detail[data-fingerprint="{fingerprint}"]')
    detail.locator("summary").click()
    stack = detail.locator("pre.stack").inner_text()
    assert "Traceback" in stack and "PaymentDeclinedError" in stack and "_charge" in stack


def test_an_error_group_links_to_its_trace(open_web: Any, page: Any, captured: Any) -> None:
    page.goto(open_web.base + "/ui/errors?service=web-errors")
    page.wait_for_selector("body[data-ready=true]")
    links = page.locator("#errors tbody td.trace a")
    assert links.count() == 1  # only the capture inside a span has a trace
    assert page.locator("#errors tbody tr.group:has(td.trace a) td.count").inner_text() == "2"
    links.click()
    page.wait_for_url(re.compile(r"/ui/traces/[0-9a-f]{32}$"))
    assert page.url.rsplit("/", 1)[1] in captured["trace_ids"]
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#summary h1").inner_text().startswith("POST /pay")


@pytest.mark.parametrize(
    ("path", "named"),
    [("/ui/api/errors?nope=1", "nope"), ("/ui/api/events?nope=1", "nope"),
     ("/ui/api/overview?since=yesterday-ish", "since"), ("/ui/api/errors?limit=x", "limit")],
)  # fmt: skip
def test_bad_parameters_are_named(open_web: Any, path: str, named: str) -> None:
    answer = httpx.get(open_web.base + path)
    assert answer.status_code == 400 and named in answer.json()["error"]["message"]


def test_one_error_by_its_id(open_web: Any, captured: Any) -> None:
    groups = _get(open_web.base, "/ui/api/errors", service="web-errors")["groups"]
    sample = groups[0]["sample"]
    found = _get(open_web.base, f"/ui/api/errors/{sample['error_id']}")
    assert found["fingerprint"] == groups[0]["fingerprint"]
    missing = httpx.get(open_web.base + "/ui/api/errors/no-such-error")
    assert missing.status_code == 404


def test_events_count_users_and_flag_variants(
    open_web: Any, page: Any, captured: Any, screenshots: Path
) -> None:
    page.goto(open_web.base + "/ui/events?service=web-errors")
    page.wait_for_selector("body[data-ready=true]")
    events = {
        row.get_attribute("data-event"): row.locator("td").all_inner_texts()[1:3]
        for row in page.locator("#events tbody tr").all()
    }
    assert events == {"signup": ["4", "3"], "checkout": ["1", "1"], XSS: ["1", "1"]}
    variants = {
        row.get_attribute("data-user"): row.locator("td.variant").inner_text()
        for row in page.locator('#flags tbody tr[data-flag="button"]').all()
    }
    assert variants == {"alice": "green", "bob": "blue", "carol": "red", XSS: "red"}
    page.screenshot(path=str(screenshots / "events.png"))


def test_error_text_stays_inert(open_web: Any, page: Any, captured: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    for path, table in (("/ui/errors?service=web-errors", "#errors"),
                        ("/ui?service=web-errors&since=1h", "#errors"),
                        ("/ui/events?service=web-errors", "#events"),
                        ("/ui/events?service=web-errors", "#flags")):  # fmt: skip
        page.goto(open_web.base + path)
        page.wait_for_selector("body[data-ready=true]")
        assert XSS in page.locator(f"{table} tbody").inner_text()
        assert page.locator("img[src=x]").count() == 0
    assert dialogs == []


@pytest.fixture(scope="module")
def served(open_web: Any) -> None:
    """A Starlette app with the middleware under uvicorn: three good requests, one 500."""

    async def order(request: Request) -> PlainTextResponse:
        if request.query_params.get("fail"):
            return PlainTextResponse("broken", status_code=500)
        return PlainTextResponse("ok")

    client = sdk_client(open_web.collector, "web-api")
    app = Starlette(routes=[Route("/orders/{order_id}", order)])
    app.add_middleware(FastAPITelemetryMiddleware, client=client)
    with uvicorn_server(app) as url, httpx.Client(base_url=url) as http:
        statuses = [http.get(f"/orders/{n}").status_code for n in range(3)]
        statuses.append(http.get("/orders/9", params={"fail": "1"}).status_code)
    assert statuses == [200, 200, 200, 500]
    client.shutdown(timeout=10)

    def stored() -> bool:
        routes = _get(open_web.base, "/ui/api/overview", service="web-api")["routes"]
        return [r.get("requests") for r in routes] == [4]

    wait_for(stored, "the request durations")


def test_overview_shows_route_rate_and_errors(
    open_web: Any, page: Any, served: None, captured: Any, screenshots: Path
) -> None:
    page.goto(open_web.base + "/ui")
    page.wait_for_selector("body[data-ready=true]")
    row = page.locator('#routes tbody tr[data-service="web-api"]')
    assert row.count() == 1
    assert row.locator("td.route").inner_text() == "/orders/{order_id}"
    assert row.locator("td.requests").inner_text() == "4"
    assert float(row.locator("td.rate").inner_text().split()[0]) > 0
    assert row.locator("td.error-rate").inner_text() == "25.0 %"
    latest = page.locator("#errors tbody td:nth-child(3)").all_inner_texts()
    assert "web-errors" in latest
    page.screenshot(path=str(screenshots / "overview.png"))


def test_the_root_opens_the_overview(open_web: Any, page: Any, served: None) -> None:
    page.goto(open_web.base + "/")
    page.wait_for_url(re.compile(r"/ui$"))
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#nav-overview").evaluate("a => getComputedStyle(a).fontWeight") == "700"
