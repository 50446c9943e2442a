// The modelserve dashboard. Everything live comes over one SSE stream (/api/events): a snapshot,
// then a tick per second. The page renders from that state; it polls nothing. Text from servers
// is only ever set as textContent (never parsed as HTML).
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const FIGURES = [
  {id: "tokens_per_s", title: "Tokens / s", series: [["tokens_per_s", ""]]},
  {id: "load", title: "Requests in flight (solid) and queued (dashed)", series: [["running", ""], ["queued", " queued", [5, 4]]]},
  {id: "ttft_p50_s", title: "p50 time to first token (s), last minute", series: [["ttft_p50_s", ""]]},
  {id: "cache", title: "KV cache: rows (solid), prefix cache (dashed) of the budget, prefix hits (dotted), %",
   series: [["kv_use_pct", ""], ["prefix_cache_pct", " prefix cache"], ["prefix_hit_pct", " prefix hits", [2, 3]]]},
  {id: "memory_mib", title: "Process memory (MiB)", series: [["memory_mib", ""]]},
];
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#7c3aed", "#0f766e"];
const MAX_REQUESTS = 500, MAX_LOG_LINES = 5000, SHOWN_REQUESTS = 200;

const state = {cards: [], requests: [], t: [], series: {}, window: 900, formats: [], view: "overview"};
const charts = {};

// ---- small helpers ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("data-") || k === "title" || k === "href" || k === "value" || k === "type") el.setAttribute(k, v);
    else el[k] = v;
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
const $ = (sel) => document.querySelector(sel);
function colorOf(name) {
  let x = 0;
  for (const ch of name) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[x % PALETTE.length];
}
function bytes(n) { return n === null || n === undefined ? "–" : n >= 2 ** 30 ? (n / 2 ** 30).toFixed(2) + " GiB" : (n / 2 ** 20).toFixed(0) + " MiB"; }
function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function num(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }
function toast(message, bad) {
  const el = $("#toast");
  el.textContent = message;
  el.className = "toast" + (bad ? " bad" : "");
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, bad ? 9000 : 4000);
}
async function post(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"X-CSRF-Token": CSRF, "Content-Type": "application/json"},
                              body: JSON.stringify(body || {})});
  let data = {};
  try { data = await r.json(); } catch (e) { /* an empty or non-JSON answer */ }
  return {ok: r.ok && data.ok !== false, status: r.status, data};
}
function confirmDialog(text) {
  return new Promise((resolve) => {
    const dlg = $("#confirm");
    $("#confirm-text").textContent = text;
    dlg.onclose = () => resolve(dlg.returnValue === "ok");
    dlg.returnValue = "cancel";
    dlg.showModal();
  });
}

// ---- live state ------------------------------------------------------------------------------

function applySnapshot(s) {
  state.cards = s.cards;
  state.requests = s.requests.slice(-MAX_REQUESTS);
  state.t = s.timeline.t;
  state.series = s.timeline.series;
  state.window = s.window_s;
  state.formats = s.formats || state.formats;
  renderAll();
}

function applyTick(u) {
  state.t.push(u.t);
  const n = state.t.length;
  for (const [key, values] of Object.entries(state.series)) if (values.length < n) values.push(key in u.points ? u.points[key] : null);
  for (const [key, v] of Object.entries(u.points)) if (!(key in state.series)) state.series[key] = Array(n - 1).fill(null).concat([v]);
  let drop = 0;
  while (drop < state.t.length && state.t[drop] < u.t - state.window) drop++;
  if (drop) {
    state.t.splice(0, drop);
    for (const values of Object.values(state.series)) values.splice(0, drop);
  }
  state.cards = u.cards;
  if (u.requests.length) state.requests = state.requests.concat(u.requests).slice(-MAX_REQUESTS);
  renderAll();
}

