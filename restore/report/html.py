"""The web pages of a test run: ``<run>/<set>/index.html`` and ``<run>/index.html``.

Each page is one self-contained file that opens from disk: the CSS and the script are inline,
images are referenced by relative paths inside the report folder, and nothing is fetched from a
server. A set's page has the sortable metrics table (units in the headers, the mean row kept
last), the charts, and per image (worst first) every panel side by side at full resolution on
canvases that share one zoom and crop: wheel to zoom at the pointer, drag to pan, buttons for
fit and 1:1. Each canvas records the region it shows (``data-region``, in GT pixels).
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from urllib.parse import quote

from restore.data.io import atomic_write_bytes
from restore.evaluation import EvalResults
from restore.metrics import MetricSet
from restore.report.figures import ImageFigure
from restore.report.tables import fmt, header

BOX = 512  # largest canvas side, CSS pixels

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.35em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.6em 0 .5em}h3{font-size:1em;margin:0 0 .3em}
.meta{color:#555;margin:.2em 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3;cursor:pointer;user-select:none;vertical-align:bottom}
thead th[aria-sort=ascending]::after{content:" \\25B2"}thead th[aria-sort=descending]::after{content:" \\25BC"}
tfoot th,tfoot td{background:#fafafa;font-weight:600}
.charts img{max-width:100%;margin:0 1em 1em 0;vertical-align:top}
.figure{border-top:1px solid #ddd;padding:1em 0}
.views{display:flex;flex-wrap:wrap;gap:10px}
.view{margin:0}.view canvas{display:block;border:1px solid #ccc;cursor:grab;image-rendering:pixelated}
.view figcaption{font-size:12px;color:#333;max-width:512px}
.controls button{margin-right:4px}.notes{color:#8a5300;font-size:13px}
"""

