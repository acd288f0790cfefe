"""The report page: plotly figures (plotly.js inlined once, so the file works offline), notes
and a filterable, sortable table of the trials.

Each figure's div gets, once plotly has drawn it, ``data-traces`` (its trace count),
``data-trace-names`` and ``data-line-shapes`` (JSON lists). When every figure is drawn and
no script error or ``console.error`` happened, ``<body>`` gets ``data-rendered="1"``; errors
are listed in ``<body data-errors>``. The learning curves highlight the trace under the mouse
(the others fade) and name its trial in ``data-highlight``. The table shows a few columns
(``trials["hidden"]`` marks the others, one tick box each), so it fits the page width.
Browser tests read these attributes.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from sweeps.results.report_figures import figures

if TYPE_CHECKING:
    from sweeps.results.report_data import ReportData

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1280px;color:#222;
padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin:28px 0 6px}
.meta,.note{color:#555}.empty{color:#888;font-style:italic}
table{border-collapse:collapse;font-size:12px;margin-top:8px;width:100%}
th,td{border:1px solid #ddd;padding:2px 5px;overflow-wrap:anywhere}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0;vertical-align:bottom}
.colpick{font-size:12px;margin-top:6px}.colpick label{margin-right:10px;white-space:nowrap}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.front td{font-weight:600}tr.flagged td{background:#fde8e8}
.tablewrap{max-height:640px;overflow:auto}
.controls{display:flex;gap:14px;align-items:center}
.controls input[type=search]{width:380px;padding:3px 6px}
"""

ERRORS_JS = """
window.__reportErrors = [];
window.__plotsDone = 0;
function __reportError(msg) {
  window.__reportErrors.push(String(msg));
  document.body.dataset.errors = JSON.stringify(window.__reportErrors);
  document.body.dataset.rendered = "error";
}
window.addEventListener("error", function (e) { __reportError(e.message || e); });
window.addEventListener("unhandledrejection", function (e) { __reportError(e.reason); });
(function () {
  var orig = console.error;
  console.error = function () {
    __reportError(Array.prototype.map.call(arguments, String).join(" "));
    return orig.apply(console, arguments);
  };
})();
function __plotDone(id) {
  var gd = document.getElementById(id);
  gd.dataset.traces = String(gd.data.length);
  gd.dataset.traceNames = JSON.stringify(gd.data.map(function (t) { return t.name || ""; }));
  gd.dataset.lineShapes = JSON.stringify(gd.data.map(
    function (t) { return (t.line && t.line.shape) || ""; }));
  window.__plotsDone += 1;
  if (window.__plotsDone === window.__plotsTotal && !window.__reportErrors.length) {
    document.body.dataset.rendered = "1";
  }
}
"""

TABLE_JS = """
(function () {
  var table = document.getElementById("trials");
  if (!table) return;
  var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
  var box = document.getElementById("trial-filter");
  var onlyFront = document.getElementById("only-front");
  var onlyFlagged = document.getElementById("only-flagged");
  var count = document.getElementById("trial-count");
  var text = rows.map(function (r) { return r.textContent.toLowerCase(); });
  function apply() {
    var terms = box.value.toLowerCase().split(/\\s+/).filter(Boolean), n = 0;
    rows.forEach(function (r, i) {
      var show = terms.every(function (t) { return text[i].indexOf(t) >= 0; }) &&
        (!onlyFront.checked || r.classList.contains("front")) &&
        (!onlyFlagged.checked || r.classList.contains("flagged"));
      r.style.display = show ? "" : "none";
      if (show) n++;
    });
    count.textContent = n + " of " + rows.length + " rows shown";
    table.dataset.shown = String(n);
  }
  [box, onlyFront, onlyFlagged].forEach(function (el) { el.addEventListener("input", apply); });
  document.querySelectorAll("input[data-col]").forEach(function (el) {
    el.addEventListener("change", function () {
      table.classList.toggle("hide-" + el.dataset.col, !el.checked); });
  });
  var m = /[#&]filter=([^&]*)/.exec(location.hash);  // report.html#filter=snip links a view
  if (m) box.value = decodeURIComponent(m[1]);
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, j) {
    th.addEventListener("click", function () {
      var desc = th.classList.contains("asc");
      Array.prototype.forEach.call(th.parentNode.cells, function (h) {
        h.classList.remove("asc", "desc"); });
      th.classList.add(desc ? "desc" : "asc");
      var s = desc ? -1 : 1;
      rows.sort(function (a, b) {
        var x = a.cells[j].textContent, y = b.cells[j].textContent;
        if (x === "") return 1; if (y === "") return -1;
        var fx = parseFloat(x), fy = parseFloat(y);
        var num = !isNaN(fx) && !isNaN(fy) && isFinite(x) && isFinite(y);
        return (num ? fx - fy : x.localeCompare(y)) * s;
      });
      rows.forEach(function (r) { body.appendChild(r); });
      text = rows.map(function (r) { return r.textContent.toLowerCase(); });
    });
  });
  apply();
})();
"""

