// The trace list: filters live in the URL; newest first; pages share a pinned end time.
import {
  api, clear, el, fillForm, formatDuration, formatTime, header, serviceColour, showError,
  tidyForm, traceLink, urlParams,
} from "./common.js";

const FILTERS = ["service", "q", "min_duration", "error", "since", "until", "page"];

function row(trace) {
  const dot = el("span", { className: "dot" });
  dot.style.backgroundColor = serviceColour(trace.service);
  return el("tr", { dataset: { traceId: trace.trace_id } },
    el("td", { className: "time", text: formatTime(trace.start) }),
    el("td", {}, traceLink(trace.trace_id, trace.root_name || "(unnamed)")),
    el("td", {}, dot, trace.service || ""),
    el("td", { className: "num", text: formatDuration(trace.duration_ms) }),
    el("td", { className: "num", text: trace.span_count }),
    el("td", {}, trace.error ? el("span", { className: "badge error", text: "error" }) : ""),
  );
}

function pageLink(params, page, label) {
  const next = { ...params, page: String(page) };
  if (page === 0) delete next.page;
  return el("a", { href: "/ui/traces?" + new URLSearchParams(next).toString() }, label);
}

async function main() {
  const params = urlParams(FILTERS);
  const form = document.getElementById("filters");
  fillForm(form, params);
  tidyForm(form);
  const status = document.getElementById("status");
  const body = document.querySelector("#traces tbody");
  status.textContent = "Loading…";
  try {
    // both at once: the list does not wait on the header's round trip
    const [, data] = await Promise.all([header(), api("/ui/api/traces", params)]);
    clear(body);
    for (const trace of data.traces) body.append(row(trace));
    const services = document.getElementById("services");
    for (const name of new Set(data.traces.flatMap((t) => t.services))) {
      services.append(el("option", { value: name }));
    }
    status.textContent = data.traces.length
      ? `Traces from ${formatTime(data.since)} to ${formatTime(data.until)}`
      : "No traces match these filters in this time range.";
    const pager = clear(document.getElementById("pager"));
    const pinned = { ...params, until: data.until };
    if (data.page > 0) pager.append(pageLink(pinned, data.page - 1, "← Newer"));
    if (data.more) pager.append(pageLink(pinned, data.page + 1, "Older →"));
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error.status !== 401) showError(status, error);
  }
}

main();
