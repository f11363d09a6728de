// wamm-relay dashboard: vanilla JS, no dependencies. Every page polls the
// admin API (/api/v1) with the session cookie; writes carry the CSRF token.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const POLL_MS = 3000;
const $ = (sel, el = document) => el.querySelector(sel);

// h builds an element: h("td", {class: "num"}, "3"). Text is never parsed
// as HTML, so values from the API cannot inject markup.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

class NotAvailable extends Error {}

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
  if (opts.body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = CSRF;
    init.body = JSON.stringify(opts.body);
  }
  const r = await fetch("/api/v1" + path, init);
  if (r.status === 401) { location.href = "/ui/login"; throw new Error("signed out"); }
  if (r.status === 404 && opts.optional) throw new NotAvailable(path);
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty body */ }
  if (!r.ok) throw new Error((data && data.error) || r.status + " " + r.statusText);
  return data;
}

// ---- formatting -------------------------------------------------------

function ago(iso) {
  if (!iso) return "—";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 0) return "in " + dur(-s);
  return dur(s) + " ago";
}
function dur(s) {
  if (s < 1) return "now";
  if (s < 60) return Math.round(s) + "s";
  if (s < 3600) return Math.round(s / 60) + "m";
  if (s < 86400) return (s / 3600).toFixed(1).replace(/\.0$/, "") + "h";
  return (s / 86400).toFixed(1).replace(/\.0$/, "") + "d";
}
function timeCell(iso) {
  return h("td", { title: iso ? new Date(iso).toLocaleString() : "" }, ago(iso));
}
function num(n) { return (n || 0).toLocaleString(); }
function pill(text, kind) { return h("span", { class: "pill " + kind }, text); }
const statusKind = { delivered: "ok", pending: "warn", dead: "bad" };
function statusPill(s) { return pill(s, statusKind[s] || "idle"); }

function table(cols, rows, empty) {
  if (!rows.length) return h("div", { class: "panel" }, h("div", { class: "empty" }, empty));
  return h("div", { class: "panel" }, h("table", {},
    h("thead", {}, h("tr", {}, cols.map(c => h("th", { class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows)));
}

let toastTimer;
function toast(msg, bad) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 3500);
}

async function act(label, fn) {
  try { const msg = await fn(); toast(msg || label); refresh(); }
  catch (e) { toast(label + " failed: " + e.message, true); }
}

// ---- pages -------------------------------------------------------------

function targetHealth(t) {
  if (t.paused) return pill("paused", "idle");
  if (t.breaker === "open") return pill("breaker open", "bad");
  if (t.breaker === "half_open") return pill("half open", "warn");
  if (t.dead > 0) return pill("dead letters", "bad");
  if (t.oldest_pending_age_seconds > 60) return pill("lagging", "warn");
  if (!t.configured) return pill("not configured", "idle");
  return pill("healthy", "ok");
}

async function renderOverview(el) {
  const [ov, ch] = await Promise.all([
    api("/overview"),
    api("/channels", { optional: true }).catch(e => e),
  ]);
  const oldest = Math.max(0, ...ov.targets.map(t => t.oldest_pending_age_seconds || 0));
  const cards = h("div", { class: "cards" },
    card("Ingest rate", ov.ingest.accepted_per_second.toFixed(2) + "/s", "accepted, last " + dur(ov.ingest.window_seconds)),
    card("Webhooks accepted", num(ov.ingest.accepted_total), num(ov.ingest.duplicate_total) + " duplicates · " + num(ov.ingest.rejected_total) + " rejected"),
    card("Pending", num(ov.pending), "across " + ov.targets.length + " targets", ov.pending > 0 && oldest > 60 ? "warn" : ""),
    card("Dead", num(ov.dead), ov.dead ? "need a replay or a look" : "nothing stuck", ov.dead ? "bad" : ""),
    card("Oldest pending", oldest ? dur(oldest) : "—", "longest wait of any target", oldest > 300 ? "bad" : oldest > 60 ? "warn" : ""),
  );
  const tRows = ov.targets.map(t => h("tr", {},
    h("td", {}, h("strong", {}, t.name)),
    h("td", {}, targetHealth(t)),
    h("td", { class: "num" }, num(t.pending)),
    h("td", { class: "num" }, num(t.dead)),
    h("td", { class: "num" }, t.oldest_pending_age_seconds ? dur(t.oldest_pending_age_seconds) : "—")));
  el.replaceChildren(
    h("h2", {}, "Traffic"), cards,
    h("h2", {}, "Queues per target"),
    table([{ label: "Target" }, { label: "Health" }, { label: "Pending", num: 1 }, { label: "Dead", num: 1 }, { label: "Oldest pending", num: 1 }],
      tRows, "No targets configured."),
    h("h2", {}, "Channels and reconciler"),
    channelsView(ch));
}

function card(label, value, sub, kind) {
  return h("div", { class: "card " + (kind || "") }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "sub" }, sub));
}

