// edge dashboard: polls /analytics and renders it; click a request to fetch /trace/{ray}.
// No libraries. Every string from the server (Host headers come from clients) goes into the
// DOM as text, never as markup.
"use strict";

(function () {
  const POLL_MS = 1500;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KIND_LABEL = { cdn: "CDN IP", spectrum: "Spectrum IP", other: "other IP", unknown: "unknown" };
  const KIND_COLOR = { cdn: "#2563eb", spectrum: "#f38020", other: "#94a3b8", unknown: "#cbd5e1" };
  const STATUS_COLOR = { 2: "#16a34a", 3: "#0891b2", 4: "#d97706", 5: "#dc2626" };
  const ACTION_COLOR = { none: "#16a34a", block: "#dc2626", log: "#0891b2", skip: "#64748b" };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      node.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
  }

  function replaceBody(table, rows, emptyText, cols) {
    const tbody = table.tBodies[0];
    tbody.replaceChildren();
    if (!rows.length) {
      tbody.appendChild(el("tr", { class: "empty" }, el("td", { colspan: cols }, emptyText)));
      return;
    }
    for (const r of rows) tbody.appendChild(r);
  }

  const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function clock(t) {
    const d = new Date(t * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, "0")).join(":");
  }

  const statusClass = (s) => "status-code s" + String(s).charAt(0);
  const kindChip = (kind, text) => el("span", { class: "chip " + kind, "data-kind": kind }, text || KIND_LABEL[kind] || kind);
  const spectrumBadge = () => el("span", { class: "badge spectrum", "data-badge": "spectrum-hostname" }, "Spectrum hostname");

  // ------------------------------------------------------------------ charts (hand-written SVG)

  // Horizontal bars: items = [{label, value, color, note?, attrs?}]
  function barChart(container, items, emptyText) {
    container.replaceChildren();
    if (!items.length) { container.appendChild(el("div", { class: "none" }, emptyText)); return; }
    const W = 420, row = 22, labelW = 130, valueW = items.some((i) => i.note) ? 120 : 60;
    const max = Math.max(1, ...items.map((i) => i.value));
    const chart = svg("svg", { class: "bars", viewBox: `0 0 ${W} ${items.length * row + 4}`, width: "100%",
      role: "img", "aria-label": container.id });
    items.forEach((it, i) => {
      const y = i * row + 2;
      const w = Math.max(2, ((W - labelW - valueW) * it.value) / max);
      const g = svg("g", Object.assign({ "data-label": it.label, "data-value": it.value }, it.attrs || {}));
      g.appendChild(svg("text", { x: labelW - 6, y: y + 14, "text-anchor": "end" }, truncate(it.label, 20)));
      g.appendChild(svg("rect", { x: labelW, y: y + 3, width: w, height: row - 8, rx: 3, fill: it.color },
        svg("title", {}, `${it.label}: ${it.value}`)));
      g.appendChild(svg("text", { x: labelW + w + 6, y: y + 14, class: "muted" }, fmt(it.value) + (it.note || "")));
      chart.appendChild(g);
    });
    container.appendChild(chart);
  }

  // One stacked bar of parts = [{kind, value}], total width fixed; the per-host "arrived on" chart.
  function stackBar(parts, width) {
    const total = parts.reduce((a, p) => a + p.value, 0) || 1;
    const s = svg("svg", { class: "stack", width, height: 12, viewBox: `0 0 ${width} 12` });
    let x = 0;
    for (const p of parts) {
      if (!p.value) continue;
      const w = (width * p.value) / total;
      s.appendChild(svg("rect", { x, y: 0, width: w, height: 12, fill: KIND_COLOR[p.kind] || "#999",
        "data-kind": p.kind }, svg("title", {}, `${KIND_LABEL[p.kind] || p.kind}: ${p.value}`)));
      x += w;
    }
    return s;
  }

  function truncate(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + "…" : s; }

  // ------------------------------------------------------------------ sections

  function renderTotals(a) {
    const t = a.totals;
    $("t-requests").textContent = fmt(t.http_requests);
    $("t-misdirected").textContent = fmt(t.misdirected);
    $("t-firewall").textContent = fmt(t.firewall_events);
    $("t-spectrum").textContent = fmt(t.spectrum_connections);
    $("t-dns").textContent = fmt(t.dns_queries);
    document.querySelector('[data-tile="misdirected"]').classList.toggle("on", t.misdirected > 0);
  }

  function renderNetwork(a) {
    const n = a.network;
    const box = $("network");
    box.replaceChildren(
      el("span", {}, "CDN IPs ", el("b", { "data-network": "cdn" }, n.cdn_ips.join(", ") || "–")),
      el("span", {}, "Spectrum hostnames ",
        el("b", { "data-network": "spectrum" },
          Object.entries(n.spectrum_hosts).map(([h, ips]) => `${h} → ${ips.join(", ")}`).join("; ") || "none")),
    );
  }

  const MAX_HOST_ROWS = 15;

  function renderHosts(a) {
    // Spectrum hostnames first (the misdirected ones on top), then the busiest names.
    const all = [];
    for (const z of a.zones) for (const h of z.hosts) all.push([z, h]);
    all.sort(([, x], [, y]) => (y.misdirected - x.misdirected) || (y.spectrum_host - x.spectrum_host)
      || (y.requests - x.requests) || (x.host < y.host ? -1 : 1));
    const shown = all.filter(([, h], i) => i < MAX_HOST_ROWS || h.spectrum_host);
    const rows = [];
    {
      for (const [z, h] of shown) {
        const kinds = h.by_edge_kind || {};
        const misdirected = h.misdirected > 0;
        const arrived = el("td", { class: "arrived" },
          stackBar(["cdn", "spectrum", "other", "unknown"].map((k) => ({ kind: k, value: kinds[k] || 0 })), 90), " ",
          ...Object.entries(kinds).map(([k, v]) => el("span", { class: "arrival", "data-arrival": k },
            kindChip(k, `${KIND_LABEL[k] || k} ${fmt(v)}`), " ")));
        const statuses = Object.entries(h.by_status).map(([s, v]) =>
          el("span", { class: statusClass(s), title: `${v} × ${s}` }, `${s}×${v} `));
        const actions = Object.entries(h.by_security_action).filter(([k]) => k !== "none").map(([k, v]) =>
          el("span", { class: "action " + k }, `${k} ${v} `));
        let note = "";
        if (misdirected) {
          note = el("span", { class: "flag misdirected", "data-flag": "misdirected" },
            `⚠ arrived on CDN IP (${fmt(h.misdirected)}): misdirected`);
        } else if (h.spectrum_host && kinds.spectrum) {
          note = el("span", { class: "flag ok", "data-flag": "spectrum-ip" }, "✓ via Spectrum IP");
        }
        rows.push(el("tr", {
          class: misdirected ? "misdirected" : null, "data-host": h.host, "data-zone": z.zone,
          "data-spectrum-host": h.spectrum_host ? "true" : "false", "data-misdirected": h.misdirected,
          "data-requests": h.requests,
        },
          el("td", { class: "host", title: h.host }, el("span", { class: "mono" }, truncate(h.host || "(no host)", 60)),
            h.spectrum_host ? spectrumBadge() : null),
          el("td", {}, z.zone || "–"),
          el("td", { class: "num" }, fmt(h.requests)),
          arrived,
          el("td", {}, statuses),
          el("td", {}, actions.length ? actions : el("span", { class: "action none" }, "–")),
          el("td", { class: "wrap" }, note)));
      }
    }
    const hidden = all.length - shown.length;
    if (hidden > 0) {
      rows.push(el("tr", { class: "empty", "data-hidden-hosts": hidden },
        el("td", { colspan: 7 }, `${hidden} more hostname${hidden === 1 ? "" : "s"} with fewer requests (see /analytics)`)));
    }
    replaceBody($("hosts"), rows, "no requests yet", 7);
  }

  function renderStatus(a) {
    const total = {};
    for (const z of a.zones) for (const [s, v] of Object.entries(z.by_status)) total[s] = (total[s] || 0) + v;
    barChart($("status-chart"), Object.keys(total).sort().map((s) => ({
      label: s === "0" ? "no response" : s, value: total[s], color: STATUS_COLOR[s.charAt(0)] || "#94a3b8",
      attrs: { "data-status": s },
    })), "no responses yet");
  }

  function renderEdgeIps(a) {
    barChart($("edge-ip-chart"), a.edge_ips.map((e) => ({
      label: e.ip || "(none)", note: ` · ${KIND_LABEL[e.kind] || e.kind}`,
      value: e.requests, color: KIND_COLOR[e.kind] || "#999", attrs: { "data-edge-ip": e.ip, "data-kind": e.kind },
    })), "no requests yet");
  }

  function renderWaf(a) {
    const actions = {};
    const rules = [];
    for (const z of a.zones) {
      for (const [k, v] of Object.entries(z.by_security_action)) actions[k] = (actions[k] || 0) + v;
      for (const r of z.firewall.rules) rules.push(Object.assign({ zone: z.zone }, r));
    }
    barChart($("waf-chart"), Object.entries(actions).sort((x, y) => y[1] - x[1]).map(([k, v]) => ({
      label: k === "none" ? "no rule matched" : k, value: v, color: ACTION_COLOR[k] || "#7c3aed",
      attrs: { "data-action": k },
    })), "no requests yet");
    replaceBody($("waf-rules"), rules.map((r) => el("tr", { "data-rule": r.rule_id },
      el("td", { class: "wrap" }, r.description || "(no description)",
        el("div", { class: "mono hint" }, `${r.rule_id.slice(0, 8)} · ${Object.keys(r.hosts).join(", ")}`)),
      el("td", {}, Object.entries(r.by_action).map(([k, v]) => el("span", { class: "action " + k }, `${k} ${v} `))),
      el("td", { class: "num" }, fmt(r.events)))), "no rule has matched", 3);
  }

  function renderSpectrum(a) {
    const max = Math.max(1, ...a.spectrum.apps.map((x) => x.connections));
    replaceBody($("spectrum-apps"), a.spectrum.apps.map((x) => {
      const bar = svg("svg", { class: "stack", width: 80, height: 10, viewBox: "0 0 80 10" },
        svg("rect", { x: 0, y: 0, width: Math.max(x.connections ? 2 : 0, (80 * x.connections) / max), height: 10,
          rx: 2, fill: KIND_COLOR.spectrum }));
      return el("tr", { "data-app": x.app_id, "data-hostname": x.hostname, "data-connections": x.connections },
        el("td", {}, el("span", { class: "mono" }, x.hostname || "(unnamed)"),
          el("div", { class: "mono hint" }, (x.app_id || "").slice(0, 12) + (x.zone ? " · " + x.zone : ""))),
        el("td", { class: "mono" }, x.protocol + (x.traffic_type && x.traffic_type !== "direct" ? ` (${x.traffic_type})` : "")),
        el("td", { class: "mono" }, x.edge_ips.join(", ")),
        el("td", { class: "num" }, bar, " ", fmt(x.connections)),
        el("td", { class: "num" }, fmt(x.open)),
        el("td", { class: "num" }, bytes(x.bytes_ingress)),
        el("td", { class: "num" }, bytes(x.bytes_egress)),
        el("td", { class: "num" }, x.duration_avg_ms === null ? "–" : `${x.duration_avg_ms.toFixed(1)} ms`),
        el("td", { class: "mono" }, x.last_client || "–"),
        el("td", {}, Object.entries(x.by_event).map(([k, v]) => `${k} ${v}`).join(", ") || "–"));
    }), "no Spectrum apps", 10);
  }

  function renderDns(a) {
    barChart($("dns-chart"), a.dns.by_view_rcode.map((d) => ({
      label: `${d.view} · ${d.rcode}`, value: d.queries,
      color: d.rcode === "NOERROR" ? (d.view === "internal" ? "#f38020" : "#2563eb") : "#d97706",
      attrs: { "data-view": d.view, "data-rcode": d.rcode },
    })), "no queries yet");
  }

  function renderRecent(a) {
    replaceBody($("recent"), a.recent_requests.slice(0, 40).map((r) => el("tr", {
      "data-ray": r.ray_id || null, class: r.misdirected ? "misdirected" : null, title: "show the trace",
    },
      el("td", { class: "mono" }, clock(r.time)),
      el("td", { class: "mono ray" }, r.ray_id || "–"),
      el("td", { title: `${r.method} ${r.host}${r.uri}` }, el("span", { class: "mono" }, truncate(`${r.method} ${r.host}${r.uri}`, 80)),
        r.spectrum_host ? spectrumBadge() : null),
      el("td", { class: "num" }, el("span", { class: statusClass(r.status) }, r.status)),
      el("td", {}, kindChip(r.edge_kind, `${KIND_LABEL[r.edge_kind] || r.edge_kind}`), " ",
        el("span", { class: "mono" }, r.edge_ip ? `${r.edge_ip}:${r.edge_port}` : "")),
      el("td", {}, el("span", { class: "action " + r.security_action }, r.security_action === "none" ? "–" : r.security_action)),
      el("td", { class: "mono" }, r.origin_ip ? `${r.origin_ip} → ${r.origin_status}` : "–"))),
    "no requests yet", 7);
  }

  // ------------------------------------------------------------------ trace panel

  async function openTrace(ray) {
    const panel = $("trace-panel");
    panel.hidden = false;
    panel.setAttribute("data-ray", ray);
    panel.setAttribute("data-state", "loading");
    $("trace-ray").textContent = ray;
    $("trace-summary").replaceChildren("loading…");
    $("trace-steps").replaceChildren();
    if (location.hash !== "#trace=" + ray) history.replaceState(null, "", "#trace=" + encodeURIComponent(ray));
    let body;
    try {
      const resp = await fetch("/trace/" + encodeURIComponent(ray), { cache: "no-store" });
      body = await resp.json();
      if (!resp.ok) throw new Error(body.error || resp.statusText);
    } catch (e) {
      panel.setAttribute("data-state", "error");
      $("trace-summary").replaceChildren(el("span", { class: "error" }, `no trace: ${e.message}`));
      return;
    }
    renderTrace(body);
    panel.setAttribute("data-state", "ok");
  }

  const OWN_KEYS = new Set(["stage", "decision", "at_ms", "owner", "role"]);

  function renderTrace(t) {
    const req = t.records && t.records.request;
    const summary = [];
    if (req) {
      summary.push(el("div", {}, el("b", {}, `${req.method} ${req.host}${req.uri}`), " → ",
        el("span", { class: statusClass(req.status) }, req.status),
        req.spectrum_host ? spectrumBadge() : null));
      summary.push(el("div", {}, "arrived on ", kindChip(req.edge_kind), " ",
        el("span", { class: "mono" }, `${req.edge_ip}:${req.edge_port}`),
        req.misdirected ? el("span", { class: "flag misdirected", "data-flag": "misdirected" },
          " ⚠ Spectrum hostname on a CDN IP: misdirected") : null));
    }
    const fw = (t.records && t.records.firewall_events) || [];
    for (const f of fw) summary.push(el("div", {}, "WAF ", el("span", { class: "action " + f.action }, f.action), ` · ${f.description || f.rule_id}`));
    $("trace-summary").replaceChildren(...summary);
    $("trace-steps").replaceChildren(...t.steps.map((s) => {
      const details = Object.entries(s).filter(([k]) => !OWN_KEYS.has(k));
      const refused = /refus|block|fail|error|denied|reject/i.test(String(s.decision));
      return el("li", { class: "step" + (refused ? " refused" : ""), "data-stage": s.stage,
        "data-owner": s.owner || s.role || (String(s.stage).startsWith("spectrum") ? "spectrum" : null) },
        el("div", { class: "step-head" }, el("span", { class: "stage" }, s.stage),
          el("span", { class: "decision" }, s.decision),
          el("span", { class: "at" }, s.at_ms !== undefined ? `+${Number(s.at_ms).toFixed(1)} ms` : "")),
        details.length ? el("dl", { class: "detail" }, details.map(([k, v]) => [el("dt", {}, k),
          el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))])) : null);
    }));
  }

  function closeTrace() {
    $("trace-panel").hidden = true;
    history.replaceState(null, "", location.pathname);
  }

  // ------------------------------------------------------------------ polling

  let timer = null;

  async function poll() {
    const status = $("status");
    try {
      const resp = await fetch("/analytics", { cache: "no-store" });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const a = await resp.json();
      renderTotals(a);
      renderNetwork(a);
      renderHosts(a);
      renderStatus(a);
      renderEdgeIps(a);
      renderWaf(a);
      renderSpectrum(a);
      renderDns(a);
      renderRecent(a);
      status.setAttribute("data-state", "ok");
      status.setAttribute("data-generation", a.generation);
      status.textContent = `live · config generation ${a.generation} · colo ${a.colo} · updated ${clock(a.generated_at)}`;
    } catch (e) {
      status.setAttribute("data-state", "error");
      status.textContent = `analytics unavailable: ${e.message}`;
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function start() {
    $("recent").addEventListener("click", (ev) => {
      const row = ev.target.closest("tr[data-ray]");
      if (row) openTrace(row.getAttribute("data-ray"));
    });
    $("trace-close").addEventListener("click", closeTrace);
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeTrace(); });
    const m = /^#trace=([0-9A-Za-z-]+)$/.exec(location.hash);
    if (m) openTrace(decodeURIComponent(m[1]));
    if (timer === null) poll();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
