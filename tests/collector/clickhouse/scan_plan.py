"""What a query's plan reads from each table: ``EXPLAIN indexes = 1``, parsed.

The figure kept per table is the one after every index (min-max, partition, primary
key, skip indexes): the parts and granules the query will actually open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from telemetryflow.collector.store.clickhouse._seam import ChdbConnection

_READ = re.compile(r"ReadFromMergeTree \(\S+\.(\w+)\)")
_PARTS = re.compile(r"Parts: (\d+)/(\d+)")
_GRANULES = re.compile(r"Granules: (\d+)/(\d+)")


@dataclass(frozen=True)
class Read:
    """Parts and granules left for one table, and how many the table has."""

    parts: int
    granules: int
    of_parts: int
    of_granules: int


def plan_reads(ch: ChdbConnection, sql: str, args: Mapping[str, object]) -> dict[str, Read]:
    """Per table the plan reads, the parts and granules left after its last index
    (summed when the plan reads one table more than once)."""
    reads: list[tuple[str, list[int]]] = []
    for (line,) in ch.query(f"EXPLAIN indexes = 1 {sql}", args):
        read = _READ.search(line)
        if read:
            reads.append((read.group(1), [0, 0, 0, 0]))
            continue
        figures = reads[-1][1] if reads else None
        parts, granules = _PARTS.search(line), _GRANULES.search(line)
        if figures is not None and parts:
            figures[0] = int(parts.group(1))  # the last index's figure stays
            figures[2] = max(figures[2], int(parts.group(2)))
        if figures is not None and granules:
            figures[1] = int(granules.group(1))
            figures[3] = max(figures[3], int(granules.group(2)))
    out: dict[str, Read] = {}
    for table, (parts, granules, of_parts, of_granules) in reads:
        seen = out.get(table, Read(0, 0, 0, 0))
        out[table] = Read(seen.parts + parts, seen.granules + granules,
                          seen.of_parts + of_parts, seen.of_granules + of_granules)  # fmt: skip
    return out
