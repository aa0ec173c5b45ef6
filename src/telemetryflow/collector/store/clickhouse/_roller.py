"""The thread that rolls explicit histograms up per stream and minute (``_rollup_sql.py``).

Every pass (about once a minute) it rolls the closed minutes after its watermark: those
older than a settle delay, so points still on their way have most likely arrived.
Each roll is one ``INSERT ... SELECT`` computed inside ClickHouse over a bounded span
of minutes, and a pass does a bounded number of them. The first watermark is the
newest minute already rolled, else the start of a bounded look-back (48 h, or the
retention when shorter). Rolling starts a little after the store opens and is paced
(:data:`PACE`): a chDB engine runs one statement at a time, and ingest and queries must
not queue behind a backfill. A failed roll is logged and tried again next pass, and a
query reads only minutes the rollup verifiably holds.
"""

from __future__ import annotations

import logging
import threading
import time

from telemetryflow.collector.store.clickhouse._rollup_sql import (
    MINUTE_NS,
    ROLLUP_TABLE,
    roll_sql,
)
from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

__all__ = ["Roller"]

_log = logging.getLogger("telemetryflow.collector")
LOOK_BACK_S = 48 * 3600
SETTLE_S = 120
CHUNK_MINUTES = 60
"""Minutes rolled by one statement: short, since a chDB engine runs one statement at a
time and ingest and queries wait behind it."""
CHUNKS_PER_PASS = 48
PACE = 3.0
"""After each statement the roller waits this many times as long as the statement
took, so rolling (a backfill of two days included) takes at most a quarter of the
engine, and a request that finds the engine busy waits one short statement at most."""
FIRST_ROLL_DELAY_S = 15.0
"""A new collector first warms its caches and answers its first requests: rolling
starts this long after the store opens."""


class Roller:
    """Rolls closed minutes into the rollup table, on a thread of its own."""

    def __init__(
        self,
        ch: ClickHouseConnection,
        tables: Tables,
        *,
        every_s: float = 60.0,
        retention_s: float = 0.0,
        first_delay_s: float = FIRST_ROLL_DELAY_S,
    ) -> None:
        self.ch = ch
        self.tables = tables
        self.every_s = every_s
        self.first_delay_s = first_delay_s
        self.look_back_s = min(LOOK_BACK_S, retention_s) if retention_s > 0 else LOOK_BACK_S
        self.watermark: int | None = None
        """The first minute (number) not rolled yet; ``None`` until the first pass."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="telemetryflow-clickhouse-rollup", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self._start_watermark(time.time())
        except Exception:  # the first pass tries again, and logs what fails
            _log.debug("the rollup's watermark is read on the first pass instead")
        if self._stop.wait(self.first_delay_s):
            return
        while not self._stop.is_set():
            self.run_pass()
            self._stop.wait(self.every_s)

    def _start_watermark(self, now_s: float) -> None:
        if self.watermark is None:
            self.watermark = max(self._newest_rolled() + 1, int(now_s - self.look_back_s) // 60)

    def run_pass(self, now_s: float | None = None) -> int:
        """Roll what is due; the number of minutes rolled (0 after an error, logged)."""
        now_s = time.time() if now_s is None else now_s
        closed = int(now_s - SETTLE_S) // 60  # minutes before this one are settled
        try:
            self._start_watermark(now_s)
            assert self.watermark is not None
            rolled = 0
            for _ in range(CHUNKS_PER_PASS):
                if self.watermark >= closed:
                    break
                end = min(closed, self.watermark + CHUNK_MINUTES)
                began = time.monotonic()
                self.roll(self.watermark, end)
                rolled += end - self.watermark
                self.watermark = end
                if self._stop.wait(PACE * (time.monotonic() - began)):
                    break
            return rolled
        except Exception as exc:  # the engine's errors have no common type
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            _log.warning("rolling histograms up failed (tried again next pass): %s", reason)
            return 0

    def roll(self, first: int, end: int) -> None:
        """Roll the minutes ``[first, end)`` (minute numbers since the epoch)."""
        self.ch.command(roll_sql(self.tables), {"lo": first * MINUTE_NS, "hi": end * MINUTE_NS})

    def _newest_rolled(self) -> int:
        """The newest minute in the rollup (-1 when empty)."""
        rows = self.ch.query(
            "SELECT if(count() = 0, -1, intDiv(toUnixTimestamp(max(Minute)), 60)) "  # noqa: S608
            f"FROM {self.tables.qualified(ROLLUP_TABLE)}"
        )
        return int(rows[0][0]) if rows else -1

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the statement under way (if any)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
