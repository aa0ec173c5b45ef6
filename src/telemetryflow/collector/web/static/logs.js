// Log search (filters in the URL, newest first) and a live tail over Server-Sent Events.
import {
  api, clear, el, fillForm, formatTime, header, kvTable, severityClass, showError, tidyForm,
  traceLink, urlParams, valueText,
} from "./common.js";

const FILTERS = ["q", "severity", "service", "trace_id", "since"];
const MAX_ROWS = 1000;
let source = null;

function row(log, fresh) {
  const tr = el("tr", { className: "log " + severityClass(log.severity_number) + (fresh ? " fresh" : "") },
    el("td", { className: "time", text: formatTime(log.time) }),
    el("td", { className: "sev", text: log.severity }),
    el("td", { text: log.service }),
    el("td", { className: "body", text: valueText(log.body) }),
    el("td", {}, traceLink(log.trace_id)),
  );
  tr.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    toggleDetail(tr, log);
  });
  return tr;
}

// A row under the record with its attributes, span, resource and scope.
function toggleDetail(tr, log) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("log-detail")) {
    next.remove();
    return;
  }
  const scope = log.scope || {};
  const cell = el("td", { colspan: 5 },
    el("h3", { text: "Attributes" }), kvTable(log.attributes),
    el("h3", { text: "Trace and span" }),
    kvTable({ "trace id": log.trace_id || "", "span id": log.span_id || "" }, false),
    el("h3", { text: "Resource" }), kvTable(log.resource),
    el("h3", { text: "Scope" }), kvTable({ name: scope.name, version: scope.version, ...scope.attributes }, false));
  tr.after(el("tr", { className: "log-detail" }, cell));
}

function setLive(on, params) {
  const button = document.getElementById("live");
  const status = document.getElementById("status");
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "Stop live tail" : "Live tail";
  const url = new URL(location.href);
  if (on) url.searchParams.set("live", "1");
  else url.searchParams.delete("live");
  history.replaceState(null, "", url);
  if (source) {
    source.close();
    source = null;
  }
  if (!on) {
    status.textContent = "";
    return;
  }
  const tailParams = { ...params };
  delete tailParams.since;
  status.textContent = "Live: connecting…";
  source = new EventSource("/ui/api/logs/tail?" + new URLSearchParams(tailParams).toString());
  source.addEventListener("ready", () => {
    status.textContent = "Live: new records appear at the top as they arrive.";
    document.body.dataset.live = "ready";
  });
  source.addEventListener("notice", (event) => {
    status.textContent = "Live: " + JSON.parse(event.data).message;
  });
  source.addEventListener("log", (event) => {
    const body = document.querySelector("#logs tbody");
    body.prepend(row(JSON.parse(event.data), true));
    while (body.querySelectorAll("tr.log").length > MAX_ROWS) body.lastElementChild.remove();
  });
  source.addEventListener("error", () => {
    document.body.dataset.live = "reconnecting";
    status.textContent = "Live: reconnecting…";
  });
}

async function main() {
  const params = urlParams(FILTERS);
  const form = document.getElementById("filters");
  fillForm(form, params);
  tidyForm(form);
  const status = document.getElementById("status");
  const body = document.querySelector("#logs tbody");
  document.getElementById("live").addEventListener("click", (event) => {
    setLive(event.currentTarget.getAttribute("aria-pressed") !== "true", params);
  });
  status.textContent = "Loading…";
  try {
    await header();
    const data = await api("/ui/api/logs", params);
    clear(body);
    for (const log of data.logs) body.append(row(log, false));
    status.textContent = data.logs.length
      ? `${data.logs.length} record(s) from ${formatTime(data.since)} to ${formatTime(data.until)}, newest first`
      : "No log records match these filters in this time range.";
    document.body.dataset.ready = "true";
    if (new URLSearchParams(location.search).get("live") === "1") setLive(true, params);
  } catch (error) {
    if (error.status !== 401) showError(status, error);
  }
}

main();
