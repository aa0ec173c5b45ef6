"""Retention: an age limit and a size limit, both by receive time, fair between projects.

Clients choose the timestamps inside their data, so retention never reads them: every
row carries ``received_ns``, stamped by the collector when the request arrived, and
both limits go by that stamp. A client whose clock is wrong, or that stamps its data
in the year 2200 on purpose, cannot make its data outlive anyone else's.

The size limit is shared fairly. While the live data is over the limit, the project
holding the most bytes loses its oldest-received rows, a chunk at a time, and the
largest is chosen again after every chunk. A project over the limit therefore only
ever trims itself down towards the others, and a project holding no more than its
fair share (the limit divided by the number of projects) is never the largest while
the database is over the limit, so it keeps everything.

Bytes per project come from the ``storage_usage`` table (rows and bytes per table and
project), so no pass has to scan the whole database. It is brought up to date at the
start of each pass from the rows inserted since the last one (``id`` above a mark kept
in ``meta``), and every delete subtracts what it removed, in the same transaction. A
row's bytes are the lengths of its text columns plus a fixed cost per number, the
same expression for counting and for subtracting, so the figures never drift.

Resources and scopes belong to one project each (their key hashes the project with
the content) and count towards its bytes: a client inventing a large resource per
request pays for it, and no one else loses data for it. Their keys are hashes, not
increasing ids, so the writer charges them as it inserts them (:meth:`charge_shared`)
and a sweep subtracts the ones no row refers to any more. The size limit is met when
the projects' summed bytes are under it, so a file the accounting cannot shrink
(indexes, pages not yet freed) never makes a pass delete everyone's data: a pass
measures the ratio of counted bytes to the file's live bytes (beyond the page each
table and index needs anyway), then trims the counted bytes to what that ratio lets
fit in the limit (never below half of it), and measures again, a few rounds at most.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

__all__ = ["TRIMMED_TABLES", "Retention"]

TRIMMED_TABLES = (
    "spans", "logs", "metric_points", "error_occurrences", "product_events", "metric_exemplars",
)  # fmt: skip
_ROW_OVERHEAD = 16
_NUMBER_BYTES = 8
_MAX_CHUNKS = 400
_IDEMPOTENCY_TTL_NS = 24 * 3600 * 10**9
_SWEEP_AT = 10_000
_ROUNDS = 6
_MIN_SHARE = 0.5  # the smallest rows-to-file ratio a size trim assumes
# (table of shared entries, the column rows refer to it by)
_SHARED = (("resources", "resource_id"), ("scopes", "scope_id"))


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on an autocommit connection; roll back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _column_names(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _size_expression(conn: sqlite3.Connection, table: str) -> str:
    """SQL for one row's bytes: text lengths plus a fixed cost per other column."""
    parts = [str(_ROW_OVERHEAD)]
    for _, name, declared, *_ in conn.execute(f"PRAGMA table_info({table})"):
        if name == "id":
            continue
        if declared.upper() == "TEXT":
            parts.append(f"ifnull(length(CAST({name} AS BLOB)), 0)")
        else:
            parts.append(str(_NUMBER_BYTES))
    return " + ".join(parts)


