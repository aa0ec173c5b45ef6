"""A metric query's parameters and answer, the same for every store.

:class:`MetricAsk` reads and checks the parameters of ``/v1/metrics/query`` once
(name, aggregation, window, step, tags, ``group_by``, exemplars) and renders what a
store found, one :class:`~telemetryflow.collector.query._aggregate.Accumulator` per
series and step, into the answer. Each store only aggregates: SQLite in
:mod:`~telemetryflow.collector.query._metrics`, ClickHouse in
:mod:`~telemetryflow.collector.store.clickhouse._metrics_read`. So both refuse the same
input with the same 4xx, and answer the same points with the same JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.query._aggregate import Accumulator, Aggregation, parse_agg
from telemetryflow.collector.query._metrics_sql import MetricFilter
from telemetryflow.collector.query._params import (
    MAX_FILTERS,
    Params,
    check_tag_key,
    check_text,
    iso,
)

__all__ = [
    "ENV_MAX_POINTS",
    "ENV_MAX_SERIES",
    "MAX_BUCKETS",
    "NARROW",
    "TAG_PARAMS",
    "Buckets",
    "Found",
    "Key",
    "MetricAsk",
    "QueryLimits",
    "bucket",
    "check_size",
    "series_id",
    "too_many",
]

TAG_PARAMS = ("agent_name", "agent_class", "model_key", "session_id", "status", "category")
"""Filters named by the 002 document; each filters on the tag of the same name."""
ENV_MAX_POINTS = "TELEMETRYFLOW_COLLECTOR_MAX_QUERY_POINTS"
ENV_MAX_SERIES = "TELEMETRYFLOW_COLLECTOR_MAX_QUERY_SERIES"
_KNOWN = (
    "name", "metric", "agg", "percentile", "tags", "window", "time_window", "since",
    "until", "step", "service", "project_name", "group_by", "exemplars", *TAG_PARAMS,
)  # fmt: skip
_MAX_STEPS = 10_000
MAX_BUCKETS = 200_000
"""Most (series, step) buckets one answer may hold."""
NARROW = "narrow since/until (or window), or filter with service or tags"
"""What a refused query can change, said in its 422."""

Key = tuple[Any, ...]
"""A series: ``(service, tags JSON)``, or the values of the ``group_by`` tags."""
Buckets = dict[int, Accumulator]
"""A series' accumulators by step index (``-1``: the whole window of a stepped query)."""
Found = tuple[dict[Key, Buckets], dict[Key, set[str]]]
"""What a query found: buckets per series, and the resources (JSON) seen per series."""


@dataclass(frozen=True)
class QueryLimits:
    """How much one metric query may read and return."""

    max_points: int = 5_000_000
    """Points one query may cover (after its filters, inside its window)."""
    max_series: int = 2_000
    """Series one answer may hold."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueryLimits:
        """Limits from the environment, invalid values falling back to the defaults."""
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            _positive(env.get(ENV_MAX_POINTS), default.max_points),
            _positive(env.get(ENV_MAX_SERIES), default.max_series),
        )


def _positive(text: str | None, default: int) -> int:
    try:
        value = int(text or "")
    except ValueError:
        return default
    return value if value > 0 else default


# -- parameters ------------------------------------------------------------------------
def _parse_tags(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            out: dict[str, str] = {}
            for pair in (p for p in text.split(",") if p.strip()):
                key, sep, val = pair.replace("=", ":", 1).partition(":")
                if not sep:
                    raise BadRequestError(400, "tags must be a JSON object or k:v,k2:v2")
                out[key.strip()] = val.strip()
            return out
        try:
            value = json.loads(text)
        except ValueError:
            raise BadRequestError(400, "tags must be a JSON object or k:v,k2:v2") from None
    if not isinstance(value, dict):
        raise BadRequestError(400, "tags must be an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _check_tags(param: str, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        check_tag_key(param, key)
        check_text(f"tag.{key}" if param == "tag.KEY" else f"{param} ({key})", value)


def _split_raw(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Separate ``tag.KEY=value`` parameters from the named ones."""
    named: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for key, value in raw.items():
        if key.startswith("tag."):
            if isinstance(value, (dict, list)):
                raise BadRequestError(400, f"{key[:64]} must be a string")
            _check_tags("tag.KEY", {key[4:]: str(value)})
            tags[key[4:]] = str(value)
        else:
            named[key] = value
    return named, tags


def _group_by(value: Any) -> tuple[str, ...] | None:
    if value in (None, ""):
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequestError(400, "group_by must be tag names separated by commas")
    keys = tuple(n.strip() for n in names if n.strip())
    if len(keys) > MAX_FILTERS:
        raise BadRequestError(400, f"group_by names at most {MAX_FILTERS} tags")
    for key in keys:
        check_tag_key("group_by", key)
    return keys


def _filter(project: str, params: Params, extra_tags: dict[str, str]) -> MetricFilter:
    name = params.text("name", "metric")
    if not name:
        raise BadRequestError(400, "name (or metric) is required")
    since, until = params.time_range(("window", "time_window"), "1h")
    step = params.duration_ns("step")
    if step is not None and (step <= 0 or (until - since) / step > _MAX_STEPS):
        raise BadRequestError(400, f"step must be positive and give at most {_MAX_STEPS} buckets")
    tags = _parse_tags(params.raw("tags"))
    _check_tags("tags", tags)
    tags.update(extra_tags)
    for tag in TAG_PARAMS:
        value = params.text(tag)
        if value is not None:
            tags[tag] = value
    if len(tags) > MAX_FILTERS:
        raise BadRequestError(400, f"tags: at most {MAX_FILTERS} tag filters per query")
    service = params.text("service") or tags.pop("service.name", None)
    group_by = _group_by(params.raw("group_by"))
    return MetricFilter(project, name, since, until, step, service, tags, group_by)


