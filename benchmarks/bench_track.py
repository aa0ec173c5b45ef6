"""What ``track`` costs around an empty function, next to a bare OpenTelemetry span.

Every variant uses the same client, so the same tracer provider, span processor and
export queue; exports land in memory (``telemetryflow.testing.capture``), so the
numbers are the application thread's cost, not the network's. Variants run in
interleaved rounds in one process, and the ratio is taken per round before taking
its median, because this kind of machine is noisy: compare the ratios, not the
absolute times.

    python benchmarks/bench_track.py [--rounds 41] [--calls 500]

``track`` does more than the bare span: it also records a duration histogram point
(with an exemplar linking it to the span) and sets the status attribute, which is
most of the difference.
"""

from __future__ import annotations

import argparse
import gc
import logging
import random
import statistics
import time
from collections.abc import Callable

from telemetryflow.testing import capture


def _per_call_us(body: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        body()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    # A burst fills the in-memory span queue and later spans are dropped (cheaply, and
    # alike for every variant); the SDK says so once, which is noise here.
    logging.getLogger("telemetryflow").setLevel(logging.ERROR)

    with capture() as cap:
        client = cap.client
        tracer = client.tracer
        assert tracer is not None

        def empty() -> None:
            return None

        tracked = client.track("op")(empty)

        def bare_otel_span() -> None:
            with tracer.start_as_current_span("op"):
                empty()

        def track_decorator() -> None:
            tracked()

        def track_block() -> None:
            with client.track("op"):
                empty()

        def client_span() -> None:
            with client.span("op"):
                empty()

        variants: dict[str, Callable[[], None]] = {
            "bare OTel start_as_current_span": bare_otel_span,
            "client.span (core, for reference)": client_span,
            "@client.track on an empty function": track_decorator,
            "with client.track(...)": track_block,
        }
        for body in variants.values():  # warm caches, instruments and queues
            _per_call_us(body, args.calls // 4)

        times: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        gc.disable()
        try:
            for _ in range(args.rounds):
                random.shuffle(order)
                for name in order:
                    times[name].append(_per_call_us(variants[name], args.calls))
                gc.collect()
        finally:
            gc.enable()

    baseline = times["bare OTel start_as_current_span"]
    print(f"{args.rounds} interleaved rounds x {args.calls} calls; µs per call")
    print(f"{'variant':<38} {'median':>8} {'min-max':>15}   ratio to bare span (min-max)")
    for name, samples in times.items():
        ratios = [t / b for t, b in zip(samples, baseline, strict=True)]
        print(
            f"{name:<38} {statistics.median(samples):8.2f} "
            f"{min(samples):6.2f}-{max(samples):<8.2f} "
            f"{statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
