"""Session store: opaque tokens, idle expiry, a bounded number of sessions."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from web_helpers import KEY_A, KEY_B

from telemetryflow.collector.server._auth import Authenticator
from telemetryflow.collector.web import COOKIE, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _request(token: str | None = None, authorization: str | None = None) -> Request:
    headers = []
    if token is not None:
        headers.append((b"cookie", f"{COOKIE}={token}".encode()))
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    return Request({"type": "http", "method": "GET", "path": "/ui", "headers": headers})


def _store(clock: Clock, **kwargs: Any) -> SessionStore:
    return SessionStore(Authenticator((KEY_A, KEY_B)), clock=clock, **kwargs)


def test_a_token_is_random_and_not_the_key() -> None:
    store = _store(Clock())
    first = store.sign_in(f"{KEY_A.key_id}:{KEY_A.key_secret}")
    second = store.sign_in(f"{KEY_A.key_id}:{KEY_A.key_secret}")
    assert first and second and first != second
    assert KEY_A.key_secret not in first and KEY_A.key_id not in first
    principal = store.principal(_request(first))
    assert principal is not None and principal.project == "alpha"


def test_wrong_or_malformed_keys_get_no_session() -> None:
    store = _store(Clock())
    for key in (f"{KEY_A.key_id}:{KEY_B.key_secret}", KEY_A.key_secret, "", ":", "x" * 500):
        assert store.sign_in(key) is None
    assert store.principal(_request("made-up-token")) is None


def test_sessions_end_after_idle_time_and_use_extends_them() -> None:
    clock = Clock()
    store = _store(clock, idle_seconds=60)
    token = store.sign_in(f"{KEY_B.key_id}:{KEY_B.key_secret}")
    clock.now += 50
    assert store.principal(_request(token)) is not None  # used: the idle clock restarts
    clock.now += 50
    assert store.principal(_request(token)) is not None
    clock.now += 61
    assert store.principal(_request(token)) is None
    clock.now -= 61
    assert store.principal(_request(token)) is None  # gone for good, not only hidden


def test_the_oldest_session_makes_room_past_the_limit() -> None:
    store = _store(Clock(), max_sessions=3)
    tokens = [store.sign_in(f"{KEY_A.key_id}:{KEY_A.key_secret}") for _ in range(4)]
    assert store.principal(_request(tokens[0])) is None
    assert all(store.principal(_request(t)) is not None for t in tokens[1:])


def test_sign_out_forgets_the_token() -> None:
    store = _store(Clock())
    token = store.sign_in(f"{KEY_A.key_id}:{KEY_A.key_secret}")
    store.sign_out(token)
    assert store.principal(_request(token)) is None


def test_headers_work_without_a_cookie_and_open_mode_needs_nothing() -> None:
    store = _store(Clock())
    bearer = f"Bearer {KEY_B.key_id}:{KEY_B.key_secret}"
    principal = store.principal(_request(authorization=bearer))
    assert principal is not None and principal.project == "beta"
    assert store.principal(_request()) is None
    open_store = SessionStore(Authenticator((), enabled=False))
    assert not open_store.required
    assert open_store.principal(_request()) is not None