function channelsView(ch) {
  if (ch instanceof NotAvailable) return h("div", { class: "panel" }, h("div", { class: "na" }, "Channel status is not available on this relay version."));
  if (ch instanceof Error) return h("div", { class: "panel" }, h("div", { class: "na" }, "Channels: " + ch.message));
  const rows = (ch.channels || []).map(c => {
    const r = c.reconcile || {}, k = c.check || {};
    const rec = !r.enabled ? pill("off", "idle") : r.last_error ? pill("failing", "bad") : r.leader === false ? pill("standby", "idle") : pill("running", "ok");
    const chk = !k.checked_at ? pill("unchecked", "idle") : k.ok ? pill(k.state || "ok", "ok") : pill(k.state || "problem", "bad");
    return h("tr", {},
      h("td", {}, h("strong", {}, c.name), h("div", { class: "muted mono" }, c.webhook_path || "")),
      h("td", {}, chk, k.hook_matches === false ? h("div", { class: "muted" }, "hook points elsewhere") : null, k.warning ? h("div", { class: "muted" }, k.warning) : null),
      h("td", {}, rec, r.last_error ? h("div", { class: "err" }, r.last_error) : null),
      timeCell(r.last_pass_at),
      h("td", { class: "num" }, num(r.passes)),
      h("td", { class: "num" }, num(r.recovered)),
      h("td", { class: "num" }, r.gaps_open ? h("a", { href: "#gaps" }, num(r.gaps_open)) : "0"));
  });
  return table([{ label: "Channel" }, { label: "WAMM" }, { label: "Reconciler" }, { label: "Last pass" }, { label: "Passes", num: 1 }, { label: "Recovered", num: 1 }, { label: "Open gaps", num: 1 }],
    rows, "No channels.");
}

async function renderTargets(el) {
  const { targets } = await api("/targets");
  const rows = targets.map(t => h("tr", {},
    h("td", {}, h("strong", {}, t.name)),
    h("td", {}, targetHealth(t)),
    h("td", { class: "num" }, num(t.pending)),
    h("td", { class: "num" }, num(t.delivered)),
    h("td", { class: "num" }, num(t.dead)),
    h("td", { class: "err", title: t.last_error || "" }, t.last_error || ""),
    timeCell(t.last_error_at),
    h("td", {}, h("div", { class: "actions" },
      t.dead ? h("button", { class: "small danger", "data-replay-target": t.name, onclick: () => replayDead(t.name, t.dead) }, "Replay " + num(t.dead) + " dead") : null,
      t.paused
        ? h("button", { class: "small", "data-resume": t.name, onclick: () => act("Resumed " + t.name, () => api("/targets/" + encodeURIComponent(t.name) + "/resume", { body: {} }).then(() => "Resumed " + t.name)) }, "Resume")
        : h("button", { class: "small ghost", "data-pause": t.name, onclick: () => act("Paused " + t.name, () => api("/targets/" + encodeURIComponent(t.name) + "/pause", { body: {} }).then(() => "Paused " + t.name)) }, "Pause")))));
  el.replaceChildren(h("h2", {}, "Targets"),
    table([{ label: "Target" }, { label: "Health" }, { label: "Pending", num: 1 }, { label: "Delivered", num: 1 }, { label: "Dead", num: 1 }, { label: "Last error" }, { label: "When" }, { label: "" }],
      rows, "No targets configured."));
}

