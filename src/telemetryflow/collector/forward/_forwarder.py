"""Every upstream of one collector: fan-out of accepted requests, status, shutdown.

The receivers hand :meth:`Forwarder.offer` each request after its rows are stored,
and the REST APIs their stored rows (:meth:`Forwarder.offer_points`,
:meth:`Forwarder.offer_captures`, made into OTLP by ``_rest.py``). A request is
encoded once and queued on every upstream's own link (never blocking); each link
delivers it at least once, through the SDK's export path.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telemetryflow.collector.forward._config import ForwardConfig
from telemetryflow.collector.forward._link import UpstreamLink
from telemetryflow.collector.forward._prune import accepted_only
from telemetryflow.collector.forward._rest import captures_request, points_request

__all__ = ["Forwarder"]

_log = logging.getLogger("telemetryflow.collector.forward")


class Forwarder:
    """Sends a copy of everything the collector accepted to each configured upstream."""

    def __init__(self, config: ForwardConfig, data_dir: Path) -> None:
        self.config = config
        self._links: list[UpstreamLink] = []
        try:
            for upstream in config.upstreams:
                spool_dir = data_dir / upstream.key
                link = UpstreamLink(upstream, config.headers, spool_dir, config.limits)
                self._links.append(link)
                backlog = link.spool.backlog_items()
                resuming = f", resuming {backlog} item(s) left pending" if backlog else ""
                _log.info("forwarding to %s (%s)%s", upstream.display, upstream.protocol, resuming)
        except BaseException:
            self.stop(0.0)
            raise

    def offer(self, signal: str, request: Any, items: int, rejected: int = 0) -> None:
        """Queue a copy of an accepted request (minus rejected items) for every upstream.

        ``items`` is what was stored from it; nothing is queued when that is zero.
        """
        if not self._links or items <= 0:
            return
        if rejected:
            request = accepted_only(signal, request)
        body = request.SerializeToString()
        for link in self._links:
            link.offer(signal, body, items)

    def offer_points(self, rows: Sequence[Sequence[Any]]) -> None:
        """Queue the 001 points just stored (report, batch) as an OTLP metrics request."""
        if self._links and rows:
            self.offer("metrics", points_request(rows), len(rows))

    def offer_captures(
        self, errors: Sequence[Sequence[Any]], events: Sequence[Sequence[Any]]
    ) -> None:
        """Queue errors and product events just stored through the observability API,
        as the log records the SDK sends for them."""
        if self._links and (errors or events):
            self.offer("logs", captures_request(errors, events), len(errors) + len(events))

    def status(self) -> list[dict[str, Any]]:
        """One entry per upstream: delivered, pending, dropped, last error (masked)."""
        return [link.status() for link in self._links]

    def stop(self, grace: float = 2.0) -> None:
        """Commit queued requests to disk, give delivery up to ``grace`` seconds (all
        upstreams at once), then stop; what is still pending is sent after a restart."""
        deadline = time.monotonic() + max(grace, 0.0)
        for link in self._links:
            link.close_intake()
        for link in self._links:
            link.spooled(max(deadline - time.monotonic(), 1.0))
        while time.monotonic() < deadline and not all(link.idle() for link in self._links):
            time.sleep(0.05)
        for link in self._links:
            link.halt(1.0)
        self._links = []


def spool_root(db_path: str) -> Path:
    """Where the upstreams' spools live: beside the database, one directory each
    (``DB.forward/<hash>/``); a database in memory gets a temporary one, not resumed."""
    if db_path == ":memory:":
        return Path(tempfile.mkdtemp(prefix="telemetryflow-forward-"))
    db = Path(db_path)
    return db.with_name(db.name + ".forward")