SCRIPT = r"""
(function () {
  "use strict";
  function sortTable(table, column, th) {
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var numeric = th.dataset.type === "num";
    rows.sort(function (a, b) {
      var x = a.cells[column], y = b.cells[column];
      if (numeric) {
        var u = parseFloat(x.dataset.value), v = parseFloat(y.dataset.value);
        if (isNaN(u) || isNaN(v)) { return isNaN(u) - isNaN(v); }
        return ascending ? u - v : v - u;
      }
      var s = x.textContent.localeCompare(y.textContent);
      return ascending ? s : -s;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(th.parentNode.cells, function (cell) { cell.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.addEventListener("click", function () { sortTable(table, column, th); });
    });
  });

  function Figure(element) {
    this.element = element;
    this.width = +element.dataset.width;
    this.height = +element.dataset.height;
    this.canvases = Array.prototype.slice.call(element.querySelectorAll("canvas"));
    this.boxW = this.canvases.length ? this.canvases[0].width : 1;
    this.boxH = this.canvases.length ? this.canvases[0].height : 1;
    this.zoom = 1;
    this.cx = this.width / 2;
    this.cy = this.height / 2;
    this.images = null;
  }
  Figure.prototype.load = function () {
    if (this.images) { return; }
    var self = this, cache = {};
    this.images = this.canvases.map(function (canvas) {
      var src = canvas.dataset.src;
      if (!cache[src]) {
        cache[src] = new Image();
        cache[src].addEventListener("load", function () { self.draw(); });
        cache[src].src = src;
      }
      return cache[src];
    });
  };
  Figure.prototype.fitZoom = function () {
    return Math.min(this.boxW / this.width, this.boxH / this.height, 1);
  };
  Figure.prototype.region = function () {
    var w = this.boxW / this.zoom, h = this.boxH / this.zoom;
    var x = w >= this.width ? (this.width - w) / 2 : Math.min(Math.max(this.cx - w / 2, 0), this.width - w);
    var y = h >= this.height ? (this.height - h) / 2 : Math.min(Math.max(this.cy - h / 2, 0), this.height - h);
    return {x: x, y: y, w: w, h: h};
  };
  Figure.prototype.set = function (zoom, cx, cy) {
    this.zoom = Math.min(Math.max(zoom, this.fitZoom()), 32);
    if (cx !== undefined) { this.cx = cx; this.cy = cy; }
    var r = this.region();
    this.cx = r.x + r.w / 2;
    this.cy = r.y + r.h / 2;
    this.draw();
  };
  Figure.prototype.draw = function () {
    if (!this.images) { return; }
    var r = this.region(), self = this;
    // The part of the region that lies on the image, and where it goes on the canvas.
    var x0 = Math.max(r.x, 0), y0 = Math.max(r.y, 0);
    var x1 = Math.min(r.x + r.w, this.width), y1 = Math.min(r.y + r.h, this.height);
    this.canvases.forEach(function (canvas, i) {
      var image = self.images[i], ctx = canvas.getContext("2d"), d = canvas.dataset, f = +d.factor;
      ctx.imageSmoothingEnabled = false;
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      if (image.complete && image.naturalWidth) {
        ctx.drawImage(image, +d.x + x0 * f, +d.y + y0 * f, (x1 - x0) * f, (y1 - y0) * f,
                      (x0 - r.x) * self.zoom, (y0 - r.y) * self.zoom, (x1 - x0) * self.zoom, (y1 - y0) * self.zoom);
      }
      canvas.dataset.region = [r.x, r.y, r.w, r.h].map(function (v) { return v.toFixed(3); }).join(",");
    });
  };
  Figure.prototype.bind = function () {
    var self = this, drag = null;
    this.canvases.forEach(function (canvas) {
      canvas.addEventListener("wheel", function (event) {
        event.preventDefault();
        var box = canvas.getBoundingClientRect(), r = self.region();
        var px = r.x + (event.clientX - box.left) / self.zoom, py = r.y + (event.clientY - box.top) / self.zoom;
        var zoom = Math.min(Math.max(self.zoom * (event.deltaY < 0 ? 1.25 : 0.8), self.fitZoom()), 32);
        var w = self.boxW / zoom, h = self.boxH / zoom;
        // Keep the pixel under the pointer where it is.
        self.set(zoom, px - (event.clientX - box.left) / zoom + w / 2, py - (event.clientY - box.top) / zoom + h / 2);
      }, {passive: false});
      canvas.addEventListener("mousedown", function (event) {
        drag = {x: event.clientX, y: event.clientY, cx: self.cx, cy: self.cy};
      });
    });
    window.addEventListener("mousemove", function (event) {
      if (drag) {
        self.set(self.zoom, drag.cx - (event.clientX - drag.x) / self.zoom,
                 drag.cy - (event.clientY - drag.y) / self.zoom);
      }
    });
    window.addEventListener("mouseup", function () { drag = null; });
    this.element.querySelectorAll("button[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var how = button.dataset.zoom;
        self.set(how === "in" ? self.zoom * 2 : how === "out" ? self.zoom / 2 : how === "fit" ? self.fitZoom() : 1);
      });
    });
  };
  var figures = {};
  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) { if (entry.isIntersecting) { figures[entry.target.id].load(); } });
  }, {rootMargin: "400px"}) : null;
  document.querySelectorAll(".figure").forEach(function (element) {
    var figure = new Figure(element);
    figures[element.id] = figure;
    figure.bind();
    figure.set(1);
    if (observer) { observer.observe(element); } else { figure.load(); }
  });
  window.restoreReport = {
    figures: figures,
    show: function (id, zoom, cx, cy) { var f = figures[id]; f.load(); f.set(zoom, cx, cy); return f.region(); }
  };
})();
"""


def _page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{escape(title)}</title><style>{STYLE}</style></head>\n'
            f"<body>\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n")


def _value_cell(value: float, metric: str) -> str:
    shown = fmt(value, metric) if math.isfinite(value) else "–"
    return f'<td data-value="{value if math.isfinite(value) else "NaN"}">{shown}</td>'


def metrics_table(results: EvalResults, metrics: MetricSet, anchors: dict[str, str]) -> str:
    """The sortable table: a row per image (linking to its figure), the mean row in the footer."""
    columns = [(m, model) for m in results.metric_names for model in results.models]
    head = '<th data-type="text">image</th>' + "".join(
        f'<th data-type="num" title="{"higher" if metrics.higher_is_better(m) else "lower"} is better">'
        f"{escape(header(m, metrics))}<br>{escape(results.label(model))}</th>" for m, model in columns)
    rows = []
    for i, image in enumerate(results.images):
        name = escape(image)
        link = f'<a href="#{anchors[image]}">{name}</a>' if image in anchors else name
        rows.append(f"<tr><td>{link}</td>" + "".join(_value_cell(results.values[model][m][i], m)
                                                       for m, model in columns) + "</tr>")
    foot = "<tr><th>mean</th>" + "".join(_value_cell(results.mean(model, m), m) for m, model in columns) + "</tr>"
    return (f'<table class="sortable" id="metrics"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody><tfoot>{foot}</tfoot></table>')


