"""How the query commands print: tables, readable numbers, trace trees.

Kept apart from the commands so the demo and the query commands print alike, and so
the rules for a number (``536870912`` bytes is ``512 MiB``, ``0.123`` s is
``123 ms``, ``1234`` requests is ``1.23k``) live in one place.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = [
    "format_metric_names",
    "format_series",
    "format_table",
    "format_trace_tree",
    "format_value",
    "terminal_text",
]

_BYTES = frozenset(("By", "bytes", "byte", "B"))
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
_DECIMAL = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
# Control characters (C0, DEL, C1): client data printed as-is could move the cursor,
# retitle the terminal or hide lines with escape sequences. Each becomes U+FFFD.
_CONTROLS = dict.fromkeys((*range(0x20), 0x7F, *range(0x80, 0xA0)), "\ufffd")


def terminal_text(value: object) -> str:
    """``value`` as text that is safe to print: no control character survives."""
    return str(value).translate(_CONTROLS)


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    width: int = 60,
    whole: Collection[int] = (),
) -> str:
    """Plain left-aligned columns; cells longer than ``width`` are cut with an
    ellipsis, except in the columns listed in ``whole`` (values that tell rows apart)."""
    cells = [[_cell(v, 10**6 if i in whole else width) for i, v in enumerate(row)] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]  # fmt: skip
    return "\n".join(lines)


def _cell(value: Any, width: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e6 else f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    text = terminal_text(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


# -- numbers -------------------------------------------------------------------------
def _three(value: float) -> str:
    """Three significant digits, no exponent, no trailing zeros (``40``, ``1.5``)."""
    text = f"{value:.3g}"
    if "e" in text and abs(value) >= 1e-4:  # 1000 and up: whole digits, not 1e+03
        text = f"{value:.0f}"
    return text


def _scaled(value: float, steps: Sequence[tuple[float, str]], base: str) -> str:
    """``value`` in the largest step it reaches; rounding up to the next step moves there."""
    size = abs(value)
    for factor, unit in steps:
        if size >= factor * 0.9995:  # 999,600 reads 1M, not 1e+03k
            return f"{_three(value / factor)}{unit}"
    return f"{_three(value)}{base}"


def _compact(value: float) -> str:
    """Plain numbers: ``7``, ``0.25``, ``1.2k``, ``3.4M``."""
    if abs(value) < 999.5:
        return _three(value)
    return _scaled(value, _DECIMAL, "")


def _bytes(value: float) -> str:
    size = abs(value)
    index = 0
    while index < len(_BINARY) - 1 and size >= 1023.5:
        size /= 1024
        index += 1
    sign = "-" if value < 0 else ""
    return f"{sign}{_three(size)} {_BINARY[index]}"


def _duration(seconds: float) -> str:
    size = abs(seconds)
    if size == 0:
        return "0 s"
    if size >= 3600:
        return f"{_three(seconds / 3600)} h"
    if size >= 60:
        return f"{_three(seconds / 60)} min"
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if size >= factor * 0.9995:
            return f"{_three(seconds / factor)} {unit}"
    return f"{_three(seconds / 1e-9)} ns"


def format_value(value: Any, unit: str | None = None, agg: str | None = None) -> str:
    """A metric value for people: by its unit (UCUM, as OpenTelemetry writes it).

    ``count`` is a plain number whatever the unit; ``rate`` is per second.
    """
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    number = float(value)
    kind = (agg or "").lower()
    unit = None if kind == "count" else (unit or None)
    if unit in _BYTES:
        text = _bytes(number)
    elif unit in _TIME_UNITS:
        text = _duration(number * _TIME_UNITS[unit])
    elif unit is None or unit == "1" or (unit.startswith("{") and unit.endswith("}")):
        text = _compact(number)
    elif unit == "%":
        text = f"{_compact(number)}%"
    else:
        text = f"{_compact(number)} {unit}"
    return f"{text}/s" if kind == "rate" else text


# -- metrics -------------------------------------------------------------------------
def format_series(answer: Mapping[str, Any], unit: str | None) -> str:
    """A metric query answer as a table: one column per tag that differs between
    series (so rows never look alike), the tags all series share above it."""
    series: list[Mapping[str, Any]] = list(answer.get("series") or [])
    agg = str(answer.get("agg") or "")
    keys = sorted({k for s in series for k in (s.get("tags") or {})})
    tag_sets = [s.get("tags") or {} for s in series]
    shared = {
        k: tag_sets[0][k]
        for k in keys
        if len(series) > 1 and all(k in t and t[k] == tag_sets[0].get(k) for t in tag_sets)
    }
    columns = [k for k in keys if k not in shared]
    lines: list[str] = []
    if shared:
        lines.append("tags of every series: " + ", ".join(f"{k}={v}" for k, v in shared.items()))
    label = agg.upper() or "VALUE"
    tag_cells = [[t.get(k, "-") for k in columns] for t in tag_sets]
    whole = range(len(columns))
    if answer.get("step"):
        headers = [*columns, "TIME", label]
        rows = [[*cells, p.get("time"), format_value(p.get("value"), unit, agg)]
                for s, cells in zip(series, tag_cells, strict=True)
                for p in s.get("points") or []]  # fmt: skip
    else:
        headers = [*columns, label]
        rows = [[*cells, format_value(s.get("value"), unit, agg)]
                for s, cells in zip(series, tag_cells, strict=True)]  # fmt: skip
    if not columns and not answer.get("step"):
        headers, rows = ["TAGS", *headers], [["(none)", *row] for row in rows]
    lines.append(format_table(headers, rows, whole=whole))
    shown = f" (unit: {unit})" if unit and agg.lower() != "count" else ""
    lines.append(f"{len(series)} series of {answer.get('name')}{shown}")
    if not series:  # most often a name that was never sent: say where the names are
        lines.append("('telemetryflow metrics' lists the metric names that arrived)")
    return "\n".join(lines)


def _when(value: Any) -> Any:
    """``last_seen`` as the collector sends it: an RFC 3339 string, or Unix time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        seconds = value / 1e9 if value > 1e14 else float(value)
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return value


