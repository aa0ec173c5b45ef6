"""Every benchmark, one table: TelemetryFlow next to raw OpenTelemetry, as ratios.

    python benchmarks/run.py            # the full run (under ~10 minutes)
    python benchmarks/run.py --quick    # a short run (under ~2 minutes)

Each benchmark runs in its own process, one after the other, so none disturbs
another: ``bench_core.py`` (metrics, spans, logs, the logging bridge, import time),
``bench_export.py`` (encoding, app CPU per exported span over gRPC and HTTP, memory
under high cardinality and during an outage), ``bench_end_to_end.py`` (app CPU per
exported item for the ``logging`` bridge, ``log_info`` and ``track``), and, when
present, ``bench_track.py``, ``bench_middleware.py``, ``bench_collector.py`` and
``bench_web.py`` (the web view in Chromium), whose own reports are parsed
into rows and also printed as they are. A benchmark that is missing or fails is
reported and skipped.

Ratios are ours / raw OpenTelemetry, measured in the same run with the candidates
interleaved; the spread is the min–max over rounds. The chart goes to
``docs/benchmarks.png`` (skipped, with a note, without matplotlib); ``--update-docs``
also rewrites the results block of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from _harness import Row, Spread, format_table, rows_from_json, rows_to_json

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
CHART = DOCS / "benchmarks.png"
RESULTS_DOC = DOCS / "benchmarks.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Bench:
    """One benchmark script: its arguments per mode, a time limit, and a parser."""

    script: str
    quick: Sequence[str]
    full: Sequence[str]
    limit_quick: float
    limit_full: float
    parse: Callable[[str], list[Row]] | None = None  # None: the script writes JSON rows


# -- parsing the reports of the benchmarks owned elsewhere ------------------------------
_NUM = r"-?\d[\d,]*(?:\.\d+)?"
_SPREAD = rf"({_NUM}) \(({_NUM})[–-]({_NUM})\)"


def _f(text: str) -> float:
    return float(text.replace(",", ""))


def parse_track(report: str) -> list[Row]:
    """``name  median  lo-hi  ratio x (lo-hi)`` lines, ratio to a bare OTel span."""
    rows = []
    pattern = re.compile(
        rf"^(?P<name>\S.*?)\s{{2,}}(?P<m>{_NUM})\s+(?P<lo>{_NUM})-(?P<hi>{_NUM})\s+"
        rf"(?P<r>{_NUM})x \((?P<rlo>{_NUM})-(?P<rhi>{_NUM})\)"
    )
    baseline: Spread | None = None
    for line in report.splitlines():
        match = pattern.match(line.strip())
        if match is None:
            continue
        ours = Spread(_f(match["m"]), _f(match["lo"]), _f(match["hi"]))
        if match["name"].startswith("bare"):
            baseline = ours
            continue
        rows.append(
            Row(
                "track",
                match["name"],
                "µs/call",
                ours,
                baseline,
                Spread(_f(match["r"]), _f(match["rlo"]), _f(match["rhi"])),
                None,
                "start_as_current_span",
            )
        )
    return rows


MIDDLEWARE_GOALS = {"flask": 0.2}
"""Added CPU per request, ours / contrib's, to stay at or under (0.3 when not listed)."""


def parse_middleware(report: str) -> list[Row]:
    """``app  bare  +ours  +contrib  ratio`` lines, each ``median (min–max)``."""
    rows = []
    for line in report.splitlines():
        name = line.split(maxsplit=1)[0] if line.strip() else ""
        found = re.findall(_SPREAD, line)
        if not name.isidentifier() or len(found) < 3:
            continue
        ours = Spread(*(_f(x) for x in found[1]))
        contrib = Spread(*(_f(x) for x in found[2]))
        if len(found) >= 4:
            ratio = Spread(*(_f(x) for x in found[3]))
        else:
            value = ours.median / contrib.median if contrib.median else float("nan")
            ratio = Spread(value, value, value)
        rows.append(
            Row(
                "middleware",
                f"{name}: added per request",
                "µs CPU",
                ours,
                contrib,
                ratio,
                MIDDLEWARE_GOALS.get(name, 0.3),
                "contrib instrumentation",
            )
        )
    return rows


