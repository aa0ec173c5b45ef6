"""``TelemetryFlowClient``: one facade for metrics, logs, traces and the conveniences.

The client core (:mod:`telemetryflow._recording.client`) records and exports; the
conveniences (:mod:`telemetryflow._extras.conveniences`) add ``track``, error capture,
flags and the logging bridge on top of it. This class puts the two together, so
the user holds one object while the dependency points one way only: conveniences
use the core, the core never imports them.
"""

from __future__ import annotations

from typing import cast

from telemetryflow._extras import default
from telemetryflow._extras.conveniences import ConveniencesMixin
from telemetryflow._recording.client import ClientCore

__all__ = ["TelemetryFlowClient", "get_default_client", "set_default_client"]


class TelemetryFlowClient(ConveniencesMixin, ClientCore):
    """The SDK client. Build it with :class:`~telemetryflow.TelemetryFlowBuilder`.

    Example:
        >>> with TelemetryFlowBuilder().with_auto_configuration().build() as client:
        ...     client.increment_counter("app.started")
    """

    def _started(self) -> None:
        default.client_initialized(self)

    def _stopping(self) -> None:
        default.client_stopped(self)


def set_default_client(client: TelemetryFlowClient | None) -> None:
    """Use ``client`` for ``telemetryflow.track``/``trace``/``event`` (None to unset)."""
    default.set_default_client(client)


def get_default_client() -> TelemetryFlowClient | None:
    """The explicit default if running, else the most recently initialized client."""
    # Only this class registers itself (``_started``), so the default is one of it.
    return cast("TelemetryFlowClient | None", default.get_default_client())
