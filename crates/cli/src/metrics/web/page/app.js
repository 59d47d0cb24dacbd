// The Keel cluster page. The member sends its whole view as one JSON
// "view" event every round (see crates/cli/src/metrics/web/view.rs for the
// fields); each event redraws the page. Names come from the cluster's
// configuration, so they are always inserted as text, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

// Live regions (the summary, alerts, connection state) are announced by
// screen readers whenever they change, so they are touched only when what
// they say changes, not on every round.
function setText(node, text) {
  if (node.textContent !== String(text)) node.textContent = text;
}

let shownAlerts = null;

function seconds(ms) { return (ms / 1000).toFixed(1) + " s"; }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function ago(view, at) { return seconds(view.now_ms - at) + " ago"; }

// Cells carry their column's heading, which a phone shows next to the value.
function cell(label, ...children) { return el("td", { "data-label": label }, ...children); }

function num(label, value) { return el("td", { class: "num", "data-label": label }, String(value)); }

function renderSummary(view) {
  const leader = $("leader");
  setText(leader, view.leader ? view.leader.name : "none");
  leader.dataset.term = view.leader ? view.leader.term : 0;
  const terms = view.members.filter(m => m.up).map(m => m.term);
  setText($("term"), view.leader ? view.leader.term : (terms.length ? Math.max(...terms) : "–"));
  setText($("observer"), view.observer);
}

function renderAlerts(view) {
  const key = JSON.stringify(view.alerts);
  if (key === shownAlerts) return;
  shownAlerts = key;
  const list = $("alerts");
  list.replaceChildren(...view.alerts.map(a =>
    el("li", { "data-level": a.level }, el("strong", {}, a.level === "error" ? "Error: " : "Warning: "), a.text)));
  if (!view.alerts.length) list.append(el("li", { class: "ok" }, "All members answer and follow one leader."));
}

function renderMembers(view) {
  $("members").tBodies[0].replaceChildren(...view.members.map(m => {
    const state = m.up ? "up" : "down";
    const stateCell = cell("State", el("span", { class: "state-" + state }, state));
    if (!m.up && m.error) stateCell.append(el("span", { class: "why" }, m.error));
    return el("tr", { "data-member": m.name, "data-state": state, "data-role": m.up ? m.role : "down" },
      el("th", { scope: "row" }, m.name, el("span", { class: "id" }, m.id)),
      stateCell,
      cell("Role", m.up ? m.role : "last: " + m.role),
      num("Term", m.term),
      cell("Knows leader", m.leader || "none"),
      num("Commit", m.commit_index), num("Applied", m.applied_index),
      num("Last log", m.last_index), num("Snapshot", m.snapshot_index),
      num("Database", bytes(m.db_size_bytes)));
  }));
}

function renderReplication(view) {
  const rows = view.replication.map(f => el("tr", { "data-member": f.name },
    el("th", { scope: "row" }, f.name, f.up ? "" : el("span", { class: "why state-down" }, "down")),
    num("Has up to", f.match_index),
    num("Behind (entries)", f.lag_entries === null ? "not known yet" : f.lag_entries),
    num("Behind (time)", f.lag_ms === null ? "not known yet" : seconds(f.lag_ms))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4 }, "No leader to report its followers.")));
  $("replication").tBodies[0].replaceChildren(...rows);
}

function renderTerms(view) {
  const svg = $("terms");
  // Drawn at the picture's own width, so that labels are not stretched;
  // the axis spans what was seen, up to the whole window.
  const width = Math.round(svg.getBoundingClientRect().width) || 600;
  svg.setAttribute("viewBox", "0 0 " + width + " 60");
  const first = view.terms.length ? view.terms[0].from_ms : view.now_ms;
  const start = Math.max(view.now_ms - view.window_ms, first);
  const span = Math.max(1, view.now_ms - start);
  const x = t => Math.max(0, (t - start) / span * width);
  const parts = [];
  const words = [];
  view.terms.forEach((span, i) => {
    const next = view.terms[i + 1];
    const from = x(span.from_ms), to = next ? x(next.from_ms) : width;
    const rect = svgEl("rect", { x: from, y: 8, width: Math.max(1, to - from), height: 44,
      class: span.leader ? "band-led" : "band-none" });
    const title = svgEl("title");
    title.textContent = "term " + span.term + ": " + (span.leader ? "led by " + span.leader : "no leader");
    rect.append(title);
    parts.push(rect);
    if (to - from > 40) {
      const label = svgEl("text", { x: from + 4, y: 34, class: "band-label" });
      label.textContent = "t" + span.term + " " + (span.leader || "no leader");
      parts.push(label);
    }
    words.push("term " + span.term + " " + (span.leader ? "led by " + span.leader : "without a leader")
      + " from " + ago(view, span.from_ms));
  });
  svg.replaceChildren(...parts);
  $("terms-desc").textContent = words.length
    ? "Terms, oldest first: " + words.slice(-8).join("; ") + "."
    : "No terms seen yet.";
}

function renderLine(svgId, descId, points, value, describe) {
  const svg = $(svgId);
  const known = points.filter(p => value(p) !== null);
  const top = Math.max(1e-9, ...known.map(value));
  const width = 300, height = 80;
  const x = i => points.length < 2 ? width : i / (points.length - 1) * width;
  const coords = points.map((p, i) => value(p) === null ? null
    : x(i).toFixed(1) + "," + (height - 4 - value(p) / top * (height - 8)).toFixed(1)).filter(Boolean);
  const line = svgEl("polyline", { points: coords.join(" "), class: "line" });
  svg.replaceChildren(line);
  const latest = known.length ? value(known[known.length - 1]) : null;
  $(descId).textContent = describe(latest, known.length ? top : null);
}

function renderRates(view) {
  renderLine("commits", "commits-desc", view.rates, p => p.commits_per_s,
    (now, top) => now === null ? "Entries committed per second: no data yet."
      : "Entries committed per second: " + now.toFixed(0) + " now, at most " + top.toFixed(0) + " in the window.");
  renderLine("fsync", "fsync-desc", view.rates, p => p.fsync_ms,
    (now, top) => now === null ? "Mean WAL group commit (write and fsync) time: no writes yet."
      : "Mean WAL group commit (write and fsync): " + now.toFixed(2) + " ms now, at most " + top.toFixed(2) + " ms in the window.");
}

function renderEvents(view) {
  const items = view.events.slice().reverse().map(e => el("li", { "data-kind": e.kind },
    el("time", { datetime: new Date(e.at_ms).toISOString() }, new Date(e.at_ms).toLocaleTimeString()),
    e.text));
  if (!items.length) items.push(el("li", {}, "No elections or outages seen since this member started watching."));
  $("events").replaceChildren(...items);
}

function render(view) {
  if (!view.members) return; // the member has not finished its first round
  renderSummary(view);
  renderAlerts(view);
  renderMembers(view);
  renderReplication(view);
  renderTerms(view);
  renderRates(view);
  renderEvents(view);
}

function connect() {
  const status = $("connection");
  const source = new EventSource("/web/events");
  source.addEventListener("view", event => {
    status.dataset.state = "live";
    setText(status, "Live");
    render(JSON.parse(event.data));
  });
  // EventSource reconnects by itself; say so while it does.
  source.onerror = () => {
    status.dataset.state = "lost";
    setText(status, "Connection to this member lost; retrying…");
  };
}

connect();
