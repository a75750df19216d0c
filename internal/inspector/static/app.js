// telephone inspector: the live list (Server-Sent Events), the filter, details and replay.
// Every value from the traffic is put on the page as text (textContent), never as HTML.
"use strict";

const rows = new Map(); // id -> {tr, s}
let selected = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function size(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(1) + " MiB";
}

function statusText(s) {
  if (s.pending) return s.kind === "ws" ? "open" : "…";
  return String(s.status);
}

function rowText(s) {
  return [s.method, s.target, statusText(s), "session " + s.session, s.kind].join(" ").toLowerCase();
}

function render(s) {
  const tr = el("tr", {"data-id": s.id, class: s.pending ? "pending" : ""},
    el("td", {}, s.start),
    el("td", {}, s.session),
    el("td", {}, s.method),
    el("td", {class: "path"}, s.target),
    el("td", {class: "status s" + String(s.status)[0]}, statusText(s)),
    el("td", {}, s.pending ? "" : s.ms.toFixed(1) + " ms"),
    el("td", {}, size(s.req_size)),
    el("td", {}, size(s.resp_size)));
  tr.addEventListener("click", () => show(s.id));
  if (s.id === selected) tr.classList.add("selected");
  return tr;
}

function applyFilter(tr, s) {
  const q = document.getElementById("filter").value.trim().toLowerCase();
  tr.hidden = q !== "" && !q.split(/\s+/).every(w => rowText(s).includes(w));
}

function upsert(s) {
  const body = document.getElementById("rows");
  const tr = render(s);
  applyFilter(tr, s);
  const old = rows.get(s.id);
  if (old) old.tr.replaceWith(tr); else body.prepend(tr);
  rows.set(s.id, {tr, s});
  document.getElementById("empty").hidden = rows.size > 0;
  if (s.id === selected && old && old.s.pending && !s.pending) show(s.id);
}

function remove(id) {
  const r = rows.get(id);
  if (r) { r.tr.remove(); rows.delete(id); }
  document.getElementById("empty").hidden = rows.size > 0;
}

function headers(list) {
  const dl = el("dl", {class: "headers"});
  for (const h of list || []) {
    dl.append(el("dt", {}, h.name), el("dd", {class: h.masked ? "masked" : ""}, h.value));
  }
  return dl;
}

function bodyView(b) {
  if (!b) return el("p", {class: "meta"}, "—");
  const wrap = el("div", {});
  let meta = size(b.size);
  if (b.binary) meta += ", binary: the first bytes in hex";
  if (b.truncated) meta += ", truncated: only the first part was kept";
  wrap.append(el("p", {class: "meta"}, meta));
  if (b.size > 0) wrap.append(el("pre", {class: b.binary ? "hex" : "text"}, b.binary ? b.hex : b.text));
  return wrap;
}

async function show(id) {
  selected = id;
  for (const [rid, r] of rows) r.tr.classList.toggle("selected", rid === id);
  const pane = document.getElementById("details");
  const res = await fetch("entries/" + id);
  pane.hidden = false;
  if (!res.ok) { pane.replaceChildren(el("p", {}, await res.text())); return; }
  const d = await res.json();
  const parts = [el("h2", {}, d.method + " " + d.target)];
  parts.push(el("p", {class: "meta"}, `status ${statusText(d)} · ${d.pending ? "in progress" : d.ms.toFixed(1) + " ms"} · session ${d.session} · ${d.start}` + (d.host ? ` · host ${d.host}` : "")));
  if (d.kind === "ws") {
    parts.push(el("p", {class: "meta"}, `backend ${d.ws_url}` + (d.ws_protocol ? ` · subprotocol ${d.ws_protocol}` : "")));
    parts.push(el("p", {class: "meta"}, `client → backend: ${d.frames_in} frames, ${size(d.req_size)} · backend → client: ${d.frames_out} frames, ${size(d.resp_size)}` + (d.ws_reason ? ` · closed: ${d.ws_reason}` : "")));
  }
  parts.push(el("h3", {}, "Request headers"), headers(d.req_headers));
  if (d.kind === "http") {
    parts.push(el("h3", {}, "Request body"), bodyView(d.req_body));
    parts.push(el("h3", {}, "Response headers"), headers(d.resp_headers));
    parts.push(el("h3", {}, "Response body"), bodyView(d.resp_body));
    const btn = el("button", {id: "replay"}, "Replay to the backend");
    const out = el("div", {id: "replay-result"});
    if (d.replay) { btn.disabled = true; out.append(el("p", {class: "meta"}, d.replay)); }
    btn.addEventListener("click", () => replay(id, out));
    parts.push(el("div", {class: "replay"}, el("h3", {}, "Replay"), btn, out));
  }
  pane.replaceChildren(...parts);
}

async function replay(id, out) {
  out.replaceChildren(el("p", {class: "meta"}, "replaying…"));
  const res = await fetch("entries/" + id + "/replay", {method: "POST", headers: {"X-Telephone-Inspector": "replay"}});
  if (!res.ok) { out.replaceChildren(el("p", {class: "meta"}, await res.text())); return; }
  const r = await res.json();
  if (r.error) { out.replaceChildren(el("p", {class: "meta"}, "replay failed: " + r.error)); return; }
  out.replaceChildren(
    el("p", {class: "meta"}, `sent to ${r.url}: status `, el("b", {id: "replay-status"}, r.status), ` in ${r.ms.toFixed(1)} ms`),
    el("h3", {}, "Replay response headers"), headers(r.headers),
    el("h3", {}, "Replay response body"), bodyView(r.body));
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("events");
  es.addEventListener("open", () => { conn.textContent = "live"; });
  es.addEventListener("error", () => { conn.textContent = "reconnecting…"; });
  es.addEventListener("reset", () => {
    rows.clear();
    document.getElementById("rows").replaceChildren();
  });
  es.addEventListener("entry", ev => upsert(JSON.parse(ev.data)));
  es.addEventListener("remove", ev => remove(Number(ev.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", () => {
    for (const r of rows.values()) applyFilter(r.tr, r.s);
  });
  connect();
});