@dataclass(frozen=True)
class MetricAsk:
    """One metric query's parameters, read and checked in the same order for every store."""

    flt: MetricFilter
    agg: Aggregation
    exemplars: bool
    """Whether each series carries its exemplars."""
    step_text: str | None
    mine: bool
    """False when ``project_name`` names another project: the answer has no series."""

    @classmethod
    def read(cls, project: str, raw: Mapping[str, Any]) -> MetricAsk:
        """The parameters of ``raw`` for ``project``; a 400 names the first bad one."""
        named, extra_tags = _split_raw(raw)
        params = Params(named, _KNOWN)
        agg = parse_agg(params.text("agg"), params.text("percentile"))
        flt = _filter(project, params, extra_tags)
        exemplars = params.flag("exemplars", False)
        step_text = params.text("step")
        return cls(flt, agg, exemplars, step_text, params.text("project_name") in (None, project))

    def answer(
        self,
        found: Found | None = None,
        exemplars: Mapping[str, list[dict[str, Any]]] | None = None,
        limits: QueryLimits | None = None,
    ) -> dict[str, Any]:
        """The answer: its frame, with one series per key of ``found`` that has points
        (a 422 when they are more than ``limits`` allow), sorted by their tags."""
        flt = self.flt
        body: dict[str, Any] = {"name": flt.name, "agg": self.agg.label,
                                "since": iso(flt.since), "until": iso(flt.until),
                                "step": self.step_text, "series": []}  # fmt: skip
        if found is None:
            return body
        series, resources = found
        check_size(series, limits or QueryLimits())
        rendered = [
            _render(flt, self.agg, key, buckets, resources.get(key, set()))
            for key, buckets in series.items()
        ]
        if self.exemplars:  # each series gets its own, an empty list when it has none
            for name, rendered_series in rendered:
                rendered_series["exemplars"] = (exemplars or {}).get(name, [])
        body["series"] = [s for _, s in sorted(rendered, key=lambda item: item[0]) if s["points"]]
        return body


def too_many(series: int) -> BadRequestError:
    """The 422 of an answer too large to send."""
    return BadRequestError(
        422,
        f"the answer would hold {series} series or more than {MAX_BUCKETS} series x steps; "
        "add tags or service, group_by fewer tags, or use a larger step",
    )


def check_size(series: dict[Key, Buckets], limits: QueryLimits) -> None:
    """A 422 when the answer holds more series, or series x steps, than allowed."""
    buckets = sum(len(b) for b in series.values())
    if len(series) > limits.max_series or buckets > MAX_BUCKETS:
        raise too_many(len(series))


def bucket(series: dict[Key, Buckets], key: Key, step: int) -> Accumulator:
    """The accumulator of ``key`` at ``step``, made on first use."""
    buckets = series.setdefault(key, {})
    found = buckets.get(step)
    if found is None:
        found = buckets[step] = Accumulator()
    return found


# -- the answer ------------------------------------------------------------------------
def _tags(flt: MetricFilter, key: Key) -> dict[str, str]:
    if flt.group_by is None:
        service, tags_json = key
        tags: dict[str, str] = json.loads(tags_json)
        if service:
            tags["service.name"] = service
        return tags
    values = key[: len(flt.group_by)]  # group_by=[] has one NULL key
    return {name: str(value) for name, value in zip(flt.group_by, values, strict=True)
            if value is not None}  # fmt: skip


def series_id(flt: MetricFilter, key: Key) -> str:
    """What a rendered series is sorted by: its tags as canonical JSON."""
    return json.dumps(_tags(flt, key), sort_keys=True)


def _common(resources: Iterable[str]) -> dict[str, str]:
    """The resource attributes every point of a series shares."""
    common: dict[str, str] | None = None
    for text in resources:
        attrs: dict[str, str] = json.loads(text)
        common = attrs if common is None else {
            k: v for k, v in common.items() if attrs.get(k) == v
        }  # fmt: skip
    return common or {}


def _render(
    flt: MetricFilter, agg: Aggregation, key: Key, buckets: Buckets, resources: set[str]
) -> tuple[str, dict[str, Any]]:
    tags = _tags(flt, key)
    whole = Accumulator()
    points = []
    step_s = (flt.step or (flt.until - flt.since)) / 1e9
    for index in sorted(i for i in buckets if i >= 0):
        whole.merge(buckets[index])
        start = flt.since + index * flt.step if flt.step else flt.since
        points.append({
            "time": iso(start),
            "time_unix_nano": start,
            "value": _finite(buckets[index].result(agg, step_s)),
        })  # fmt: skip
    whole_bucket = buckets.get(-1 if flt.step else 0)
    whole.quantile = None if whole_bucket is None else whole_bucket.quantile
    value = whole.result(agg, (flt.until - flt.since) / 1e9)
    body = {"tags": tags, "resource": _common(resources), "points": points, "value": _finite(value)}
    return series_id(flt, key), body


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
