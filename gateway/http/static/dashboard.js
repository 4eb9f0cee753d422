// MagicQueue dashboard: plain JavaScript over the server's own REST API and its SSE stream.
//
// - Auth: if the API answers 401, the page asks for a token once, keeps it in sessionStorage
//   (this tab only), and sends it as `Authorization: Bearer` (REST) and `?token=` (EventSource
//   cannot send headers).
// - Live data: one EventSource on /events feeds the throughput and latency charts (per-second
//   buckets; latency is measured from the events' own timestamps: pushed -> active is the wait,
//   active -> completed the processing time) and the event log, and marks the tables stale so
//   they refresh (throttled). Tables are also refreshed on a timer, so nothing depends on
//   having seen every event.
// - Everything user-provided (queue names, job data) is inserted with textContent, never as HTML.
"use strict";

const EVENT_TYPES = ["pushed", "active", "completed", "failed", "retried", "progress", "cancelled", "expired"];
const WINDOW_S = 120;
const PAGE_SIZE = 25;
const TRACK_LIMIT = 200000; // job timestamps remembered for latency (bounded memory)

const state = {
  token: sessionStorage.getItem("magicqueue.token") || "",
  jobState: "waiting",
  jobQueue: null, // null = all queues
  offset: 0,
  selected: null,
  queues: [],
  started: false,
  dirty: false,
  source: null,
};

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmt(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "–";
}

function fmtRate(n) {
  if (Number.isInteger(n) || n >= 100) return Math.round(n).toLocaleString("en-US");
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(n === 0 ? 0 : 2);
}

function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function ago(ms) {
  return ms ? `${span((Date.now() - ms) / 1000)} ago` : "–";
}

function until(ms) {
  if (!ms) return "–";
  const diff = (ms - Date.now()) / 1000;
  return diff > 0 ? `in ${span(diff)}` : ago(ms);
}

function when(ms) {
  if (!ms) return "–";
  return `${new Date(ms).toLocaleTimeString("en-GB")} (${until(ms)})`;
}

function queueLabel(name) {
  return name === "" ? el("span", { class: "empty-name", text: "(empty name)" }) : name;
}

// ------------------------------------------------------------ API

class AuthError extends Error {}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let env;
  try {
    env = await resp.json();
  } catch {
    throw new Error(`HTTP ${resp.status}`);
  }
  if (resp.status === 401) throw new AuthError(env.error || "Authentication required");
  if (!env.ok) throw new Error(env.error || `HTTP ${resp.status}`);
  return env.data;
}

const seg = (name) => encodeURIComponent(name);

let toastTimer = 0;
function toast(message, bad) {
  const t = $("#toast");
  t.textContent = message;
  t.classList.toggle("bad", !!bad);
  t.classList.remove("hidden");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.add("hidden"), 2500);
}

async function act(fn, okMessage) {
  try {
    const out = await fn();
    if (okMessage) toast(typeof okMessage === "function" ? okMessage(out) : okMessage);
    return out;
  } catch (e) {
    if (e instanceof AuthError) askToken(true);
    else toast(e.message, true);
    return undefined;
  }
}

// ------------------------------------------------------------ auth

function askToken(refused) {
  $("#login").classList.remove("hidden");
  $("#login-error").classList.toggle("hidden", !refused || !state.token);
  $("#token").value = "";
  $("#token").focus();
}

async function submitToken(ev) {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  try {
    await api("GET", "/stats");
  } catch (e) {
    if (e instanceof AuthError) {
      $("#login-error").classList.remove("hidden");
      return;
    }
  }
  sessionStorage.setItem("magicqueue.token", state.token);
  $("#login").classList.add("hidden");
  begin();
}

function forgetToken() {
  sessionStorage.removeItem("magicqueue.token");
  state.token = "";
  if (state.source) state.source.close();
  state.source = null;
  askToken(false);
}

// ------------------------------------------------------------ live events and charts

function newBucket() {
  return { pushed: 0, completed: 0, failed: 0, waitSum: 0, waitN: 0, procSum: 0, procN: 0 };
}

const series = Array.from({ length: WINDOW_S }, newBucket);
let current = newBucket();
const pushedAt = new Map();
const activeAt = new Map();