function replayDead(target, n) {
  if (!confirm("Replay " + (n ? n + " " : "all ") + "dead deliveries of " + target + "?")) return;
  act("Replay", async () => {
    const r = await api("/deliveries/replay", { body: { target, status: "dead" } });
    return "Replayed " + r.replayed + " deliveries of " + target;
  });
}

let selected = 0;
let targetNames = [];

function searchQuery() {
  const f = new FormData($("#search"));
  const q = new URLSearchParams();
  for (const [k, v] of f) if (v.trim()) q.set(k, v.trim());
  q.set("limit", "100");
  return q;
}

async function renderDeliveries() {
  const q = searchQuery();
  const [{ deliveries }, tg] = await Promise.all([api("/deliveries?" + q), targetNames.length ? null : api("/targets")]);
  if (tg) {
    targetNames = tg.targets.map(t => t.name);
    const sel = $('#search select[name="target"]');
    for (const n of targetNames) sel.append(h("option", {}, n));
  }
  const target = q.get("target");
  const rd = $("#replay-dead");
  rd.hidden = !target;
  rd.textContent = "Replay all dead of " + (target || "target");
  const rows = deliveries.map(d => h("tr", { class: "click" + (d.id === selected ? " selected" : ""), "data-id": d.id, "data-status": d.status, onclick: () => { selected = d.id; renderDetail(); renderDeliveries(); } },
    h("td", { class: "num mono" }, d.id),
    h("td", {}, d.target),
    h("td", { class: "mono" }, d.msg_id || "—"),
    h("td", { class: "mono" }, d.chat || "—"),
    h("td", {}, d.kind, d.channel && d.channel !== "default" ? h("span", { class: "muted" }, " · " + d.channel) : null),
    h("td", {}, statusPill(d.status)),
    h("td", { class: "num" }, d.attempts),
    h("td", { class: d.status === "delivered" ? "muted" : "err", title: d.last_error || "" }, d.last_error || ""),
    timeCell(d.created_at)));
  $("#deliveries").replaceChildren(table(
    [{ label: "ID", num: 1 }, { label: "Target" }, { label: "Message" }, { label: "Chat" }, { label: "Kind" }, { label: "Status" }, { label: "Attempts", num: 1 }, { label: "Last error" }, { label: "Created" }],
    rows, q.size > 1 ? "No delivery matches this search." : "No deliveries yet. They appear here as webhooks arrive."));
  if (selected) renderDetail();
}

async function renderDetail() {
  const el = $("#detail");
  if (!selected) { el.hidden = true; return; }
  let d;
  try { d = await api("/deliveries/" + selected); }
  catch (e) { el.hidden = false; el.replaceChildren(h("div", { class: "na" }, "Delivery " + selected + ": " + e.message)); return; }
  let body = d.body;
  try { body = JSON.stringify(JSON.parse(body), null, 2); } catch (_) { /* not JSON: show as is */ }
  const attempts = d.attempts_log || [];
  el.hidden = false;
  el.replaceChildren(
    h("h3", {}, "Delivery " + d.id, statusPill(d.status),
      d.status !== "pending" ? h("button", { class: "small", id: "replay-one", onclick: () => act("Replay", async () => { const r = await api("/deliveries/replay", { body: { ids: [d.id] } }); return "Replayed " + r.replayed; }) }, "Replay") : null,
      h("button", { class: "small ghost close", onclick: () => { selected = 0; el.hidden = true; renderDeliveries(); } }, "Close")),
    h("div", { class: "grid2" },
      h("dl", { class: "kv" },
        kv("Target", d.target), kv("Event", h("span", { class: "mono" }, d.event_key)), kv("Channel", d.channel || "default"),
        kv("Chat", d.chat || "—"), kv("Message id", d.msg_id || "—"), kv("Source", d.source),
        kv("Attempts", d.attempts), kv("Created", ago(d.created_at)), kv("Updated", ago(d.updated_at)),
        kv("Delivered", ago(d.delivered_at)), kv("Next attempt", d.status === "pending" ? ago(d.next_attempt_at) : "—"),
        kv("Last result", d.last_status_code ? "HTTP " + d.last_status_code : (d.last_error ? "no response" : "—")),
        kv("Last error", d.last_error || "—")),
      h("div", {}, h("div", { class: "muted" }, "Body"), h("pre", { class: "body mono" }, body || "(empty)"))),
    h("h2", {}, "Failed attempts"),
    table([{ label: "#", num: 1 }, { label: "When" }, { label: "HTTP", num: 1 }, { label: "Error" }],
      attempts.map(a => h("tr", {}, h("td", { class: "num" }, a.attempt), timeCell(a.at), h("td", { class: "num" }, a.status_code || "—"), h("td", { class: "err" }, a.error))),
      d.attempts_log ? "No failed attempts." : "The attempt history is not available on this relay version."));
}
function kv(k, v) { return [h("dt", {}, k), h("dd", {}, v)]; }

