"""``telemetryflow status``: is the configured collector reachable, over TLS, and does
it accept our key; what did it receive lately."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any

__all__ = ["check_status", "register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="check the configured collector and credentials")
    p.add_argument("--endpoint", help="query API URL (env TELEMETRYFLOW_QUERY_ENDPOINT)")
    p.add_argument(
        "--otlp-endpoint",
        default=os.environ.get("TELEMETRYFLOW_ENDPOINT"),
        help="OTLP host:port to probe too (env TELEMETRYFLOW_ENDPOINT)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per check")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run)  # fmt: skip


def _probe_tcp(endpoint: str, timeout: float) -> dict[str, Any]:
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return {"endpoint": endpoint, "reachable": True}
    except (OSError, ValueError) as exc:
        return {"endpoint": endpoint, "reachable": False, "error": str(exc)}


def check_status(endpoint: str | None, otlp_endpoint: str | None, timeout: float) -> dict[str, Any]:
    """Run every check; never raises for a failed check, records it instead."""
    import httpx

    from telemetryflow._configuration.errors import TelemetryFlowError
    from telemetryflow.query import QueryClient

    result: dict[str, Any] = {"ok": False}
    try:
        client = QueryClient(endpoint, timeout=timeout)
    except TelemetryFlowError as exc:
        result["error"] = str(exc)
        return result
    with client:
        settings = client.settings
        result.update(endpoint=settings.endpoint, tls=settings.endpoint.startswith("https://"),
                      credentials=settings.credentials.masked_key_id
                      if settings.credentials else None)  # fmt: skip
        started = time.perf_counter()
        try:
            client._http.get("/health").raise_for_status()
            result.update(
                reachable=True, latency_ms=round((time.perf_counter() - started) * 1e3, 1)
            )
        except httpx.HTTPError as exc:
            result.update(reachable=False, error=f"{type(exc).__name__}: {exc}")
            return result
        try:
            status = client.status()
            result.update(credentials_accepted=True, project=status["project"],
                          auth_required=status["auth"], received=status["received"],
                          last_received=status["last_received"],
                          window_seconds=status["window_seconds"], ok=True,
                          forwarding=status.get("forwarding", []))  # fmt: skip
        except httpx.HTTPStatusError as exc:
            result.update(credentials_accepted=False, error=f"HTTP {exc.response.status_code}")
        except httpx.HTTPError as exc:
            result.update(credentials_accepted=False, error=f"{type(exc).__name__}: {exc}")
    if otlp_endpoint and "://" not in otlp_endpoint:
        result["otlp"] = _probe_tcp(otlp_endpoint, timeout)
        result["ok"] = result["ok"] and result["otlp"]["reachable"]
    return result


def _print(result: dict[str, Any]) -> None:
    def line(label: str, text: str) -> None:
        print(f"  {label:<12} {text}")

    print("TelemetryFlow status")
    line("endpoint", str(result.get("endpoint", "-")))
    if "reachable" in result:
        reach = f"yes ({result['latency_ms']} ms)" if result["reachable"] else "NO"
        line("reachable", reach)
        line("TLS", "yes (certificate verified)" if result.get("tls") else "no (plain HTTP)")
    if "credentials_accepted" in result:
        key = result.get("credentials") or "none configured"
        verdict = "accepted" if result["credentials_accepted"] else "REJECTED"
        line("credentials", f"{key}: {verdict}")
    if result.get("credentials_accepted"):
        if not result.get("auth_required"):
            line("auth", "off on this collector (--no-auth)")
        line("project", result["project"])
        minutes = int(result["window_seconds"] // 60)
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result["received"].items())
        line(f"last {minutes} min", counts)
        line("last data", result["last_received"] or "never")
    for index, upstream in enumerate(result.get("forwarding") or []):
        line("forwarding" if index == 0 else "", _forwarding_text(upstream))
    if "otlp" in result:
        otlp = result["otlp"]
        line("OTLP", f"{otlp['endpoint']}: {'reachable' if otlp['reachable'] else 'UNREACHABLE'}")
    if result.get("error"):
        line("error", result["error"])
    if result.get("reachable") is False:
        line("next", "start one with 'telemetryflow collector', or point --endpoint / "
             "TELEMETRYFLOW_QUERY_ENDPOINT at its HTTP port")  # fmt: skip


def _forwarding_text(upstream: dict[str, Any]) -> str:
    """One upstream of the collector: what it took, what waits, what was given up."""
    text = (
        f"{upstream['upstream']}  delivered {upstream['delivered']}  "
        f"pending {upstream['pending']}  dropped {upstream['dropped']}"
    )
    if upstream.get("last_error"):
        text += f"  (last error: {upstream['last_error']})"
    return text


def _run(args: argparse.Namespace) -> int:
    result = check_status(args.endpoint, args.otlp_endpoint, args.timeout)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print(result)
    return 0 if result["ok"] else 1
