// Lantern flag desk. Every piece of event text is set with textContent: nothing from an event
// is ever parsed as HTML.
"use strict";

const state = { flags: new Map(), show: "active", me: null };
const SEVERITY = { high: 3, medium: 2, low: 1 };
const OUTCOMES = [
  ["advice_given", "Advice given"],
  ["face_to_face", "Face to face"],
  ["referred", "Referred"],
  ["s136_avoided", "Section 136 avoided"],
  ["no_action", "No action"],
];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

// What raised a mental-health reason, in plain words.
const SOURCES = { lexicon: "phrase", pattern: "pattern", model: "model", incident: "incident code" };

function reasonText(r) {
  if (r === null || typeof r !== "object") return String(r);
  if (r.rule !== undefined) {
    return `${r.calls} calls in ${r.window} (rule ${r.rule}, ${r.identity}, threshold ${r.min_calls})`;
  }
  const category = String(r.category || "").replaceAll("_", " ");
  const source = SOURCES[r.source] || String(r.source || "phrase");
  let words;
  if (r.source === "model") {
    const terms = Array.isArray(r.terms) && r.terms.length ? `words like: ${r.terms.join(", ")}` : "the note as a whole";
    const score = typeof r.score === "number" ? ` (score ${r.score.toFixed(2)})` : "";
    words = `${category} [model${score}]: ${terms}`;
  } else {
    words = `${category} [${source}]: “${r.cue}”`;
  }
  return r.negated ? `${words} (negated)` : words;
}

async function api(path, options) {
  const resp = await fetch(path, Object.assign({ credentials: "same-origin", headers: { "Content-Type": "application/json", "Accept": "application/json" } }, options || {}));
  if (resp.status === 401) { window.location.href = "/login"; throw new Error("signed out"); }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
  return body;
}

function render() {
  const list = document.getElementById("flags");
  const wanted = [...state.flags.values()].filter((f) => (state.show === "closed" ? f.status === "closed" : f.status !== "closed"));
  // Waiting for a nurse first, then most severe, then newest.
  const waiting = (f) => (f.status === "open" ? 1 : 0);
  wanted.sort((a, b) => (waiting(b) - waiting(a)) || (SEVERITY[b.severity] - SEVERITY[a.severity]) || (Date.parse(b.raised_at) - Date.parse(a.raised_at)));
  list.replaceChildren(...wanted.map(safeCard));
  document.getElementById("empty").hidden = wanted.length > 0;
}

// One odd flag never blanks the page: a card that cannot be drawn becomes a plain line saying so.
function safeCard(f) {
  try { return card(f); }
  catch (e) {
    console.warn(e);
    return el("li", { class: "flag broken", "data-flag": String(f && f.flag_id) }, `Flag ${String(f && f.flag_id)} could not be shown; open it from the API.`);
  }
}

