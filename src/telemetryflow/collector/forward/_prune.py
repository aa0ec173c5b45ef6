"""A request minus the items the collector refused, for forwarding what it accepted.

Only requests answered with partial success come here (the common case forwards
the request as received). The copy keeps every resource, scope and attribute as
received and drops exactly the spans, log records and data points that the
ingest functions refused, judged by the same predicates they use.
"""

from __future__ import annotations

from typing import Any

from telemetryflow.collector.ingest._otlp import log_accepted, point_accepted, span_accepted

__all__ = ["accepted_only"]


def accepted_only(signal: str, request: Any) -> Any:
    """A copy of ``request`` without the items ingest refused."""
    copy = type(request)()
    copy.CopyFrom(request)
    if signal == "traces":
        for rs in copy.resource_spans:
            for ss in rs.scope_spans:
                _keep(ss.spans, span_accepted)
    elif signal == "logs":
        for rl in copy.resource_logs:
            for sl in rl.scope_logs:
                _keep(sl.log_records, log_accepted)
    else:
        for rm in copy.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        data = getattr(metric, kind)
                        _keep(data.data_points, lambda p, k=kind, d=data: point_accepted(k, d, p))
    return copy


def _keep(items: Any, accepted: Any) -> None:
    """Delete, in place, the entries of a repeated field that ``accepted`` refuses."""
    for index in range(len(items) - 1, -1, -1):
        if not accepted(items[index]):
            del items[index]
