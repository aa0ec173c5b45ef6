// Product events by name with distinct users, and which flag variant each user saw.
import {
  clear, el, formatTime, loadPage, traceLink, valueText,
} from "./common.js";

const FILTERS = ["service", "since"];

function eventRow(event) {
  return el("tr", { dataset: { event: event.event } },
    el("td", { text: event.event }),
    el("td", { className: "num", text: event.count }),
    el("td", { className: "num", text: event.distinct_ids }),
    el("td", { className: "time", text: formatTime(event.first_seen) }),
    el("td", { className: "time", text: formatTime(event.last_seen) }),
  );
}

function flagRow(flag) {
  return el("tr", { dataset: { flag: flag.flag, user: flag.user } },
    el("td", { text: flag.flag }),
    el("td", { text: flag.user }),
    el("td", { className: "variant", text: flag.variant ?? "" }),
    el("td", { text: flag.value === null || flag.value === undefined ? "" : valueText(flag.value) }),
    el("td", { text: flag.reason ?? "" }),
    el("td", { className: "num", text: flag.evaluations }),
    el("td", { className: "time", text: formatTime(flag.time) }),
    el("td", {}, flag.trace_id ? traceLink(flag.trace_id) : "—"),
  );
}

function render(data) {
  const events = clear(document.querySelector("#events tbody"));
  for (const event of data.events) events.append(eventRow(event));
  const flags = clear(document.querySelector("#flags tbody"));
  for (const flag of data.flags) flags.append(flagRow(flag));
  document.getElementById("flags-note").textContent = data.flags_truncated
    ? "Only the first 1,000 flag and user pairs are listed (every evaluation is counted)." : "";
  return data.events.length || data.flags.length
    ? "" : "No events or flag evaluations with these filters.";
}

loadPage(FILTERS, "/ui/api/events", render);

