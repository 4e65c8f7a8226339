"""The dashboard: one self-contained HTML page (no CDN, no font, no request to draw).

The data goes into the page as JSON inside ``<script type="application/json">`` with
``<``, ``>`` and ``&`` escaped, and the page's script builds every chart and table
with ``createElementNS``/``textContent`` — never ``innerHTML`` — so a model name such
as ``<script>alert(1)</script>`` is shown as text. A Content-Security-Policy with a
per-page nonce lets only the page's own script run and forbids every outside request
(served live, it may connect to its own server and nowhere else).

Charts are plain SVG: one ``<svg data-chart="calls">`` per chart and one
``<path data-series="gpt-4o">`` per series, which is also what the browser tests read.
Served live (``monitoring serve``), the page carries a time-range picker, links from
each model's and tool's series to its drill-down (top errors, slowest calls), and
follows ``/api/events`` (server-sent events) to redraw itself whenever the logs change.
Below 640 px the charts stack in one column and tables turn into cards, so a phone
never scrolls sideways.
"""

from __future__ import annotations

import secrets
from typing import Any, Final

import orjson

__all__ = ["render_dashboard", "render_sign_in"]

_STYLE: Final = """
:root { color-scheme: light; --fg: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --link: #1d5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); overflow-wrap: anywhere; }
a { color: var(--link); }
header { padding: 16px 24px; background: #102a43; color: #f0f4f8; display: flex; gap: 8px 24px; align-items: baseline;
         flex-wrap: wrap; }
header h1 { margin: 0; font-size: 18px; font-weight: 600; }
header .meta { color: #bcccdc; font-size: 13px; }
header a { color: #9fc5ff; }
#live { font-size: 12px; color: #bcccdc; }
#live[data-state="live"]::before { content: "\\25CF  "; color: #6fcf97; }
#live[data-state="offline"]::before { content: "\\25CF  "; color: #eb5757; }
nav.range:empty { display: none; }
nav.range { display: flex; flex-wrap: wrap; gap: 6px 8px; align-items: center; padding: 12px 24px 0; }
nav.range a { padding: 3px 10px; border: 1px solid var(--line); border-radius: 14px; background: #fff;
              text-decoration: none; font-size: 13px; }
nav.range a[aria-current] { background: #102a43; border-color: #102a43; color: #fff; }
nav.range form { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 13px; }
nav.range input { font: inherit; max-width: 100%; }
nav.range .problem { color: #b00020; }
#filter { padding: 12px 24px 0; font-size: 15px; }
#filter:empty { display: none; }
.totals { display: flex; gap: 12px; padding: 16px 24px 0; flex-wrap: wrap; }
.total { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 140px; }
.total b { display: block; font-size: 20px; }
.total span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(440px, 100%), 1fr)); gap: 16px;
       padding: 16px 24px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
section h2 { margin: 0 0 8px; font-size: 14px; font-weight: 600; }
section.wide { grid-column: 1 / -1; }
svg { width: 100%; height: auto; display: block; }
svg text { font-size: 10px; fill: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg path.line { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
svg path.drill { cursor: pointer; }
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
@media (max-width: 640px) {
  header, nav.range, #filter, .totals, main { padding-left: 10px; padding-right: 10px; }
  main { gap: 10px; }
  section { padding: 10px; }
  .total { min-width: 0; flex: 1 1 40%; padding: 8px 10px; }
  svg text { font-size: 17px; }
  table, thead, tbody, tr, td { display: block; }
  thead { display: none; }
  tr { border-bottom: 1px solid var(--line); padding: 6px 0; }
  td, td.num { border: 0; padding: 1px 0; text-align: left; }
  td::before { content: attr(data-label) ": "; color: var(--muted); }
  td:empty { display: none; }
}
"""