function track(map, id, ts) {
  if (map.size >= TRACK_LIMIT) map.clear();
  map.set(id, ts);
}

function onEvent(ev) {
  const type = ev.event_type;
  const id = ev.job_id;
  if (type === "pushed") {
    current.pushed += 1;
    track(pushedAt, id, ev.timestamp);
  } else if (type === "active") {
    const p = pushedAt.get(id);
    if (p !== undefined) {
      current.waitSum += Math.max(0, ev.timestamp - p);
      current.waitN += 1;
      pushedAt.delete(id);
    }
    track(activeAt, id, ev.timestamp);
  } else if (type === "completed") {
    current.completed += 1;
    const a = activeAt.get(id);
    if (a !== undefined) {
      current.procSum += Math.max(0, ev.timestamp - a);
      current.procN += 1;
      activeAt.delete(id);
    }
  } else if (type === "failed") {
    current.failed += 1;
    activeAt.delete(id);
  } else if (type === "retried" || type === "cancelled" || type === "expired") {
    activeAt.delete(id);
  }
  logEvent(ev);
  state.dirty = true;
}

const pendingLog = [];
function logEvent(ev) {
  pendingLog.push(ev);
  if (pendingLog.length > 60) pendingLog.shift();
}

function flushLog() {
  if (!pendingLog.length) return;
  const list = $("#events");
  for (const ev of pendingLog) {
    const t = new Date(ev.timestamp).toLocaleTimeString("en-GB");
    let extra = "";
    if (ev.event_type === "progress") extra = `${ev.progress}%`;
    else if (ev.error) extra = ev.error;
    const li = el(
      "li",
      {},
      el("span", { class: "t", text: t }),
      el("span", { class: `ev ev-${ev.event_type}`, text: ev.event_type }),
      el("span", { class: "q", title: ev.queue }, queueLabel(ev.queue), extra ? ` · ${extra}` : ""),
      el("span", { class: "id", text: `#${ev.job_id}` }),
    );
    list.prepend(li);
  }
  pendingLog.length = 0;
  while (list.children.length > 60) list.lastChild.remove();
}

function setLive(on) {
  const pill = $("#live");
  pill.textContent = on ? "live" : "reconnecting…";
  pill.className = `pill ${on ? "pill-on" : "pill-off"}`;
}

function openEvents() {
  if (state.source) state.source.close();
  const url = `/events${state.token ? `?token=${encodeURIComponent(state.token)}` : ""}`;
  const source = new EventSource(url);
  state.source = source;
  source.onopen = () => setLive(true);
  source.onerror = () => {
    setLive(false);
    // A refused stream (e.g. 401) is not retried by the browser: try again ourselves.
    if (source.readyState === EventSource.CLOSED && state.source === source) {
      setTimeout(() => state.source === source && openEvents(), 3000);
    }
  };
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (m) => onEvent(JSON.parse(m.data)));
  }
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function drawChart(node, lines, unit) {
  const w = Math.max(200, node.clientWidth || 600);
  const h = Math.max(120, node.clientHeight || 190);
  node.setAttribute("viewBox", `0 0 ${w} ${h}`);
  node.replaceChildren();
  const left = 44;
  const right = 8;
  const top = 8;
  const bottom = 20;
  const pw = w - left - right;
  const ph = h - top - bottom;
  const max = niceMax(Math.max(0, ...lines.flatMap((l) => l.values)));
  for (let i = 0; i <= 4; i += 1) {
    const y = top + ph - (ph * i) / 4;
    node.append(svg("line", { class: "grid-line", x1: left, x2: w - right, y1: y, y2: y }));
    const label = svg("text", { class: "axis-label", x: left - 6, y: y + 3, "text-anchor": "end" });
    label.textContent = fmtRate((max * i) / 4);
    node.append(label);
  }
  for (const [sec, anchor] of [[WINDOW_S, "start"], [60, "middle"], [0, "end"]]) {
    const x = left + pw * (1 - sec / WINDOW_S);
    const label = svg("text", { class: "axis-label", x, y: h - 4, "text-anchor": anchor });
    label.textContent = sec === 0 ? "now" : `-${sec}s`;
    node.append(label);
  }
  const yOf = (v) => top + ph - (ph * v) / max;
  const xOf = (i) => left + (pw * i) / (WINDOW_S - 1);
  lines.forEach((line, n) => {
    const pts = line.values.map((v, i) => `${xOf(i).toFixed(1)},${yOf(v).toFixed(1)}`);
    if (n === 0) {
      const area = `${xOf(0)},${top + ph} ${pts.join(" ")} ${xOf(WINDOW_S - 1)},${top + ph}`;
      node.append(svg("polygon", { class: "area", points: area, fill: line.color }));
    }
    node.append(svg("polyline", { points: pts.join(" "), stroke: line.color }));
  });
  node.setAttribute("aria-label", `${lines.map((l) => l.name).join(", ")} (${unit})`);
}

