// Shared helpers of the web view. Everything a client sent is put on the page with
// textContent or as attribute values set through the DOM, never parsed as markup.

export const TRACE_ID = /^[0-9a-f]{32}$/i;

// el("td", {className: "x", title: "t"}, "text", child) -> element
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// A link to one trace, or plain text when the id is not a trace id.
export function traceLink(traceId, label) {
  if (!traceId || !TRACE_ID.test(traceId)) return document.createTextNode(label || "");
  return el("a", { href: "/ui/traces/" + encodeURIComponent(traceId.toLowerCase()) },
    label || traceId.slice(0, 12));
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// GET JSON from the view's API; a lost session sends the page to sign in.
export async function api(path, params) {
  const query = params ? "?" + new URLSearchParams(params).toString() : "";
  const response = await fetch(path + query, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (response.status === 401) {
    signIn();
    throw new ApiError(401, "signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || response.statusText;
    throw new ApiError(response.status, message);
  }
  return body;
}

export function signIn() {
  const next = location.pathname + location.search;
  location.assign("/ui/signin?next=" + encodeURIComponent(next));
}

// Page parameters from the URL, empty ones dropped.
export function urlParams(names) {
  const found = {};
  const query = new URLSearchParams(location.search);
  for (const name of names) {
    const value = query.get(name);
    if (value !== null && value !== "") found[name] = value;
  }
  return found;
}

// Put the URL's filter values into a GET form's fields, so the form shows them.
export function fillForm(form, params) {
  for (const field of form.elements) {
    if (!field.name || !(field.name in params)) continue;
    if (field.type === "checkbox") field.checked = params[field.name] === "true";
    else field.value = params[field.name];
  }
}

// Drop empty fields from a GET form so the URL only holds the filters in use.
export function tidyForm(form) {
  form.addEventListener("submit", () => {
    for (const field of form.elements) {
      if (field.name && field.type !== "checkbox" && field.value === "") field.disabled = true;
    }
  });
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return "";
  if (ms === 0) return "0";
  if (ms < 1) return (ms * 1000).toFixed(ms < 0.01 ? 2 : 0) + " µs";
  if (ms < 1000) return (ms < 10 ? ms.toFixed(2) : ms.toFixed(1)) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
  return (ms / 60000).toFixed(1) + " min";
}

export function formatTime(iso) {
  const date = new Date(iso);
  if (isNaN(date.getTime())) return iso || "";
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.` +
    pad(date.getMilliseconds(), 3);
}

// A stable colour per service name.
export function serviceColour(name) {
  let hash = 0;
  for (const ch of name || "") hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  // hues from orange round to purple: red stays the colour of errors
  return `hsl(${40 + (hash % 280)}, 55%, 50%)`;
}

export function valueText(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

// A two-column table of keys and values, sorted by key unless told otherwise.
export function kvTable(object, sorted = true) {
  const entries = Object.entries(object || {});
  if (sorted) entries.sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return el("p", { className: "muted", text: "none" });
  const body = el("tbody");
  for (const [key, value] of entries) {
    body.append(el("tr", {}, el("th", { text: key }), el("td", { text: valueText(value) })));
  }
  return el("table", { className: "kv" }, body);
}

export function severityClass(number) {
  if (number >= 17) return "sev-error";
  if (number >= 13) return "sev-warn";
  if (number >= 9) return "sev-info";
  return "sev-debug";
}

// The header: project name and, when keys are on, the sign-out button.
export async function header() {
  const session = await api("/ui/api/session");
  const project = document.getElementById("project");
  if (project) project.textContent = "project: " + session.project;
  const signout = document.getElementById("signout");
  if (signout) signout.hidden = !session.auth;
  return session;
}

export function showError(node, error) {
  clear(node).append(el("p", { className: "error", text: error.message || String(error) }));
}

// A list page: its filters from the URL into the form, the header, then one API call.
// ``render(data)`` fills the page and returns the status line ("" when there are rows).
export async function loadPage(filters, path, render) {
  const params = urlParams(filters);
  const form = document.getElementById("filters");
  fillForm(form, params);
  tidyForm(form);
  const status = document.getElementById("status");
  status.textContent = "Loading…";
  try {
    await header();
    status.textContent = render(await api(path, params));
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error.status !== 401) showError(status, error);
  }
}
