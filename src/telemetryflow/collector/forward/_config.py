"""Forwarding settings: the upstreams, the headers sent to them, the bounds.

Flags win over the environment, as for every collector setting:
``--forward URL`` (repeatable) else ``TELEMETRYFLOW_COLLECTOR_FORWARD`` (comma- or
whitespace-separated URLs); ``--forward-header KEY=VALUE`` (repeatable) else
``TELEMETRYFLOW_COLLECTOR_FORWARD_HEADERS`` (comma-separated ``KEY=VALUE``, the
format of ``OTEL_EXPORTER_OTLP_HEADERS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from telemetryflow._configuration.errors import ConfigError
from telemetryflow.collector.forward._link import LinkLimits
from telemetryflow.collector.forward._upstream import Upstream, parse_header, parse_upstream

__all__ = ["ENV_FORWARD", "ENV_FORWARD_HEADERS", "ForwardConfig", "resolve_forward"]

ENV_FORWARD = "TELEMETRYFLOW_COLLECTOR_FORWARD"
ENV_FORWARD_HEADERS = "TELEMETRYFLOW_COLLECTOR_FORWARD_HEADERS"


@dataclass(frozen=True)
class ForwardConfig:
    """Upstreams to copy accepted data to, and how. Header values never shown."""

    upstreams: tuple[Upstream, ...] = ()
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    limits: LinkLimits = field(default_factory=LinkLimits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        if len({u.url for u in self.upstreams}) != len(self.upstreams):
            raise ConfigError("a forward URL is listed twice", field="forward")
        for upstream in self.upstreams:  # the SDK checks header names and values
            try:
                upstream.sdk_config(self.headers, self.limits.timeout)
            except ConfigError as exc:
                problems = [p for p in exc.problems if p.startswith("headers")] or [str(exc)]
                raise ConfigError(
                    f"forward to {upstream.display}: {problems[0]}", field="forward"
                ) from None

    def __bool__(self) -> bool:
        return bool(self.upstreams)

    def __repr__(self) -> str:
        shown = ", ".join(u.display for u in self.upstreams)
        return f"ForwardConfig(upstreams=[{shown}], headers=<{len(self.headers)} redacted>)"


def resolve_forward(
    urls: Iterable[str] = (),
    headers: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    limits: LinkLimits | None = None,
) -> ForwardConfig:
    """The forwarding settings from flags, else the environment.

    Raises:
        ConfigError: a URL or header is malformed (the message shows no secret).
    """
    env = os.environ if environ is None else environ
    url_list = list(urls) or env.get(ENV_FORWARD, "").replace(",", " ").split()
    header_list = list(headers) or [
        part for part in env.get(ENV_FORWARD_HEADERS, "").split(",") if part.strip()
    ]
    parsed = dict(parse_header(text) for text in header_list)
    upstreams = tuple(parse_upstream(url) for url in url_list)
    return ForwardConfig(upstreams, parsed, limits or LinkLimits())
