"""With keys on: no data without a signed-in key, and only that key's project with one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_helpers import (
    KEY_A,
    KEY_B,
    WebServer,
    sdk_client,
    start_web_collector,
    traces_of,
    wait_for,
)

from telemetryflow.collector.web import COOKIE


@pytest.fixture(scope="module")
def projects(keyed_web: Any) -> dict[str, str]:
    """One trace and one log in project alpha (KEY_A), one of each in beta (KEY_B)."""
    ids = {}
    for key, name in ((KEY_A, "alpha"), (KEY_B, "beta")):
        client = sdk_client(keyed_web.collector, f"svc-{name}", key)
        with client.span(f"{name} request"):
            client.log_info(f"{name} log line")
        client.shutdown(timeout=10)
        ids[name] = wait_for(lambda k=key, n=name: traces_of(keyed_web.base, f"svc-{n}", k),
                             f"{name} trace")[0]["trace_id"]  # fmt: skip
    return ids


def _sign_in(page: Any, base: str, key: str, path: str = "/ui/traces") -> None:
    page.goto(base + path)
    page.locator("#key").fill(key)
    page.locator("#signin-form button[type=submit]").click()


@pytest.mark.parametrize(
    "path", ["/ui/api/traces", "/ui/api/logs", "/ui/api/session", "/ui/api/logs/tail",
             "/ui/api/traces/" + "ab" * 16, "/ui/api/errors", "/ui/api/errors/x",
             "/ui/api/events", "/ui/api/overview"],
)  # fmt: skip
def test_json_without_a_session_is_refused(keyed_web: Any, projects: Any, path: str) -> None:
    answer = httpx.get(keyed_web.base + path)
    assert answer.status_code == 401
    assert "alpha" not in answer.text and "beta" not in answer.text


def test_pages_without_a_session_show_the_sign_in_form(keyed_web: Any, projects: Any) -> None:
    for path in (
        "/ui/traces",
        "/ui/logs",
        f"/ui/traces/{projects['alpha']}",
        "/ui",
        "/ui/errors",
        "/ui/events",
    ):
        answer = httpx.get(keyed_web.base + path)
        assert answer.status_code == 401
        assert 'action="/ui/signin"' in answer.text and 'name="key"' in answer.text


def test_errors_and_events_stay_in_their_project(tmp_path: Path) -> None:
    server = WebServer(start_web_collector(tmp_path))  # its own store: no other test's data
    try:
        for key, name in ((KEY_A, "alpha"), (KEY_B, "beta")):
            client = sdk_client(server.collector, f"errs-{name}", key)
            client.capture_error(f"{name} failure")
            client.track_event(f"{name} signup", distinct_id=f"{name}-user")
            client.shutdown(timeout=10)

        def seen(key: Any, path: str) -> Any:
            bearer = {"Authorization": f"Bearer {key.key_id}:{key.key_secret}"}
            return httpx.get(server.base + path, headers=bearer).json()

        for key, name in ((KEY_A, "alpha"), (KEY_B, "beta")):
            groups = wait_for(lambda k=key: seen(k, "/ui/api/errors")["groups"], "errors")
            assert [g["message"] for g in groups] == [f"{name} failure"]
            events = wait_for(lambda k=key: seen(k, "/ui/api/events")["events"], "events")
            assert [e["event"] for e in events] == [f"{name} signup"]
            overview = seen(key, "/ui/api/overview")
            assert [g["message"] for g in overview["errors"]] == [f"{name} failure"]
    finally:
        server.stop()


def test_a_bad_key_is_refused_and_never_put_in_the_url(
    keyed_web: Any, projects: Any, page: Any
) -> None:
    wrong = f"{KEY_A.key_id}:not-the-secret"
    _sign_in(page, keyed_web.base, wrong)
    page.wait_for_url(re.compile(r"failed=1"))
    assert page.locator("#failed").is_visible()
    assert page.context.cookies() == []
    assert all("secret" not in url and KEY_A.key_id not in url for url in page.requested)


def test_a_key_shows_its_project_only(
    keyed_web: Any, projects: Any, page: Any, screenshots: Path
) -> None:
    page.goto(keyed_web.base + "/ui/signin")
    page.screenshot(path=str(screenshots / "signin.png"))
    _sign_in(page, keyed_web.base, f"{KEY_A.key_id}:{KEY_A.key_secret}", "/ui/traces?since=1h")
    page.wait_for_url(re.compile(r"/ui/traces\?since=1h$"))  # back where the user was going
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#project").inner_text() == "project: alpha"
    assert page.locator("#traces tbody td:nth-child(2)").all_inner_texts() == ["alpha request"]
    page.allowed_errors.append("status of 404")
    page.goto(f"{keyed_web.base}/ui/traces/{projects['beta']}")
    assert "no such trace" in page.locator("#status .error").inner_text()
    page.goto(keyed_web.base + "/ui/logs")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#logs tbody td.body").all_inner_texts() == ["alpha log line"]
    secrets = (KEY_A.key_secret, KEY_B.key_secret)
    assert all(s not in url for url in page.requested for s in secrets)


def test_the_session_cookie_is_opaque_http_only_and_strict(
    keyed_web: Any, projects: Any, page: Any
) -> None:
    _sign_in(page, keyed_web.base, f"{KEY_B.key_id}:{KEY_B.key_secret}")
    page.wait_for_selector("body[data-ready=true]")
    (cookie,) = page.context.cookies()
    assert cookie["name"] == COOKIE
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
    assert KEY_B.key_secret not in cookie["value"] and KEY_B.key_id not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    # the cookie alone opens the JSON, for this project only
    answer = httpx.get(keyed_web.base + "/ui/api/traces", cookies={COOKIE: cookie["value"]})
    assert [t["root_name"] for t in answer.json()["traces"]] == ["beta request"]


def test_signing_out_ends_the_session(keyed_web: Any, projects: Any, page: Any) -> None:
    _sign_in(page, keyed_web.base, f"{KEY_A.key_id}:{KEY_A.key_secret}")
    page.wait_for_selector("body[data-ready=true]")
    token = page.context.cookies()[0]["value"]
    page.locator("#signout button").click()
    page.wait_for_url(re.compile(r"/ui/signin$"))
    assert page.context.cookies() == []
    answer = httpx.get(keyed_web.base + "/ui/api/traces", cookies={COOKIE: token})
    assert answer.status_code == 401  # the old token is dead on the server too


def test_sign_in_from_another_site_is_refused(keyed_web: Any, projects: Any) -> None:
    form = {"key": f"{KEY_A.key_id}:{KEY_A.key_secret}", "next": "/ui/traces"}
    for origin in ({"Origin": "http://evil.example"}, {}):
        answer = httpx.post(keyed_web.base + "/ui/signin", data=form, headers=origin)
        assert answer.status_code == 403
        assert COOKIE not in answer.headers.get("set-cookie", "")


def test_api_key_headers_work_for_scripts(keyed_web: Any, projects: Any) -> None:
    headers = {"Authorization": f"Bearer {KEY_B.key_id}:{KEY_B.key_secret}"}
    answer = httpx.get(keyed_web.base + "/ui/api/logs", headers=headers)
    assert [r["body"] for r in answer.json()["logs"]] == ["beta log line"]
