"""The postmortem page's inline style sheet and script (no file of the page comes from elsewhere).

`CSS`: laptop-screen layout (a 1240 px column, sticky section bar, severity colours: critical
red, warning amber, info blue, notes yellow) and print rules (no controls, each ladder on a new
page, only the connections with a finding in the table). `SCRIPT`: sorting and filtering of the
connection table, opening folded findings a link points into, and opening every <details>
before printing. When it has run, it sets ``data-js="ready"`` on <html> and
``data-sorted-by`` / ``data-shown`` on the table (the browser test reads them).
"""

__all__ = ["CSS", "SCRIPT"]

CSS = """
:root{--fg:#1d232b;--muted:#5b6672;--line:#dde2e8;--bg:#ffffff;--soft:#f5f7fa;
--crit:#b3261e;--crit-bg:#fdecea;--crit-bd:#d93025;--warn:#8a4b00;--warn-bg:#fff4e0;--warn-bd:#f29900;
--info:#1a4f91;--info-bg:#eaf2fc;--info-bd:#5b8def;--ok:#1e6b35;--ok-bg:#e8f5ec;
--mono:ui-monospace,"SFMono-Regular","DejaVu Sans Mono",Menlo,Consolas,"Liberation Mono",monospace}
*{box-sizing:border-box}
html{background:var(--soft)}
body{margin:0;color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.page{max-width:1240px;margin:0 auto;padding:0 24px 48px;background:var(--bg);min-height:100vh}
header.top{padding:22px 0 14px;border-bottom:1px solid var(--line)}
.brand{font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:var(--muted)}
h1{font-size:24px;margin:2px 0 4px;word-break:break-all}
h2{font-size:19px;margin:0 0 12px;padding-top:6px}
h3{font-size:16px;margin:0 0 6px}
.sub{color:var(--muted);margin:0 0 10px}
code,.mono{font-family:var(--mono);font-size:12.5px}
a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
nav.toc{position:sticky;top:0;z-index:5;background:rgba(255,255,255,.96);border-bottom:1px solid var(--line);
padding:8px 0;margin-bottom:18px;font-size:13px;display:flex;flex-wrap:wrap;gap:4px 16px}
nav.toc a{color:var(--fg)}nav.toc .n{color:var(--muted)}
section{margin:0 0 34px;scroll-margin-top:44px}
.pills{display:flex;gap:8px;flex-wrap:wrap}
.pill{display:inline-block;border-radius:999px;padding:3px 12px;font-weight:600;font-size:13px;border:1px solid transparent}
.pill.critical{color:var(--crit);background:var(--crit-bg);border-color:var(--crit-bd)}
.pill.warning{color:var(--warn);background:var(--warn-bg);border-color:var(--warn-bd)}
.pill.info{color:var(--info);background:var(--info-bg);border-color:var(--info-bd)}
.pill.zero{color:var(--muted);background:var(--soft);border-color:var(--line);font-weight:400}
.badge{display:inline-block;min-width:64px;text-align:center;border-radius:4px;padding:1px 6px;font-size:11px;
font-weight:700;letter-spacing:.04em;text-transform:uppercase;color:#fff}
.badge.critical{background:var(--crit-bd)}.badge.warning{background:#c77700}.badge.info{background:var(--info-bd)}
.badge.note{background:#8d6e00}.badge.capture{background:#7a8591}
.headline{border:1px solid var(--line);border-left:6px solid var(--crit-bd);background:var(--crit-bg);border-radius:6px;
padding:10px 14px;margin:12px 0 0}
.headline.warning{border-left-color:var(--warn-bd);background:var(--warn-bg)}
.headline.info{border-left-color:var(--info-bd);background:var(--info-bg)}
.headline.ok{border-left-color:#2e7d32;background:var(--ok-bg)}
.headline p{margin:2px 0}
.headline h2{font-size:15px;margin:0 0 6px;padding:0}
.headline ul{list-style:none;margin:0;padding:0}
.headline li{margin:3px 0;padding-left:76px;text-indent:-76px}
.headline li a{color:var(--fg)}
.headline .badge{text-indent:0}
ol.findings{list-style:none;margin:0;padding:0}
.finding{border:1px solid var(--line);border-left:6px solid var(--info-bd);border-radius:6px;padding:10px 14px;margin:0 0 10px;
break-inside:avoid;scroll-margin-top:44px}
.finding.critical{border-left-color:var(--crit-bd);background:linear-gradient(90deg,var(--crit-bg),#fff 40%)}
.finding.warning{border-left-color:var(--warn-bd);background:linear-gradient(90deg,var(--warn-bg),#fff 40%)}
.finding.info{border-left-color:var(--info-bd)}
.fhead{display:flex;flex-wrap:wrap;align-items:center;gap:4px 12px;font-size:13px}
.fhead .num{color:var(--muted);font-variant-numeric:tabular-nums}
.fhead .kind{font-family:var(--mono);font-weight:600}
.fhead .when{color:var(--muted)}
.fhead .goto{margin-left:auto;font-weight:600}
.finding p.summary{margin:6px 0 4px;font-size:14.5px}
.meta{color:var(--muted);font-size:12.5px}
.meta code{color:var(--fg)}.meta a code{color:inherit}
details.more{margin-top:4px;font-size:12.5px}
li.fold{margin:0 0 10px}
details.fold>summary{cursor:pointer;color:var(--muted);padding:6px 14px;border:1px dashed var(--line);border-radius:6px}
details.fold[open]>summary{margin-bottom:10px}
details.more summary{cursor:pointer;color:var(--muted)}
table{border-collapse:collapse}
table.kv td{padding:1px 14px 1px 0;vertical-align:top}
table.kv td:first-child{color:var(--muted);white-space:nowrap}
table.grid{width:100%;font-size:12.5px}
table.grid th,table.grid td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
table.grid th{background:var(--soft);font-weight:600;white-space:nowrap}
table.grid td.num,table.grid th.num{text-align:right;font-variant-numeric:tabular-nums}
table.grid tr.critical td:first-child{box-shadow:inset 4px 0 var(--crit-bd)}
table.grid tr.warning td:first-child{box-shadow:inset 4px 0 var(--warn-bd)}
table.grid tr.info td:first-child{box-shadow:inset 4px 0 var(--info-bd)}
table.grid tr.note td{background:#fffbe6}table.grid tr.note td:first-child{box-shadow:inset 4px 0 #c9a400}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:0}
.facts dt{color:var(--muted)}.facts dd{margin:0}
.callout{border:1px solid var(--warn-bd);background:var(--warn-bg);border-radius:6px;padding:8px 12px;margin:10px 0}
.callout ul{margin:4px 0 0 18px;padding:0}
.quiet{color:var(--muted)}
.printonly{display:none}
figure{margin:8px 0 0}
figure img,figure svg{display:block;max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px;background:#fff}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px}
.controls{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;margin:0 0 8px;font-size:13px}
.controls input[type=search]{width:320px;max-width:100%;padding:5px 8px;border:1px solid #b8c0c9;border-radius:4px;font:inherit}
.controls select{padding:4px;border:1px solid #b8c0c9;border-radius:4px;font:inherit}
.tablewrap{overflow-x:auto;max-height:640px;overflow-y:auto;border:1px solid var(--line);border-radius:4px}
#conn-table thead th{position:sticky;top:0;z-index:1}
#conn-table th[data-col]{cursor:pointer;user-select:none}
#conn-table th[aria-sort=ascending]::after{content:" \\25B2";font-size:9px}
#conn-table th[aria-sort=descending]::after{content:" \\25BC";font-size:9px}
#conn-table td{white-space:nowrap}
#conn-table th,#conn-table td{padding:3px 5px;font-size:12px}
#conn-table .badge{min-width:0;font-size:10px}
#conn-table .mono{font-size:11.5px}
#conn-table .svc{color:var(--muted);font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:11.5px}
article.ladder{border-top:2px solid var(--line);padding-top:14px;margin-top:22px;scroll-margin-top:44px}
article.ladder h3{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 8px}
article.ladder .why{font-size:12px;color:var(--muted);font-weight:400}
article.ladder .up{margin-left:auto;font-size:12px;font-weight:400}
article.ladder ul.links{margin:6px 0;padding-left:0;list-style:none;font-size:13px}
article.ladder ul.links li{margin:2px 0}
pre.ladder{font-family:var(--mono);font-size:12px;line-height:1.35;white-space:pre;overflow-x:auto;background:#fbfcfd;
border:1px solid var(--line);border-radius:4px;padding:10px 12px;margin:10px 0 0;tab-size:8}
pre.ladder .ev{background:#ffe9a8;display:inline-block;min-width:100%}
pre.ladder .nt{color:#7a5b00;font-weight:600}
pre.ladder .bad{color:#b3261e}
.timeline td a{color:inherit}.timeline td a:hover{color:#0b57d0}
.timeline td.when{white-space:nowrap;font-family:var(--mono);font-size:12px}
footer{border-top:1px solid var(--line);padding-top:10px;color:var(--muted);font-size:12px}
@media print{
 html,body{background:#fff}
 body{font-size:10pt}
 .page{max-width:none;padding:0}
 nav.toc,.controls,.noprint{display:none!important}
 a{color:inherit}
 section{break-before:auto}
 #ladders article.ladder{break-before:page}
 .finding,figure,tr{break-inside:avoid}
 .tablewrap{max-height:none;overflow:visible;border:0}
 #conn-table thead th{position:static}
 pre.ladder{font-size:7.4pt;overflow:visible;border:0;padding:0}
 .printonly{display:block!important}
 #conn-table tbody tr:not([data-finding]){display:none}
 #conn-table th,#conn-table td{font-size:7pt;padding:1px 3px}
 #conn-table .mono{font-size:6.8pt}
 #conn-table .svc{font-size:6.5pt}
 #conn-table th:nth-child(n+10),#conn-table td:nth-child(n+10){display:none}
 table.grid{font-size:8pt}
 details.more>summary{display:none}
}
@page{margin:12mm}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var table = document.getElementById("conn-table");
  if (table) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r) { r.dataset.text = r.textContent.toLowerCase(); });
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var value = function (row, i, numeric) {
      var cell = row.cells[i];
      var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
      if (!numeric) { return v.toLowerCase(); }
      var f = parseFloat(v);
      return isNaN(f) ? -Infinity : f;
    };
    var sortBy = function (th, dir) {
      var i = heads.indexOf(th), numeric = th.dataset.type === "num";
      var sorted = rows.slice().sort(function (a, b) {
        var x = value(a, i, numeric), y = value(b, i, numeric);
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      sorted.forEach(function (r) { body.appendChild(r); });
      table.dataset.sortedBy = th.dataset.col + (dir > 0 ? ":asc" : ":desc");
    };
    heads.forEach(function (th) {
      if (!th.dataset.col) { return; }
      th.tabIndex = 0;
      var toggle = function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        if (!th.hasAttribute("aria-sort") && th.dataset.type === "num") { dir = -1; }
        sortBy(th, dir);
      };
      th.addEventListener("click", toggle);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { toggle(); } });
    });
    var search = document.getElementById("conn-filter");
    var proto = document.getElementById("conn-proto");
    var flagged = document.getElementById("conn-flagged");
    var count = document.getElementById("conn-count");
    var apply = function () {
      var terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      var p = proto.value, only = flagged.checked, shown = 0;
      rows.forEach(function (r) {
        var ok = (!p || r.dataset.proto === p) && (!only || r.dataset.finding) &&
          terms.every(function (t) { return r.dataset.text.indexOf(t) >= 0; });
        r.hidden = !ok;
        if (ok) { shown += 1; }
      });
      count.textContent = shown === rows.length ? rows.length + " rows" : shown + " of " + rows.length + " rows";
      table.dataset.shown = String(shown);
    };
    search.addEventListener("input", apply);
    proto.addEventListener("change", apply);
    flagged.addEventListener("change", apply);
    var first = heads.filter(function (h) { return h.dataset.col === "finding"; })[0];
    if (first && rows.some(function (r) { return r.dataset.finding; })) { sortBy(first, -1); }
    apply();
    document.querySelectorAll(".controls").forEach(function (c) { c.hidden = false; });
  }
  var reveal = function () {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    for (var p = el; p; p = p.parentElement) { if (p.tagName === "DETAILS") { p.open = true; } }
    if (el) { el.scrollIntoView(); }
  };
  window.addEventListener("hashchange", reveal);
  if (location.hash) { reveal(); }
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
  document.documentElement.setAttribute("data-js", "ready");
})();
"""
