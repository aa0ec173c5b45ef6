"""A background worker observed with track, trace, event, error capture and a flag.

Run it against your collector (configured by environment variables or by
``telemetryflow setup``)::

    python examples/worker.py

or without any collector, printing what would have been sent::

    python examples/worker.py --in-memory

The functions are decorated at import time with the module-level ``track``, before
any client exists: the decorators look the client up at each call, so this module
can be imported (by tests, by a task queue) whether telemetry is configured or not.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass

import telemetryflow
from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient

log = logging.getLogger("worker")

FLAGS = {
    # Half of the customers get the new resize path; the same customers every run.
    "fast_resize": {"rollout": 50},
}


class JobError(Exception):
    """A job that cannot be processed (bad input): captured, and the worker goes on."""


@dataclass(frozen=True)
class Job:
    id: int
    customer: str
    size_kb: int


@telemetryflow.track("fetch_batch")
def fetch_batch(batch: int, size: int) -> list[Job]:
    """Pretend to read a batch of jobs from a queue."""
    rng = random.Random(batch)
    time.sleep(0.002)
    sizes = [0, 64, 128, 512, 2048]
    return [
        Job(batch * 100 + n, f"customer-{rng.randrange(20)}", rng.choice(sizes))
        for n in range(size)
    ]


@telemetryflow.track("process_job")
def process_job(job: Job, fast: bool) -> int:
    """Resize one image; empty inputs fail."""
    if job.size_kb == 0:
        raise JobError(f"job {job.id}: empty input")
    time.sleep(job.size_kb / (400_000 if fast else 100_000))
    return job.size_kb // 2


def run(client: TelemetryFlowClient, batches: int) -> None:
    for batch in range(batches):
        jobs = fetch_batch(batch, size=8)
        failed = 0
        for job in jobs:
            fast = client.is_enabled("fast_resize", user_id=job.customer)
            # Metadata for the next tracked call in this thread only.
            telemetryflow.trace("job.id", job.id)
            telemetryflow.trace("job.customer", job.customer)
            telemetryflow.trace("job.fast_path", fast)
            try:
                process_job(job, fast)
            except JobError:
                failed += 1
                error_id = client.capture_exception(tags={"batch": batch})
                log.warning("job %s failed (error id %s)", job.id, error_id)
        status = "failed" if failed == len(jobs) else "completed"
        telemetryflow.event("batch_done", status, batch=batch, jobs=len(jobs), failed=failed)


def summarize(spans: list[str], events: list[str], errors: int) -> None:
    print(f"spans:  {dict(Counter(spans))}")
    print(f"events: {dict(Counter(events))}")
    print(f"errors captured: {errors}")


def main() -> int:
    parser = argparse.ArgumentParser(description="a small observed worker")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--in-memory", action="store_true", help="no collector; print a summary")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    builder = TelemetryFlowBuilder().with_service("resize-worker").with_feature_flags(FLAGS)
    if args.in_memory:
        from telemetryflow.testing import capture

        with capture(builder) as cap:
            cap.client.instrument_logging(level=logging.INFO)  # logging -> OTel logs
            run(cap.client, args.batches)
            logs = cap.logs()
            summarize(
                cap.span_names(),
                [e.log.event_name for e in logs if e.log.event_name],
                sum(1 for e in logs if e.log.event_name == "exception"),
            )
        return 0

    try:
        client = builder.with_auto_configuration().build()
    except telemetryflow.BuilderError as exc:
        print(f"not configured: {exc}", file=sys.stderr)
        print("run 'telemetryflow setup', or try --in-memory", file=sys.stderr)
        return 2
    with client:  # initialize, and flush + shut down on the way out
        client.instrument_logging(level=logging.INFO)
        run(client, args.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
