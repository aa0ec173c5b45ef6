// The metric catalogue: every metric name of the project with its type, unit and series.
import {
  clear, el, formatTime, loadPage,
} from "./common.js";

const FILTERS = ["service", "prefix"];

function row(metric) {
  const link = el("a", { href: "/ui/metrics/" + encodeURIComponent(metric.name) }, metric.name);
  return el("tr", { dataset: { metric: metric.name } },
    el("td", {}, link),
    el("td", { text: metric.type }),
    el("td", { text: metric.unit || "" }),
    el("td", { className: "num", text: metric.series }),
    el("td", { className: "num", text: metric.points }),
    el("td", { className: "time", text: formatTime(metric.last_seen) }),
  );
}

function render(data) {
  const body = clear(document.querySelector("#metrics tbody"));
  for (const metric of data.metrics) body.append(row(metric));
  return data.metrics.length ? "" : "No metrics match these filters.";
}

loadPage(FILTERS, "/ui/api/metrics", render);

