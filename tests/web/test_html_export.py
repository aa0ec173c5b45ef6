"""``telemetryflow export --html``: a trace file opened from disk, with the network cut off."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from web_helpers import KEY_A, KEY_B, XSS, sdk_client, traces_of, wait_for

from telemetryflow._configuration.enums import SpanKind
from telemetryflow.cli import main
from telemetryflow.collector.web._export import build_html, embedded_json

CLOSER = "</script><script>alert(3)</script>\u2028&amp;"
"""Would end the JSON block early if the file did not escape it."""


def _key(key: Any) -> str:
    return f"{key.key_id}:{key.key_secret}"


@pytest.fixture(scope="module")
def sent(keyed_web: Any) -> dict[str, str]:
    """A three-span trace with logs and an XSS trace, in project alpha."""
    client = sdk_client(keyed_web.collector, "export-shop")
    with client.span("GET /cart", SpanKind.SERVER, {"http.route": "/cart"}):
        with client.span("load cart", attributes={"cart.items": 3}):
            client.log_info("cart loaded", {"order": "o-7"})
        with client.span("price cart", attributes={"currency": "EUR"}):
            client.log_warn("price cache cold")
    with client.span(XSS + CLOSER, attributes={"note": XSS + CLOSER}):
        client.log_warn(XSS + CLOSER)
    client.shutdown(timeout=10)
    wait_for(lambda: len(traces_of(keyed_web.base, "export-shop")) == 2, "both traces")
    by_root = {t["root_name"]: t["trace_id"] for t in traces_of(keyed_web.base, "export-shop")}
    return {"cart": by_root["GET /cart"], "xss": by_root[XSS + CLOSER]}


def _export(base: str, out: Path, *which: str, key: Any = KEY_A) -> int:
    return main(["export", "--html", str(out), *which, "--endpoint", base, "--api-key", _key(key)])


def _open_offline(page: Any, path: Path) -> list[str]:
    """Open ``path`` from disk; every request other than the file itself is aborted."""
    blocked: list[str] = []
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    file_url = path.resolve().as_uri()

    def gate(route: Any) -> None:
        if route.request.url == file_url:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.context.route("**/*", gate)
    page.goto(file_url)
    page.wait_for_selector("body[data-ready=true]")
    page.dialogs = dialogs
    return blocked


def test_exported_trace_opens_from_disk_with_no_request(
    keyed_web: Any, page: Any, sent: Any, tmp_path: Path
) -> None:
    out = tmp_path / "cart.html"
    assert _export(keyed_web.base, out, "--trace", sent["cart"]) == 0
    blocked = _open_offline(page, out)
    names = page.locator("#rows .row .span-name").all_inner_texts()
    assert names == ["GET /cart", "load cart", "price cart"]
    page.locator('#rows .row:has(.span-name:text-is("price cart"))').click()
    assert page.locator("#detail h2").inner_text() == "price cart"
    assert "EUR" in page.locator("#detail").inner_text()
    bodies = page.locator("#trace-logs tbody td.body").all_inner_texts()
    assert bodies == ["cart loaded", "price cache cold"]
    assert blocked == []
    assert page.requested == [out.resolve().as_uri()]  # the file, and nothing else


def test_client_text_in_an_export_stays_inert(
    keyed_web: Any, page: Any, sent: Any, tmp_path: Path
) -> None:
    out = tmp_path / "xss.html"
    assert _export(keyed_web.base, out, "--trace", sent["xss"]) == 0
    text = out.read_text(encoding="utf-8")
    data = text.split('<script type="application/json" id="trace-data">', 1)[1]
    assert "</script" not in data.split("</script>", 1)[0]  # the block ends where it should
    blocked = _open_offline(page, out)
    assert page.locator("#rows .row .span-name").inner_text() == XSS + CLOSER
    page.locator("#rows .row").first.click()
    assert page.locator("#detail h2").inner_text() == XSS + CLOSER
    assert XSS + CLOSER in page.locator("#detail table.kv").nth(1).inner_text()
    assert page.locator("#trace-logs td.body").inner_text() == XSS + CLOSER
    assert page.locator("img").count() == 0
    assert page.dialogs == []
    assert blocked == []


def test_since_exports_every_recent_trace_and_switches_between_them(
    keyed_web: Any, page: Any, sent: Any, tmp_path: Path
) -> None:
    out = tmp_path / "recent.html"
    assert _export(keyed_web.base, out, "--since", "1h") == 0
    blocked = _open_offline(page, out)
    listed = page.locator("#exported li a").all_inner_texts()
    assert sorted(listed) == sorted(["GET /cart", XSS + CLOSER])
    page.locator("#exported li a", has_text="GET /cart").click()
    page.wait_for_function("document.querySelector('#summary h1').innerText === 'GET /cart'")
    assert page.locator("#rows .row .span-name").all_inner_texts()[0] == "GET /cart"
    assert blocked == []


def test_another_projects_trace_is_not_exported(
    keyed_web: Any, sent: Any, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "other.html"
    assert _export(keyed_web.base, out, "--trace", sent["cart"], key=KEY_B) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "not in this key's project" in err and KEY_B.key_secret not in err


def test_embedded_json_cannot_close_its_tag() -> None:
    value = {"name": "</script><!--<script>&\u2028\u2029"}
    text = embedded_json(value)
    assert not re.search("[<>&\u2028\u2029]", text)
    assert json.loads(text) == value
    page = build_html([])
    assert "connect-src 'none'" in page and "default-src 'none'" in page