_SCRIPT: Final = r"""
(function () {
  "use strict";
  var COLORS = ["#2f80ed", "#eb5757", "#27ae60", "#f2994a", "#9b51e0", "#56ccf2", "#6fcf97", "#bb6bd9"];
  var SVG = "http://www.w3.org/2000/svg";
  var PERCENT = {"target": 1, "measured": 1, "budget_left": 1};
  var TIMES = {"since": 1, "last_seen": 1, "time": 1};
  var W = 600, H = 220, L = 52, R = 24, T = 10, B = 26;
  var PRESETS = [[1, "1 h"], [6, "6 h"], [24, "24 h"], [168, "7 d"]];
  var DRILL_KEY = {"llm": "model", "tool": "tool"};

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
    var iso = new Date(ms).toISOString();
    if (span > 2 * 86400000) return iso.slice(5, 10);
    return span <= 900000 ? iso.slice(11, 19) : iso.slice(11, 16);
  }
  function widthText(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return (seconds / 60) + " min";
    if (seconds < 86400) return (seconds / 3600) + " h";
    return (seconds / 86400) + " d";
  }
  function query(view, extra) {
    var parts = view.query ? [view.query] : [];
    Object.keys(extra || {}).forEach(function (k) {
      if (extra[k] === null || extra[k] === undefined) return;
      parts.push(k + "=" + encodeURIComponent(extra[k]).replace(/%3A/gi, ":"));  // as the server writes it
    });
    return "?" + parts.join("&");
  }
  function drillHref(data, key, name) {
    if (!data.view || !key || name === null || name === undefined) return null;
    var extra = {};
    extra[key] = name;
    return query(data.view, extra);
  }

  function chart(spec, data) {
    var win = data.window;
    var box = el("section", {"class": "chart", "data-chart-box": spec.id});
    box.appendChild(el("h2", {}, spec.title + (spec.unit ? " (" + spec.unit + ")" : "")));
    var svg = svgEl("svg", {"viewBox": "0 0 " + W + " " + H, "data-chart": spec.id, "role": "img"});
    svg.appendChild(svgEl("title", {})).textContent = spec.title;
    var series = spec.series || [];
    var x0 = (win.view_since || win.since) * 1000, x1 = (win.view_until || win.until) * 1000, ymax = 0;
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
      var tick = svgEl("text", {"x": px(t), "y": H - 8, "text-anchor": j === 0 ? "start" : j === 4 ? "end" : "middle"});
      tick.textContent = clock(t, x1 - x0);
      svg.appendChild(tick);
    }
    var legend = el("ul", {"class": "legend"});
    var filtered = data.filter && Object.keys(data.filter).length;
    series.forEach(function (s, k) {
      var color = COLORS[k % COLORS.length], d = "";
      var href = filtered ? null : drillHref(data, spec.drill, s.name);
      s.points.forEach(function (p, n) { d += (n ? "L" : "M") + px(p[0]).toFixed(1) + " " + py(p[1]).toFixed(1); });
      var path = svgEl("path", {"class": "line" + (href ? " drill" : ""), "d": d, "stroke": color,
                                "data-series": s.name, "data-points": s.points.length});
      if (href) path.addEventListener("click", function () { window.location.assign(href); });
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
      if (href) item.appendChild(el("a", {"href": href, "data-drill": spec.drill}, s.name));
      else item.appendChild(document.createTextNode(s.name));
      legend.appendChild(item);
    });
    box.appendChild(svg);
    if (!series.length) box.appendChild(el("div", {"class": "empty"}, "no data in this window"));
    box.appendChild(legend);
    return box;
  }

  function cell(c, r, data) {
    var v = r[c[0]], cls = typeof v === "number" ? "num" : "";
    if (c[0] === "severity") cls = "sev-" + v;
    var td = el("td", {"class": cls, "data-label": c[1]});
    if (TIMES[c[0]]) v = when(v);
    else if (PERCENT[c[0]] && typeof v === "number") v = (v * 100).toFixed(2) + " %";
    else if (c[0] === "duration" && typeof v === "number") v = v.toFixed(3) + " s";
    var text = typeof v === "number" ? fmt(v) : (v === null || v === undefined ? "" : v);
    var href = c[0] === "what" && !(data.filter && Object.keys(data.filter).length)
      ? drillHref(data, DRILL_KEY[r.module], r.what) : null;
    if (href) td.appendChild(el("a", {"href": href, "data-drill": DRILL_KEY[r.module]}, text));
    else td.textContent = String(text);
    return td;
  }

  function table(id, title, columns, rows, data) {
    var box = el("section", {"class": "wide", "data-table-box": id});
    box.appendChild(el("h2", {}, title));
    if (!rows || !rows.length) {
      box.appendChild(el("div", {"class": "empty"}, "none"));
      return box;
    }
    var t = el("table", {"data-table": id}), head = el("thead"), headRow = el("tr"), body = el("tbody");
    columns.forEach(function (c) { headRow.appendChild(el("th", {}, c[1])); });
    head.appendChild(headRow);
    t.appendChild(head);
    rows.forEach(function (r) {
      var tr = el("tr");
      columns.forEach(function (c) { tr.appendChild(cell(c, r, data)); });
      body.appendChild(tr);
    });
    t.appendChild(body);
    box.appendChild(t);
    return box;
  }

  function filterLine(data) {
    var box = document.getElementById("filter");
    box.replaceChildren();
    var f = data.filter || {}, key = Object.keys(f)[0];
    if (!key) return;
    box.appendChild(el("b", {}, key + " " + f[key]));
    box.appendChild(document.createTextNode(" · "));
    if (data.view) box.appendChild(el("a", {"href": query(data.view, {}), "id": "unfilter"},
                                       key === "model" ? "all models" : "all tools"));
  }

  function render(data) {
    var w = data.window;
    var text = when(w.since) + " to " + when(w.until) + " · " + widthText(w.bucket) + " buckets";
    if (w.view_since && (w.view_since > w.since || w.view_until < w.until))
      text += " · drawn over the data, " + when(w.data_since).slice(11) + " to " + when(w.data_until).slice(11);
    document.getElementById("window").textContent = text;
    filterLine(data);
    var totals = document.getElementById("totals");
    totals.replaceChildren();
    [["llm_calls", "LLM calls"], ["tokens", "tokens"], ["cost", "cost"], ["tool_calls", "tool calls"]]
      .forEach(function (t) {
        if (!(t[0] in data.totals)) return;
        var box = el("div", {"class": "total", "data-total": t[0]});
        box.appendChild(el("b", {}, fmt(data.totals[t[0]])));
        box.appendChild(el("span", {}, t[1]));
        totals.appendChild(box);
      });
    var main = document.getElementById("charts");
    main.replaceChildren();
    data.charts.forEach(function (c) { main.appendChild(chart(c, data)); });
    var tb = data.tables || {}, f = data.filter || {}, key = Object.keys(f)[0];
    if (tb.slowest) main.appendChild(table("slowest", "Slowest calls of " + f[key],
      [["time", "time"], ["duration", "duration"], ["what", key === "tool" ? "tool" : "model"],
       ["operation", "operation"], ["error", "error"], ["message", "message"]], tb.slowest, data));
    main.appendChild(table("errors", key ? "Top errors of " + f[key] : "Top errors",
      [["module", "module"], ["operation", "operation"], ["what", "model / tool"], ["error_type", "error"],
       ["count", "count"], ["last_message", "last message"], ["last_seen", "last seen"]], tb.errors, data));
    main.appendChild(table("alerts", "Firing and pending alerts",
      [["severity", "severity"], ["rule", "rule"], ["state", "state"], ["labels", "labels"],
       ["value", "value"], ["since", "since"]], tb.alerts, data));
    if (tb.slos) main.appendChild(table("slos", "Service level objectives",
      [["slo", "SLO"], ["objective", "objective"], ["target", "target"], ["events", "events"],
       ["measured", "measured"], ["budget_left", "budget left"], ["status", "status"]], tb.slos, data));
    if (tb.anomalies) main.appendChild(table("anomalies", "Anomalies",
      [["series", "series"], ["kind", "kind"], ["window", "window"], ["value", "value"],
       ["baseline", "baseline"], ["z", "z"]], tb.anomalies, data));
    document.body.setAttribute("data-rendered", String(data.generated_at));
  }

  function localInput(epochSeconds) {
    var d = new Date(epochSeconds * 1000);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  }

  function picker(data) {
    var view = data.view, nav = document.getElementById("range");
    if (!view) return;
    var filter = data.filter || {};
    PRESETS.forEach(function (p) {
      var extra = {"hours": p[0]};
      Object.keys(filter).forEach(function (k) { extra[k] = filter[k]; });
      var a = el("a", {"href": query({"query": ""}, extra), "data-hours": p[0]}, p[1]);
      if (view.rolling && view.hours === p[0]) a.setAttribute("aria-current", "page");
      nav.appendChild(a);
    });
    var form = el("form", {"id": "custom"});
    var since = el("input", {"type": "datetime-local", "name": "since", "aria-label": "from (your time)"});
    var until = el("input", {"type": "datetime-local", "name": "until", "aria-label": "to (your time)"});
    var w = data.window;
    since.value = localInput(w.since);
    until.value = localInput(w.until);
    var problem = el("span", {"class": "problem"});
    form.appendChild(el("span", {}, "from"));
    form.appendChild(since);
    form.appendChild(el("span", {}, "to"));
    form.appendChild(until);
    form.appendChild(el("button", {"type": "submit"}, "show"));
    form.appendChild(problem);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var a = new Date(since.value), b = until.value ? new Date(until.value) : null;
      if (isNaN(a.getTime()) || (b && isNaN(b.getTime())) || (b && b <= a)) {
        problem.textContent = "pick a start before the end";
        return;
      }
      var extra = {"since": a.toISOString().slice(0, 19) + "Z"};
      if (b) extra.until = b.toISOString().slice(0, 19) + "Z";
      Object.keys(filter).forEach(function (k) { extra[k] = filter[k]; });
      window.location.assign(query({"query": ""}, extra));
    });
    nav.appendChild(form);
  }

  function follow(url) {
    var status = document.getElementById("live");
    function state(s, text) { status.setAttribute("data-state", s); status.textContent = text; }
    function connect() {
      state("connecting", "connecting…");
      var source = new EventSource(url);
      source.addEventListener("open", function () { state("live", "live"); });
      source.addEventListener("metrics", function (event) {
        state("live", "live");
        render(JSON.parse(event.data));
      });
      source.addEventListener("error", function () {
        if (source.readyState === EventSource.CLOSED) {  // refused (server full, signed out): try later
          state("offline", "offline, retrying in 30 s");
          setTimeout(connect, 30000);
        } else {
          state("connecting", "reconnecting…");
        }
      });
    }
    connect();
  }

  var first = JSON.parse(document.getElementById("dashboard-data").textContent);
  render(first);
  picker(first);
  var events = document.body.getAttribute("data-events");
  if (events && window.EventSource) follow(events);
})();
"""


