"""The postmortem report as GitHub-flavoured Markdown, pictures saved beside it.

`write_markdown(report, "report.md")` writes ``report.md`` and its pictures into
``report_files/`` next to it, linked by relative paths, so the pair can be committed to a
repository or attached to an issue and renders on GitHub. Links between sections use GitHub's
heading anchors (`github_anchor`): each ladder is a heading ``Connection <uid>``.
"""

from __future__ import annotations

import os
import re

from .formats import plural
from .hints import extract_command
from .ladder import utc_text
from .postmortem import MIN_BUSY_SOCKETS, Picture, Report, endpoint

__all__ = ["github_anchor", "render_markdown", "write_markdown"]

#: rows of the connection table in Markdown (the HTML page has them all)
MAX_TABLE_ROWS = 100


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _cell(text) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _ladder_heading(uid: str) -> str:
    return f"Connection {uid}"


def _offset(report: Report, ts_ns: int | None) -> str:
    if ts_ns is None or report.first_ts_ns is None:
        return "-"
    return f"{round((ts_ns - report.first_ts_ns) / 1e9, 3) + 0.0:+.3f} s"


def render_markdown(report: Report, files_dir: str) -> tuple[str, list[tuple[str, Picture]]]:
    """(Markdown text, [(relative path, picture)]) with pictures referenced under `files_dir`
    (a path relative to the Markdown file)."""
    pictures: list[tuple[str, Picture]] = []

    def image(pic: Picture) -> str:
        rel = f"{files_dir}/{pic.name}.svg"
        pictures.append((rel, pic))
        return f"![{pic.alt}]({rel})"

    out: list[str] = [f"# {report.title}", ""]
    counts = report.severity_counts()
    span = (
        f"{utc_text(report.first_ts_ns)[:19]} – {utc_text(report.last_ts_ns)[11:19]} UTC"
        if report.first_ts_ns is not None and report.last_ts_ns is not None
        else "no packets"
    )
    out.append(
        f"{span} · "
        + " · ".join(f"**{counts.get(s, 0)} {s}**" for s in ("critical", "warning", "info"))
    )
    out.append("")
    if report.warnings:
        out.append("> [!WARNING]")
        out.append("> Warnings about the capture:")
        for w in report.warnings:
            out.append(f"> - {w}")
        out.append("")

    ladder_of = {v.uid: github_anchor(_ladder_heading(v.uid)) for v in report.ladders}
    out += ["## Findings", ""]
    if not report.findings:
        out += ["No anomalies found.", ""]
    else:
        out.append("| # | severity | kind | time | summary | evidence frames | ladder |")
        out.append("|---:|---|---|---|---|---|---|")
        for i, (a, link) in enumerate(zip(report.findings, report.finding_links), 1):
            sev = f"**{a.severity}**" if a.severity != "info" else a.severity
            ts_ns = round(a.ts * 1e9)
            lad = f"[{link}](#{ladder_of[link]})" if link in ladder_of else "-"
            frames = ", ".join(str(f) for f in a.evidence) or "-"
            out.append(
                f"| {i} | {sev} | `{a.kind}` | {_offset(report, ts_ns)} | {_cell(a.summary)} | "
                f"{frames} | {lad} |"
            )
        out.append("")

    out += ["## Timeline", "", "| time | UTC | what | event |", "|---:|---|---|---|"]
    for e in report.timeline:
        what = e.severity if e.kind == "finding" else e.kind
        text = _cell(e.text)
        if e.target and e.target.startswith("conn-") and e.target[5:] in ladder_of:
            text = f"[{text}](#{ladder_of[e.target[5:]]})"
        if e.frame is not None:
            text += f" (frame {e.frame})"
        utc = utc_text(e.ts_ns)[11:23] if e.ts_ns is not None else "-"
        out.append(f"| {_offset(report, e.ts_ns)} | {utc} | {what} | {text} |")
    out.append("")
    if report.timeline_hidden_info:
        out += [
            f"{plural(report.timeline_hidden_info, 'informational finding')} "
            f"{'is' if report.timeline_hidden_info == 1 else 'are'} not listed here (see Findings).",
            "",
        ]

    out += ["## Capture", "", "| | |", "|---|---|"]
    out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in report.facts]
    out.append("")

    out += ["## Socket states", ""]
    if report.states is not None:
        out += [
            image(report.states),
            "",
            "TCP sockets per host by state over time, the busiest hosts.",
            "",
        ]
    elif report.states_hosts_left_out:
        out += [
            f"No host had {MIN_BUSY_SOCKETS} or more TCP sockets over the capture: nothing to chart.",
            "",
        ]
    else:
        out += ["No TCP sockets in this capture.", ""]

    out += ["## Round-trip times", ""]
    if report.rtt_rows:
        out += [
            "Per server, at the capture point (SYN → SYN/ACK, request → its ACK or answer), in ms.",
            "",
            "| server | conns | handshake p50 | samples | min | p50 | p90 | p99 | max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in report.rtt_rows:
            vals = [
                r.get(k)
                for k in (
                    "conns",
                    "handshake_p50_ms",
                    "count",
                    "min_ms",
                    "p50_ms",
                    "p90_ms",
                    "p99_ms",
                    "max_ms",
                )
            ]
            out.append(
                f"| {r['host']} | " + " | ".join("-" if v is None else str(v) for v in vals) + " |"
            )
        out.append("")
        if report.rtt is not None:
            out += [image(report.rtt), ""]
    else:
        out += ["No round trips measured.", ""]

    out += ["## Connections", ""]
    rows = sorted(report.connections, key=lambda r: (r.get("finding") is None, r["ts"]))
    shown = rows[:MAX_TABLE_ROWS]
    out.append(
        f"{report.connections_total:,} connections and flows; "
        + (
            f"the {len(shown)} below are those with a finding first, then the earliest "
            f"(all of them: `flowlens flows {report.path}`)."
            if len(shown) < report.connections_total
            else "connections with a finding first."
        )
    )
    out += [
        "",
        "| uid | start | proto | originator | responder | state | history | orig / resp at end | finding |",
        "|---|---:|---|---|---|---|---|---|---|",
    ]
    first = (report.first_ts_ns or 0) / 1e9
    for r in shown:
        uid = f"[{r['uid']}](#{ladder_of[r['uid']]})" if r["uid"] in ladder_of else f"`{r['uid']}`"
        ends = (
            f"{r.get('orig_state') or '-'} / {r.get('resp_state') or '-'}"
            if r["proto"] == "tcp"
            else "-"
        )
        out.append(
            f"| {uid} | {r['ts'] - first:.3f} | {r['proto']} | {endpoint(r, 'orig')} | "
            f"{endpoint(r, 'resp')} | {r.get('conn_state') or '-'} | {_cell(r.get('history') or '-')} | "
            f"{ends} | {r.get('finding') or ''} |"
        )
    out.append("")

    out += ["## Ladders", ""]
    if not report.ladders:
        out += ["No connection needed a closer look.", ""]
    for v in report.ladders:
        r = v.record
        out += [f"### {_ladder_heading(v.uid)}", ""]
        out.append(
            f"{r['proto'].upper()} {endpoint(r, 'orig')} → {endpoint(r, 'resp')}"
            + (f" ({r['service']})" if r.get("service") else "")
        )
        out.append("")
        for i in v.findings:
            a = report.findings[i]
            out.append(f"- **{a.severity}** `{a.kind}`: {a.summary}")
        for text in v.notes:
            out.append(f"- note: {text}")
        if v.findings or v.notes:
            out.append("")
        if v.picture is not None:
            out += [image(v.picture), ""]
        if v.stream is not None:
            out += [image(v.stream), ""]
        elif v.stream_hint is not None:
            out += [f"Time-sequence graph: `{v.stream_hint}`", ""]
        out += ["```text", v.text.rstrip("\n"), "```", ""]
        container = dict(report.facts).get("container", "pcap")
        out += [f"Extract these frames: `{extract_command(report.path, v.uid, container)}`", ""]
    if report.ladders_left_out:
        out += [
            (
                f"{plural(len(report.ladders_left_out), 'more connection')} with findings "
                f"{'is' if len(report.ladders_left_out) == 1 else 'are'} not drawn; "
                f"`flowlens ladder {report.path} --uid UID` draws any of them."
            ),
            "",
        ]
    out.append(
        f"Made by flowlens {report.version} on {report.generated} "
        f"({report.passes} pass{'es' if report.passes > 1 else ''} over the capture)."
    )
    return "\n".join(out) + "\n", pictures


def write_markdown(report: Report, path: str) -> list[str]:
    """Write `path` and its pictures into ``<stem>_files/`` beside it; returns the files written."""
    stem = os.path.splitext(os.path.basename(path))[0]
    files_dir = f"{stem}_files"
    text, pictures = render_markdown(report, files_dir)
    base = os.path.dirname(os.path.abspath(path))
    written = []
    if pictures:
        os.makedirs(os.path.join(base, files_dir), exist_ok=True)
    for rel, pic in pictures:
        target = os.path.join(base, rel)
        with open(target, "w", encoding="utf-8") as f:
            f.write(pic.svg)
        written.append(target)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    written.append(path)
    return written
