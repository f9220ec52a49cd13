"""The postmortem report as one self-contained HTML page: CSS, script and pictures inline.

Nothing in the page refers to anything outside it (no fonts, scripts, styles or images from the
network; pictures are inline SVG, postmortem_figures.py), so it can be attached to an incident and opened anywhere. A
little inline script sorts and filters the connection table; without it the page still reads
top to bottom. Print CSS drops the controls and starts each ladder on a new page.

Anchors: ``finding-N`` (1-based, in severity order), ``conn-<uid>`` (a ladder), ``frame-<n>``
(a packet row of a text ladder), and one id per section (`SECTIONS`).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import TextIO

from ..analyzers.anomalies.detector import SEVERITIES
from .hints import extract_command
from .html_assets import CSS, SCRIPT
from .ladder import utc_text
from .postmortem import (
    MAX_STATE_HOSTS,
    MIN_BUSY_SOCKETS,
    Event,
    LadderView,
    Picture,
    Report,
    endpoint,
)

__all__ = ["SECTIONS", "html_chunks", "render_html", "write_html"]

#: (id, heading) of the page's sections, in order
SECTIONS = (
    ("findings", "Findings"),
    ("timeline", "Timeline"),
    ("capture", "Capture"),
    ("states", "Socket states"),
    ("rtt", "Round-trip times"),
    ("connections", "Connections"),
    ("ladders", "Ladders"),
)

_FRAME_ROW = re.compile(r"^(\s*)(\d+)(\s+\d)")

_E = html.escape


def _hosts(n: int, adjective: str = "") -> str:
    """`1 host`, `12,000 quieter hosts`."""
    return f"{n:,} {adjective}host{'' if n == 1 else 's'}"


def _offset(report: Report, ts_ns: int | None) -> str:
    """Seconds since the capture's first packet, signed (a clock jump can put a finding before it)."""
    if ts_ns is None or report.first_ts_ns is None:
        return "-"
    return f"{round((ts_ns - report.first_ts_ns) / 1e9, 3) + 0.0:+.3f} s"


def _img(pic: Picture, caption: str = "") -> str:
    """The picture inline: its SVG, labelled by `alt` (role="img", aria-label) for readers."""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    svg = pic.svg.replace("<svg ", f'<svg role="img" aria-label="{_E(pic.alt)}" ', 1)
    return f'<figure class="picture" id="pic-{_E(pic.name)}">{svg}{cap}</figure>'


def _value(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) or "-"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) or "-"
    if v is None:
        return "-"
    return str(v)


def _frames(report: Report, frames, ids: set[str]) -> str:
    out = []
    for f in frames:
        if f"frame-{f}" in ids:
            out.append(f'<a href="#frame-{f}"><code>{f}</code></a>')
        else:
            out.append(f"<code>{f}</code>")
    return " ".join(out)


# ---------------------------------------------------------------------- sections


def _header(report: Report) -> str:
    counts = report.severity_counts()
    pills = []
    for sev in reversed(SEVERITIES):
        n = counts.get(sev, 0)
        cls = sev if n else "zero"
        pills.append(f'<a class="pill {cls}" href="#findings">{n} {sev}</a>')
    facts = dict(report.facts)
    span = (
        f"{_E(utc_text(report.first_ts_ns)[:19])} &ndash; {_E(utc_text(report.last_ts_ns)[11:19])} UTC"
        if report.first_ts_ns is not None and report.last_ts_ns is not None
        else "no packets"
    )
    sub = (
        f"{span}"
        f" &middot; {_E(facts.get('duration', '-'))} &middot; {_E(facts.get('packets', '-').split(' frames')[0])} frames"
        f" &middot; {_E(facts.get('connections', '-').split(' (')[0])} connections"
    )
    head = [
        '<header class="top">',
        '<div class="brand">flowlens postmortem report</div>',
        f"<h1>{_E(report.title)}</h1>",
        f'<p class="sub">{sub}</p>',
        f'<div class="pills">{"".join(pills)}</div>',
    ]
    serious = [a for a in report.findings if a.severity != "info"][:4]
    if serious:
        worst = serious[0].severity
        lines = "".join(
            f'<li><span class="badge {a.severity}">{a.severity}</span> '
            f'<a href="#finding-{report.findings.index(a) + 1}">{_E(a.summary)}</a></li>'
            for a in serious
        )
        more = len([a for a in report.findings if a.severity != "info"]) - len(serious)
        tail = f'<p class="quiet">and {more} more below</p>' if more > 0 else ""
        head.append(
            f'<div class="headline {worst}"><h2>What went wrong</h2><ul>{lines}</ul>{tail}</div>'
        )
    elif report.findings:
        head.append(
            '<div class="headline info"><p>No warnings: only informational findings '
            f"({len(report.findings)}).</p></div>"
        )
    else:
        head.append('<div class="headline ok"><p>No anomalies found.</p></div>')
    if report.warnings:
        head.append(
            '<div class="callout"><strong>Warnings about the capture:</strong><ul>'
            + "".join(f"<li>{_E(w)}</li>" for w in report.warnings)
            + "</ul></div>"
        )
    head.append("</header>")
    return "\n".join(head)


