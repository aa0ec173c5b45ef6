"""The web view in Chromium: trace list on a large store, a 5,000-span waterfall, live tail.

    python benchmarks/bench_web.py                 # 1,000,000 spans (or what --fill-seconds allows)
    python benchmarks/bench_web.py --spans 100000  # a quicker run

The store is filled through the collector's own OTLP/HTTP receiver (protobuf requests
of ``--batch`` spans, two senders), and the time to fill it is reported. Timings come
from Playwright driving the system's Chromium (``/usr/bin/chromium``, or
``TELEMETRYFLOW_CHROMIUM``): from navigation start to the page marking itself ready,
and for the live tail from a record's send time (in its body) to its row appearing.
Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import httpx
from bench_collector import AUTH, NAMES, SERVICES, _resource, start_collector
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

CHROMIUM = os.environ.get("TELEMETRYFLOW_CHROMIUM", "/usr/bin/chromium")
PROTOBUF = {"Authorization": AUTH, "Content-Type": "application/x-protobuf"}


def _traces_body(traces: int, service: str) -> bytes:
    """``traces`` traces of 5 spans (a root and four children) over the last hour."""
    now = time.time_ns()
    spans = []
    for _ in range(traces):
        trace_id, root = random.randbytes(16), random.randbytes(8)
        start = now - random.randrange(3600 * 10**9)
        for j in range(5):
            spans.append(Span(
                trace_id=trace_id, span_id=root if j == 0 else random.randbytes(8),
                parent_span_id=b"" if j == 0 else root, name=NAMES[j],
                kind=Span.SPAN_KIND_SERVER if j == 0 else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start + j * 1000,
                end_time_unix_nano=start + j * 1000 + random.randrange(10**5, 5 * 10**8),
            ))  # fmt: skip
    request = ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=_resource(service), scope_spans=[ScopeSpans(spans=spans)])
    ])  # fmt: skip
    return request.SerializeToString()


def _big_trace(count: int) -> tuple[str, bytes]:
    """One trace of ``count`` spans: a root, 50 operations, the rest spread under them."""
    now = time.time_ns()
    trace_id, root = random.randbytes(16), random.randbytes(8)
    parents = [root]
    spans = [Span(trace_id=trace_id, span_id=root, name="GET /report",
                  start_time_unix_nano=now - 10**9, end_time_unix_nano=now)]  # fmt: skip
    for i in range(1, count):
        span_id = random.randbytes(8)
        parent = root if i <= 50 else parents[1 + (i % 50)]
        if i <= 50:
            parents.append(span_id)
        begin = now - 10**9 + i * 150_000
        spans.append(Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent,
                          name=NAMES[i % 5], start_time_unix_nano=begin,
                          end_time_unix_nano=begin + 100_000))  # fmt: skip
    request = ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=_resource("report"), scope_spans=[ScopeSpans(spans=spans)])
    ])  # fmt: skip
    return trace_id.hex(), request.SerializeToString()


def fill(http_url: str, total: int, batch: int, budget: float) -> int:
    """Send up to ``total`` spans in requests of ``batch``; stop at ``budget`` seconds."""
    deadline = time.monotonic() + budget
    per_request = batch // 5
    requests = total // batch
    sent = [0]
    lock = threading.Lock()

    def sender(index: int) -> None:
        with httpx.Client(base_url=http_url, timeout=120, headers=PROTOBUF) as http:
            for n in range(index, requests, 2):
                if time.monotonic() > deadline:
                    return
                body = _traces_body(per_request, SERVICES[n % len(SERVICES)])
                for _ in range(20):  # back off while the collector says it is busy
                    answer = http.post("/v1/traces", content=body)
                    if answer.status_code != 503:
                        break
                    time.sleep(float(answer.headers.get("Retry-After", "1")))
                answer.raise_for_status()
                with lock:
                    sent[0] += per_request * 5

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(budget + 300)
    return sent[0]


def stored_spans(http: httpx.Client) -> int:
    return int(http.get("/v1/status").json()["received"]["spans"])


def wait_stored(http: httpx.Client, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while stored_spans(http) < expected and time.monotonic() < deadline:
        time.sleep(0.5)


def _ms_to_ready(page: Any, url: str) -> float:
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=120_000)
    return (time.perf_counter() - started) * 1e3


def _report(label: str, samples: list[float]) -> None:
    print(f"{label:<44}: median {statistics.median(samples):8.1f} ms, "
          f"min {min(samples):8.1f}, max {max(samples):8.1f} ({len(samples)} runs)")  # fmt: skip


def bench_pages(context: Any, base: str, big_trace: str, rounds: int) -> None:
    page = context.new_page()
    list_times, waterfall_times, click_times = [], [], []
    for _ in range(rounds):
        list_times.append(_ms_to_ready(page, f"{base}/ui/traces"))
        rows = page.locator("#traces tbody tr").count()
        waterfall_times.append(_ms_to_ready(page, f"{base}/ui/traces/{big_trace}"))
        started = time.perf_counter()
        page.locator("#rows .row").nth(3).click()
        page.wait_for_function("document.querySelector('#detail h2') !== null")
        click_times.append((time.perf_counter() - started) * 1e3)
    spans = page.locator("#summary").inner_text()
    page.close()
    _report(f"trace list first render ({rows} rows)", list_times)
    _report("waterfall 5,000 spans: ready", waterfall_times)
    _report("waterfall 5,000 spans: click -> detail", click_times)
    print(f"  ({spans.splitlines()[-1][:80]})")


_OBSERVE = """() => {
  window.delays = [];
  const body = document.querySelector('#logs tbody');
  new MutationObserver((changes) => {
    const now = Date.now();
    for (const change of changes) for (const node of change.addedNodes) {
      const match = /t=(\\d+)/.exec(node.textContent || '');
      if (match) window.delays.push(now - Number(match[1]));
    }
  }).observe(body, { childList: true });
}"""


def bench_tail(context: Any, base: str, http_url: str, rate: int, seconds: float) -> None:
    page = context.new_page()
    page.goto(f"{base}/ui/logs?service=tail&live=1")
    page.wait_for_selector("body[data-live=ready]", timeout=30_000)
    page.evaluate(_OBSERVE)
    stop = time.monotonic() + seconds
    sent = 0
    with httpx.Client(base_url=http_url, timeout=30, headers=PROTOBUF) as http:
        tick = 0.1
        next_at = time.monotonic()
        while time.monotonic() < stop:
            now_ms = time.time_ns() // 10**6
            records = [
                LogRecord(time_unix_nano=time.time_ns(), severity_number=9, severity_text="INFO",
                          body=AnyValue(string_value=f"tail {sent + i} t={now_ms}"))
                for i in range(int(rate * tick))
            ]  # fmt: skip
            request = ExportLogsServiceRequest(
                resource_logs=[
                    ResourceLogs(
                        resource=_resource("tail"), scope_logs=[ScopeLogs(log_records=records)]
                    )
                ]
            )
            http.post("/v1/logs", content=request.SerializeToString()).raise_for_status()
            sent += len(records)
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))
    time.sleep(3)
    delays = sorted(page.evaluate("window.delays"))
    page.close()
    if not delays:
        print(f"live tail at {rate}/s: no record appeared")
        return
    p95 = delays[int(len(delays) * 0.95) - 1]
    print(f"live tail at {rate:,} logs/s for {seconds:g} s: {len(delays):,} of {sent:,} shown, "
          f"delay median {statistics.median(delays):.0f} ms, p95 {p95:.0f} ms, "
          f"max {delays[-1]:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans in the store")
    parser.add_argument("--batch", type=int, default=5000, help="spans per request")
    parser.add_argument("--fill-seconds", type=float, default=150, help="stop filling after")
    parser.add_argument("--rounds", type=int, default=5, help="page loads per figure")
    parser.add_argument("--tail-rate", type=int, default=1000, help="logs per second")
    parser.add_argument("--tail-seconds", type=float, default=10)
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("bench_web needs playwright (pip install 'telemetryflow[web-tests]')")
    if not os.path.exists(CHROMIUM):
        sys.exit(f"bench_web needs Chromium at {CHROMIUM}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, _, http_url = start_collector(os.path.join(tmp, "web.db"))
        try:
            with httpx.Client(base_url=http_url, timeout=60, headers={"Authorization": AUTH}) as h:
                started = time.perf_counter()
                sent = fill(http_url, args.spans, args.batch, args.fill_seconds)
                wait_stored(h, sent, 300)
                took = time.perf_counter() - started
                big_trace, body = _big_trace(5000)
                h.post("/v1/traces", content=body, headers=PROTOBUF).raise_for_status()
                wait_stored(h, sent + 5000, 60)
                size = os.path.getsize(os.path.join(tmp, "web.db")) / 2**20
                print(f"store: {stored_spans(h):,} spans; {sent:,} sent through OTLP/HTTP in "
                      f"{took:.1f} s ({sent / took:,.0f} spans/s), {size:.0f} MiB")  # fmt: skip
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                     args=["--no-sandbox"])  # fmt: skip
                headers = {"Authorization": AUTH}
                context = browser.new_context(viewport={"width": 1280, "height": 760},
                                              extra_http_headers=headers)  # fmt: skip
                bench_pages(context, http_url, big_trace, args.rounds)
                bench_tail(context, http_url, http_url, args.tail_rate, args.tail_seconds)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