function connect() {
  const conn = $("#conn");
  const es = new EventSource("/api/events");
  es.addEventListener("snapshot", (e) => { applySnapshot(JSON.parse(e.data)); conn.textContent = "live"; conn.className = "conn live"; });
  es.addEventListener("tick", (e) => applyTick(JSON.parse(e.data)));
  es.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "conn"; };
}

function renderAll() {
  renderCards();
  renderCharts();
  renderRequests();
  fillTargets();
}

// ---- cards -----------------------------------------------------------------------------------

function facts(card) {
  const dl = h("dl", {class: "facts"});
  const add = (k, v, attrs) => dl.append(h("dt", {}, k), h("dd", attrs || {}, v));
  if (card.kind === "fleet") {
    add("fleet file", card.model.replace(/^fleet /, ""));
    add("models", card.served_model_name);
  } else {
    add("backend", card.backend);
    add("model", card.model + (card.served_model_name && card.served_model_name !== card.model ? ` (as ${card.served_model_name})` : ""));
    add("device", card.device);
  }
  add("memory", bytes(card.memory_bytes), {"data-memory-of": card.name});
  add("uptime", duration(card.uptime_s), {"data-uptime-of": card.name});
  add("endpoint", card.endpoint);
  add("serves", Object.keys(card.surfaces).length ? Object.entries(card.surfaces).map(([k, v]) => h("span", {class: "chip", title: v}, k)) : "–");
  add("pid", card.pids.length ? card.pids.join(", ") : "–");
  if (card.mode === "foreground" || card.restarts) add("supervised", `modelserve run, ${card.restarts} restart(s)`);
  return dl;
}

function buttons(card, extra) {
  const f = h("footer", {});
  if (card.log_roles.length) f.append(h("button", {"data-act": "logs", "data-name": card.name}, "Logs"));
  if (card.chat) f.append(h("button", {"data-act": "try", "data-name": card.name}, "Try"));
  f.append(h("button", {"data-act": "config", "data-name": card.name}, "Config"));
  for (const b of extra || []) f.append(b);
  return f;
}

function deploymentCard(card) {
  const el = h("article", {class: `card ${card.kind}`, "data-name": card.name, "data-state": card.state},
    h("header", {}, h("h3", {}, card.name), h("span", {class: "kind"}, card.kind === "fleet" ? "fleet gateway" : ""),
      h("span", {class: `badge ${card.state}`}, card.state)),
    facts(card));
  if (card.last_error) el.append(h("p", {class: "error"}, card.last_error));
  if (card.fleet_error) el.append(h("p", {class: "error"}, card.fleet_error));
  const actions = [h("button", {"data-act": "restart", "data-name": card.name}, "Restart"),
                   h("button", {"data-act": "stop", "data-name": card.name, class: "danger"}, "Stop")];
  el.append(buttons(card, actions));
  if (card.kind === "fleet") el.append(h("div", {class: "members"}, card.members.map((m) => memberCard(card, m))));
  return el;
}

function memberCard(fleet, m) {
  const el = h("div", {class: "member", "data-member": m.name, "data-state": m.state},
    h("header", {}, h("h3", {}, m.name), h("span", {class: "kind"}, m.model), h("span", {class: `badge ${m.state}`}, m.state)));
  el.append(h("div", {class: "muted"}, `in flight ${m.in_flight} · waiting ${m.waiting} · requests ${m.requests} · loads ${m.loads} · errors ${m.errors}`));
  if (m.detail) el.append(facts(m.detail));
  if (m.last_error) el.append(h("p", {class: "error"}, m.last_error));
  const f = h("footer", {});
  const loaded = m.state === "ready" || m.state === "starting";
  f.append(h("button", {"data-act": loaded ? "unload" : "load", "data-name": fleet.name, "data-member": m.name}, loaded ? "Unload" : "Load"));
  if (m.detail && m.detail.log_roles.length) f.append(h("button", {"data-act": "logs", "data-name": m.deployment}, "Logs"));
  f.append(h("button", {"data-act": "try", "data-name": fleet.name, "data-model": m.model}, "Try"));
  f.append(h("button", {"data-act": "config", "data-name": fleet.name, "data-model": m.model}, "Config"));
  el.append(f);
  return el;
}

