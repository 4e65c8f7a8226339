"""The dashboard: one self-contained HTML page (no CDN, no font, no request to draw).

The data goes into the page as JSON inside ``<script type="application/json">`` with
``<``, ``>`` and ``&`` escaped, and the page's script builds every chart and table
with ``createElementNS``/``textContent`` — never ``innerHTML`` — so a model name such
as ``<script>alert(1)</script>`` is shown as text. A Content-Security-Policy with a
per-page nonce lets only the page's own script run and forbids every outside request.

Charts are plain SVG: one ``<svg data-chart="calls">`` per chart and one
``<path data-series="gpt-4o">`` per series, which is also what the browser test reads.
Served live (``monitoring serve``), the page refreshes its data from
``/api/metrics`` every 30 seconds.
"""

from __future__ import annotations

import secrets
from typing import Any, Final

import orjson

__all__ = ["render_dashboard"]

_STYLE: Final = """
:root { color-scheme: light; --fg: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header { padding: 16px 24px; background: #102a43; color: #f0f4f8; display: flex; gap: 24px; align-items: baseline;
         flex-wrap: wrap; }
header h1 { margin: 0; font-size: 18px; font-weight: 600; }
header .meta { color: #bcccdc; font-size: 13px; }
.totals { display: flex; gap: 12px; padding: 16px 24px 0; flex-wrap: wrap; }
.total { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 140px; }
.total b { display: block; font-size: 20px; }
.total span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 16px; padding: 16px 24px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
section h2 { margin: 0 0 8px; font-size: 14px; font-weight: 600; }
section.wide { grid-column: 1 / -1; }
svg { width: 100%; height: auto; display: block; }
svg text { font-size: 10px; fill: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg path.line { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
ul.legend { list-style: none; margin: 6px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 14px;
            font-size: 12px; }
ul.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; }
.empty { color: var(--muted); font-style: italic; padding: 24px 0; text-align: center; }
table { width: 100%; border-collapse: collapse; font-size: 12px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sev-critical, .sev-error { color: #b00020; font-weight: 600; }
.sev-warning { color: #b7791f; font-weight: 600; }
"""

