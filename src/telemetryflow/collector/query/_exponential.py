"""Exponential histogram buckets: change of scale, difference and sum.

An OTLP exponential histogram at scale ``s`` counts values in buckets
``(base**i, base**(i+1)]`` with ``base = 2**(2**-s)``. Lowering the scale by ``k``
merges each run of ``2**k`` neighbouring buckets into one: index ``i`` becomes
``i >> k``. That is exact, so two points of one series taken at different scales (the
SDK lowers the scale of a cumulative histogram whenever a new value falls outside
its range) are compared or added after bringing both to the lower scale.

Negative values are folded into the zero count: queries answer percentiles of
non-negative measurements (durations, sizes), as the rest of the collector does.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExpBuckets"]

_MAX_SPAN = 1 << 16
"""Most buckets one merged histogram may span (a guard against absurd offsets)."""


@dataclass(frozen=True)
class ExpBuckets:
    """``counts[j]`` values fell in bucket ``offset + j`` at ``scale``; ``zero`` at or below 0."""

    scale: int
    zero: int
    offset: int
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.zero + sum(self.counts)

    def downscale(self, scale: int) -> ExpBuckets:
        """The same counts at a scale no higher than this one's."""
        shift = self.scale - scale
        if shift <= 0:
            return self
        merged: dict[int, int] = {}
        for j, count in enumerate(self.counts):
            if count:
                index = (self.offset + j) >> shift
                merged[index] = merged.get(index, 0) + count
        return _from_indexed(scale, self.zero, merged)

    def minus(self, earlier: ExpBuckets) -> ExpBuckets | None:
        """What was added since ``earlier`` (a cumulative point of the same stream).

        ``None`` when some bucket went down: the stream was reset in between.
        """
        scale = min(self.scale, earlier.scale)
        now, then = self.downscale(scale), earlier.downscale(scale)
        diff = now._indexed()
        for index, count in then._indexed().items():
            left = diff.get(index, 0) - count
            if left < 0:
                return None
            diff[index] = left
        zero = now.zero - then.zero
        if zero < 0:
            return None
        return _from_indexed(scale, zero, diff)

    def plus(self, other: ExpBuckets) -> ExpBuckets:
        scale = min(self.scale, other.scale)
        total = self.downscale(scale)._indexed()
        for index, count in other.downscale(scale)._indexed().items():
            total[index] = total.get(index, 0) + count
        return _from_indexed(scale, self.zero + other.zero, total)

    def explicit(self) -> tuple[list[float], list[int]] | None:
        """Explicit upper bounds and counts (zero bucket first, then ``(0, base**offset]``).

        ``None`` when the bounds do not fit in a double.
        """
        try:
            base = 2.0 ** (2.0**-self.scale)
            bounds = [0.0, base**self.offset]
            bounds.extend(base ** (self.offset + j + 1) for j in range(len(self.counts)))
        except (OverflowError, ZeroDivisionError):
            return None
        return bounds, [self.zero, 0, *self.counts, 0]

    def _indexed(self) -> dict[int, int]:
        return {self.offset + j: c for j, c in enumerate(self.counts) if c}


def _from_indexed(scale: int, zero: int, indexed: dict[int, int]) -> ExpBuckets:
    used = [i for i, c in indexed.items() if c]
    if not used:
        return ExpBuckets(scale, zero, 0, ())
    low, high = min(used), max(used)
    while high - low >= _MAX_SPAN:  # keep the span bounded: lower the scale once more
        indexed = _halve(indexed)
        scale -= 1
        used = [i for i, c in indexed.items() if c]
        low, high = min(used), max(used)
    return ExpBuckets(scale, zero, low, tuple(indexed.get(i, 0) for i in range(low, high + 1)))


def _halve(indexed: dict[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for index, count in indexed.items():
        out[index >> 1] = out.get(index >> 1, 0) + count
    return out
