// The overview: per service and route, requests, rate, error rate and latency; latest
// errors; what each forwarding upstream got.
import {
  clear, el, formatDuration, formatTime, loadPage,
} from "./common.js";

const FILTERS = ["service", "since"];

function percent(ratio) {
  return (ratio * 100).toFixed(ratio > 0 && ratio < 0.1 ? 2 : 1) + " %";
}

function seconds(value) {
  return value === null || value === undefined ? "" : formatDuration(value * 1000);
}

function routeRow(route) {
  return el("tr", { dataset: { service: route.service, route: route.route } },
    el("td", { text: route.service }),
    el("td", { className: "route", text: route.route }),
    el("td", { className: "num requests", text: route.requests ?? 0 }),
    el("td", { className: "num rate", text: (route.rate || 0).toFixed(3) + " /s" }),
    el("td", { className: "num error-rate" + (route.errors ? " bad" : ""),
      text: percent(route.error_rate || 0) }),
    el("td", { className: "num", text: seconds(route.p50) }),
    el("td", { className: "num", text: seconds(route.p99) }),
  );
}

function errorRow(group) {
  const service = (group.sample && group.sample.service) || "";
  return el("tr", { dataset: { fingerprint: group.fingerprint } },
    el("td", {}, el("a", { href: "/ui/errors?service=" + encodeURIComponent(service) },
      group.type)),
    el("td", { className: "message body", text: group.message }),
    el("td", { text: service }),
    el("td", { className: "num", text: group.count }),
    el("td", { className: "time", text: formatTime(group.last_seen) }),
  );
}

function forwardRow(upstream) {
  return el("tr", {},
    el("td", { className: "upstream", text: upstream.upstream }),
    el("td", { text: upstream.protocol + (upstream.tls ? " (TLS)" : "") }),
    el("td", { className: "num delivered", text: upstream.delivered }),
    el("td", { className: "num pending", text: upstream.pending }),
    el("td", { className: "num dropped" + (upstream.dropped ? " bad" : ""),
      text: upstream.dropped }),
    el("td", { className: "muted", text: upstream.last_error || "" }),
  );
}

function render(data) {
  const routes = clear(document.querySelector("#routes tbody"));
  for (const route of data.routes) routes.append(routeRow(route));
  const errors = clear(document.querySelector("#errors tbody"));
  for (const group of data.errors) errors.append(errorRow(group));
  const upstreams = data.forwarding || [];
  document.getElementById("forwarding-block").hidden = !upstreams.length;
  const forwarding = clear(document.querySelector("#forwarding tbody"));
  for (const upstream of upstreams) forwarding.append(forwardRow(upstream));
  return data.routes.length
    ? "" : "No requests measured by the middleware in this window.";
}

loadPage(FILTERS, "/ui/api/overview", render);