def _json_for_html(data: Any) -> str:
    """JSON that cannot close its ``<script>`` element, whatever the strings inside hold."""
    raw = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return raw.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_dashboard(data: dict[str, Any], *, live_url: str | None = None, events_url: str | None = None,
                     title: str = "LLM telemetry", nonce: str | None = None) -> str:
    """The whole page. ``events_url`` (``/api/events?hours=6``) makes it follow the server's
    updates; ``live_url`` names the JSON of the same view (``data-live``, for scripts and links)."""
    nonce = nonce or secrets.token_urlsafe(16)
    connect = "'self'" if live_url or events_url else "'none'"
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
           f"connect-src {connect}; img-src data:; base-uri 'none'; form-action 'none'")
    attrs = f' data-live="{_attr(live_url)}"' if live_url else ""
    attrs += f' data-events="{_attr(events_url)}"' if events_url else ""
    live = "<span id=\"live\" data-state=\"connecting\"></span>" if events_url else ""
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_text(title)}</title>\n<style nonce=\"{nonce}\">{_STYLE}</style>\n</head>\n"
        f"<body{attrs}>\n<header><h1>{_text(title)}</h1><span class=\"meta\" id=\"window\"></span>{live}</header>\n"
        "<nav class=\"range\" id=\"range\"></nav>\n<div id=\"filter\"></div>\n"
        "<div class=\"totals\" id=\"totals\"></div>\n<main id=\"charts\"></main>\n"
        f"<script type=\"application/json\" id=\"dashboard-data\">{_json_for_html(data)}</script>\n"
        f"<script nonce=\"{nonce}\">{_SCRIPT}</script>\n</body>\n</html>\n"
    )