class Retention:
    """Applies the limits on the writer's connection; the caller holds the write lock."""

    def __init__(self, conn: sqlite3.Connection, max_age_s: float, max_bytes: int) -> None:
        self._conn = conn
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._size = {
            table: _size_expression(conn, table)
            for table in (*TRIMMED_TABLES, *(shared for shared, _ in _SHARED))
        }
        self.sweep_at = _SWEEP_AT
        """Sweep unreferenced resources/scopes once a table holds more than this."""
        self._swept_down_to: dict[str, int] = {}

    def live_bytes(self) -> int:
        """Bytes of the database holding data (excluding free pages)."""
        conn = self._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def run(self, now_ns: int) -> int:
        """One pass: age limit, size limit, then give free pages back. Rows deleted."""
        conn = self._conn
        self.catch_up()
        deleted = 0
        if self.max_age_s > 0:
            deleted += self._expire(now_ns - int(self.max_age_s * 1e9))
        conn.execute(
            "DELETE FROM idempotency WHERE created_ns < ?", (now_ns - _IDEMPOTENCY_TTL_NS,)
        )
        if self.max_bytes > 0:
            deleted += self._trim()
        self._clamp_marks()
        if deleted:
            self._sweep_due()
        conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page only
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # after the vacuum: shrinks the file
        return deleted

    def _sweep_due(self) -> None:
        """Sweep resources and scopes once a table has grown past :attr:`sweep_at`.

        Rows have no index on their references, so a sweep reads the row tables whole:
        outside the size limit it runs only once a table has grown past
        :attr:`sweep_at` entries, then waits for that size to double again.
        """
        for shared, _ in _SHARED:
            count = self._conn.execute(f"SELECT count(*) FROM {shared}").fetchone()[0]  # noqa: S608
            if count > max(self.sweep_at, 2 * self._swept_down_to.get(shared, 0)):
                self._sweep_shared(shared)

    def _sweep_shared(self, shared: str, project: str | None = None) -> None:
        """Delete ``shared`` entries (of ``project``, or all) that no row refers to."""
        conn = self._conn
        column = dict(_SHARED)[shared]
        users = [t for t in TRIMMED_TABLES if column in _column_names(conn, t)]
        scope, args = ("project = ? AND ", (project,)) if project is not None else ("", ())
        used = " UNION ".join(
            f"SELECT {column} FROM {t} WHERE {scope}{column} IS NOT NULL"  # noqa: S608
            for t in users
        )
        where = f"{scope}id NOT IN ({used})"
        every = args * (len(users) + 1)
        with transaction(conn):
            gone = conn.execute(
                f"SELECT project, count(*), sum({self._size[shared]}) FROM {shared} "  # noqa: S608
                f"WHERE {where} GROUP BY project",
                every,
            ).fetchall()
            if gone:
                conn.execute(f"DELETE FROM {shared} WHERE {where}", every)  # noqa: S608
                for owner, rows, size in gone:
                    self._account(shared, owner, -rows, -size)
        left = conn.execute(f"SELECT count(*) FROM {shared}").fetchone()[0]  # noqa: S608
        self._swept_down_to[shared] = int(left)

    def charge_shared(self, shared: str, keys: list[int]) -> None:
        """Add just-inserted ``shared`` entries to their projects' usage.

        Runs inside the writer's transaction, so the entry and its charge commit together.
        """
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ", ".join("?" * len(part))
            for project, rows, size in self._conn.execute(
                f"SELECT project, count(*), sum({self._size[shared]}) FROM {shared} "  # noqa: S608
                f"WHERE id IN ({marks}) GROUP BY project",
                part,
            ).fetchall():
                self._account(shared, project, rows, size)

    # -- accounting ----------------------------------------------------------------------
    def catch_up(self) -> None:
        """Add the rows inserted since the last pass to ``storage_usage``."""
        conn = self._conn
        for table in TRIMMED_TABLES:
            mark = f"usage_mark:{table}"
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (mark,)).fetchone()
            since = int(row[0]) if row else 0
            added = conn.execute(
                f"SELECT project, count(*), sum({self._size[table]}), max(id) "  # noqa: S608
                f"FROM {table} WHERE id > ? GROUP BY project",
                (since,),
            ).fetchall()
            if not added:
                continue
            with transaction(conn):
                for project, rows, size, _ in added:
                    self._account(table, project, rows, size)
                top = max(r[3] for r in added)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (mark, str(top))
                )

    def _clamp_marks(self) -> None:
        """Keep each mark at or below the table's largest id.

        SQLite gives a new row the largest id plus one, so once the newest rows are
        deleted, ids below the old mark are handed out again; they must be counted.
        """
        for table in TRIMMED_TABLES:
            top = self._conn.execute(f"SELECT ifnull(max(id), 0) FROM {table}").fetchone()[0]  # noqa: S608
            self._conn.execute(
                "UPDATE meta SET value = ? WHERE key = ? AND CAST(value AS INTEGER) > ?",
                (str(top), f"usage_mark:{table}", top),
            )

    def _account(self, table: str, project: str, rows: int, size: int) -> None:
        self._conn.execute(
            "INSERT INTO storage_usage (tbl, project, rows, bytes) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tbl, project) DO UPDATE SET rows = max(0, rows + excluded.rows), "
            "bytes = max(0, bytes + excluded.bytes)",
            (table, project, rows, size),
        )

    def usage(self) -> dict[str, int]:
        """Bytes per project over all tables, as of the last :meth:`catch_up`."""
        rows = self._conn.execute(
            "SELECT project, sum(bytes) FROM storage_usage GROUP BY project"
        ).fetchall()
        return {project: int(size) for project, size in rows}

    def _delete(self, table: str, project: str, where: str, args: tuple[object, ...]) -> int:
        """Delete ``project``'s rows of ``table`` matching ``where``, keeping usage exact."""
        conn = self._conn
        with transaction(conn):
            rows, size = conn.execute(
                f"SELECT count(*), ifnull(sum({self._size[table]}), 0) FROM {table} "  # noqa: S608
                f"WHERE project = ? AND {where}",
                (project, *args),
            ).fetchone()
            if rows:
                conn.execute(
                    f"DELETE FROM {table} WHERE project = ? AND {where}",  # noqa: S608
                    (project, *args),
                )
                self._account(table, project, -rows, -size)
        return int(rows)

    # -- limits --------------------------------------------------------------------------
    def _expire(self, cutoff_ns: int) -> int:
        deleted = 0
        for project in self.usage():
            for table in TRIMMED_TABLES:
                deleted += self._delete(table, project, "received_ns < ?", (cutoff_ns,))
        return deleted

    def _target(self) -> int:
        """Summed project bytes to trim down to, for the file to fit in the limit.

        The file holds a page per table and index even when empty, and indexes and page
        overhead make the rest larger than the rows' bytes, by a ratio measured now; it
        is bounded so that data the accounting cannot see (a file from an earlier
        version) never makes a pass trim below half of what the limit leaves for rows.
        """
        conn = self._conn
        trees = conn.execute("SELECT count(*) FROM sqlite_master WHERE rootpage > 0").fetchone()
        fixed = (int(trees[0]) + 1) * int(conn.execute("PRAGMA page_size").fetchone()[0])
        counted = sum(self.usage().values())
        variable = self.live_bytes() - fixed
        share = counted / variable if variable > 0 and counted > 0 else 1.0
        return int(max(0, self.max_bytes - fixed) * min(1.0, max(_MIN_SHARE, share)))

    def _trim(self) -> int:
        """Trim the largest projects' oldest-received rows until the file fits the limit.

        Deleting rows leaves pages part-filled, so the ratio is measured again after
        each round of trimming, for a few rounds at most.
        """
        deleted = 0
        for _ in range(_ROUNDS):
            if self.live_bytes() <= self.max_bytes:
                break
            for shared, _ in _SHARED:  # entries no row refers to go first, whoever owns them
                self._sweep_shared(shared)
            removed = self._trim_to(self._target())
            deleted += removed
            if removed == 0:
                break
        return deleted

    def _trim_to(self, target: int) -> int:
        """Trim the largest project, chunk by chunk, until summed bytes are at ``target``."""
        deleted = 0
        for _ in range(_MAX_CHUNKS):
            usage = {p: size for p, size in self.usage().items() if size > 0}
            if not usage or sum(usage.values()) <= target:
                break
            largest = max(usage, key=lambda p: (usage[p], p))
            removed = self._trim_project(largest)
            for shared, _ in _SHARED:
                self._sweep_shared(shared, largest)
            deleted += removed
            if removed == 0:
                break
        return deleted

    def _trim_project(self, project: str) -> int:
        """Delete about 5 % (at least 100 rows) of each table's oldest-received rows."""
        removed = 0
        for table, rows in self._conn.execute(
            "SELECT tbl, rows FROM storage_usage WHERE project = ? AND rows > 0", (project,)
        ).fetchall():
            if table not in TRIMMED_TABLES:  # resources and scopes go by the sweep
                continue
            chunk = max(100, rows // 20)
            removed += self._delete(
                table,
                project,
                f"id IN (SELECT id FROM {table} WHERE project = ? "  # noqa: S608
                "ORDER BY received_ns, id LIMIT ?)",
                (project, chunk),
            )
        return removed