def _nav(report: Report) -> str:
    counts = {
        "findings": len(report.findings),
        "timeline": len(report.timeline),
        "connections": report.connections_total,
        "ladders": len(report.ladders),
    }
    links = []
    for sid, title in SECTIONS:
        n = f' <span class="n">{counts[sid]}</span>' if sid in counts else ""
        links.append(f'<a href="#{sid}">{title}{n}</a>')
    return f'<nav class="toc">{"".join(links)}</nav>'


def _findings(report: Report, ids: set[str]) -> str:
    out = ['<section id="findings"><h2>Findings</h2>']
    if not report.findings:
        out.append('<p class="quiet">No anomalies found with the default thresholds.</p></section>')
        return "\n".join(out)
    items = [
        _finding(report, i, a, link, ids)
        for i, (a, link) in enumerate(zip(report.findings, report.finding_links), 1)
    ]
    out.append('<ol class="findings">')
    start = 0
    while start < len(items):
        a = report.findings[start]
        end = start + 1
        while end < len(items) and (report.findings[end].kind, report.findings[end].severity) == (
            a.kind,
            a.severity,
        ):
            end += 1
        out.extend(
            items[start : start + FOLD_KEEP] if end - start > FOLD_AFTER else items[start:end]
        )
        if end - start > FOLD_AFTER:
            rest = items[start + FOLD_KEEP : end]
            out.append(
                f'<li class="fold"><details class="fold"><summary>{len(rest)} more '
                f"<code>{_E(a.kind)}</code> finding{'' if len(rest) == 1 else 's'} "
                f"({a.severity})</summary>"
                f'<ol class="findings">{"".join(rest)}</ol></details></li>'
            )
        start = end
    out.append("</ol></section>")
    return "\n".join(out)


#: a run of more findings of one kind than FOLD_AFTER shows FOLD_KEEP, the rest folded
FOLD_AFTER = 4
FOLD_KEEP = 2


def _finding(report: Report, i: int, a, link: str | None, ids: set[str]) -> str:
    ts_ns = round(a.ts * 1e9)
    goto = ""
    if link:
        label = "ladder" if a.uid == link else "example ladder"
        goto = f'<a class="goto" href="#conn-{_E(link)}">{label} &rarr;</a>'
    meta = []
    if a.evidence:
        meta.append(f"evidence frames {_frames(report, a.evidence, ids)}")
    if a.uid:
        meta.append(f"connection <code>{_E(a.uid)}</code>")
    elif link:
        meta.append(f"example connection <code>{_E(link)}</code>")
    details = ""
    if a.details:
        rows = "".join(
            f"<tr><td>{_E(str(k))}</td><td>{_E(_value(v))}</td></tr>" for k, v in a.details.items()
        )
        details = f'<details class="more"><summary>details</summary><table class="kv">{rows}</table></details>'
    return (
        f'<li id="finding-{i}" class="finding {a.severity}">'
        f'<div class="fhead"><span class="num">#{i}</span><span class="badge {a.severity}">{a.severity}</span>'
        f'<span class="kind">{_E(a.kind)}</span>'
        f'<span class="when">{_offset(report, ts_ns)} &middot; {_E(utc_text(ts_ns))}</span>{goto}</div>'
        f'<p class="summary">{_E(a.summary)}</p>'
        f'<div class="meta">{" &middot; ".join(meta)}</div>{details}</li>'
    )