_SIGN_IN_STYLE: Final = """
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2933;
       background: #f5f7fa; }
main { max-width: 420px; width: calc(100% - 24px); margin: 12vh auto 0; padding: 24px; background: #fff;
       border: 1px solid #e4e7eb; border-radius: 8px; }
h1 { margin: 0 0 12px; font-size: 18px; }
input { width: 100%; font: inherit; padding: 6px 8px; margin: 8px 0 12px; }
.problem { color: #b00020; }
"""


def render_sign_in(*, token: bool, wrong: bool = False, next_query: str = "", reload: bool = False,
                   title: str = "LLM telemetry") -> tuple[str, str]:
    """The 401 page a browser shows: a form that trades the team's token for the session
    cookie (or, with basic auth only, a note that the browser asks). Returns (html, CSP)."""
    nonce = secrets.token_urlsafe(16)
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; base-uri 'none'; "
           "frame-ancestors 'none'")
    back = "/" + (f"?{next_query}" if next_query else "")
    refresh = f'<meta http-equiv="refresh" content="0;url={_attr(back)}">\n' if reload else ""
    if token:
        problem = '<p class="problem">That token is not valid.</p>\n' if wrong else ""
        body = (f"{problem}<form method=\"post\" action=\"/login\">\n"
                "<label for=\"token\">Access token</label>\n"
                "<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required "
                "autofocus>\n"
                f"<input type=\"hidden\" name=\"next\" value=\"{_attr(next_query)}\">\n"
                "<button type=\"submit\">Open the dashboard</button>\n</form>\n"
                "<p>Ask whoever runs <code>monitoring serve</code> for the token.</p>\n")
    else:
        body = ("<p>This dashboard asks for a user name and a password; your browser prompts for them. "
                f"<a href=\"{_attr(back)}\">Try again</a>.</p>\n")
    html = (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"{refresh}<title>Sign in · {_text(title)}</title>\n<style nonce=\"{nonce}\">{_SIGN_IN_STYLE}</style>\n"
        f"</head>\n<body>\n<main>\n<h1>{_text(title)}</h1>\n{body}</main>\n</body>\n</html>\n"
    )
    return html, csp


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    return _text(value).replace('"', "&quot;")
