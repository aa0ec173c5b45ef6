"""One trace (or several) as a single HTML file that opens from disk with no server.

The file holds the web view's own stylesheet and trace script, inlined, and the traces
as JSON in a ``<script type="application/json">`` block that the script reads instead
of calling the API. Nothing in it can reach the network: a Content-Security-Policy
``<meta>`` allows only the inlined script and style (by hash) and ``connect-src 'none'``.

Client data (span names, attributes, log bodies) only ever travels inside that JSON
block, with ``<``, ``>``, ``&`` and the two JavaScript line separators escaped, so no
value can close the tag; the script puts it on the page as text, as the live view does.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import time
from collections.abc import Iterable
from importlib import resources
from typing import Any

import httpx

__all__ = ["ExportError", "build_html", "fetch_recent", "fetch_trace"]

_PAGE = 50  # traces per page of /ui/api/traces
_JSON_ESCAPES = {c: f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}
_IMPORT_BLOCK = re.compile(r"^import\s*\{[^}]*\}\s*from\s*\"\./common\.js\";\s*$", re.M)
_EXPORT_WORD = re.compile(r"^export\s+", re.M)
_MARKER = re.compile(r"@@(CSP|TITLE|STYLE|MAIN|DATA|SCRIPT)@@")
_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta http-equiv="Content-Security-Policy" content="@@CSP@@">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>@@TITLE@@</title>
  <link rel="icon" href="data:,">
  <style>@@STYLE@@</style>
</head>
<body data-view="trace" data-export="true">
  <header class="top">
    <span class="brand">TelemetryFlow</span>
    <span class="spacer"></span>
    <span class="muted">exported trace file</span>
  </header>
@@MAIN@@  <script type="application/json" id="trace-data">@@DATA@@</script>
  <script>@@SCRIPT@@</script>
</body>
</html>
"""


class ExportError(Exception):
    """The collector could not give the traces asked for; the message says why."""


def _static(name: str) -> str:
    folder = resources.files("telemetryflow.collector.web") / "static"
    return (folder / name).read_text(encoding="utf-8")


def bundled_script() -> str:
    """``common.js`` and ``trace.js`` as one classic script (modules cannot load from disk).

    The same files the live view serves, with the module keywords taken off: the
    renderer is shared, not copied.
    """
    common = _EXPORT_WORD.sub("", _static("common.js"))
    trace, found = _IMPORT_BLOCK.subn("", _static("trace.js"))
    if found != 1:
        raise RuntimeError("trace.js no longer imports from common.js in one statement")
    return f'(() => {{\n"use strict";\n{common}\n{trace}\n}})();\n'


def embedded_json(value: Any) -> str:
    """JSON that is safe between ``<script type="application/json">`` tags."""
    text = json.dumps(value, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group(0)], text)


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _trace_main() -> str:
    """The trace page's own ``<main>``, plus the list that switches between traces."""
    opening = '  <main class="trace">\n'
    main = _static("trace.main.html")
    if not main.startswith(opening):
        raise RuntimeError("trace.main.html no longer opens with the trace page's <main>")
    return opening + '    <ul id="exported" class="exported" hidden></ul>\n' + main[len(opening) :]


def build_html(traces: list[dict[str, Any]]) -> str:
    """The self-contained page for ``traces`` (each shaped as ``/ui/api/traces/{id}``)."""
    style, script = _static("app.css"), bundled_script()
    csp = (
        f"default-src 'none'; script-src {_hash(script)}; style-src {_hash(style)}; "
        "img-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )
    first = traces[0].get("root_name") if traces else None
    title = f"{first or 'Traces'} · TelemetryFlow export"
    parts = {
        "CSP": csp, "TITLE": html.escape(title), "STYLE": style, "MAIN": _trace_main(),
        "DATA": embedded_json({"traces": traces}), "SCRIPT": script,
    }  # fmt: skip
    return _MARKER.sub(lambda m: parts[m.group(1)], _TEMPLATE)


def _get(http: httpx.Client, path: str, params: dict[str, str] | None = None) -> Any:
    """GET JSON from the view's API, waiting out a rate limit a few times."""
    for _ in range(5):
        response = http.get(path, params=params)
        if response.status_code != 429:
            break
        time.sleep(min(5.0, float(response.headers.get("Retry-After", "1"))))
    if response.status_code == 404 and path.startswith("/ui/api/traces/"):
        raise ExportError(f"trace {path.rsplit('/', 1)[-1]} is not in this key's project")
    if response.status_code == 404:
        raise ExportError("this collector has no web view to export from (an older version?)")
    if response.status_code >= 400:
        raise ExportError(f"{response.status_code} {_message(response)}")
    return response.json()


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase or "error"


def fetch_trace(http: httpx.Client, trace_id: str) -> dict[str, Any]:
    """One trace with its logs, as the trace page shows it."""
    trace: dict[str, Any] = _get(http, f"/ui/api/traces/{trace_id.lower()}")
    return trace


def fetch_recent(http: httpx.Client, since: str, limit: int) -> Iterable[dict[str, Any]]:
    """The newest ``limit`` traces since ``since``, each with its spans and logs."""
    ids: list[str] = []
    until = None
    for page in range(-(-limit // _PAGE)):
        params = {"since": since, "page": str(page)}
        if until:
            params["until"] = until
        answer = _get(http, "/ui/api/traces", params)
        until = answer["until"]
        ids += [row["trace_id"] for row in answer["traces"]]
        if not answer["more"]:
            break
    for trace_id in ids[:limit]:
        yield fetch_trace(http, trace_id)