HIGHLIGHT_JS = """
function __highlightOnHover(id) {  // the trace under the mouse stands out, the others fade
  var gd = document.getElementById(id);
  function paint(k) {
    Array.prototype.forEach.call(gd.querySelectorAll(".scatterlayer .trace"), function (g) {
      var d = g.__data__, i = d && d[0] && d[0].trace ? d[0].trace.index : -1;
      if (g.__opacity === undefined) g.__opacity = g.style.opacity;
      g.style.opacity = k === null ? g.__opacity : (i === k ? "1" : "0.12");
      var line = g.querySelector("path.js-line");
      if (line && line.__width === undefined) line.__width = line.style.strokeWidth;
      if (line) line.style.strokeWidth = k !== null && i === k ? "3px" : line.__width;
    });
    gd.dataset.highlight = k === null ? "" : (gd.data[k].name || "");
  }
  gd.on("plotly_hover", function (e) { paint(e.points[0].curveNumber); });
  gd.on("plotly_unhover", function () { paint(null); });
}
"""

#: figures whose traces are highlighted on hover (many overlapping lines)
HIGHLIGHT = ("learning-curves",)

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "toImageButtonOptions": {"format": "png", "scale": 2}}


def _cell(v: Any) -> tuple[str, bool]:
    if v is None:
        return "", False
    if isinstance(v, bool):
        return str(v), False
    if isinstance(v, float):
        return f"{v:.6g}", True
    if isinstance(v, int):
        return str(v), True
    return html.escape(str(v)), False