function card(f) {
  const kind = f.kind === "mental_health" ? "Mental health" : "Repeat caller";
  const reasons = el("ul", { class: "reasons" }, ...(Array.isArray(f.reasons) ? f.reasons : []).map((r) => {
    const li = el("li", { class: r.negated ? "negated" : "" }, reasonText(r));
    if (r.snippet) li.append(" ", el("span", { class: "snippet" }, `… ${r.snippet} …`));
    return li;
  }));
  const actions = el("div", { class: "actions" });
  const nurse = state.me && (state.me.role === "nurse" || state.me.role === "admin");
  if (nurse && f.status === "open") {
    actions.append(el("button", { class: "ack", "data-flag": f.flag_id, onclick: () => acknowledge(f.flag_id) }, "Acknowledge"));
  }
  if (nurse && f.status !== "closed") {
    const select = el("select", { "aria-label": "Outcome", class: "outcome" }, ...OUTCOMES.map(([v, t]) => el("option", { value: v }, t)));
    const note = el("input", { "aria-label": "Note (optional)", placeholder: "Note (optional)", class: "note", maxlength: "4000" });
    actions.append(select, note, el("button", { class: "record", onclick: () => record(f.flag_id, select.value, note.value) }, "Record outcome"));
  }
  if (state.me && state.me.role === "nurse" && f.caller_ref) {
    actions.append(el("button", { class: "history", onclick: () => history(f.caller_ref) }, "Caller history"));
  }
  const refers = state.me && (state.me.role === "nurse" || state.me.role === "early_action");
  const openReferral = f.referral && f.referral.status !== "closed";
  if (refers && f.caller_ref && !openReferral) {
    actions.append(el("button", { class: "refer", onclick: () => refer(f) }, "Refer to early action"));
  }
  if (nurse) {
    const verdicts = [["useful", "Useful"], ["not_useful", "Not useful"], ["wrong_person", "Wrong person"]];
    const fb = el("span", { class: "feedback", role: "group", "aria-label": "Was this flag useful?" }, "Was this flag useful? ");
    for (const [v, t] of verdicts) {
      fb.append(el("button", { class: `verdict ${v}`, "data-verdict": v, onclick: () => feedback(f.flag_id, v, fb) }, t));
    }
    actions.append(fb);
  }
  const status = f.status === "closed" ? `closed: ${f.outcome} by ${f.closed_by}` : f.status === "acknowledged" ? `acknowledged by ${f.acknowledged_by}` : "open";
  return el("li", { class: `flag ${f.severity} ${f.status}`, "data-flag": f.flag_id, tabindex: "0" },
    el("h2", {}, el("span", { class: "sev" }, f.severity), kind, el("span", { class: "meta" }, `${f.channel || ""} ${f.division || ""}`), el("span", { class: "meta", "data-raised": f.raised_at }, ago(f.raised_at))),
    el("div", { class: "meta" }, `Call ${f.call_id} · ${status}`,
      f.referral ? el("span", { class: "referral" }, ` · referred to ${f.referral.team}: ${f.referral.status}`) : null),
    reasons,
    f.note ? el("p", { class: "meta" }, `Note: ${f.note}`) : null,
    actions);
}

async function refresh(id) {
  try {
    const f = await api(`/api/flags/${encodeURIComponent(id)}`);
    state.flags.set(f.flag_id, f);
    render();
  } catch (e) { console.warn(e); }
}

async function acknowledge(id) {
  try { state.flags.set(id, await api(`/api/flags/${encodeURIComponent(id)}/acknowledge`, { method: "POST", body: "{}" })); render(); }
  catch (e) { alert(e.message); refresh(id); }
}

async function record(id, outcome, note) {
  try { state.flags.set(id, await api(`/api/flags/${encodeURIComponent(id)}/outcome`, { method: "POST", body: JSON.stringify({ outcome, note }) })); render(); }
  catch (e) { alert(e.message); refresh(id); }
}

async function feedback(id, verdict, box) {
  try {
    await api(`/api/flags/${encodeURIComponent(id)}/feedback`, { method: "POST", body: JSON.stringify({ verdict }) });
    for (const b of box.querySelectorAll("button")) b.classList.toggle("chosen", b.getAttribute("data-verdict") === verdict);
    box.setAttribute("data-given", verdict);
  } catch (e) { alert(e.message); }
}