function legend(node, lines, unit) {
  node.replaceChildren(
    ...lines.map((l) =>
      el(
        "span",
        { class: "key" },
        el("span", { class: "swatch", "data-color": l.color }),
        `${l.name} `,
        el("b", { text: `${fmtRate(l.values[l.values.length - 1])}${unit}` }),
      ),
    ),
  );
  node.querySelectorAll(".swatch").forEach((s) => {
    s.style.background = s.getAttribute("data-color");
  });
}

function tick() {
  series.shift();
  series.push(current);
  current = newBucket();
  const tp = [
    { name: "Pushed", color: "#3f51d8", values: series.map((b) => b.pushed) },
    { name: "Completed", color: "#1f9d63", values: series.map((b) => b.completed) },
    { name: "Failed", color: "#d6453d", values: series.map((b) => b.failed) },
  ];
  const lat = [
    { name: "Processing", color: "#0e9bb0", values: series.map((b) => (b.procN ? b.procSum / b.procN : 0)) },
    { name: "Wait", color: "#8e5bd9", values: series.map((b) => (b.waitN ? b.waitSum / b.waitN : 0)) },
  ];
  drawChart($("#chart-throughput"), tp, "jobs/s");
  drawChart($("#chart-latency"), lat, "ms");
  legend($("#tp-legend"), tp, "/s");
  legend($("#lat-legend"), lat, " ms");
  flushLog();
}

// ------------------------------------------------------------ tables

async function refreshSummary() {
  const [stats, metrics, workers] = await Promise.all([
    api("GET", "/stats"),
    api("GET", "/metrics"),
    api("GET", "/workers"),
  ]);
  const set = (k, v) => {
    document.querySelector(`[data-stat="${k}"]`).textContent = v;
  };
  set("queued", fmt(stats.queued));
  set("processing", fmt(stats.processing));
  set("delayed", fmt(stats.delayed));
  set("dlq", fmt(stats.dlq));
  set("jps", fmtRate(metrics.jobs_per_second));
  set("workers", fmt(workers.length));
  renderWorkers(workers);
}

function countCell(n, cls) {
  return el("td", { class: `num ${n === 0 ? "zero" : cls || ""}`, text: fmt(n) });
}

async function refreshQueues() {
  const queues = await api("GET", "/queues");
  state.queues = queues;
  const body = $("#queues tbody");
  const rows = queues.map((qi) => {
    const name = qi.name;
    const paused = qi.paused;
    const tr = el(
      "tr",
      { "data-queue": name },
      el("td", { class: "name", title: name }, queueLabel(name)),
      countCell(qi.waiting),
      countCell(qi.delayed),
      countCell(qi.active),
      countCell(qi.dlq, "dlq-count"),
      el("td", {}, el("span", { class: `badge ${paused ? "paused" : "running"}`, "data-field": "state", text: paused ? "paused" : "running" })),
      el("td", { class: "num", text: qi.rate_limit == null ? "–" : `${fmt(qi.rate_limit)}/s` }),
      el("td", { class: "num", text: qi.concurrency_limit == null ? "–" : fmt(qi.concurrency_limit) }),
      el(
        "td",
        { class: "actions" },
        el("button", {
          type: "button",
          class: "btn",
          "data-action": paused ? "resume" : "pause",
          text: paused ? "Resume" : "Pause",
          onclick: () => setPaused(name, !paused),
        }),
        el("button", {
          type: "button",
          class: "btn",
          "data-action": "retry-dlq",
          disabled: qi.dlq === 0,
          text: "Retry DLQ",
          onclick: () => retryDlq(name),
        }),
        el("button", { type: "button", class: "btn", "data-action": "limits", text: "Limits", onclick: () => openLimits(qi) }),
        el("button", { type: "button", class: "btn", "data-action": "jobs", text: "Jobs", onclick: () => showQueueJobs(name) }),
      ),
    );
    return tr;
  });
  body.replaceChildren(...rows);
  $("#queues-empty").classList.toggle("hidden", queues.length > 0);
  $("#queues-note").textContent = `${queues.length} queue${queues.length === 1 ? "" : "s"}`;
  updateQueueFilter(queues);
}