def parse_collector(report: str) -> list[Row]:
    """Ingest rates and query latencies (ours only: there is no raw equivalent)."""
    rows = []
    for line in report.splitlines():
        ingest = re.match(rf"^ingest (\w+)\s+over (\w+)\s*:\s*({_NUM}) (\S+)", line.strip())
        if ingest:
            rate = _f(ingest[3])
            rows.append(
                Row(
                    "collector",
                    f"ingest {ingest[1]} over {ingest[2]}",
                    ingest[4],
                    Spread(rate, rate, rate),
                )
            )
        query = re.match(rf"^query (.+?)\s*: median\s+({_NUM}) ms, p95\s+({_NUM}) ms", line.strip())
        if query:
            median = _f(query[2])
            rows.append(
                Row(
                    "collector",
                    f"query {query[1]}",
                    "ms",
                    Spread(median, median, median),
                    note=f"p95 {query[3]} ms",
                )
            )
    return rows


def parse_web(report: str) -> list[Row]:
    """Web view page timings in Chromium, the live tail's delay and the store's fill rate."""
    rows = []
    for line in report.splitlines():
        page = re.match(rf"^(.+?)\s*: median\s+({_NUM}) ms, min\s+({_NUM}), max\s+({_NUM})", line)
        if page:
            spread = Spread(_f(page[2]), _f(page[3]), _f(page[4]))
            rows.append(Row("web view", page[1], "ms", spread))
        tail = re.match(rf"^(live tail at .+?): .*delay median ({_NUM}) ms, p95 ({_NUM}) ms", line)
        if tail:
            median = _f(tail[2])
            rows.append(Row("web view", f"{tail[1]}: delay", "ms", Spread(median, median, median),
                            note=f"p95 {tail[3]} ms"))  # fmt: skip
        store = re.match(rf"^store: ({_NUM}) spans; .* \(({_NUM}) spans/s\)", line)
        if store:
            rate = _f(store[2])
            rows.append(Row("web view", f"fill a store of {store[1]} spans over OTLP/HTTP",
                            "spans/s", Spread(rate, rate, rate)))  # fmt: skip
    return rows


BENCHES = (
    Bench("bench_core.py", ["--quick"], [], 120, 600),
    Bench("bench_export.py", ["--quick"], [], 150, 600),
    Bench("bench_end_to_end.py", ["--quick"], [], 120, 600),
    Bench("bench_track.py", ["--rounds", "15", "--calls", "300"], [], 60, 300, parse_track),
    Bench(
        "bench_middleware.py",
        ["--rounds", "5", "--requests", "300"],
        [],
        90,
        600,
        parse_middleware,
    ),
    Bench(
        "bench_collector.py",
        ["--requests", "40", "--spans", "20000", "--query-rounds", "5"],
        [],
        90,
        600,
        parse_collector,
    ),
    Bench(
        "bench_web.py",
        ["--spans", "50000", "--rounds", "3", "--tail-seconds", "5"],
        [],
        150,
        900,
        parse_web,
    ),
)


# -- running ------------------------------------------------------------------------------
def run_bench(bench: Bench, quick: bool) -> tuple[list[Row], str]:
    """Run one script in its own process; its rows and, for parsed ones, its report."""
    path = HERE / bench.script
    if not path.exists():
        return [], f"{bench.script}: not present, skipped"
    args = list(bench.quick if quick else bench.full)
    limit = bench.limit_quick if quick else bench.limit_full
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as scratch:
        rows_file = Path(scratch) / "rows.json"
        if bench.parse is None:
            args += ["--json", str(rows_file)]
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, str(path), *args],
                capture_output=True,
                text=True,
                timeout=limit,
                cwd=HERE.parent,
            )
        except subprocess.TimeoutExpired:
            return [], f"{bench.script}: no result within {limit:.0f} s, skipped"
        took = time.monotonic() - started
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            return [], f"{bench.script}: failed (exit {done.returncode}), skipped\n{tail}"
        if bench.parse is None:
            rows = rows_from_json(rows_file.read_text(encoding="utf-8"))
            return rows, f"{bench.script}: {len(rows)} rows in {took:.0f} s"
    rows = bench.parse(done.stdout)
    report = done.stdout.rstrip()
    return rows, f"{bench.script}: {len(rows)} rows in {took:.0f} s\n{report}"