function renderCards() {
  // Rebuilt only when something but the clock and memory changed: a button is not replaced
  // under a click that is on its way.
  const box = $("#cards");
  const signature = JSON.stringify(state.cards, (k, v) => (k === "uptime_s" || k === "memory_bytes" ? undefined : v));
  if (signature === renderCards.signature) {
    const all = state.cards.flatMap((c) => [c, ...(c.members || []).map((m) => m.detail).filter(Boolean)]);
    for (const card of all) {
      for (const el of box.querySelectorAll(`[data-uptime-of="${CSS.escape(card.name)}"]`)) el.textContent = duration(card.uptime_s);
      for (const el of box.querySelectorAll(`[data-memory-of="${CSS.escape(card.name)}"]`)) el.textContent = bytes(card.memory_bytes);
    }
    return;
  }
  renderCards.signature = signature;
  if (!state.cards.length) {
    box.replaceChildren(h("p", {class: "empty"}, "Nothing runs yet. Start a model with ", h("code", {}, "modelserve up -m smollm2-135m"), "."));
    return;
  }
  box.replaceChildren(...state.cards.map(deploymentCard));
}

async function onCardClick(e) {
  const b = e.target.closest("button[data-act]");
  if (!b) return;
  const {act, name, member, model} = b.dataset;
  if (act === "logs") { location.hash = "#logs"; selectLog(name); return; }
  if (act === "try") { location.hash = "#playground"; $("#pg-target").value = model ? `${name}|${model}` : name; updateRaw(); return; }
  if (act === "config") { openConfig(name, model); return; }
  if ((act === "stop" || act === "restart") &&
      !(await confirmDialog(act === "stop" ? `Stop ${name}? Its processes are ended (modelserve down ${name}).`
                                           : `Restart ${name}? It is stopped and started again with the same settings.`))) return;
  b.disabled = true;
  const what = member ? `${act} ${member}` : `${act} ${name}`;
  toast(`${what}…`);
  const url = member ? `/api/fleets/${encodeURIComponent(name)}/members/${encodeURIComponent(member)}/${act}`
                     : `/api/deployments/${encodeURIComponent(name)}/${act}`;
  const r = await post(url);
  toast(r.ok ? `${what}: ${r.data.message || "done"}` : `${what} failed: ${r.data.message || (r.data.error || {}).message || r.status}`, !r.ok);
}

// ---- charts ----------------------------------------------------------------------------------

function chartData(fig) {
  // One line per deployment and figure that has any value in the window.
  const keys = [];
  for (const [figure, suffix, dash] of fig.series) {
    for (const key of Object.keys(state.series).sort()) {
      const [name, f] = key.split("\t");
      if (f === figure && state.series[key].some((v) => v !== null)) keys.push({key, name, label: name + suffix, dash: suffix ? dash || [5, 4] : undefined});
    }
  }
  return keys;
}

