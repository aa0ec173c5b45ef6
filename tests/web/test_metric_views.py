"""Metric pages in a real browser: the catalogue, and a chart drawn by the page itself."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_helpers import XSS, sdk_client, wait_for


@pytest.fixture(scope="module")
def metrics(open_web: Any) -> None:
    """Two routes' request durations and order counts, exported three times by the SDK."""
    client = sdk_client(open_web.collector, "web-metrics")
    for round_ in range(3):
        for route, scale in (("/buy", 2), ("/cart", 1)):
            value = 0.01 * (round_ + 1) * scale
            client.record_histogram("shop.duration", value, unit="s", attributes={"route": route})
            client.increment_counter("shop.orders", attributes={"route": route})
        client.increment_counter("shop.odd", attributes={"label": XSS})
        client.flush(timeout=10)
        if round_ < 2:
            time.sleep(1.0)  # one export a second: the chart gets points over time
    client.shutdown(timeout=10)

    def stored() -> bool:
        answer = httpx.get(open_web.base + "/ui/api/metrics/shop.orders",
                           params={"agg": "sum", "group_by": "route"}).json()  # fmt: skip
        return [s["value"] for s in answer.get("series", [])] == [3, 3]

    wait_for(stored, "the metric points")


def test_catalogue_lists_names_with_type_and_unit(open_web: Any, page: Any, metrics: None) -> None:
    page.goto(open_web.base + "/ui/metrics?prefix=shop.")
    page.wait_for_selector("body[data-ready=true]")
    rows = {
        row.get_attribute("data-metric"): row.locator("td").all_inner_texts()
        for row in page.locator("#metrics tbody tr").all()
    }
    assert set(rows) == {"shop.duration", "shop.orders", "shop.odd"}
    assert rows["shop.duration"][1:4] == ["histogram", "s", "2"]
    assert rows["shop.orders"][1] == "counter"
    page.locator('#metrics a:text-is("shop.orders")').click()
    page.wait_for_url(re.compile(r"/ui/metrics/shop\.orders$"))
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#metric-name").inner_text() == "shop.orders"


def test_chart_draws_one_line_per_group(
    open_web: Any, page: Any, metrics: None, screenshots: Path
) -> None:
    page.goto(open_web.base + "/ui/metrics/shop.duration?agg=p90&group_by=route&since=30s")
    page.wait_for_selector("body[data-ready=true]")
    labels = page.locator("#series tbody td:first-child").all_inner_texts()
    assert labels == ["route=/buy", "route=/cart"]
    values = page.locator("#series tbody td.num").all_inner_texts()
    assert [float(v) for v in values] == pytest.approx([0.06, 0.03], rel=0.2)
    drawn = page.locator("#chart svg path.series-line, #chart svg circle").count()
    assert drawn == 2
    assert page.locator("select[name=agg]").input_value() == "p90"
    page.screenshot(path=str(screenshots / "metric.png"))


def test_aggregation_and_grouping_live_in_the_url(open_web: Any, page: Any, metrics: None) -> None:
    page.goto(open_web.base + "/ui/metrics/shop.orders?since=10m")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#series tbody tr").count() == 2  # every series: one per route
    page.locator("select[name=agg]").select_option("sum")
    page.locator("select[name=group_by]").select_option("service.name")
    page.locator("#filters button[type=submit]").click()
    page.wait_for_url(re.compile(r"agg=sum.*group_by=service\.name"))
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#series tbody td:first-child").all_inner_texts() == [
        "service.name=web-metrics"
    ]
    assert page.locator("#series tbody td.num").inner_text() == "6"


def test_tag_values_stay_text(open_web: Any, page: Any, metrics: None) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(open_web.base + "/ui/metrics/shop.odd?agg=sum&since=10m&group_by=label")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#series tbody td:first-child").inner_text() == f"label={XSS}"
    assert page.locator("img[src=x]").count() == 0
    assert dialogs == []


def test_bad_aggregation_is_named(open_web: Any, metrics: None) -> None:
    answer = httpx.get(open_web.base + "/ui/api/metrics/shop.orders", params={"agg": "p200"})
    assert answer.status_code == 400 and "agg" in answer.json()["error"]["message"]