def _figure_html(figure: ImageFigure, anchor: str, rank: int) -> str:
    box_w, box_h = min(figure.width, BOX), min(figure.height, BOX)
    views = []
    for view in figure.views:
        data = {"src": quote(view.src), "x": view.x, "y": view.y, "factor": view.width / figure.width}
        attributes = " ".join(f'data-{k}="{escape(str(v))}"' for k, v in data.items())
        views.append(f'<figure class="view"><canvas width="{box_w}" height="{box_h}" {attributes}></canvas>'
                     f"<figcaption>{escape(view.label)}</figcaption></figure>")
    notes = "".join(f'<p class="notes">{escape(note)}</p>' for note in figure.notes)
    link = f' · <a href="{escape(quote(figure.figure))}">figure</a>' if figure.figure else ""
    return (f'<div class="figure" id="{anchor}" data-width="{figure.width}" data-height="{figure.height}">'
            f"<h3>{rank}. {escape(figure.name)}</h3>{notes}"
            f'<div class="controls"><button data-zoom="in">zoom in</button><button data-zoom="out">zoom out</button>'
            f'<button data-zoom="fit">fit</button><button data-zoom="1">1:1</button>{link}</div>'
            f'<div class="views">{"".join(views)}</div></div>')


def write_set_page(out_dir: Path, *, title: str, description: str, results: EvalResults, metrics: MetricSet,
                   figures: list[ImageFigure], ranked_by: str, files: list[str], charts: list[str]) -> Path:
    """``<set>/index.html``: table, charts and the figures in the order given (worst first)."""
    anchors = {figure.name: f"img-{figure.index}" for figure in figures}
    links = " · ".join(f'<a href="{escape(f)}">{escape(f)}</a>' for f in files)
    parts = [f"<h1>{escape(title)}</h1>", f'<p class="meta">{escape(description)}</p>',
             f'<p class="meta">files: {links}</p>', "<h2>Metrics</h2>",
             '<p class="meta">Click a header to sort; the mean row stays last.</p>',
             metrics_table(results, metrics, anchors)]
    if charts:
        parts.append('<h2>Charts</h2><div class="charts">'
                     + "".join(f'<img src="{escape(c)}" alt="{escape(c)}">' for c in charts) + "</div>")
    if figures:
        parts.append(f"<h2>Images, worst first (by {escape(ranked_by)})</h2>"
                     '<p class="meta">Every panel of an image shows the same region: scroll to zoom at the '
                     "pointer, drag to pan. Panels are at full resolution at 1:1.</p>")
        parts += [_figure_html(f, anchors[f.name], rank) for rank, f in enumerate(figures, 1)]
    path = out_dir / "index.html"
    atomic_write_bytes(path, _page(title, "\n".join(parts)).encode("utf-8"))
    return path


def write_run_page(out_root: Path, title: str, sets: list[tuple[str, str, EvalResults, MetricSet]]) -> Path:
    """``<run>/index.html``: one row per test set (its folder, images, mean of every metric)."""
    parts = [f"<h1>{escape(title)}</h1>"]
    for folder, description, results, metrics in sets:
        columns = [(m, model) for m in results.metric_names for model in results.models]
        head = "".join(f"<th>{escape(header(m, metrics))}<br>{escape(results.label(model))}</th>"
                       for m, model in columns)
        means = "".join(_value_cell(results.mean(model, m), m) for m, model in columns)
        parts.append(f'<h2><a href="{escape(quote(folder))}/index.html">{escape(results.dataset)}</a></h2>'
                     f'<p class="meta">{escape(description)}; {len(results.images)} images</p>'
                     f"<table><thead><tr><th>mean of</th>{head}</tr></thead>"
                     f"<tbody><tr><td>{len(results.images)} images</td>{means}</tr></tbody></table>")
    path = out_root / "index.html"
    atomic_write_bytes(path, _page(title, "\n".join(parts)).encode("utf-8"))
    return path