function renderCharts() {
  const box = $("#charts");
  for (const fig of FIGURES) {
    const keys = chartData(fig);
    let c = charts[fig.id];
    if (!c) {
      const holder = h("div", {class: "chart", "data-figure": fig.id}, h("h4", {}, fig.title));
      box.append(holder);
      c = charts[fig.id] = {holder, plot: null, signature: ""};
    }
    const signature = keys.map((k) => k.key).join("|");
    const data = [state.t, ...keys.map((k) => state.series[k.key])];
    const values = keys.reduce((n, k) => n + state.series[k.key].filter((v) => v !== null).length, 0);
    c.holder.dataset.points = String(state.t.length);
    c.holder.dataset.values = String(values);
    c.holder.dataset.series = keys.map((k) => k.label).join(",");
    c.holder.dataset.peaks = keys.map((k) => `${k.label}=${Math.max(0, ...state.series[k.key].filter((v) => v !== null))}`).join(",");
    if (state.view !== "overview") continue;  // drawn when shown (a hidden chart has no width)
    if (!c.plot || c.signature !== signature) {
      if (c.plot) c.plot.destroy();
      const width = Math.max(240, c.holder.clientWidth - 16);
      c.plot = new uPlot({
        width, height: 190, legend: {show: true}, cursor: {drag: {x: false, y: false}},
        scales: {x: {time: true}, y: {range: (u, min, max) => [0, Math.max(max || 0, fig.id === "cache" ? 100 : 1)]}},
        series: [{}, ...keys.map((k) => ({label: k.label, stroke: colorOf(k.name), width: 1.5, dash: k.dash, spanGaps: false, points: {show: false}}))],
        axes: [{}, {size: 50}],
      }, data, c.holder);
      c.signature = signature;
    } else {
      c.plot.setData(data);
    }
  }
}

function fitCharts() {
  if (state.view !== "overview") return;  // a hidden chart has no width to fit
  for (const c of Object.values(charts)) {
    const width = Math.max(240, c.holder.clientWidth - 16);
    if (c.plot && c.plot.width !== width) c.plot.setSize({width, height: 190});
  }
}
window.addEventListener("resize", fitCharts);

// ---- requests --------------------------------------------------------------------------------

function renderRequests() {
  const select = $("#req-source");
  const sources = [...new Set(state.requests.map((r) => r.source))].sort();
  const current = select.value;
  select.replaceChildren(h("option", {value: ""}, "all"), ...sources.map((s) => h("option", {value: s}, s)));
  select.value = sources.includes(current) ? current : "";
  const rows = state.requests.filter((r) => !select.value || r.source === select.value).slice(-SHOWN_REQUESTS).reverse();
  $("#req-count").textContent = `${rows.length} of ${state.requests.length} kept`;
  $("#requests tbody").replaceChildren(...rows.map((r) => h("tr", {class: r.status >= 400 ? "bad" : "", "data-source": r.source, "data-id": r.id},
    h("td", {}, new Date(r.time * 1000).toLocaleTimeString()),
    h("td", {}, r.member ? `${r.source} → ${r.member}` : r.source),
    h("td", {}, r.route), h("td", {}, r.model || "–"), h("td", {class: "num"}, r.status + (r.stream ? " (stream)" : "")),
    h("td", {class: "num prompt"}, num(r.prompt_tokens, 0)), h("td", {class: "num completion"}, num(r.completion_tokens, 0)),
    h("td", {class: "num"}, num(r.cached_tokens, 0)),
    h("td", {class: "num"}, r.ttft_s === null ? "–" : (r.ttft_s * 1000).toFixed(0) + " ms"),
    h("td", {class: "num"}, num(r.duration_s, 2) + " s"), h("td", {class: "num"}, num(r.tokens_per_s, 1)),
    h("td", {}, r.client || "–"))));
}

// ---- logs ------------------------------------------------------------------------------------

const logState = {source: null, lines: [], key: ""};

function logTargets() {
  const out = [];
  const add = (card) => { for (const role of card.log_roles) out.push({value: `${card.name}|${role}`, label: card.log_roles.length > 1 ? `${card.name} (${role})` : card.name}); };
  for (const card of state.cards) {
    add(card);
    for (const m of card.members || []) if (m.detail) add(m.detail);
  }
  return out;
}

function selectLog(name) {
  const target = logTargets().find((t) => t.value.startsWith(name + "|"));
  if (target) { $("#log-target").value = target.value; openLog(target.value); }
}