def _timeline(report: Report) -> str:
    out = [
        '<section id="timeline"><h2>Timeline</h2>',
        (
            '<p class="quiet">The capture\'s ends, every finding and every note (<code>--note</code>), '
            "in time order; times are seconds since the first packet.</p>"
        ),
        (
            '<table class="grid timeline"><thead><tr><th class="num">time</th><th>UTC</th>'
            "<th>what</th><th>event</th></tr></thead><tbody>"
        ),
    ]
    for e in report.timeline:
        out.append(_event_row(report, e))
    out.append("</tbody></table>")
    if report.timeline_hidden_info:
        out.append(
            f'<p class="quiet">{report.timeline_hidden_info} informational findings are not listed '
            'here; they are under <a href="#findings">Findings</a>.</p>'
        )
    out.append("</section>")
    return "\n".join(out)


def _event_row(report: Report, e: Event) -> str:
    badge = e.severity or e.kind  # only a finding has a severity
    text = _E(e.text)
    if e.target:
        text = f'<a href="#{_E(e.target)}">{text}</a>'
    if e.frame is not None:
        text += f' <span class="quiet">(frame {e.frame})</span>'
    utc = utc_text(e.ts_ns)[11:23] if e.ts_ns is not None else "-"
    cls = (
        f' class="{e.severity}"'
        if e.kind == "finding"
        else ' class="note"'
        if e.kind == "note"
        else ""
    )
    return (
        f'<tr{cls}><td class="when num">{_offset(report, e.ts_ns)}</td><td class="when">{_E(utc)}</td>'
        f'<td><span class="badge {badge}">{_E(badge)}</span></td><td>{text}</td></tr>'
    )


def _capture(report: Report) -> str:
    facts = "".join(f"<dt>{_E(k)}</dt><dd>{_E(v)}</dd>" for k, v in report.facts)
    out = ['<section id="capture"><h2>Capture</h2>', f'<dl class="facts">{facts}</dl>']
    if report.warnings:
        out.append(
            '<div class="callout"><strong>Damage and skipped frames</strong><ul>'
            + "".join(f"<li>{_E(w)}</li>" for w in report.warnings)
            + "</ul></div>"
        )
    else:
        out.append('<p class="quiet">The capture was read to its end with no damage.</p>')
    out.append("</section>")
    return "\n".join(out)


def _states(report: Report) -> str:
    out = ['<section id="states"><h2>Socket states</h2>']
    if report.states is None:
        if report.states_hosts_left_out:
            why = (
                f"No host had {MIN_BUSY_SOCKETS} or more TCP sockets over the capture "
                f"({_hosts(len(report.states_hosts_left_out))} had fewer each): "
                "nothing to chart."
            )
        else:
            why = "No TCP sockets in this capture."
        out.append(f'<p class="quiet">{why}</p></section>')
        return "\n".join(out)
    cap = (
        "TCP sockets per host by state over time, as <code>ss -tan</code> would have counted "
        f"them, for the busiest hosts (at most {MAX_STATE_HOSTS}). TIME_WAIT lasts 2 &times; MSL "
        "after it starts; a CLOSE_WAIT nobody closes stays to the end."
    )
    if report.states_hosts_left_out:
        cap += f" {_hosts(len(report.states_hosts_left_out), 'quieter ')} left out."
    out.append(_img(report.states, cap))
    out.append("</section>")
    return "\n".join(out)


_RTT_COLUMNS = (
    ("host", "server", False), ("conns", "conns", True), ("handshake_p50_ms", "handshake p50", True),
    ("count", "samples", True), ("min_ms", "min", True), ("p50_ms", "p50", True),
    ("p90_ms", "p90", True), ("p99_ms", "p99", True), ("max_ms", "max", True),
)  # fmt: skip


