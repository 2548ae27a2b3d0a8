// backdoor-sweep pages: every data request goes to the JSON API with the token of this tab.
// Data is put into the page as text (textContent), never as HTML.
"use strict";

const TOKEN_KEY = "bsw-token";
const USER_KEY = "bsw-user";
const POLL_MS = 1000;

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function toLogin() {
  const here = location.pathname + location.search;
  location.href = "/ui/login?next=" + encodeURIComponent(here);
}

class ApiError extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, { Authorization: "Bearer " + token() });
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) { sessionStorage.removeItem(TOKEN_KEY); toLogin(); throw new ApiError("logged out"); }
  const type = resp.headers.get("content-type") || "";
  if (!resp.ok) {
    let message = resp.status + " " + resp.statusText;
    if (type.includes("json")) { message = (await resp.json()).error || message; }
    throw new ApiError(message);
  }
  return type.includes("json") ? resp.json() : resp.text();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function $(id) { return document.getElementById(id); }
function showError(id, err) { $(id).textContent = err ? (err.message || String(err)) : ""; }
function num(v, digits = 3) { return typeof v === "number" ? v.toFixed(digits) : "–"; }
function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : ""; }
function eta(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return Math.round(s) + " s";
  return Math.round(s / 60) + " min";
}
function active(status) { return ["queued", "starting", "running", "cancelling"].includes(status); }
function resumable(status) { return ["interrupted", "cancelled", "failed"].includes(status); }
function sweepLink(name) { return "/ui/sweep?name=" + encodeURIComponent(name); }

function chrome() {
  const nav = document.querySelector("header.top nav");
  if (nav) {
    for (const [href, text] of [["/ui/", "Sweeps"], ["/ui/submit", "Submit"], ["/ui/query", "SQL"], ["/docs", "API"]]) {
      nav.append(el("a", { href }, text), " ");
    }
  }
  const who = document.querySelector("header.top .who");
  if (who) {
    who.append("logged in as " + (sessionStorage.getItem(USER_KEY) || "?") + " · ");
    who.append(el("a", { href: "#", id: "logout", onclick: (e) => {
      e.preventDefault(); sessionStorage.clear(); location.href = "/ui/login";
    } }, "log out"));
  }
}

// Open an authenticated HTML page (report, explain, log) in a new tab as a blob: the token
// never appears in a URL. The tab opens at the click (a popup blocker allows that) and gets the
// page when it is built (a report takes seconds).
async function openPage(path, errorId, link) {
  const label = link.textContent;
  const tab = window.open("", "_blank");
  if (tab) tab.document.body.textContent = "building " + path + " …";
  link.textContent = label + " (building…)";
  showError(errorId, null);
  try {
    const text = await api(path);
    const type = path.endsWith("/log") ? "text/plain" : "text/html";
    const url = URL.createObjectURL(new Blob([text], { type }));
    if (tab) tab.location.href = url; else window.open(url, "_blank");
  } catch (err) {
    if (tab) tab.close();
    showError(errorId, err);
  } finally { link.textContent = label; }
}

// -- pages -------------------------------------------------------------------------------
async function loginPage() {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = $("token").value.trim();
    const resp = await fetch("/whoami", { headers: { Authorization: "Bearer " + t } });
    if (!resp.ok) { showError("error", new Error((await resp.json()).error)); return; }
    sessionStorage.setItem(TOKEN_KEY, t);
    sessionStorage.setItem(USER_KEY, (await resp.json()).name);
    const next = new URLSearchParams(location.search).get("next");
    location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : "/ui/";
  });
}

function actionButton(name, status) {
  if (active(status) && status !== "cancelling") {
    return el("button", { class: "plain", onclick: () => act(name, "cancel") }, "Cancel");
  }
  if (resumable(status)) {
    return el("button", { class: "plain", onclick: () => act(name, "resume") }, "Resume");
  }
  return "";
}

async function act(name, action) {
  try { await api("/sweeps/" + encodeURIComponent(name) + "/" + action, { method: "POST" }); }
  catch (err) { showError("error", err); }
}

function progressCell(s) {
  const total = s.total || 0;
  return el("td", {}, el("progress", { max: String(Math.max(total, 1)), value: String(s.done) }),
    " " + s.done + " / " + (s.total ?? "?"));
}

async function sweepsPage() {
  const body = document.querySelector("#sweeps tbody");
  async function refresh() {
    try {
      const data = await api("/sweeps");
      body.replaceChildren(...data.sweeps.map((s) => el("tr", { "data-name": s.name },
        el("td", {}, el("a", { href: sweepLink(s.name) }, s.name)),
        el("td", {}, s.submitter),
        el("td", {}, el("span", { class: "status " + s.status, title: s.error || "" }, s.status)),
        progressCell(s),
        el("td", {}, eta(s.eta_s)),
        el("td", {}, when(s.submitted_at || s.created_at)),
        el("td", {}, actionButton(s.name, s.status)))));
      $("empty").hidden = data.sweeps.length > 0;
      showError("error", null);
    } catch (err) { if (!(err.message === "logged out")) showError("error", err); }
    setTimeout(refresh, POLL_MS);
  }
  refresh();
}