async function renderGaps(el) {
  let gaps;
  try { ({ gaps } = await api("/gaps?status=open", { optional: true })); }
  catch (e) {
    if (!(e instanceof NotAvailable)) throw e;
    el.replaceChildren(h("h2", {}, "Gaps"), h("div", { class: "panel" }, h("div", { class: "na" }, "Gap records are not available on this relay version.")));
    return;
  }
  const rows = gaps.map(g => h("tr", {},
    h("td", { class: "num mono" }, g.id),
    h("td", {}, g.channel),
    h("td", { class: "mono" }, g.chat || "—"),
    h("td", {}, pill(g.reason.replace("_", " "), "warn"), g.direction ? h("span", { class: "muted" }, " " + g.direction) : null),
    h("td", { class: "mono" }, (g.after_msg_id || "…") + " → " + (g.before_msg_id || "…")),
    timeCell(g.detected_at),
    timeCell(g.updated_at),
    h("td", {}, h("div", { class: "actions" }, h("button", { class: "small ghost", onclick: () => {
      const note = prompt("Resolve gap " + g.id + ": note for the record", "");
      if (note === null) return;
      act("Resolve", () => api("/gaps/" + g.id + "/resolve", { body: { note } }).then(() => "Gap " + g.id + " resolved"));
    } }, "Resolve")))));
  el.replaceChildren(h("h2", {}, "Open gaps"),
    table([{ label: "ID", num: 1 }, { label: "Channel" }, { label: "Chat" }, { label: "Reason" }, { label: "Between" }, { label: "Detected" }, { label: "Updated" }, { label: "" }],
      rows, "No open gaps: the reconciler has found nothing missing."));
}

// ---- routing and polling ----------------------------------------------

const pages = {
  overview: () => renderOverview($("#page-overview")),
  targets: () => renderTargets($("#page-targets")),
  deliveries: () => renderDeliveries(),
  gaps: () => renderGaps($("#page-gaps")),
};

function current() {
  const p = location.hash.replace("#", "");
  return pages[p] ? p : "overview";
}

let inflight = false;
async function refresh() {
  if (inflight) return;
  inflight = true;
  const page = current();
  try {
    await pages[page]();
    $("#live").classList.remove("stale");
    $("#live-text").textContent = "live · " + new Date().toLocaleTimeString();
  } catch (e) {
    $("#live").classList.add("stale");
    $("#live-text").textContent = "stale: " + e.message;
  } finally {
    inflight = false;
  }
}

function show() {
  const page = current();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  for (const s of document.querySelectorAll(".page")) s.classList.toggle("active", s.id === "page-" + page);
  refresh();
}

$("#search").addEventListener("submit", e => { e.preventDefault(); selected = 0; renderDetail(); refresh(); });
$("#clear").addEventListener("click", () => { $("#search").reset(); selected = 0; renderDetail(); refresh(); });
$("#replay-dead").addEventListener("click", () => replayDead(searchQuery().get("target")));
window.addEventListener("hashchange", show);
show();
setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