function updateQueueFilter(queues) {
  const select = $("#job-queue");
  const keep = state.jobQueue;
  const opts = [el("option", { value: "__all__", text: "all queues" })];
  for (const qi of queues) {
    opts.push(el("option", { value: `q:${qi.name}`, text: qi.name === "" ? "(empty name)" : qi.name }));
  }
  select.replaceChildren(...opts);
  select.value = keep === null ? "__all__" : `q:${keep}`;
}

async function setPaused(name, pause) {
  await act(() => api("POST", `/queues/${seg(name)}/${pause ? "pause" : "resume"}`), `${pause ? "Paused" : "Resumed"} ${name || "(empty name)"}`);
  await act(refreshQueues);
}

async function retryDlq(name) {
  await act(() => api("POST", `/queues/${seg(name)}/dlq/retry`), (n) => `Retried ${n} job${n === 1 ? "" : "s"}`);
  await act(refreshQueues);
  await act(refreshJobs);
}

function showQueueJobs(name) {
  state.jobQueue = name;
  state.offset = 0;
  $("#job-queue").value = `q:${name}`;
  act(refreshJobs);
  $("#jobs").scrollIntoView({ behavior: "smooth", block: "start" });
}

let limitsQueue = null;
function openLimits(qi) {
  limitsQueue = qi.name;
  $("#limits-queue").textContent = `Queue: ${qi.name === "" ? "(empty name)" : qi.name}`;
  $("#rate").value = qi.rate_limit == null ? "" : qi.rate_limit;
  $("#conc").value = qi.concurrency_limit == null ? "" : qi.concurrency_limit;
  $("#limits-error").classList.add("hidden");
  $("#limits").classList.remove("hidden");
}

async function saveLimits(ev) {
  ev.preventDefault();
  const base = `/queues/${seg(limitsQueue)}`;
  const rate = $("#rate").value.trim();
  const conc = $("#conc").value.trim();
  try {
    if (rate === "") await api("DELETE", `${base}/rate-limit`);
    else await api("POST", `${base}/rate-limit`, { limit: Number(rate) });
    if (conc === "") await api("DELETE", `${base}/concurrency`);
    else await api("POST", `${base}/concurrency`, { limit: Number(conc) });
  } catch (e) {
    if (e instanceof AuthError) return askToken(true);
    $("#limits-error").textContent = e.message;
    $("#limits-error").classList.remove("hidden");
    return undefined;
  }
  $("#limits").classList.add("hidden");
  toast("Limits saved");
  return act(refreshQueues);
}

async function refreshJobs() {
  const params = new URLSearchParams({ state: state.jobState, limit: PAGE_SIZE + 1, offset: state.offset });
  if (state.jobQueue !== null) params.set("queue", state.jobQueue);
  const jobs = await api("GET", `/jobs?${params}`);
  const shown = jobs.slice(0, PAGE_SIZE);
  const rows = shown.map((j) =>
    el(
      "tr",
      { class: `clickable${state.selected === j.id ? " selected" : ""}`, "data-job": j.id, onclick: () => selectJob(j.id) },
      el("td", { class: "num", text: j.id }),
      el("td", { class: "name", title: j.queue }, queueLabel(j.queue)),
      el("td", { class: "num", text: j.priority }),
      el("td", { class: "num", text: j.max_attempts ? `${j.attempts}/${j.max_attempts}` : j.attempts }),
      el("td", { class: "nowrap", text: ago(j.created_at), title: new Date(j.created_at).toISOString() }),
      el("td", {}, progressBar(j.progress)),
    ),
  );
  $("#jobs tbody").replaceChildren(...rows);
  $("#jobs-empty").classList.toggle("hidden", shown.length > 0);
  $("#prev").disabled = state.offset === 0;
  $("#next").disabled = jobs.length <= PAGE_SIZE;
  $("#page-info").textContent = shown.length ? `${state.offset + 1}–${state.offset + shown.length}` : "";
}

