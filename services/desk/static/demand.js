"use strict";
// The demand page: figures from /api/demand every 5 seconds. Every cell is built with
// textContent, so nothing from the server is ever read as HTML.

function cell(text, header) {
  const td = document.createElement(header ? "th" : "td");
  if (header) td.scope = "row";
  td.textContent = text;
  return td;
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((c, i) => tr.appendChild(cell(c, i === 0)));
  return tr;
}

function pct(share) {
  return typeof share === "number" ? `${Math.round(share * 100)}%` : "–";
}

function age(seconds) {
  if (typeof seconds !== "number") return "–";
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

async function load() {
  const updated = document.getElementById("updated");
  try {
    const resp = await fetch("/api/demand", { credentials: "same-origin", headers: { "Accept": "application/json" } });
    if (resp.status === 401) { window.location.href = "/login"; return; }
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const d = await resp.json();
    const calls = [], service = [];
    for (const w of d.windows) {
      for (const c of w.channels) calls.push(row([w.window, c.channel, String(c.calls), String(c.answered), String(c.answered_within_10s), String(c.abandoned)]));
      service.push(row([w.window, pct(w.answered_999_within_10s), pct(w.abandonment)]));
    }
    document.querySelector("#calls tbody").replaceChildren(...calls);
    document.querySelector("#service tbody").replaceChildren(...service);
    document.querySelector("#open-flags tbody").replaceChildren(
      ...d.open_flags.map((f) => row([f.severity, String(f.repeat_caller), String(f.mental_health), age(f.oldest_unacknowledged_seconds)])));
    updated.textContent = `updated ${new Date(d.at).toLocaleTimeString()}`;
    updated.classList.remove("down");
  } catch (e) {
    updated.textContent = "cannot reach the desk";
    updated.classList.add("down");
  }
}

async function start() {
  const me = await fetch("/api/me", { credentials: "same-origin", headers: { "Accept": "application/json" } });
  if (me.status === 401) { window.location.href = "/login"; return; }
  const who = await me.json();
  document.getElementById("who").textContent = `${who.name} (${who.role})`;
  await load();
  setInterval(load, 5000);
}

document.addEventListener("DOMContentLoaded", () => { start().catch((e) => console.warn(e)); });