def trials_table(data: ReportData) -> str:
    """The trials as a plain HTML table (front and flagged rows marked by class)."""
    t = data.trials
    if not t.get("rows"):
        return '<p class="empty">no trials</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t["columns"])
    hidden = t.get("hidden") or [False] * len(t["columns"])
    out = []
    for row, front, flagged, status in zip(t["rows"], t["front"], t["flagged"], t["status"],
                                           strict=True):
        cls = " ".join(c for c, on in (("front", front), ("flagged", flagged)) if on)
        cells = []
        for v in row:
            text, num = _cell(v)
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        out.append(f'<tr class="{cls}" data-status="{html.escape(status)}">{"".join(cells)}'
                   "</tr>")
    shown = len(t["rows"])
    capped = (f" Showing {shown} of {t['total']} trials: the front, the flagged ones and a "
              "sample; use <code>prunetune query</code> for all." if shown < t["total"] else "")
    return (f'<p class="note">Every trial, the front first (in bold), flagged trials shaded. '
            "Type words to filter (all must appear; <code>report.html#filter=snip</code> opens the "
            f"page filtered); click a header to sort.{capped}</p>"
            '<div class="controls"><input id="trial-filter" type="search" '
            'placeholder="filter, e.g. snip ok 0.9" aria-label="filter trials">'
            '<label><input id="only-front" type="checkbox"> front only</label>'
            '<label><input id="only-flagged" type="checkbox"> flagged only</label>'
            '<span id="trial-count"></span></div>'
            f"{_column_picker(t['columns'], hidden)}"
            f'<div class="tablewrap"><table id="trials" data-n="{shown}" class="'
            f'{" ".join(f"hide-{j}" for j, h in enumerate(hidden) if h)}"><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(out)}</tbody></table></div>")


def doomed_table(data: ReportData) -> str:
    """The doomed trials (ended before training), apart from the rest: id, group, sparsity,
    reason. ``<table id="doomed" data-n>`` (rows shown) or a line saying there were none."""
    d = data.doomed
    if not d.get("total"):
        return ('<p class="empty" id="doomed" data-n="0">no doomed trial (prune.screen ends a '
                "trial whose masks leave no input→output path before it trains)</p>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in d["columns"])
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)[0]}</td>" for v in row) + "</tr>"
                   for row in d["rows"])
    more = (f" Showing {len(d['rows'])} of {d['total']}." if len(d["rows"]) < d["total"]
            else "")
    return (f'<p class="note">{d["total"]} trial(s) ended before training: their masks left '
            "no input→output path, or too few weights on one (prune.screen). They never "
            "enter the fronts, hypervolumes, curves or importance; the scatter and the trials "
            f"table show them with status doomed.{more}</p>"
            f'<table id="doomed" data-n="{len(d["rows"])}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _column_picker(columns: list[str], hidden: list[bool]) -> str:
    """A tick box per column (hidden ones unticked) and the CSS hiding column j while the
    table has class ``hide-j``: the table fits the page, every column a tick away."""
    css = ",".join(f"#trials.hide-{j} tr>:nth-child({j + 1})" for j in range(len(columns)))
    boxes = "".join(f'<label><input type="checkbox" data-col="{j}"'
                    f'{"" if h else " checked"}> {html.escape(c)}</label>'
                    for j, (c, h) in enumerate(zip(columns, hidden, strict=True)))
    return (f"<style>{css}{{display:none}}</style>"
            f'<details class="colpick"><summary>columns ({hidden.count(False)} of '
            f"{len(columns)} shown)</summary>{boxes}</details>")


def _chance_text(data: ReportData) -> str:
    """The page's statement of the chance-accuracy rule for fronts (said even when no trial
    is at chance)."""
    if data.hide_chance:
        return (f"Trials at chance accuracy are left out of the fronts, the hypervolumes and "
                f"the best-accuracy curve (the default; --show-chance keeps them): "
                f"{data.n_chance} left out.")
    return (f"Trials at chance accuracy are kept in the fronts (--show-chance, or every trial "
            f"is at chance; the default, --hide-chance, leaves them out): {data.n_chance} kept.")


def _summary(data: ReportData) -> str:
    objs = ", ".join(f"{lab} ({o.mode})" for o, lab in zip(data.objectives, data.labels,
                                                            strict=True))
    hv = ", ".join(f"{g}: {v:.6g}" for g, v in data.hypervolumes.items())
    ref = ", ".join(f"{x:.6g}" for x in data.ref)
    inc = ", ".join(data.included_statuses) if data.included_statuses else \
        "every status but doomed"
    counts = ", ".join(f"{s} {c['rows']}" for s, c in data.status_counts.items())
    flags = "".join(f"<li>{html.escape(r)}</li>" for r in data.flag_rules)
    return (f'<p class="meta">{data.n_rows} trials ({html.escape(counts)}); fronts, '
            f"hypervolume and importance use the {data.n_included} trials of status "
            f"{html.escape(inc)} with every objective. Objectives: {html.escape(objs)}; "
            f"reference point ({ref}); hypervolume {html.escape(hv)}.</p>"
            f'<p class="meta" id="chance-summary" data-hide="{int(data.hide_chance)}" '
            f'data-n="{data.n_chance}">{html.escape(_chance_text(data))}</p>'
            f'<p class="meta" id="flags-summary" data-n="{data.n_flagged}">'
            f"{data.n_flagged} trial(s) flagged (marked ✕ in the plots, shaded in the table):"
            f"</p><ul class=\"meta\">{flags}</ul>")


def render_html(data: ReportData) -> str:
    """The whole page as one string (about 5 MB: plotly.js is inlined)."""
    import plotly.io as pio

    figs = figures(data)
    n_plots = sum(1 for _, fig, _ in figs.values() if fig is not None)
    sections = []
    first = True
    for div_id, (title, fig, note) in figs.items():
        body = f'<p class="empty" id="{div_id}">{html.escape(note)}</p>' if fig is None else \
            pio.to_html(fig, full_html=False, include_plotlyjs=first, div_id=div_id,
                        config=PLOTLY_CONFIG, default_width="100%",
                        default_height=f"{fig.layout.height or 440}px",
                        post_script=f'__plotDone("{div_id}");' + (
                            f'__highlightOnHover("{div_id}");' if div_id in HIGHLIGHT else ""))
        if fig is not None:
            first = False
        extra = f'<p class="note">{html.escape(note)}</p>' if fig is not None and note else ""
        sections.append(f"<section><h2>{html.escape(title)}</h2>{extra}{body}</section>")
    t = html.escape(data.title)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head>
<body data-rendered="0">
<script>{ERRORS_JS}{HIGHLIGHT_JS}
window.__plotsTotal = {n_plots};
if (window.__plotsTotal === 0) document.body.dataset.rendered = "1";</script>
<h1>{t}</h1>
{_summary(data)}
{"".join(sections)}
<section><h2>Doomed trials ({data.doomed.get("total", 0)})</h2>{doomed_table(data)}</section>
<section><h2>Trials</h2>{trials_table(data)}</section>
<script>{TABLE_JS}</script>
</body></html>
"""
