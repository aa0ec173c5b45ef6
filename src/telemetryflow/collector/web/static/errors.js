// Error groups: captured exceptions and errors grouped by fingerprint, newest first.
import {
  clear, el, formatTime, loadPage, traceLink,
} from "./common.js";

const FILTERS = ["service", "since"];

// The group's row, then a row with its latest occurrence's stack trace as text.
function rows(group) {
  const sample = group.sample || {};
  const main = el("tr", { className: "group", dataset: { fingerprint: group.fingerprint } },
    el("td", { className: "type", text: group.type }),
    el("td", { className: "message body", text: group.message }),
    el("td", { text: sample.service || "" }),
    el("td", { className: "num count", text: group.count }),
    el("td", { className: "time", text: formatTime(group.first_seen) }),
    el("td", { className: "time", text: formatTime(group.last_seen) }),
    el("td", { className: "trace" }, sample.trace_id ? traceLink(sample.trace_id) : "—"),
  );
  const stack = sample.stack
    ? el("details", { className: "stack-box" },
      el("summary", { text: "stack trace" }),
      el("pre", { className: "stack body", text: sample.stack }))
    : el("span", { className: "muted", text: "no stack trace" });
  const detail = el("tr", { className: "group-detail", dataset: { fingerprint: group.fingerprint } },
    el("td", { colspan: 7 }, stack));
  return [main, detail];
}

function render(data) {
  const body = clear(document.querySelector("#errors tbody"));
  for (const group of data.groups) body.append(...rows(group));
  document.getElementById("totals").textContent =
    `${data.total_groups} groups, ${data.total_occurrences} occurrences`;
  return data.groups.length ? "" : "No errors captured with these filters.";
}

loadPage(FILTERS, "/ui/api/errors", render);

