"use strict";
// Early action and reports. Every cell is built with textContent.

async function api(path, options) {
  const resp = await fetch(path, Object.assign({ credentials: "same-origin", headers: { "Content-Type": "application/json", "Accept": "application/json" } }, options || {}));
  if (resp.status === 401) { window.location.href = "/login"; throw new Error("signed out"); }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
  return body;
}

function el(tag, text) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function row(cells) {
  const tr = el("tr");
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.append(c); else td.textContent = c === null || c === undefined ? "–" : String(c);
    tr.append(td);
  }
  return tr;
}

const pct = (v) => (typeof v === "number" ? `${(v * 100).toFixed(1)}%` : "–");
const day = (iso) => (iso ? iso.slice(0, 10) : "–");

async function advance(id, status, dateInput) {
  const at = dateInput.value ? new Date(`${dateInput.value}T12:00:00Z`) : new Date();
  const when = at > new Date() ? new Date() : at;
  try {
    await api(`/api/referrals/${encodeURIComponent(id)}`, { method: "POST", body: JSON.stringify({ status, at: when.toISOString() }) });
    await referrals();
  } catch (e) { alert(e.message); }
}

async function referrals(me) {
  const list = await api("/api/referrals?limit=500");
  const early = me ? me.role === "early_action" : document.body.dataset.role === "early_action";
  document.querySelector("#referrals tbody").replaceChildren(...list.map((r) => {
    const actions = document.createElement("span");
    if (early && r.status !== "closed") {
      const date = document.createElement("input");
      date.type = "date";
      date.setAttribute("aria-label", "Date");
      actions.append(date);
      const next = r.status === "referred" ? [["engaged", "Intervention started"], ["closed", "Closed"]] : [["closed", "Intervention ended"]];
      for (const [status, label] of next) {
        const b = el("button", label);
        b.className = `advance ${status}`;
        b.addEventListener("click", () => advance(r.referral_id, status, date));
        actions.append(b);
      }
    }
    return row([day(r.referred_at), r.caller_ref || "erased", r.team, (r.risk_factors || []).join(", "), r.status, day(r.intervention_at), actions]);
  }));
}

async function impact() {
  const r = await api("/api/reports/impact");
  document.querySelector("#impact tbody").replaceChildren(
    row(["Referred (cohort)", r.cohort.callers, r.cohort.calls_before, r.cohort.calls_after, pct(r.cohort.change)]),
    row(["Not referred (comparison)", r.comparison.callers, r.comparison.calls_before, r.comparison.calls_after, pct(r.comparison.change)]),
    row(["Difference in differences", "", "", "", pct(r.difference_in_differences)]));
  document.querySelector("#risk-factors tbody").replaceChildren(...Object.entries(r.risk_factors).map(([k, v]) => row([k.replaceAll("_", " "), pct(v)])));
  document.getElementById("pending").textContent = `${r.pending.length} referred callers are pending: their ${r.window} after intervention has not passed yet.`;
}

async function mhTeam() {
  const r = await api("/api/reports/mh-team");
  const agencies = Object.keys(r.savings[0].pounds);
  const head = el("tr");
  for (const h of ["", ...agencies.map((a) => `${a.replaceAll("_", " ")} £`), "police hours", "total £"]) head.append(el("th", h));
  document.querySelector("#mh-savings thead").replaceChildren(head);
  document.querySelector("#mh-savings tbody").replaceChildren(...r.savings.map((s) =>
    row([s.row, ...agencies.map((a) => Math.round(s.pounds[a])), s.police_hours.toFixed(1), Math.round(s.total_pounds)])));
  document.getElementById("mh-totals").textContent =
    `${r.total.mental_health_flags} mental-health flags (${r.per_day.mental_health_flags} a day), ${r.total.face_to_face} face-to-face contacts, ${r.total.s136_avoided} section 136 detentions avoided.`;
}

async function start() {
  const me = await api("/api/me");
  document.body.dataset.role = me.role;
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  if (me.role === "early_action") document.getElementById("flags-link").hidden = true;
  const jobs = [referrals(me)];
  if (["inspector", "early_action", "admin"].includes(me.role)) jobs.push(impact()); else document.getElementById("impact-section").hidden = true;
  if (["inspector", "admin"].includes(me.role)) jobs.push(mhTeam()); else document.getElementById("mh-section").hidden = true;
  for (const j of jobs) await j.catch((e) => console.warn(e));
}

document.addEventListener("DOMContentLoaded", () => { start().catch((e) => console.warn(e)); });
