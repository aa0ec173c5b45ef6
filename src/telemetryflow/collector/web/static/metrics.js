// The metric catalogue: every metric name of the project with its type, unit and series.
import {
  api, clear, el, fillForm, formatTime, header, showError, tidyForm, urlParams,
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

async function main() {
  const params = urlParams(FILTERS);
  const form = document.getElementById("filters");
  fillForm(form, params);
  tidyForm(form);
  const status = document.getElementById("status");
  status.textContent = "Loading…";
  try {
    await header();
    const data = await api("/ui/api/metrics", params);
    const body = clear(document.querySelector("#metrics tbody"));
    for (const metric of data.metrics) body.append(row(metric));
    status.textContent = data.metrics.length ? "" : "No metrics match these filters.";
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error.status !== 401) showError(status, error);
  }
}

main();