function progressBar(pct) {
  const bar = el("span");
  bar.style.width = `${Math.max(0, Math.min(100, pct || 0))}%`;
  return el("div", { class: "progress-row" }, el("div", { class: "progress" }, bar), el("span", { class: "muted small", text: `${pct || 0}%` }));
}

async function selectJob(id) {
  state.selected = id;
  document.querySelectorAll("#jobs tr.selected").forEach((r) => r.classList.remove("selected"));
  const row = document.querySelector(`#jobs tr[data-job="${id}"]`);
  if (row) row.classList.add("selected");
  await act(() => renderDetail(id));
}

async function renderDetail(id) {
  const box = $("#detail");
  let job;
  try {
    job = await api("GET", `/jobs/${id}`);
  } catch (e) {
    if (e instanceof AuthError) throw e;
    box.replaceChildren(el("p", { class: "muted", text: `Job ${id}: ${e.message}` }));
    return;
  }
  const live = ["waiting", "delayed", "active", "waiting-children"].includes(job.state);
  const fields = [
    ["Queue", job.queue === undefined ? "–" : queueLabel(job.queue)],
    ["Priority", job.priority],
    ["Attempts", job.attempts === undefined ? "–" : `${job.attempts}${job.max_attempts ? ` of ${job.max_attempts}` : ""}`],
    ["Created", when(job.created_at)],
    ["Run at", when(job.run_at)],
    ["Started", when(job.started_at)],
    ["Timeout", job.timeout ? `${fmt(job.timeout)} ms` : "–"],
    ["TTL", job.ttl ? `${fmt(job.ttl)} ms` : "–"],
    ["Backoff", job.backoff ? `${fmt(job.backoff)} ms` : "–"],
    ["Unique key", job.unique_key ?? "–"],
    ["Depends on", job.depends_on && job.depends_on.length ? job.depends_on.join(", ") : "–"],
    ["Tags", job.tags && job.tags.length ? job.tags.join(", ") : "–"],
  ];
  const dl = el("dl");
  for (const [k, v] of fields) {
    if (v === undefined) continue;
    dl.append(el("dt", { text: k }), el("dd", {}, v));
  }
  const actions = el("div", { class: "row" });
  if (live) {
    actions.append(el("button", { type: "button", class: "btn danger", "data-action": "cancel", text: "Cancel job", onclick: () => cancelJob(job) }));
  }
  if (job.state === "failed") {
    actions.append(el("button", { type: "button", class: "btn primary", "data-action": "retry", text: "Retry job", onclick: () => retryJob(job) }));
  }
  actions.append(el("button", { type: "button", class: "btn", text: "Refresh", onclick: () => act(() => renderDetail(id)) }));
  box.replaceChildren(
    el("h3", {}, `Job #${job.id}`, el("span", { class: `badge state-${job.state}`, text: job.state })),
    el("div", { class: "section", text: "Progress" }),
    el("div", {}, progressBar(job.progress), job.progress_msg ? el("p", { class: "small", text: job.progress_msg }) : null),
    dl,
    el("div", { class: "section", text: "Data" }),
    el("pre", { text: job.data === undefined ? "(completed jobs keep no body)" : JSON.stringify(job.data, null, 2) }),
    el("div", { class: "section", text: "Result" }),
    el("pre", { text: job.result === null || job.result === undefined ? "null" : JSON.stringify(job.result, null, 2) }),
    actions,
  );
}

async function cancelJob(job) {
  await act(() => api("POST", `/jobs/${job.id}/cancel`), `Cancelled job ${job.id}`);
  await act(() => renderDetail(job.id));
  await act(refreshJobs);
}

