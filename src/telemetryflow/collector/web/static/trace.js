// One trace: a virtualised waterfall (only rows on screen exist in the DOM), collapsible
// subtrees, a detail panel for the selected span, and the trace's logs in time order.
// The same code draws an exported file: when the page holds its traces as embedded JSON
// (<script id="trace-data" type="application/json">) it reads them there, fetches
// nothing, and switches between them with the URL's #fragment.
import {
  api, clear, el, formatDuration, formatTime, header, kvTable, serviceColour, severityClass,
  showError, traceLink, valueText,
} from "./common.js";

const ROW_HEIGHT = 24;
const OVERSCAN = 8;

const state = {
  trace: null, visible: [], collapsed: new Set(), selected: -1, frame: 0, bySpanId: new Map(),
  offline: null,
};

function traceIdFromPath() {
  return decodeURIComponent(location.pathname.split("/").pop() || "");
}

function computeVisible() {
  const spans = state.trace.spans;
  const visible = [];
  for (let i = 0; i < spans.length; ) {
    visible.push(i);
    i += state.collapsed.has(i) ? spans[i].descendants + 1 : 1;
  }
  state.visible = visible;
  document.getElementById("spacer").style.height = visible.length * ROW_HEIGHT + "px";
}

function percent(ms) {
  const total = state.trace.duration_ms || 1;
  return Math.min(100, Math.max(0, (ms / total) * 100));
}

function spanRow(index, position) {
  const span = state.trace.spans[index];
  const colour = serviceColour(span.service);
  const label = el("div", { className: "label-col" });
  label.style.paddingLeft = 6 + span.depth * 14 + "px";
  if (span.descendants > 0) {
    const open = !state.collapsed.has(index);
    const toggle = el("button", {
      className: "toggle", type: "button", "aria-expanded": open,
      title: open ? "Collapse" : `Expand ${span.descendants} span(s)`,
    }, open ? "▾" : "▸");
    toggle.addEventListener("click", (event) => {
      event.stopPropagation();
      if (open) state.collapsed.add(index);
      else state.collapsed.delete(index);
      computeVisible();
      render();
    });
    label.append(toggle);
  } else {
    label.append(el("span", { className: "toggle-space" }));
  }
  const dot = el("span", { className: "dot" });
  dot.style.backgroundColor = colour;
  label.append(dot, el("span", { className: "span-name", text: span.name || "(unnamed)" }));
  if (span.status === "ERROR") label.append(el("span", { className: "badge error", text: "!" }));
  if (span.descendants > 0 && state.collapsed.has(index)) {
    label.append(el("span", { className: "muted", text: ` +${span.descendants}` }));
  }
  const bar = el("div", { className: "bar" + (span.status === "ERROR" ? " error" : "") });
  bar.style.left = percent(span.offset_ms) + "%";
  bar.style.width = Math.max(0.15, percent(span.duration_ms)) + "%";
  bar.style.backgroundColor = colour;
  const track = el("div", { className: "track" }, bar,
    el("span", { className: "bar-label", text: formatDuration(span.duration_ms) }));
  track.lastChild.style.left = percent(span.offset_ms + span.duration_ms) + "%";
  const row = el("div", {
    className: "row" + (index === state.selected ? " selected" : ""),
    role: "row", dataset: { index: String(index), spanId: span.span_id },
  }, label, track);
  row.style.top = position * ROW_HEIGHT + "px";
  row.addEventListener("click", () => {
    document.getElementById("viewport").focus({ preventScroll: true });
    select(index);
  });
  return row;
}

