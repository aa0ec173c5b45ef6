"""Which ClickHouse tables hold what, and which rows belong to a project.

The tables are the OpenTelemetry Collector ``clickhouse`` exporter's (their names and
database configurable). A project is the resource attribute
:data:`PROJECT_ATTRIBUTE`: our receivers set it from the caller's key, replacing any
value a client sent, so no client can write into another project. Rows the exporter
wrote carry no such attribute: they belong to the default project, so a team's existing
tables answer at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PROJECT_ATTRIBUTE", "Tables", "project_clause"]

PROJECT_ATTRIBUTE = "telemetryflow.project"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class Tables:
    """Database and table names; the defaults are the exporter's."""

    database: str = "otel"
    traces: str = "otel_traces"
    logs: str = "otel_logs"
    gauge: str = "otel_metrics_gauge"
    sum: str = "otel_metrics_sum"
    histogram: str = "otel_metrics_histogram"
    exponential_histogram: str = "otel_metrics_exponential_histogram"
    summary: str = "otel_metrics_summary"
    default_project: str = "default"

    def __post_init__(self) -> None:
        for field in ("database", "traces", "logs", "gauge", "sum", "histogram",
                      "exponential_histogram", "summary"):  # fmt: skip
            name = getattr(self, field)
            if not _IDENTIFIER.match(name):
                raise ValueError(f"ClickHouse {field} name {name!r} is not a plain identifier")

    def qualified(self, table: str) -> str:
        """``database.table``, quoted for SQL (names are checked identifiers)."""
        return f"`{self.database}`.`{table}`"


def project_clause(alias: str = "") -> str:
    """A WHERE condition selecting the rows of ``{project:String}``.

    The query passes ``project`` and ``default_project`` as parameters; rows without
    the attribute belong to the default project.
    """
    column = f"{alias}.ResourceAttributes" if alias else "ResourceAttributes"
    return (
        f"if({column}['{PROJECT_ATTRIBUTE}'] = '', {{default_project:String}}, "
        f"{column}['{PROJECT_ATTRIBUTE}']) = {{project:String}}"
    )