function openLog(value) {
  if (!value || value === logState.key) return;
  if (logState.source) logState.source.close();
  logState.key = value;
  logState.lines = [];
  const [name, role] = value.split("|");
  const es = new EventSource(`/api/logs/${encodeURIComponent(name)}?process=${encodeURIComponent(role)}&lines=300`);
  es.addEventListener("source", (e) => { $("#log-path").textContent = JSON.parse(e.data).path; });
  es.addEventListener("lines", (e) => {
    logState.lines = logState.lines.concat(JSON.parse(e.data)).slice(-MAX_LOG_LINES);
    renderLog();
  });
  logState.source = es;
  renderLog();
}

function renderLog() {
  const filter = $("#log-filter").value.toLowerCase();
  const pre = $("#log");
  pre.textContent = logState.lines.filter((l) => !filter || l.toLowerCase().includes(filter)).join("\n");
  if ($("#log-follow").checked) pre.scrollTop = pre.scrollHeight;
}

// ---- playground ------------------------------------------------------------------------------

const TOOL = {type: "function", function: {name: "get_weather", description: "Get the current weather in a city.",
  parameters: {type: "object", properties: {city: {type: "string", description: "The city"}}, required: ["city"]}}};
let pgAbort = null;

function pgTargets() {
  const out = [];
  for (const card of state.cards) {
    if (card.kind === "fleet") {
      for (const m of card.members || []) out.push({value: `${card.name}|${m.model}`, label: `${card.name} → ${m.model}`, card, model: m.model, url: card.surfaces.openai, embeds: !!(m.detail && m.detail.embeds)});
    } else if (card.chat) {
      out.push({value: card.name, label: card.name, card, model: card.served_model_name, url: card.surfaces.openai, embeds: card.embeds});
    }
  }
  return out;
}

function fillTargets() {
  fillSelect($("#log-target"), logTargets(), () => { if (state.view === "logs" || logState.key) openLog($("#log-target").value); });
  fillSelect($("#pg-target"), pgTargets(), updateRaw);
}

function fillSelect(select, targets, changed) {
  const signature = targets.map((t) => t.value).join("\n");
  if (select.dataset.signature === signature) return;
  const current = select.value;
  select.replaceChildren(...targets.map((t) => h("option", {value: t.value}, t.label)));
  select.dataset.signature = signature;
  if (targets.some((t) => t.value === current)) select.value = current;
  changed();
}

function pgRequest() {
  const target = pgTargets().find((t) => t.value === $("#pg-target").value);
  if (!target) return null;
  const body = {model: target.model, messages: [{role: "user", content: $("#pg-input").value}], stream: true,
                stream_options: {include_usage: true}, max_tokens: Number($("#pg-max").value) || 48,
                temperature: Number($("#pg-temp").value)};
  if ($("#pg-tools").checked) body.tools = [TOOL];
  return {target, body};
}

function updateRaw() {
  const req = pgRequest();
  $("#pg-raw").textContent = req ? `POST ${req.target.url}/chat/completions\nContent-Type: application/json\n\n${JSON.stringify(req.body, null, 2)}` : "No deployment serves an OpenAI route yet.";
  $("#embed-box").hidden = !(req && req.target.embeds);
}

async function pgSend() {
  const req = pgRequest();
  if (!req) return;
  updateRaw();
  const out = $("#pg-output");
  out.textContent = "";
  $("#pg-status").textContent = "sending…";
  pgAbort = new AbortController();
  const name = req.target.card.name;
  let usage = null;
  try {
    const r = await fetch(`/api/playground/${encodeURIComponent(name)}/chat`, {method: "POST", signal: pgAbort.signal,
      headers: {"X-CSRF-Token": CSRF, "Content-Type": "application/json"}, body: JSON.stringify(req.body)});
    if (!(r.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      const text = await r.text();
      out.textContent = text;
      $("#pg-status").textContent = `HTTP ${r.status}`;
      return;
    }
    $("#pg-status").textContent = "streaming…";
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (const line of lines) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.usage) usage = chunk.usage;
        if (chunk.error) out.append(h("span", {class: "error"}, chunk.error.message));
        for (const c of chunk.choices || []) {
          if (c.delta && c.delta.content) out.append(c.delta.content);
          if (c.delta && c.delta.tool_calls) out.append(h("div", {class: "chip"}, "tool call: " + JSON.stringify(c.delta.tool_calls.map((t) => t.function))));
        }
      }
    }
    $("#pg-status").textContent = usage ? `done: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens` : "done";
  } catch (e) {
    $("#pg-status").textContent = e.name === "AbortError" ? "stopped" : `failed: ${e}`;
  } finally {
    pgAbort = null;
  }
}