async function retryJob(job) {
  await act(() => api("POST", `/queues/${seg(job.queue)}/dlq/retry`, { id: job.id }), (n) => (n ? `Job ${job.id} retried` : `Job ${job.id} could not be retried`));
  await act(() => renderDetail(job.id));
  await act(refreshJobs);
}

async function refreshCrons() {
  const crons = await api("GET", "/crons");
  const rows = crons.map((c) =>
    el(
      "tr",
      {},
      el("td", { class: "name", text: c.name, title: `priority ${c.priority}` }),
      el("td", { class: "name" }, queueLabel(c.queue)),
      el("td", {}, el("code", { text: c.schedule })),
      el("td", { class: "nowrap", text: until(c.next_run), title: new Date(c.next_run).toISOString() }),
      el("td", { class: "actions" }, el("button", { type: "button", class: "btn danger icon", text: "✕", title: `Delete cron ${c.name}`, "aria-label": `Delete cron ${c.name}`, onclick: () => deleteCron(c.name) })),
    ),
  );
  $("#crons tbody").replaceChildren(...rows);
  $("#crons-empty").classList.toggle("hidden", crons.length > 0);
}

async function deleteCron(name) {
  await act(() => api("DELETE", `/crons/${seg(name)}`), `Deleted cron ${name}`);
  await act(refreshCrons);
}

function renderWorkers(workers) {
  const rows = workers.map((w) =>
    el(
      "tr",
      {},
      el("td", { class: "name", text: w.id }),
      el("td", { class: "list", text: w.queues.length ? w.queues.join(", ") : "–", title: w.queues.join(", ") }),
      el("td", { class: "num", text: w.concurrency }),
      el("td", { class: "nowrap", text: ago(w.last_heartbeat) }),
      el("td", { class: "num", text: fmt(w.jobs_processed) }),
    ),
  );
  $("#workers tbody").replaceChildren(...rows);
  $("#workers-empty").classList.toggle("hidden", workers.length > 0);
}

// ------------------------------------------------------------ wiring

function wire() {
  $("#login-form").addEventListener("submit", submitToken);
  $("#logout").addEventListener("click", forgetToken);
  $("#limits-form").addEventListener("submit", saveLimits);
  $("#limits-cancel").addEventListener("click", () => $("#limits").classList.add("hidden"));
  $("#state-tabs").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-state]");
    if (!b) return;
    document.querySelectorAll("#state-tabs .tab").forEach((t) => t.classList.toggle("active", t === b));
    state.jobState = b.dataset.state;
    state.offset = 0;
    act(refreshJobs);
  });
  $("#job-queue").addEventListener("change", (ev) => {
    const v = ev.target.value;
    state.jobQueue = v === "__all__" ? null : v.slice(2);
    state.offset = 0;
    act(refreshJobs);
  });
  $("#prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
    act(refreshJobs);
  });
  $("#next").addEventListener("click", () => {
    state.offset += PAGE_SIZE;
    act(refreshJobs);
  });
}

function begin() {
  $("#logout").classList.toggle("hidden", !state.token);
  openEvents();
  const all = () => Promise.all([refreshSummary(), refreshQueues(), refreshJobs(), refreshCrons()]);
  act(all);
  if (state.started) return;
  state.started = true;
  setInterval(tick, 1000);
  // Tables: every 5 s, and within a second of any event.
  let lastRefresh = Date.now();
  setInterval(() => {
    const due = Date.now() - lastRefresh >= 5000;
    if (!(state.dirty || due) || !$("#login").classList.contains("hidden")) return;
    state.dirty = false;
    lastRefresh = Date.now();
    act(() => Promise.all([refreshSummary(), refreshQueues(), state.offset === 0 ? refreshJobs() : null]));
    if (due) act(refreshCrons);
  }, 1000);
}

async function main() {
  wire();
  tick();
  try {
    await api("GET", "/stats");
  } catch (e) {
    if (e instanceof AuthError) {
      askToken(!!state.token);
      return;
    }
  }
  begin();
}

document.addEventListener("DOMContentLoaded", main);