_SCRIPT: Final = r"""
(function () {
  "use strict";
  var COLORS = ["#2f80ed", "#eb5757", "#27ae60", "#f2994a", "#9b51e0", "#56ccf2", "#6fcf97", "#bb6bd9"];
  var SVG = "http://www.w3.org/2000/svg";
  var PERCENT = {"target": 1, "measured": 1, "budget_left": 1};
  var W = 600, H = 220, L = 52, R = 24, T = 10, B = 26;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "number") return String(v);
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (Number.isInteger(v)) return String(v);
    return v.toPrecision(3);
  }
  function when(epochSeconds) {
    if (typeof epochSeconds !== "number") return "-";
    return new Date(epochSeconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function clock(ms, span) {
    var d = new Date(ms), iso = d.toISOString();
    return span > 2 * 86400000 ? iso.slice(5, 10) : iso.slice(11, 16);
  }

  function chart(spec, win) {
    var box = el("section", {"class": "chart", "data-chart-box": spec.id});
    box.appendChild(el("h2", {}, spec.title + (spec.unit ? " (" + spec.unit + ")" : "")));
    var svg = svgEl("svg", {"viewBox": "0 0 " + W + " " + H, "data-chart": spec.id, "role": "img"});
    svg.appendChild(svgEl("title", {})).textContent = spec.title;
    var series = spec.series || [];
    var x0 = win.since * 1000, x1 = win.until * 1000, ymax = 0;
    series.forEach(function (s) { s.points.forEach(function (p) { if (p[1] > ymax) ymax = p[1]; }); });
    if (ymax <= 0) ymax = 1;
    var px = function (t) { return L + (W - L - R) * (t - x0) / Math.max(1, x1 - x0); };
    var py = function (v) { return T + (H - T - B) * (1 - v / ymax); };
    for (var i = 0; i <= 4; i++) {
      var v = ymax * i / 4, y = py(v);
      svg.appendChild(svgEl("line", {"class": "grid", "x1": L, "x2": W - R, "y1": y, "y2": y}));
      var label = svgEl("text", {"x": L - 6, "y": y + 3, "text-anchor": "end"});
      label.textContent = fmt(v);
      svg.appendChild(label);
    }
    for (var j = 0; j <= 4; j++) {
      var t = x0 + (x1 - x0) * j / 4;
      var tick = svgEl("text", {"x": px(t), "y": H - 8, "text-anchor": "middle"});
      tick.textContent = clock(t, x1 - x0);
      svg.appendChild(tick);
    }
    var legend = el("ul", {"class": "legend"});
    series.forEach(function (s, k) {
      var color = COLORS[k % COLORS.length], d = "";
      s.points.forEach(function (p, n) { d += (n ? "L" : "M") + px(p[0]).toFixed(1) + " " + py(p[1]).toFixed(1); });
      var path = svgEl("path", {"class": "line", "d": d, "stroke": color, "data-series": s.name,
                                "data-points": s.points.length});
      svg.appendChild(path);
      if (s.points.length < 40) {  // few points: mark each, a lone one would be invisible
        s.points.forEach(function (p) {
          svg.appendChild(svgEl("circle", {"cx": px(p[0]).toFixed(1), "cy": py(p[1]).toFixed(1), "r": 2.5,
                                           "fill": color}));
        });
      }
      var item = el("li", {"data-series": s.name});
      var swatch = el("i");
      swatch.style.background = color;  // CSSOM, allowed by the CSP (a style attribute is not)
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name));
      legend.appendChild(item);
    });
    box.appendChild(svg);
    if (!series.length) box.appendChild(el("div", {"class": "empty"}, "no data in this window"));
    box.appendChild(legend);
    return box;
  }

  function table(id, title, columns, rows) {
    var box = el("section", {"class": "wide", "data-table-box": id});
    box.appendChild(el("h2", {}, title));
    if (!rows || !rows.length) {
      box.appendChild(el("div", {"class": "empty"}, "none"));
      return box;
    }
    var t = el("table", {"data-table": id}), head = el("tr");
    columns.forEach(function (c) { head.appendChild(el("th", {}, c[1])); });
    t.appendChild(head);
    rows.forEach(function (r) {
      var tr = el("tr");
      columns.forEach(function (c) {
        var v = r[c[0]], cls = typeof v === "number" ? "num" : "";
        if (c[0] === "severity") cls = "sev-" + v;
        if (c[0] === "since" || c[0] === "last_seen") v = when(v);
        else if (PERCENT[c[0]] && typeof v === "number") v = (v * 100).toFixed(2) + " %";
        tr.appendChild(el("td", {"class": cls}, typeof v === "number" ? fmt(v) : v));
      });
      t.appendChild(tr);
    });
    box.appendChild(t);
    return box;
  }

  function render(data) {
    var w = data.window;
    document.getElementById("window").textContent =
      when(w.since) + " to " + when(w.until) + " · " + (w.bucket / 60) + " min buckets";
    var totals = document.getElementById("totals");
    totals.replaceChildren();
    [["llm_calls", "LLM calls"], ["tokens", "tokens"], ["cost", "cost"], ["tool_calls", "tool calls"]]
      .forEach(function (t) {
        var box = el("div", {"class": "total", "data-total": t[0]});
        box.appendChild(el("b", {}, fmt(data.totals[t[0]])));
        box.appendChild(el("span", {}, t[1]));
        totals.appendChild(box);
      });
    var main = document.getElementById("charts");
    main.replaceChildren();
    data.charts.forEach(function (c) { main.appendChild(chart(c, w)); });
    var tb = data.tables || {};
    main.appendChild(table("alerts", "Firing and pending alerts",
      [["severity", "severity"], ["rule", "rule"], ["state", "state"], ["labels", "labels"],
       ["value", "value"], ["since", "since"]], tb.alerts));
    main.appendChild(table("errors", "Top errors",
      [["module", "module"], ["operation", "operation"], ["what", "model / tool"], ["error_type", "error"],
       ["count", "count"], ["last_message", "last message"], ["last_seen", "last seen"]], tb.errors));
    if (tb.slos) main.appendChild(table("slos", "Service level objectives",
      [["slo", "SLO"], ["objective", "objective"], ["target", "target"], ["events", "events"],
       ["measured", "measured"], ["budget_left", "budget left"], ["status", "status"]], tb.slos));
    if (tb.anomalies) main.appendChild(table("anomalies", "Anomalies",
      [["series", "series"], ["kind", "kind"], ["window", "window"], ["value", "value"],
       ["baseline", "baseline"], ["z", "z"]], tb.anomalies));
    document.body.setAttribute("data-rendered", String(data.generated_at));
  }

  var source = document.getElementById("dashboard-data");
  render(JSON.parse(source.textContent));
  var live = document.body.getAttribute("data-live");
  if (live) {
    setInterval(function () {
      fetch(live, {cache: "no-store"}).then(function (r) { return r.json(); }).then(render)
        .catch(function () { /* keep the last picture */ });
    }, 30000);
  }
})();
"""


def _json_for_html(data: Any) -> str:
    """JSON that cannot close its ``<script>`` element, whatever the strings inside hold."""
    raw = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return raw.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_dashboard(data: dict[str, Any], *, live_url: str | None = None, title: str = "LLM telemetry",
                     nonce: str | None = None) -> str:
    """The whole page. ``live_url`` (``/api/metrics?hours=6``) makes it refresh itself."""
    nonce = nonce or secrets.token_urlsafe(16)
    connect = "'self'" if live_url else "'none'"
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
           f"connect-src {connect}; img-src data:; base-uri 'none'; form-action 'none'")
    live_attr = f' data-live="{_attr(live_url)}"' if live_url else ""
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_text(title)}</title>\n<style nonce=\"{nonce}\">{_STYLE}</style>\n</head>\n"
        f"<body{live_attr}>\n<header><h1>{_text(title)}</h1><span class=\"meta\" id=\"window\"></span></header>\n"
        "<div class=\"totals\" id=\"totals\"></div>\n<main id=\"charts\"></main>\n"
        f"<script type=\"application/json\" id=\"dashboard-data\">{_json_for_html(data)}</script>\n"
        f"<script nonce=\"{nonce}\">{_SCRIPT}</script>\n</body>\n</html>\n"
    )


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    return _text(value).replace('"', "&quot;")
