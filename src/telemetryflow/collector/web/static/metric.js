// One metric over time: an SVG line chart drawn here, one line per series, with the
// series' exemplars as diamonds that open the trace they were measured in.
import {
  api, clear, el, fillForm, formatTime, header, showError, tidyForm, urlParams, valueText,
} from "./common.js";

const FILTERS = ["agg", "group_by", "service", "since", "until", "step"];
const SVG = "http://www.w3.org/2000/svg";
const SIZE = { width: 960, height: 300, left: 64, right: 16, top: 12, bottom: 28 };
// Aggregations whose values are not on the scale of single measurements.
const NO_EXEMPLARS = new Set(["sum", "rate", "count"]);
const PALETTE = ["#2f6fde", "#e08a1e", "#2e9e6a", "#8a4fd3", "#1a9bb0", "#c4489c", "#6f7d1c",
  "#5a6b84", "#b0622e", "#3c8d2f"];

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function metricName() {
  return decodeURIComponent(location.pathname.slice("/ui/metrics/".length));
}

function seriesLabel(tags) {
  const entries = Object.entries(tags || {}).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([k, v]) => `${k}=${valueText(v)}`).join(", ") : "(all)";
}

function formatValue(value) {
  if (value === null || value === undefined) return "";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(2);
  return Number(value.toFixed(abs < 10 ? 3 : 1)).toString();
}

// Ticks at round numbers between low and high.
function niceTicks(low, high, count) {
  const span = high - low || Math.abs(high) || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9 && ticks.length < 20; v += step) {
    ticks.push(v);
  }
  return ticks;
}

function chart(data) {
  const box = clear(document.getElementById("chart"));
  const lines = data.series.map((s) => s.points.filter((p) => p.value !== null));
  const marks = NO_EXEMPLARS.has(data.agg) ? [] : exemplarsOf(data.series);
  const values = [...lines.flat().map((p) => p.value), ...marks.map((m) => m.value)];
  if (!lines.flat().length) {
    box.append(el("p", { className: "muted", text: "No points in this time range." }));
    return;
  }
  const t0 = Date.parse(data.since);
  const t1 = Date.parse(data.until);
  let low = Math.min(0, ...values);
  let high = Math.max(...values);
  if (high === low) high = low + 1;
  const ticks = niceTicks(low, high, 5);
  high = Math.max(high, ticks[ticks.length - 1]);
  low = Math.min(low, ticks[0]);
  const { width, height, left, right, top, bottom } = SIZE;
  const x = (ms) => left + ((ms - t0) / Math.max(1, t1 - t0)) * (width - left - right);
  const y = (v) => top + (1 - (v - low) / (high - low)) * (height - top - bottom);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `${metricName()} (${data.agg})` });
  for (const tick of ticks) {
    root.append(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }));
    root.append(svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", class: "axis-label" }, formatValue(tick)));
  }
  for (let i = 0; i <= 4; i++) {
    const ms = t0 + ((t1 - t0) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    root.append(svg("text", { x: x(ms), y: height - 8, "text-anchor": anchor, class: "axis-label" },
      formatTime(new Date(ms).toISOString()).slice(11, 19)));
  }
  lines.forEach((points, index) => {
    const colour = PALETTE[index % PALETTE.length];
    const title = seriesLabel(data.series[index].tags);
    if (points.length === 1) {
      const dot = svg("circle", { cx: x(Date.parse(points[0].time)), cy: y(points[0].value), r: 3, fill: colour });
      dot.append(svg("title", {}, `${title}: ${formatValue(points[0].value)}`));
      root.append(dot);
      return;
    }
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(Date.parse(p.time)).toFixed(1)},${y(p.value).toFixed(1)}`).join("");
    const path = svg("path", { d, fill: "none", stroke: colour, "stroke-width": 2, class: "series-line" });
    path.append(svg("title", {}, title));
    root.append(path);
  });
  for (const mark of marks) root.append(exemplarMark(mark, x(Date.parse(mark.time)), y(mark.value)));
  box.append(root);
}

function exemplarsOf(series) {
  return series.flatMap((s, index) => (s.exemplars || [])
    .filter((e) => Number.isFinite(e.value))
    .map((e) => ({ ...e, colour: PALETTE[index % PALETTE.length], label: seriesLabel(s.tags) })));
}

// A diamond linking to the exemplar's trace (an SVG link: keyboard and middle-click work).
function exemplarMark(mark, cx, cy) {
  const link = svg("a", { href: "/ui/traces/" + encodeURIComponent(mark.trace_id),
    class: "exemplar", "data-trace-id": mark.trace_id });
  const r = 5;
  const d = `M${cx.toFixed(1)},${(cy - r).toFixed(1)}l${r},${r}l${-r},${r}l${-r},${-r}z`;
  const shape = svg("path", { d, fill: mark.colour });
  shape.append(svg("title", {},
    `${mark.label}: ${formatValue(mark.value)} at ${formatTime(mark.time)} (trace ${mark.trace_id})`));
  link.append(shape);
  return link;
}

function table(data) {
  const body = clear(document.querySelector("#series tbody"));
  data.series.forEach((series, index) => {
    const swatch = el("span", { className: "dot" });
    swatch.style.backgroundColor = PALETTE[index % PALETTE.length];
    body.append(el("tr", {},
      el("td", {}, swatch, seriesLabel(series.tags)),
      el("td", { className: "num", text: formatValue(series.value) })));
  });
}

function groupChoices(data, chosen) {
  const select = document.getElementById("group-by");
  for (const key of new Set([...data.tag_keys, ...(chosen ? [chosen] : [])])) {
    select.append(el("option", { value: key }, key));
  }
  select.value = chosen || "";
}

async function main() {
  const params = urlParams(FILTERS);
  const name = metricName();
  document.getElementById("metric-name").textContent = name;
  document.title = name + " · TelemetryFlow";
  const form = document.getElementById("filters");
  form.setAttribute("action", location.pathname);
  const status = document.getElementById("status");
  status.textContent = "Loading…";
  try {
    await header();
    const data = await api("/ui/api/metrics/" + encodeURIComponent(name), params);
    groupChoices(data, params.group_by);
    fillForm(form, params);
    tidyForm(form);
    chart(data);
    table(data);
    status.textContent = `${data.agg} per ${data.step || "window"}, ${formatTime(data.since)} to ${formatTime(data.until)}`;
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error.status !== 401) showError(status, error);
  }
}

main();