def _rtt(report: Report) -> str:
    out = ['<section id="rtt"><h2>Round-trip times</h2>']
    if not report.rtt_rows:
        out.append('<p class="quiet">No round trips measured.</p></section>')
        return "\n".join(out)
    out.append(
        '<p class="quiet">Per server, measured at the capture point (capture point &rarr; server '
        "&rarr; capture point: SYN &rarr; SYN/ACK, request &rarr; its ACK or answer), in ms.</p>"
    )
    head = "".join(f'<th class="{"num" if n else ""}">{_E(t)}</th>' for _c, t, n in _RTT_COLUMNS)
    rows = []
    for r in report.rtt_rows:
        cells = []
        for col, _t, num in _RTT_COLUMNS:
            v = r.get(col)
            cells.append(
                f'<td class="{"num" if num else "mono"}">{_E("-" if v is None else str(v))}</td>'
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    out.append(
        f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )
    if report.rtt is not None:
        out.append(
            _img(report.rtt, "RTT samples over time (a line per server) and their histogram.")
        )
    out.append("</section>")
    return "\n".join(out)


# (column key, header, numeric); the finding first, so a narrow window never hides it
_CONN_COLUMNS = (
    ("finding", "finding", True), ("uid", "uid", False), ("start", "start s", True),
    ("orig", "originator", False), ("resp", "responder (service)", False),
    ("conn_state", "state / history", False), ("ends", "orig / resp at end", False),
    ("duration", "dur s", True), ("pkts", "pkts", True), ("bytes", "bytes", True),
    ("irtt_ms", "iRTT ms", True), ("retransmissions", "retr", True),
)  # fmt: skip
_SEV_RANK = {s: i + 1 for i, s in enumerate(SEVERITIES)}


def _connections(report: Report, ladder_uids: set[str]) -> Iterator[str]:
    shown = len(report.connections)
    out = ['<section id="connections"><h2>Connections</h2>']
    note = f"{report.connections_total:,} connections and flows"
    if shown < report.connections_total:
        note += (
            f"; the table lists {shown:,}: the first ones, and every one a finding names "
            f"(all of them: <code>flowlens flows {_E(report.path)}</code>)"
        )
    out.append(
        f'<p class="quiet">{note}.<span class="noprint"> Click a column to sort; type to filter '
        "(all words must match).</span></p>"
        '<p class="quiet printonly">Printed: only the connections with a finding; the page has them all.</p>'
    )
    protos = sorted({r["proto"] for r in report.connections})
    options = "".join(f'<option value="{_E(p)}">{_E(p.upper())}</option>' for p in protos)
    out.append(
        '<div class="controls" hidden>'
        '<input type="search" id="conn-filter" placeholder="filter: address, port, state, uid ..." aria-label="filter connections">'
        f'<label>protocol <select id="conn-proto"><option value="">all</option>{options}</select></label>'
        '<label><input type="checkbox" id="conn-flagged"> only connections with a finding</label>'
        '<span id="conn-count" class="quiet"></span></div>'
    )
    head = "".join(
        f'<th data-col="{c}"{" data-type=num" if n else ""} class="{"num" if n and c != "finding" else ""}">{_E(t)}</th>'
        for c, t, n in _CONN_COLUMNS
    )
    yield "\n".join(out)
    yield (
        f'\n<div class="tablewrap"><table id="conn-table" class="grid"><thead><tr>{head}</tr></thead>'
        "<tbody>"
    )
    first = report.first_ts_ns or 0
    for r in report.connections:  # a row at a time: the table can be most of the page
        yield _conn_row(r, first, ladder_uids)
    yield "</tbody></table></div></section>"


def _num(v, fmt: str = "{}") -> tuple[str, str]:
    if v is None:
        return "", "-"
    return str(v), fmt.format(v)


#: escaped texts of the connection table's cells: the same addresses, states and protocols
#: come back row after row (bounded: a flood's addresses are all different)
_ESCAPED: dict[str, str] = {}


def _E_cell(text: str) -> str:
    out = _ESCAPED.get(text)
    if out is None:
        if len(_ESCAPED) >= 1 << 16:
            _ESCAPED.clear()
        out = _ESCAPED[text] = _E(text)
    return out


def _conn_row(r: dict, first_ns: int, ladder_uids: set[str]) -> str:
    _E = _E_cell  # noqa: N806 (the module's escape, memoized: about ten cells a row)
    uid = r["uid"]
    sev = r.get("finding")
    uid_html = f'<a href="#conn-{_E(uid)}">{_E(uid)}</a>' if uid in ladder_uids else _E(uid)
    start = r["ts"] - first_ns / 1e9
    ends = (
        " / ".join(s or "-" for s in (r.get("orig_state"), r.get("resp_state")))
        if r["proto"] == "tcp"
        else "-"
    )
    # the protocol is named only when it is not TCP, beside the service
    svc = " ".join(
        x for x in (r["proto"] if r["proto"] != "tcp" else "", r.get("service") or "") if x
    )
    service = f' <span class="svc">{_E(svc)}</span>' if svc else ""
    pkts = r["orig_pkts"] + r["resp_pkts"]
    nbytes = (r["orig_bytes"] or 0) + (r["resp_bytes"] or 0)
    cells = [
        (
            f'<td data-v="{_SEV_RANK[sev]}"><span class="badge {sev}">{sev}</span></td>'
            if sev
            else '<td data-v="0"></td>'
        ),
        f'<td class="mono">{uid_html}</td>',
        f'<td class="num" data-v="{start:.6f}">{start:.3f}</td>',
        f'<td class="mono">{_E(endpoint(r, "orig"))}</td>',
        f'<td class="mono">{_E(endpoint(r, "resp"))}{service}</td>',
        f'<td class="mono">{_E(r.get("conn_state") or "-")} <span class="quiet">{_E(r.get("history") or "")}</span></td>',
        f'<td class="mono">{_E(ends)}</td>',
        f'<td class="num" data-v="{r["duration"]}">{r["duration"]:.3f}</td>',
        f'<td class="num" title="{r["orig_pkts"]} orig / {r["resp_pkts"]} resp">{pkts}</td>',
        f'<td class="num" title="{r["orig_bytes"]} orig / {r["resp_bytes"]} resp">{nbytes}</td>',
        '<td class="num" data-v="{}">{}</td>'.format(*_num(r.get("irtt_ms"), "{:.3f}")),
        f'<td class="num">{r.get("retransmissions") or 0}</td>',
    ]
    attrs = f' data-proto="{_E(r["proto"])}"'
    if sev:
        attrs += f' class="{sev}" data-finding="{sev}"'
    return f"<tr{attrs}>{''.join(cells)}</tr>"


def _ladder_text(view: LadderView, evidence: set[int]) -> str:
    """The text ladder, escaped, packet rows carrying ``frame-<n>`` ids, evidence highlighted."""
    out = []
    for line in view.text.rstrip("\n").split("\n"):
        m = _FRAME_ROW.match(line)
        esc = _E(line)
        if "NOTE:" in line:
            esc = f'<span class="nt">{esc}</span>'
        elif re.match(r"^\s+\|\s+! ", line):
            esc = f'<span class="bad">{esc}</span>'
        if m:
            frame = int(m.group(2))
            cls = ' class="ev"' if frame in evidence else ""
            esc = f'<span id="frame-{frame}"{cls}>{esc}</span>'
        out.append(esc)
    return "\n".join(out)


def _ladders(report: Report) -> str:
    out = ['<section id="ladders"><h2>Ladders</h2>']
    if not report.ladders:
        out.append('<p class="quiet">No connection needed a closer look.</p>')
    else:
        out.append(
            '<p class="quiet">The connections that matter, in the order of their findings: the '
            "originator on the left, the responder on the right, one arrow per packet (long data "
            "phases folded), the state each endpoint enters beside its line. Evidence frames are "
            "highlighted in the text.</p>"
        )
    for view in report.ladders:
        out.append(_ladder(report, view))
    if report.ladders_left_out:
        out.append(
            f'<p class="quiet">{len(report.ladders_left_out)} more connections with findings are '
            f"not drawn: <code>flowlens ladder {_E(report.path)} --uid UID</code> draws any of them ("
            + ", ".join(f"<code>{_E(u)}</code>" for u in report.ladders_left_out[:20])
            + ("&hellip;" if len(report.ladders_left_out) > 20 else "")
            + ").</p>"
        )
    out.append("</section>")
    return "\n".join(out)


def _ladder(report: Report, view: LadderView) -> str:
    r = view.record
    why = {
        "finding": "named by a finding",
        "example": "an example of a finding",
        "note": "a note points here",
    }[view.why]
    title = f"{endpoint(r, 'orig')} &rarr; {endpoint(r, 'resp')}"
    service = f" {_E(r['service'])}" if r.get("service") else ""
    evidence: set[int] = set()
    items = []
    for i in view.findings:
        a = report.findings[i]
        evidence.update(a.evidence)
        items.append(
            f'<li><span class="badge {a.severity}">{a.severity}</span> '
            f'<a href="#finding-{i + 1}">#{i + 1} {_E(a.kind)}</a>: {_E(a.summary)}</li>'
        )
    for text in view.notes:
        items.append(f'<li><span class="badge note">note</span> {_E(text)}</li>')
    links = f'<ul class="links">{"".join(items)}</ul>' if items else ""
    pic = _img(view.picture) if view.picture is not None else ""
    if view.stream is not None:
        pic += _img(view.stream, "time-sequence graph (flowlens plot --kind tseq)")
    elif view.stream_hint is not None:
        pic += f'<p class="quiet">Time-sequence graph: <code>{_E(view.stream_hint)}</code></p>'
    extract = extract_command(report.path, view.uid, dict(report.facts).get("container", "pcap"))
    return (
        f'<article class="ladder" id="conn-{_E(view.uid)}">'
        f"<h3><code>{_E(view.uid)}</code> {r['proto'].upper()} {title}{service}"
        f'<span class="why">{why}</span><a class="up noprint" href="#findings">&uarr; findings</a></h3>'
        f"{links}{pic}"
        f'<pre class="ladder">{_ladder_text(view, evidence)}</pre>'
        f'<p class="quiet">Extract these frames: <code>{_E(extract)}</code></p>'
        "</article>"
    )


def render_html(report: Report) -> str:
    """The whole page as a string (UTF-8 when written)."""
    return "".join(html_chunks(report))


def write_html(report: Report, out: TextIO) -> None:
    """Write the page to `out` piece by piece (render_html's text, never all of it at once)."""
    for chunk in html_chunks(report):
        out.write(chunk)


def html_chunks(report: Report) -> Iterator[str]:
    """The page in pieces whose concatenation is the page."""
    ladder_uids = {v.uid for v in report.ladders}
    frame_ids = {
        f"frame-{m.group(2)}"
        for v in report.ladders
        for line in v.text.split("\n")
        if (m := _FRAME_ROW.match(line))
    }
    meta = json.dumps({"generator": f"flowlens {report.version}", "passes": report.passes})
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="flowlens {_E(report.version)}">',
        f"<title>{_E(report.title)}</title>",
        f'<style>{CSS}</style></head><body><div class="page">',
        _header(report),
        _nav(report),
        "<main>",
        _findings(report, frame_ids),
        _timeline(report),
        _capture(report),
        _states(report),
        _rtt(report),
        _connections(report, ladder_uids),
        _ladders(report),
        "</main>",
        (
            f"<footer>Made by flowlens {_E(report.version)} on {_E(report.generated)} from "
            f"<code>{_E(report.path)}</code> ({report.passes} pass"
            f"{'es' if report.passes > 1 else ''} over the capture). Frame numbers count from 1, "
            "as <code>tcpdump -#</code> and Wireshark do.</footer>"
        ),
        f'</div><script type="application/json" id="report-meta">{meta}</script>',
        f"<script>{SCRIPT}</script></body></html>",
    ]
    for i, part in enumerate(parts):
        if i:
            yield "\n"
        if isinstance(part, str):
            yield part
        else:
            yield from part
    yield "\n"