function render() {
  state.frame = 0;
  const viewport = document.getElementById("viewport");
  const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const count = Math.ceil(viewport.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
  const last = Math.min(state.visible.length, first + count);
  const rows = clear(document.getElementById("rows"));
  for (let position = first; position < last; position++) {
    rows.append(spanRow(state.visible[position], position));
  }
}

function scheduleRender() {
  if (!state.frame) state.frame = requestAnimationFrame(render);
}

function ticks() {
  const box = clear(document.getElementById("ticks"));
  for (let i = 0; i <= 4; i++) {
    const tick = el("span", { className: "tick", text: formatDuration((state.trace.duration_ms * i) / 4) });
    tick.style.left = i * 25 + "%";
    box.append(tick);
  }
}

function section(title, ...content) {
  return el("section", {}, el("h3", { text: title }), ...content);
}

function eventsList(events) {
  if (!events.length) return el("p", { className: "muted", text: "none" });
  const list = el("ol", { className: "events" });
  for (const event of events) {
    list.append(el("li", {},
      el("div", {}, el("strong", { text: event.name }),
        event.offset_ms === null ? "" : el("span", { className: "muted", text: " at " + formatDuration(event.offset_ms) })),
      kvTable(event.attributes)));
  }
  return list;
}

function linksList(links) {
  if (!links || !links.length) return el("p", { className: "muted", text: "none" });
  const list = el("ul", { className: "links" });
  for (const link of links) {
    const traceId = String(link.trace_id || "");
    list.append(el("li", {}, linkTo(traceId), " span ", String(link.span_id || ""),
      kvTable(link.attributes)));
  }
  return list;
}

// A link to another trace: its page, or its place in an exported file (text when absent).
function linkTo(traceId) {
  if (!state.offline) return traceLink(traceId, traceId);
  if (!state.offline.has(traceId)) return document.createTextNode(traceId);
  return el("a", { href: "#" + traceId }, traceId);
}

function select(index) {
  state.selected = index;
  const span = state.trace.spans[index];
  const detail = clear(document.getElementById("detail"));
  const status = span.status + (span.status_message ? ": " + span.status_message : "");
  detail.append(
    el("h2", { className: "span-title", text: span.name || "(unnamed)" }),
    kvTable({
      service: span.service, kind: span.kind, "span id": span.span_id,
      "parent span id": span.parent_span_id || "(root)", start: formatTime(span.start),
      duration: formatDuration(span.duration_ms), status,
    }, false),
  );
  if (span.status === "ERROR") detail.firstChild.append(el("span", { className: "badge error", text: "error" }));
  if (span.exception) {
    const exc = span.exception;
    detail.append(section("Exception",
      el("p", { className: "exception" }, el("strong", { text: exc.type }), exc.message ? ": " + exc.message : ""),
      exc.stacktrace ? el("pre", { className: "stack", text: exc.stacktrace }) : ""));
  }
  detail.append(
    section("Attributes", kvTable(span.attributes)),
    section("Events", eventsList(span.events)),
    section("Links", linksList(span.links)),
    section("Resource", kvTable(state.trace.resources[span.resource])),
    section("Scope", scopeTable(state.trace.scopes[span.scope])),
  );
  const spanLogs = state.trace.logs.filter((log) => log.span_id === span.span_id);
  if (spanLogs.length) detail.append(section(`Logs (${spanLogs.length})`, logsTable(spanLogs, false)));
  render();
}

function scopeTable(scope) {
  return kvTable({ name: scope.name, version: scope.version, ...scope.attributes }, false);
}

function logsTable(logs, withSpan) {
  const body = el("tbody");
  for (const log of logs) body.append(logRow(log, withSpan));
  return el("table", { className: "list compact" }, body);
}

function logRow(log, withSpan) {
  const spanIndex = state.bySpanId.has(log.span_id) ? state.bySpanId.get(log.span_id) : -1;
  const spanCell = el("td", {});
  if (withSpan && spanIndex >= 0) {
    spanCell.append(el("button", {
      type: "button", className: "linkish", onclick: () => reveal(spanIndex),
    }, state.trace.spans[spanIndex].name || log.span_id));
  }
  return el("tr", { className: severityClass(log.severity_number) },
    el("td", { className: "num", text: formatDuration(log.offset_ms) }),
    el("td", { className: "sev", text: log.severity }),
    el("td", { text: log.service }),
    el("td", { className: "body", text: valueText(log.body) }),
    withSpan ? spanCell : null,
  );
}

// Arrow keys move the selection; left and right collapse and expand; Enter toggles.
function onKey(event) {
  if (!state.trace || !state.visible.length) return;
  const position = Math.max(0, state.visible.indexOf(state.selected));
  const span = state.trace.spans[state.selected];
  let next = null;
  if (event.key === "ArrowDown") next = Math.min(state.visible.length - 1, position + 1);
  else if (event.key === "ArrowUp") next = Math.max(0, position - 1);
  else if (span && span.descendants > 0 && ["ArrowLeft", "ArrowRight", "Enter"].includes(event.key)) {
    const collapse = event.key === "ArrowLeft" || (event.key === "Enter" && !state.collapsed.has(state.selected));
    if (collapse) state.collapsed.add(state.selected);
    else state.collapsed.delete(state.selected);
    computeVisible();
    render();
  } else return;
  event.preventDefault();
  if (next !== null) reveal(state.visible[next]);
}

// Expand the span's ancestors, scroll it into view and select it.
function reveal(index) {
  const spans = state.trace.spans;
  for (let parent = spans[index].parent_index; parent >= 0; parent = spans[parent].parent_index) {
    state.collapsed.delete(parent);
  }
  computeVisible();
  const position = state.visible.indexOf(index);
  const viewport = document.getElementById("viewport");
  const top = position * ROW_HEIGHT;
  if (top < viewport.scrollTop || top + ROW_HEIGHT > viewport.scrollTop + viewport.clientHeight) {
    viewport.scrollTop = Math.max(0, top - viewport.clientHeight / 2);
  }
  select(index);
}

function summary(trace) {
  const box = clear(document.getElementById("summary"));
  box.append(
    el("h1", {}, el("span", { className: "span-name", text: trace.root_name || "(unnamed)" }),
      trace.error ? el("span", { className: "badge error", text: "error" }) : ""),
    el("p", { className: "muted" },
      `${formatTime(trace.start)} · ${formatDuration(trace.duration_ms)} · ${trace.span_count} spans · ` +
      `services: ${trace.services.join(", ")} · trace ${trace.trace_id}`,
      state.offline ? "" : " · ",
      state.offline ? "" : el("a", { href: "/ui/logs?trace_id=" + encodeURIComponent(trace.trace_id) }, "search its logs")),
  );
  document.title = (trace.root_name || "Trace") + " · TelemetryFlow";
}

// Draw one trace: summary, axis, waterfall, and its logs; the selection starts empty.
function show(trace) {
  state.trace = trace;
  state.collapsed = new Set();
  state.selected = -1;
  state.bySpanId = new Map(trace.spans.map((span, index) => [span.span_id, index]));
  summary(trace);
  ticks();
  computeVisible();
  document.getElementById("viewport").scrollTop = 0;
  render();
  clear(document.getElementById("detail")).append(
    el("p", { className: "muted", text: "Select a span to see its details." }));
  const logsBody = clear(document.querySelector("#trace-logs tbody"));
  for (const log of trace.logs) logsBody.append(logRow(log, true));
  if (!trace.logs.length) logsBody.append(el("tr", {}, el("td", { colspan: 5, className: "muted", text: "No logs for this trace." })));
  document.getElementById("status").textContent =
    trace.logs_truncated ? `Showing the first ${trace.logs.length} logs.` : "";
}

// An exported file: a list of its traces, and the one the #fragment names (else the first).
function showEmbedded(data) {
  const traces = data.traces || [];
  state.offline = new Map(traces.map((trace) => [trace.trace_id, trace]));
  const list = document.getElementById("exported");
  if (list && traces.length > 1) {
    list.hidden = false;
    for (const trace of traces) {
      list.append(el("li", {}, el("a", { href: "#" + trace.trace_id }, trace.root_name || "(unnamed)"),
        el("span", { className: "muted", text: ` ${formatTime(trace.start)} · ${formatDuration(trace.duration_ms)} · ${trace.span_count} spans` })));
    }
  }
  const pick = () => state.offline.get(location.hash.slice(1)) || traces[0];
  window.addEventListener("hashchange", () => { const t = pick(); if (t) show(t); });
  return pick();
}

async function load() {
  const embedded = document.getElementById("trace-data");
  if (embedded) return showEmbedded(JSON.parse(embedded.textContent));
  await header();
  return api("/ui/api/traces/" + encodeURIComponent(traceIdFromPath()));
}

async function main() {
  const status = document.getElementById("status");
  status.textContent = "Loading…";
  try {
    const trace = await load();
    if (!trace) {
      status.textContent = "This file holds no traces.";
      return;
    }
    show(trace);
    const viewport = document.getElementById("viewport");
    viewport.addEventListener("scroll", scheduleRender, { passive: true });
    viewport.addEventListener("keydown", onKey);
    window.addEventListener("resize", scheduleRender);
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error.status !== 401) showError(status, error);
  }
}

main();
