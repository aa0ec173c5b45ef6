"""Interleaved rounds, medians and spreads for the benchmark suite.

This kind of machine is noisy (two shared cores, frequency scaling, neighbours), so
absolute times drift by tens of percent between runs. Every comparison here is made
inside one process, with the candidates interleaved round by round in a shuffled
order, and the ratio is taken per round before its median: drift hits both sides of
a ratio alike. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Row",
    "Spread",
    "format_table",
    "interleaved",
    "per_call_us",
    "ratio_rows",
    "rows_from_json",
    "rows_to_json",
]


@dataclass(frozen=True)
class Spread:
    """Median and min–max of a list of samples."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        return cls(statistics.median(samples), min(samples), max(samples))

    def text(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


@dataclass(frozen=True)
class Row:
    """One line of the results table: ours next to the raw OpenTelemetry equivalent."""

    group: str
    name: str
    unit: str
    ours: Spread | None
    raw: Spread | None = None
    ratio: Spread | None = None
    goal: float | None = None
    """The ratio to stay at or under (None: informational)."""
    raw_name: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.ratio is None:
            return None
        return self.ratio.median <= self.goal


def per_call_us(body: Callable[[], object], calls: int) -> float:
    """Microseconds per call of ``body`` over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        body()
    return (time.perf_counter() - start) / calls * 1e6


def interleaved(
    variants: dict[str, Callable[[], float]],
    rounds: int,
    *,
    max_seconds: float,
    min_rounds: int = 3,
    groups: Sequence[Sequence[str]] | None = None,
    between: Callable[[str], None] | None = None,
    warmup: bool = True,
    seed: int = 1,
) -> dict[str, list[float]]:
    """Run every variant once per round and collect their samples.

    Each variant is a function that does a bounded amount of work and returns its
    sample (for instance µs per call). Variants compared with each other belong to
    one of ``groups``: a group's members run back to back, in a shuffled order, so a
    burst of noise hits both sides of a ratio; the groups' order is shuffled too.
    ``between(name)`` runs untimed after each variant (to flush queues). Stops after
    ``rounds`` rounds, or earlier once ``max_seconds`` have passed and ``min_rounds``
    are done. The garbage collector is paused inside a sample and runs between
    samples, so no variant pays for another's garbage.
    """
    rng = random.Random(seed)
    order = [list(group) for group in groups] if groups else [[name] for name in variants]
    if warmup:
        for name in variants:
            variants[name]()
            if between is not None:
                between(name)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    started = time.monotonic()
    for done in range(rounds):
        if done >= min_rounds and time.monotonic() - started > max_seconds:
            break
        rng.shuffle(order)
        for group in order:
            rng.shuffle(group)
            for name in group:
                gc.collect()
                gc.disable()
                try:
                    samples[name].append(variants[name]())
                finally:
                    gc.enable()
                if between is not None:
                    between(name)
    return samples


def ratio_rows(
    group: str,
    samples: dict[str, list[float]],
    pairs: Iterable[tuple[str, str, float | None]],
    unit: str = "µs/call",
    notes: dict[str, str] | None = None,
) -> list[Row]:
    """Rows for (ours, raw, goal) pairs, the ratio taken round by round."""
    rows = []
    for ours, raw, goal in pairs:
        ratios = [a / b for a, b in zip(samples[ours], samples[raw], strict=True) if b > 0]
        rows.append(
            Row(
                group=group,
                name=ours,
                unit=unit,
                ours=Spread.of(samples[ours]),
                raw=Spread.of(samples[raw]),
                ratio=Spread.of(ratios) if ratios else None,
                goal=goal,
                raw_name=raw,
                note=(notes or {}).get(ours, ""),
            )
        )
    return rows


def _fmt_value(spread: Spread | None, unit: str) -> str:
    if spread is None:
        return "–"
    if spread.low == spread.high == spread.median and spread.median >= 1000:
        return f"{spread.median:,.0f}"
    digits = 0 if spread.median >= 100 else 1 if spread.median >= 10 else 2
    return f"{spread.median:.{digits}f} ({spread.low:.{digits}f}–{spread.high:.{digits}f})"


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The results table, as plain text or as a Markdown table."""
    header = ["group", "TelemetryFlow", "raw OpenTelemetry", "unit", "ours", "raw", "ratio", "goal"]
    lines: list[list[str]] = []
    for row in rows:
        ratio = row.ratio.text() if row.ratio is not None else "–"
        goal = "–"
        if row.goal is not None:
            mark = "ok" if row.met else "MISSED"
            goal = f"≤{row.goal:g} {mark}"
        lines.append(
            [
                row.group,
                row.name + (f" [{row.note}]" if row.note else ""),
                row.raw_name or "–",
                row.unit,
                _fmt_value(row.ours, row.unit),
                _fmt_value(row.raw, row.unit),
                ratio,
                goal,
            ]
        )
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for line in lines:
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |")
        return "\n".join(out)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def rows_to_json(rows: Sequence[Row]) -> str:
    return json.dumps([asdict(row) for row in rows])


def rows_from_json(text: str) -> list[Row]:
    rows = []
    for item in json.loads(text):
        for key in ("ours", "raw", "ratio"):
            if item[key] is not None:
                item[key] = Spread(**item[key])
        rows.append(Row(**item))
    return rows