// Refer the flag's caller to an early-action team: the risk factors the caller's flags saw are
// ticked already, and can be changed.
async function refer(f) {
  const dialog = document.getElementById("refer");
  const form = document.getElementById("refer-form");
  const s = await api(`/api/referrals/suggest?caller_ref=${encodeURIComponent(f.caller_ref)}`);
  const team = el("select", { id: "refer-team", name: "team", "aria-label": "Team" }, ...s.teams.map((t) => el("option", { value: t }, t)));
  const factors = el("fieldset", { class: "factors" }, el("legend", {}, "Risk factors"),
    ...s.risk_factors.map((r) => {
      const box = el("input", { type: "checkbox", name: "risk", value: r, id: `risk-${r}` });
      box.checked = s.suggested.includes(r);
      return el("label", { for: `risk-${r}` }, box, ` ${r.replaceAll("_", " ")}`);
    }));
  const note = el("textarea", { id: "refer-note", "aria-label": "Note (optional)", maxlength: "4000", placeholder: "Note (optional)" });
  const error = el("p", { class: "error", role: "alert" });
  const send = el("button", { type: "button", id: "refer-send", onclick: async () => {
    const risk_factors = [...factors.querySelectorAll("input:checked")].map((b) => b.value);
    try {
      await api(`/api/callers/${encodeURIComponent(f.caller_ref)}/referrals`, { method: "POST", body: JSON.stringify({ team: team.value, risk_factors, note: note.value, flag_id: f.flag_id }) });
      dialog.close();
      await reloadAll();
    } catch (e) { error.textContent = e.message; }
  } }, "Refer");
  form.replaceChildren(el("label", { for: "refer-team" }, "Team "), team, factors, note, error, send,
    el("button", { type: "button", onclick: () => dialog.close() }, "Cancel"));
  dialog.showModal();
}

async function reloadAll() {
  for (const status of ["open", "acknowledged", "closed"]) {
    for (const f of await api(`/api/flags?status=${status}&limit=500`)) state.flags.set(f.flag_id, f);
  }
  render();
}

async function history(ref) {
  const reason = window.prompt("Why are you looking at this caller's history? (written to the audit log)");
  if (!reason) return;
  const body = document.getElementById("history-body");
  try {
    const h = await api(`/api/callers/${encodeURIComponent(ref)}?reason=${encodeURIComponent(reason)}`);
    body.replaceChildren(
      el("h3", {}, `${h.calls.length} recent calls`),
      el("ul", {}, ...h.calls.map((c) => el("li", {}, `${c.occurred_at} · ${c.channel} · ${c.division || ""} · ${c.call_id}`))),
      el("h3", {}, `${h.flags.length} flags`),
      el("ul", {}, ...h.flags.map((f) => el("li", {}, `${f.raised_at} · ${f.kind} · ${f.severity} · ${f.status}${f.outcome ? " · " + f.outcome : ""}`))));
  } catch (e) { body.replaceChildren(el("p", { class: "error" }, e.message)); }
  document.getElementById("history").showModal();
}

let lastEventId = null;

function connect() {
  const live = document.getElementById("live");
  // A new stream picks up after the last update this page saw, so no flag is skipped.
  const source = new EventSource(lastEventId ? `/api/flags/stream?after=${encodeURIComponent(lastEventId)}` : "/api/flags/stream");
  source.onopen = () => { live.textContent = "live"; live.classList.remove("down"); };
  source.onerror = async () => {
    live.textContent = "reconnecting…"; live.classList.add("down");
    // After a dropped connection the browser retries by itself (sending Last-Event-ID). After an
    // error status it gives up for good, and the page would sit there looking alive: find out
    // why (a 401 goes to sign-in) and open a new stream.
    if (source.readyState !== EventSource.CLOSED) return;
    try { await api("/api/me"); } catch (e) { /* signed out, or the desk is down: try again below */ }
    setTimeout(connect, 3000);
  };
  const seen = (e) => { if (e.lastEventId) lastEventId = e.lastEventId; return JSON.parse(e.data); };
  source.addEventListener("flag", (e) => refresh(seen(e).flag_id));
  source.addEventListener("status", (e) => refresh(seen(e).flag_id));
  source.addEventListener("referral", (e) => { seen(e); reloadAll().catch((err) => console.warn(err)); });
}

async function start() {
  state.me = await api("/api/me");
  document.getElementById("who").textContent = `${state.me.name} (${state.me.role})`;
  for (const r of document.querySelectorAll("input[name=show]")) {
    r.addEventListener("change", () => { state.show = r.value; render(); });
  }
  connect();
  await reloadAll();
  setInterval(() => { for (const s of document.querySelectorAll("[data-raised]")) s.textContent = ago(s.getAttribute("data-raised")); }, 30000);
}

document.addEventListener("DOMContentLoaded", () => { start().catch((e) => console.warn(e)); });
