"""Deadlines on one thread: in order, cancellable, surviving a failing callback."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from telemetryflow.collector.server import _deadlines
from telemetryflow.collector.server._deadlines import Deadlines


def _threads(name: str) -> int:
    return sum(t.name == name for t in threading.enumerate())


def test_deadlines_run_in_time_order_and_cancelled_ones_never() -> None:
    deadlines = Deadlines("test-deadlines-order")
    ran: list[str] = []
    done = threading.Event()
    deadlines.call_later(1.0, ran.append, "third")
    deadlines.call_later(0.05, ran.append, "first")
    deadlines.call_later(0.3, ran.append, "second").cancel()
    deadlines.call_later(0.4, ran.append, "after the cancelled one")
    deadlines.call_later(1.2, done.set)
    assert done.wait(10)
    assert ran == ["first", "after the cancelled one", "third"]
    assert _threads("test-deadlines-order") <= 1


def test_a_failing_callback_does_not_stop_the_next() -> None:
    deadlines = Deadlines("test-deadlines-failing")
    done = threading.Event()

    def fail() -> None:
        raise RuntimeError("boom")

    deadlines.call_later(0.01, fail)
    deadlines.call_later(0.05, done.set)
    assert done.wait(10)


def test_the_thread_ends_when_idle_and_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deadlines, "_IDLE_EXIT_S", 0.05)
    name = "test-deadlines-idle"
    deadlines = Deadlines(name)
    first = threading.Event()
    deadlines.call_later(0.01, first.set)
    assert first.wait(10)
    give_up = time.monotonic() + 10
    while _threads(name) and time.monotonic() < give_up:
        time.sleep(0.01)
    assert _threads(name) == 0
    again = threading.Event()
    deadlines.call_later(0.01, again.set)
    assert again.wait(10)


def test_cancelled_deadlines_do_not_pile_up() -> None:
    deadlines = Deadlines("test-deadlines-purge")
    for _ in range(5000):
        deadlines.call_later(3600, print).cancel()
    assert len(deadlines._heap) <= 2 * _deadlines._PURGE_AT


def test_a_cancelled_deadline_lets_go_of_its_arguments() -> None:
    """A gRPC call held by a cancelled deadline would keep its stream open for minutes."""

    class Call:
        pass

    call = Call()
    alive = weakref.ref(call)
    Deadlines("test-deadlines-refs").call_later(3600, print, call).cancel()
    del call
    gc.collect()
    assert alive() is None