def format_metric_names(metrics: Sequence[Mapping[str, Any]]) -> str:
    """The metric name listing: name, type, unit, series, points, last seen."""
    rows = [(m.get("name"), m.get("type"), m.get("unit") or None, m.get("series"),
             format_value(m.get("points")) if m.get("points") is not None else None,
             _when(m.get("last_seen")))
            for m in metrics]  # fmt: skip
    headers = ("NAME", "TYPE", "UNIT", "SERIES", "POINTS", "LAST_SEEN")
    return format_table(headers, rows, whole=(0,)) + f"\n{len(rows)} metric(s)"


# -- traces --------------------------------------------------------------------------
def _event_line(event: Mapping[str, Any], span_start: Any) -> str:
    name = terminal_text(event.get("name") or "event")
    at = event.get("time_unix_nano")
    offset = ""
    if isinstance(at, int) and isinstance(span_start, int) and at >= span_start:
        offset = f" +{_duration((at - span_start) / 1e9)}"
    attributes = dict(event.get("attributes") or {})
    if name == "exception":
        kind = attributes.pop("exception.type", "")
        message = attributes.pop("exception.message", "")
        attributes.pop("exception.stacktrace", None)
        text = terminal_text(" ".join(f"{kind}: {message}".split())).rstrip(": ")
        detail = f"  {text}" if kind or message else ""
    else:
        detail = ""
    extra = " ".join(f"{k}={_cell(v, 40)}" for k, v in sorted(attributes.items()))
    return f"* {name}{offset}{detail}{'  ' + extra if extra else ''}"


def format_trace_tree(spans: Sequence[dict[str, Any]], depth: int = 0) -> list[str]:
    """One line per span, indented under its parent: name, service, duration, status;
    the span's events (``*`` lines, time after the span's start) right below it."""
    lines: list[str] = []
    for span in spans:
        flag = "  ERROR" if span.get("status") == "ERROR" else ""
        service = f" [{terminal_text(span['service'])}]" if span.get("service") else ""
        indent = "  " * depth
        name = terminal_text(span["name"])
        lines.append(f"{indent}{name}{service} {span['duration_ms']:.2f} ms{flag}")
        for event in span.get("events") or ():
            lines.append(f"{indent}    {_event_line(event, span.get('start_unix_nano'))}")
        lines.extend(format_trace_tree(span.get("children", []), depth + 1))
    return lines