async function embedSend() {
  const req = pgRequest();
  if (!req) return;
  const r = await fetch(`/api/playground/${encodeURIComponent(req.target.card.name)}/embeddings`, {method: "POST",
    headers: {"X-CSRF-Token": CSRF, "Content-Type": "application/json"},
    body: JSON.stringify({model: req.target.model, input: [$("#embed-input").value]})});
  const data = await r.json();
  const vec = data.data && data.data[0] && data.data[0].embedding;
  $("#embed-output").textContent = vec ? `${vec.length} dimensions: [${vec.slice(0, 8).map((v) => v.toFixed(4)).join(", ")}, …]` : JSON.stringify(data, null, 2);
}

// ---- agent configs ---------------------------------------------------------------------------

const configState = {name: null, model: null};

function openConfig(name, model) {
  configState.name = name;
  configState.model = model || null;
  const select = $("#config-format");
  if (!select.options.length) select.replaceChildren(...state.formats.map((f) => h("option", {value: f}, f)));
  $("#config-title").textContent = `Agent config: ${name}${model ? " → " + model : ""}`;
  $("#config-dialog").showModal();
  loadConfig();
}

async function loadConfig() {
  const fmt = $("#config-format").value;
  const asked = configState.asked = (configState.asked || 0) + 1;
  $("#config-text").textContent = "…";
  $("#config-note").textContent = "";
  const q = new URLSearchParams({format: fmt});
  if (configState.model) q.set("member", configState.model);
  const r = await fetch(`/api/config/${encodeURIComponent(configState.name)}?${q}`);
  const data = await r.json();
  if (asked !== configState.asked) return;  // another format was picked meanwhile: its answer wins
  $("#config-text").textContent = data.ok ? data.message : "";
  $("#config-note").textContent = data.ok ? data.note : (data.message || (data.error || {}).message);
}

async function copyConfig() {
  const text = $("#config-text").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {  // no clipboard API (a plain-http address other than localhost): select it instead
    const range = document.createRange();
    range.selectNodeContents($("#config-text"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  toast("copied");
}

// ---- views -----------------------------------------------------------------------------------

function showView() {
  const view = (location.hash || "#overview").slice(1);
  state.view = ["overview", "requests", "logs", "playground"].includes(view) ? view : "overview";
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${state.view}`;
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.view === state.view);
  if (state.view === "overview") { renderCharts(); fitCharts(); }
  if (state.view === "logs" && !logState.key) openLog($("#log-target").value);
}

$("#cards").addEventListener("click", onCardClick);
$("#req-source").addEventListener("change", renderRequests);
$("#log-target").addEventListener("change", () => openLog($("#log-target").value));
$("#pg-target").addEventListener("change", updateRaw);
$("#log-filter").addEventListener("input", renderLog);
$("#pg-send").addEventListener("click", pgSend);
$("#pg-stop").addEventListener("click", () => { if (pgAbort) pgAbort.abort(); });
for (const id of ["#pg-input", "#pg-tools", "#pg-max", "#pg-temp"]) $(id).addEventListener("input", updateRaw);
$("#embed-send").addEventListener("click", embedSend);
$("#config-format").addEventListener("change", loadConfig);
$("#config-copy").addEventListener("click", copyConfig);
window.addEventListener("hashchange", showView);
showView();
connect();