function fillSelect(id, values, chosen, blank) {
  const select = $(id);
  const options = (blank ? [""] : []).concat(values);
  select.replaceChildren(...options.map((v) => el("option", { value: v }, v || "(none)")));
  if (chosen !== undefined && chosen !== null && options.includes(chosen)) select.value = chosen;
}

// Draw a figure made by the server; its width follows the page (the report's figures are sized
// for a standalone page).
function draw(id, figure) {
  const layout = Object.assign({}, figure.layout, { autosize: true });
  delete layout.width;
  return Plotly.react(id, figure.data, layout, { responsive: true });
}

const PICKS = { asr: "lowest mean ASR", worst_asr: "lowest worst-case ASR", slope: "lowest slope" };

function choiceBlock(detail) {
  const box = $("choice");
  const rec = detail.recommended;
  if (!rec) {
    box.replaceChildren(el("p", { class: "muted" }, detail.recommended_error || "no recommendation yet"));
    return;
  }
  const config = Object.entries(rec.choice).map(([k, v]) => k + " = " + v).join(", ") || "the only configuration";
  const rows = Object.entries(rec.metrics).map(([k, m]) => el("tr", {},
    el("td", {}, k), el("td", { class: "num" }, num(m.mean)),
    el("td", { class: "num" }, m.std === null ? "–" : "± " + num(m.std)),
    el("td", { class: "num" }, m.ci_low === null ? "n/a" : num(m.ci_low) + " – " + num(m.ci_high)),
    el("td", { class: "num" }, m.n)));
  box.replaceChildren(
    el("div", { class: "choice" },
      el("div", { class: "config", id: "choice-config" }, config),
      el("div", { class: "note" }, "by " + (PICKS[rec.objective] || rec.objective) + " among the "
        + rec.n_accurate + " of " + rec.n_configurations + " configurations within "
        + rec.clean_tolerance + " of the best clean accuracy (results stored so far): " + rec.why)),
    el("table", { id: "choice-metrics" },
      el("thead", {}, el("tr", {}, ...["metric", "mean", "std over seeds", "95% interval", "seeds"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)),
    el("p", { class: "note" }, rec.agreement),
    ...rec.limits.map((line) => el("p", { class: "note" }, line)));
}

async function sweepPage() {
  const name = new URLSearchParams(location.search).get("name") || "";
  const base = "/sweeps/" + encodeURIComponent(name);
  document.title = "backdoor-sweep: " + name;
  $("title").textContent = "sweep " + name;
  // the pickers follow the sweep's axes as results arrive, until the person picks something
  let lastDone = -1, pickersKey = "", picked = false, curvesDrawn = -1, lastStatus = "";

  async function drawHeatmap() {
    const q = new URLSearchParams({ metric: $("hm-metric").value, x: $("hm-x").value, y: $("hm-y").value,
      agg: $("hm-agg").value });
    const facets = [$("hm-facet1").value, $("hm-facet2").value].filter((f) => f);
    q.set("facet", facets.length ? facets.join(",") : "none");
    if ($("hm-where").value.trim()) q.set("where", $("hm-where").value.trim());
    try {
      const data = await api(base + "/heatmap?" + q);
      showError("hm-error", null);
      $("hm-info").textContent = data.panels.length + " panel(s), " + data.x_values.length + " × "
        + data.y_values.length + " cells" + (data.hidden.length ? "; aggregated over " + data.hidden.join(", ") : "");
      await draw("heatmap", data.figure);
    } catch (err) { showError("hm-error", err); }
  }

  async function drawCurves(done) {
    if (curvesDrawn === done) return;
    curvesDrawn = done;
    try {
      const data = await api(base + "/curves");
      showError("curves-error", null);
      await draw("curves", data.figure);
    } catch (err) { showError("curves-error", err); }
  }

  function pickers(detail) {
    const h = detail.heatmap || {};
    const facets = h.facets || [];
    fillSelect("hm-metric", detail.metrics, detail.metrics.includes("asr") ? "asr" : detail.metrics[0]);
    fillSelect("hm-x", detail.axes, h.x);
    fillSelect("hm-y", detail.axes, h.y);
    fillSelect("hm-facet1", detail.axes, facets[0] || "", true);
    fillSelect("hm-facet2", detail.axes, facets[1] || "", true);
  }

  async function refresh() {
    let detail = null;
    try {
      detail = await api(base);
      showError("run-error", detail.error ? new Error(detail.error) : null);
    } catch (err) { if (err.message !== "logged out") showError("run-error", err); }
    if (detail) {
      const status = $("status");
      status.textContent = detail.status;
      status.className = "status " + detail.status;
      $("bar").max = Math.max(detail.total || 0, 1);
      $("bar").value = detail.done;
      $("counts").textContent = detail.done + " / " + (detail.total ?? "?") + " results";
      $("eta").textContent = active(detail.status) && detail.eta_s !== null ? "ETA " + eta(detail.eta_s) : "";
      $("submitter").textContent = detail.submitter ? "submitted by " + detail.submitter
        + (detail.submitted_at ? " at " + when(detail.submitted_at) : "") : "";
      $("cancel").hidden = !(active(detail.status) && detail.status !== "cancelling");
      $("resume").hidden = !resumable(detail.status);
      if (detail.spec && !$("spec").textContent) $("spec").textContent = JSON.stringify(detail.spec, null, 2);
      choiceBlock(detail);
      const key = JSON.stringify([detail.axes, detail.metrics, detail.heatmap]);
      if (detail.axes && detail.axes.length && !picked && key !== pickersKey) {
        pickers(detail);
        pickersKey = key;
      }
      if (pickersKey && (detail.done !== lastDone || detail.status !== lastStatus)) {
        lastDone = detail.done;
        await drawHeatmap();
      }
      $("curves-section").hidden = !detail.has_curves;
      if (detail.has_curves) await drawCurves(detail.done);
      lastStatus = detail.status;
    }
    if (!detail || active(detail.status)) setTimeout(refresh, POLL_MS);
  }

  $("hm-draw").addEventListener("click", drawHeatmap);
  for (const id of ["hm-metric", "hm-x", "hm-y", "hm-facet1", "hm-facet2", "hm-agg", "hm-where"]) {
    $(id).addEventListener("change", () => { picked = true; });
  }
  $("cancel").addEventListener("click", async () => { await act(name, "cancel"); refresh(); });
  $("resume").addEventListener("click", async () => { await act(name, "resume"); refresh(); });
  for (const [id, path] of [["report-link", "/report"], ["explain-link", "/explain"], ["log-link", "/log"]]) {
    $(id).addEventListener("click", (e) => { e.preventDefault(); openPage(base + path, "page-error", e.target); });
  }
  refresh();
}

async function submitPage() {
  async function load(preset) {
    try { $("spec").value = await api("/presets/" + encodeURIComponent(preset)); }
    catch (err) { showError("error", err); }
  }
  try {
    const data = await api("/presets");
    const chosen = data.presets.includes("digits_svm_rbf") ? "digits_svm_rbf" : data.presets[0];
    fillSelect("preset", data.presets, chosen);
    await load(chosen);
  } catch (err) { showError("error", err); }
  $("preset").addEventListener("change", () => load($("preset").value));
  $("submit").addEventListener("click", async () => {
    const q = new URLSearchParams();
    if ($("smoke").checked) q.set("smoke", "true");
    if ($("name").value.trim()) q.set("name", $("name").value.trim());
    showError("error", null);
    try {
      const sweep = await api("/sweeps?" + q, { method: "POST", body: $("spec").value,
        headers: { "Content-Type": "application/yaml" } });
      location.href = sweepLink(sweep.name);
    } catch (err) { showError("error", err); }
  });
}

async function queryPage() {
  $("run").addEventListener("click", async () => {
    const q = new URLSearchParams({ sql: $("sql").value, limit: $("limit").value || "1000" });
    const t0 = performance.now();
    showError("error", null);
    $("elapsed").textContent = "running…";
    try {
      const data = await api("/query?" + q);
      $("result").querySelector("thead").replaceChildren(el("tr", {}, ...data.columns.map((c) => el("th", {}, c))));
      $("result").querySelector("tbody").replaceChildren(...data.rows.map((r) =>
        el("tr", {}, ...r.map((v) => el("td", { class: typeof v === "number" ? "num" : "" },
          typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(6) : v === null ? "NULL" : v)))));
      $("truncated").hidden = !data.truncated;
      $("truncated").textContent = "only the first " + data.row_limit + " rows are shown";
      $("elapsed").textContent = data.rows.length + " row(s) in " + Math.round(performance.now() - t0) + " ms";
    } catch (err) { showError("error", err); $("elapsed").textContent = ""; }
  });
}

const PAGES = { login: loginPage, sweeps: sweepsPage, sweep: sweepPage, submit: submitPage, query: queryPage };
const page = document.body.dataset.page;
if (page !== "login" && !token()) { toLogin(); } else { chrome(); PAGES[page](); }
