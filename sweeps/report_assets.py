"""CSS and the vanilla-JS SVG renderer embedded in the report page (no network, no library).

The renderer reads the JSON in ``<script id="report-data">`` and draws: ``#front-scatter``
(one panel per objective pair; circles ``.pt``, front ones also ``.front``), ``#group-fronts``
(``.gpt``), ``#acc-sparsity`` (``.cpt``), ``#layer-heatmap`` (``rect.cell``), ``#hv-history``
(``path.hv``) and ``#front-table`` (a sortable ``<table>``). Each plot container gets
``data-n`` (elements drawn); ``<body data-rendered="1">`` once all is drawn, or
``data-rendered="error"`` and the message in ``data-error`` if the script failed.
"""

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#555}.plot svg{background:#fff;border:1px solid #eee;margin:4px}
.plot .axis text{font-size:11px;fill:#444}.plot .axis line,.plot .axis path{stroke:#999}
.plot .grid{stroke:#eee}.pt{fill:#c8c8c8;fill-opacity:.7}.pt.front{fill:#d62728;fill-opacity:1}
.legend text{font-size:11px}circle:hover,rect.cell:hover{stroke:#000;stroke-width:1.5}
#tooltip{position:fixed;pointer-events:none;background:rgba(30,30,30,.92);color:#fff;
font-size:12px;padding:6px 8px;border-radius:4px;white-space:pre;z-index:10}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ddd;padding:3px 6px}
th{cursor:pointer;background:#f5f5f5;position:sticky;top:0}th.asc:after{content:" \\25B2"}
th.desc:after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
#front-table{max-height:600px;overflow:auto}.empty{color:#888;font-style:italic}
"""

JS = r"""
(function () {
"use strict";
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const tip = document.getElementById("tooltip");

function el(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return Math.abs(v) >= 1e6 ? v.toExponential(3) : String(v);
    const a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e6)) ? v.toExponential(3) : String(+v.toPrecision(5));
  }
  return String(v);
}
function extent(vals) {
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) {
    if (v === null || !isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (lo === hi) { const d = Math.abs(lo) * 0.05 || 0.5; lo -= d; hi += d; }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}
function niceTicks(lo, hi, n) {
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    out.push(+t.toPrecision(12));
  }
  return out;
}
function showTip(evt, text) {
  tip.textContent = text; tip.hidden = false;
  const x = Math.min(evt.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = x + "px"; tip.style.top = (evt.clientY + 14) + "px";
}
function hideTip() { tip.hidden = true; }
function hover(node, text) {
  el("title", {}, node, text);
  node.addEventListener("mousemove", e => showTip(e, text));
  node.addEventListener("mouseleave", hideTip);
}
// a plot frame: returns {svg, g, x(v), y(v)}
function frame(container, xs, ys, xlabel, ylabel, opts) {
  opts = opts || {};
  const W = opts.w || 560, H = opts.h || 380, M = {l: 72, r: 16, t: 12, b: 44};
  const svg = el("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img"}, container);
  const [x0, x1] = opts.xext || extent(xs), [y0, y1] = opts.yext || extent(ys);
  const x = v => M.l + (v - x0) / (x1 - x0) * (W - M.l - M.r);
  const y = v => H - M.b - (v - y0) / (y1 - y0) * (H - M.t - M.b);
  const ax = el("g", {class: "axis"}, svg);
  for (const t of niceTicks(x0, x1, 6)) {
    el("line", {class: "grid", x1: x(t), x2: x(t), y1: M.t, y2: H - M.b}, ax);
    el("text", {x: x(t), y: H - M.b + 15, "text-anchor": "middle"}, ax, fmt(t));
  }
  for (const t of niceTicks(y0, y1, 6)) {
    el("line", {class: "grid", x1: M.l, x2: W - M.r, y1: y(t), y2: y(t)}, ax);
    el("text", {x: M.l - 6, y: y(t) + 4, "text-anchor": "end"}, ax, fmt(t));
  }
  el("rect", {x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "none",
              stroke: "#999"}, ax);
  el("text", {x: (M.l + W - M.r) / 2, y: H - 8, "text-anchor": "middle"}, ax, xlabel);
  el("text", {x: 12, y: (M.t + H - M.b) / 2, "text-anchor": "middle",
              transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})`}, ax, ylabel);
  const g = el("g", {}, svg);
  return {svg, g, x, y, W, H, M};
}
function legend(f, names, colors) {
  const lg = el("g", {class: "legend"}, f.svg);
  names.forEach((n, i) => {
    const yy = f.M.t + 10 + 15 * i;
    el("rect", {x: f.W - f.M.r - 170, y: yy - 8, width: 10, height: 10,
                fill: colors ? colors[i] : COLORS[i % 10]}, lg);
    el("text", {x: f.W - f.M.r - 156, y: yy + 1}, lg, n);
  });
}
function empty(container, msg) {
  const p = document.createElement("p"); p.className = "empty"; p.textContent = msg;
  container.appendChild(p); container.dataset.n = "0";
}
function pointText(p) {
  const lines = D.objectives.map((o, j) => `${o.label}: ${fmt(p.v[j])}`);
  if (D.by) lines.unshift(`${D.by}: ${p.g}`);
  for (const k in p.h) if (!(D.by && k === D.by)) lines.push(`${k}: ${fmt(p.h[k])}`);
  if (p.f) lines.push("on the Pareto front");
  return lines.join("\n");
}
function stepPath(f, pts, ix, iy) {
  return pts.map((p, i) => `${i ? "L" : "M"}${f.x(p[ix]).toFixed(2)},${f.y(p[iy]).toFixed(2)}`)
    .join("");
}

function frontScatter() {
  const c = document.getElementById("front-scatter");
  const k = D.objectives.length;
  const pairs = k === 2 ? [[1, 0]] : [[1, 0], [2, 0], [2, 1]];
  let n = 0;
  for (const [ix, iy] of pairs) {
    const f = frame(c, D.points.map(p => p.v[ix]), D.points.map(p => p.v[iy]),
                    D.objectives[ix].label + " (" + D.objectives[ix].mode + ")",
                    D.objectives[iy].label + " (" + D.objectives[iy].mode + ")",
                    k === 3 ? {w: 360, h: 320} : {});
    f.svg.dataset.pair = `${ix},${iy}`;
    const ordered = D.points.filter(p => !p.f).concat(D.points.filter(p => p.f));
    if (k === 2) {
      const fr = D.points.filter(p => p.f).map(p => p.v).sort((a, b) => a[ix] - b[ix]);
      el("path", {d: stepPath(f, fr, ix, iy), fill: "none", stroke: "#d62728",
                  "stroke-width": 1.2, class: "front-line"}, f.g);
    }
    for (const p of ordered) {
      const cc = el("circle", {cx: f.x(p.v[ix]).toFixed(2), cy: f.y(p.v[iy]).toFixed(2),
                               r: p.f ? 4 : 2.5, class: p.f ? "pt front" : "pt"}, f.g);
      hover(cc, pointText(p));
      n++;
    }
  }
  c.dataset.n = String(n);
}

function groupFronts() {
  const c = document.getElementById("group-fronts");
  const names = Object.keys(D.group_fronts);
  const all = names.flatMap(g => D.group_fronts[g]);
  if (!all.length) return empty(c, "no fronts");
  const f = frame(c, all.map(v => v[1]), all.map(v => v[0]), D.objectives[1].label,
                  D.objectives[0].label);
  const byKey = new Map();
  for (const p of D.points) if (p.gf) byKey.set(p.g + "|" + p.v.join(","), p);
  let n = 0;
  names.forEach((g, i) => {
    const pts = D.group_fronts[g].slice().sort((a, b) => a[1] - b[1]);
    el("path", {d: stepPath(f, pts, 1, 0), fill: "none", stroke: COLORS[i % 10],
                "stroke-width": 1.5}, f.g);
    for (const v of pts) {
      const cc = el("circle", {cx: f.x(v[1]).toFixed(2), cy: f.y(v[0]).toFixed(2), r: 3.5,
                               fill: COLORS[i % 10], class: "gpt"}, f.g);
      const p = byKey.get(g + "|" + v.join(","));
      hover(cc, p ? pointText(p) : `${g}\n${v.map(fmt).join(", ")}`);
      n++;
    }
  });
  legend(f, names.map(g => `${g} (HV ${fmt(D.hypervolumes[g])})`));
  c.dataset.n = String(n);
}

function curves() {
  const c = document.getElementById("acc-sparsity");
  const names = Object.keys(D.curves);
  if (!names.length) return empty(c, "no test_accuracy / sparsity columns");
  const all = names.flatMap(g => D.curves[g]);
  const f = frame(c, all.map(r => r[0]), all.map(r => r[1]), D.curve_axes[0],
                  "best " + D.curve_axes[1]);
  let n = 0;
  names.forEach((g, i) => {
    const rows = D.curves[g];
    el("path", {d: stepPath(f, rows, 0, 1), fill: "none", stroke: COLORS[i % 10],
                "stroke-width": 1.5}, f.g);
    for (const r of rows) {
      const cc = el("circle", {cx: f.x(r[0]).toFixed(2), cy: f.y(r[1]).toFixed(2), r: 3,
                               fill: COLORS[i % 10], class: "cpt"}, f.g);
      hover(cc, `${g}\n${D.curve_axes[0]}: ${fmt(r[0])}\nbest: ${fmt(r[1])}` +
                `\nmedian: ${fmt(r[2])}\ntrials: ${r[3]}`);
      n++;
    }
  });
  legend(f, names);
  c.dataset.n = String(n);
}

function heatmap() {
  const c = document.getElementById("layer-heatmap");
  const H = D.heatmap;
  if (!H || !H.rows || !H.rows.length) return empty(c, "no layer_sparsity.* columns");
  const cw = Math.max(8, Math.min(28, 760 / H.cols.length)), ch = 14, L = 260, T = 10;
  const B = 8 + 6 * Math.max(...H.cols.map(s => s.length));
  const W = L + cw * H.cols.length + 70, Ht = T + ch * H.rows.length + Math.min(B, 200);
  const svg = el("svg", {width: W, height: Ht, viewBox: `0 0 ${W} ${Ht}`}, c);
  const color = v => {  // viridis-like ramp, 0..1
    if (v === null) return "#eee";
    const s = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const t = Math.max(0, Math.min(1, v)) * 4, i = Math.min(3, Math.floor(t)), u = t - i;
    const m = s[i].map((a, j) => Math.round(a + (s[i + 1][j] - a) * u));
    return `rgb(${m[0]},${m[1]},${m[2]})`;
  };
  let n = 0;
  H.rows.forEach((row, i) => {
    el("text", {x: L - 6, y: T + ch * i + 11, "text-anchor": "end", "font-size": 11},
       svg, H.row_labels[i]);
    H.cols.forEach((col, j) => {
      const v = H.values[i][j];
      const r = el("rect", {x: L + cw * j, y: T + ch * i, width: cw - 1, height: ch - 1,
                            fill: color(v), class: "cell"}, svg);
      hover(r, `${row}\n${col}\nsparsity: ${fmt(v)}`);
      n++;
    });
  });
  H.cols.forEach((col, j) => {
    const x = L + cw * j + cw / 2, y = T + ch * H.rows.length + 6;
    el("text", {x, y, "font-size": 10, transform: `rotate(60 ${x} ${y})`}, svg, col);
  });
  for (let k = 0; k <= 4; k++) {
    el("rect", {x: W - 50, y: T + 16 * k, width: 14, height: 14, fill: color(k / 4)}, svg);
    el("text", {x: W - 32, y: T + 16 * k + 11, "font-size": 10}, svg, String(k / 4));
  }
  c.dataset.n = String(n);
}

function colorOf(g, i) { return g === "all" ? "#000" : COLORS[(i - 1 + 10) % 10]; }
function history() {
  const c = document.getElementById("hv-history");
  const names = Object.keys(D.history);
  const all = names.flatMap(g => D.history[g]);
  if (!all.length) return empty(c, "no trials");
  const f = frame(c, all.map(r => r[0]).concat([0]), all.map(r => r[1]).concat([0]),
                  "trials (by end time)", "hypervolume");
  let n = 0;
  names.forEach((g, i) => {
    const rows = D.history[g];
    let d = "";
    rows.forEach((r, j) => {
      const x = f.x(r[0]).toFixed(2), y = f.y(r[1]).toFixed(2);
      d += j ? `H${x}V${y}` : `M${x},${y}`;
    });
    const color = colorOf(g, i);
    const p = el("path", {d, fill: "none", stroke: color, "stroke-width": g === "all" ? 2.2 : 1.3,
                          class: "hv"}, f.g);
    const last = rows[rows.length - 1];
    hover(p, `${g}: hypervolume ${fmt(last[1])} after ${last[0]} trials`);
    n++;
  });
  legend(f, names, names.map(colorOf));
  c.dataset.n = String(n);
}

function table() {
  const c = document.getElementById("front-table");
  const T = D.table;
  if (!T || !T.rows || !T.rows.length) return empty(c, "empty front");
  const tbl = document.createElement("table");
  const thead = tbl.createTHead().insertRow();
  const tbody = tbl.createTBody();
  const numeric = T.columns.map(
    (_, j) => T.rows.every(r => r[j] === null || typeof r[j] === "number"));
  T.columns.forEach((name, j) => {
    const th = document.createElement("th"); th.textContent = name; thead.appendChild(th);
    th.addEventListener("click", () => sortBy(j, th));
  });
  function fill(rows) {
    tbody.textContent = "";
    for (const r of rows) {
      const tr = tbody.insertRow();
      r.forEach((v, j) => {
        const td = tr.insertCell();
        td.textContent = fmt(v);
        if (numeric[j]) td.className = "num";
      });
    }
  }
  let rows = T.rows.slice();
  function sortBy(j, th) {
    const desc = th.classList.contains("asc");
    for (const h of thead.children) h.classList.remove("asc", "desc");
    th.classList.add(desc ? "desc" : "asc");
    const s = desc ? -1 : 1;
    rows.sort((a, b) => {
      const x = a[j], y = b[j];
      if (x === null) return 1; if (y === null) return -1;
      return (numeric[j] ? x - y : String(x).localeCompare(String(y))) * s;
    });
    fill(rows);
  }
  fill(rows);
  c.appendChild(tbl);
  c.dataset.n = String(T.rows.length);
}

let D;
try {
  D = JSON.parse(document.getElementById("report-data").textContent);
  frontScatter(); groupFronts(); curves(); heatmap(); history(); table();
  document.body.dataset.rendered = "1";
} catch (err) {
  document.body.dataset.rendered = "error";
  document.body.dataset.error = String(err && err.stack || err);
  throw err;
}
})();
"""