def environment() -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "absent"

    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}; "
        f"opentelemetry-sdk {version('opentelemetry-sdk')}, grpcio {version('grpcio')}, "
        f"protobuf {version('protobuf')}, telemetryflow {version('telemetryflow')}"
    )


# -- outputs --------------------------------------------------------------------------------
def chart(rows: Sequence[Row], path: Path, title: str) -> str:
    """A bar per ratio with its min–max and its goal; optional (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)"
    shown = [r for r in rows if r.ratio is not None and r.ratio.median == r.ratio.median]
    if not shown:
        return "no ratios to chart"
    labels = [f"{r.group}: {r.name}" + (f" vs {r.raw_name}" if r.raw_name else "") for r in shown]
    medians = [max(r.ratio.median, 1e-3) for r in shown if r.ratio is not None]
    lows = [m - max(r.ratio.low, 1e-3) for m, r in zip(medians, shown, strict=True) if r.ratio]
    highs = [max(r.ratio.high, 1e-3) - m for m, r in zip(medians, shown, strict=True) if r.ratio]
    colors = ["#3b7dd8" if r.met is None else "#2e9d55" if r.met else "#d8433b" for r in shown]
    fig, ax = plt.subplots(figsize=(12, 0.36 * len(shown) + 1.6))
    positions = list(range(len(shown)))[::-1]
    ax.barh(positions, medians, color=colors, xerr=[lows, highs], capsize=2, alpha=0.9)
    for y, row in zip(positions, shown, strict=True):
        if row.goal is not None:
            ax.plot([row.goal, row.goal], [y - 0.4, y + 0.4], color="black", linewidth=1.5)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel(
        "ours / raw OpenTelemetry, log scale. Bar: median; whiskers: min–max over rounds;\n"
        "black tick: goal (green: met, red: missed, blue: no goal)",
        fontsize=8,
    )
    ax.set_title(textwrap.fill(title, 110), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"chart written to {path.relative_to(HERE.parent)}"


def update_docs(table: str, header: str) -> str:
    if not RESULTS_DOC.exists():
        return f"{RESULTS_DOC.name} not found: docs not updated"
    text = RESULTS_DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return f"{RESULTS_DOC.name} has no results block: docs not updated"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    block = f"{BEGIN}\n{header}\n\n{table}\n{END}"
    RESULTS_DOC.write_text(head + block + tail, encoding="utf-8")
    return f"results written to {RESULTS_DOC.relative_to(HERE.parent)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about 2 minutes)")
    parser.add_argument(
        "--only", help="comma-separated script names to run, e.g. bench_core,bench_export"
    )
    parser.add_argument("--no-chart", action="store_true", help="do not write the chart")
    parser.add_argument(
        "--update-docs", action="store_true", help=f"rewrite the results in {RESULTS_DOC.name}"
    )
    parser.add_argument("--save", metavar="PATH", help="also save the rows as JSON")
    parser.add_argument(
        "--load", metavar="PATH", help="run nothing: report rows saved earlier with --save"
    )
    args = parser.parse_args(argv)
    wanted = {name.strip().removesuffix(".py") for name in (args.only or "").split(",") if name}
    started = time.monotonic()
    rows: list[Row] = []
    mode = "quick" if args.quick else "full"
    header = (
        f"{mode} run, {datetime.date.today().isoformat()}: {environment()}. "
        "Medians over interleaved rounds, (min–max) across rounds; ratio = ours / raw."
    )
    if args.load:
        saved = json.loads(Path(args.load).read_text(encoding="utf-8"))
        header, rows = saved["header"], rows_from_json(json.dumps(saved["rows"]))
    print(header, flush=True)
    for bench in () if args.load else BENCHES:
        if wanted and bench.script.removesuffix(".py") not in wanted:
            continue
        print(f"running {bench.script} ...", flush=True)
        found, note = run_bench(bench, args.quick)
        rows += found
        print(note, flush=True)
    print()
    table = format_table(rows)
    print(table)
    missed = [r for r in rows if r.met is False]
    print(f"\n{len(rows)} rows, {len(missed)} goals missed, {time.monotonic() - started:.0f} s")
    if args.save:
        payload = {"header": header, "rows": json.loads(rows_to_json(rows))}
        Path(args.save).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    if not args.no_chart:
        print(chart(rows, CHART, header))
    if args.update_docs:
        print(update_docs(format_table(rows, markdown=True), header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
