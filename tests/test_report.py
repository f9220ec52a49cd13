"""`flowlens report`: the postmortem page (HTML) and its Markdown twin, for the sample captures.

Content is checked on the rendered files: every finding present in severity order, every
internal link resolving, every picture a well-formed inline SVG holding its series (states per
host, RTT lines, ladder arrows), nothing fetched from outside the page, the Markdown's pictures
on disk. A browser test opens the page in headless Chromium, checks the
console stays silent and the table script ran, and saves a screenshot; without Chromium it
skips, except under CI (CI=true), where it fails: CI installs it.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pcapgen
import pytest
from click.testing import CliRunner

from flowlens.analyzers.anomalies.detector import SEVERITIES, AnomalyDetector
from flowlens.cli import cli
from flowlens.core.pipeline import analyze
from flowlens.reports.html import SECTIONS, render_html
from flowlens.reports.markdown import github_anchor, render_markdown
from flowlens.reports.postmortem import ReportOptions, build_report

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
INCIDENT = str(SAMPLES / "incident.pcap")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"


def invoke(*args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def expected_findings(path: str):
    detector = AnomalyDetector()
    return analyze(path, analyzers=[detector]).results[detector]


def bad_day() -> list:
    """Many problems in one capture: ports running out (critical), a CLOSE_WAIT leak, a SYN
    flood, a refused port, a port scan, a lossy download, a zero window, an abort, a UDP port
    unreachable."""
    t = pcapgen.T0
    frames = pcapgen.exhausted_ports(ports=10, count=30, t=t, sport=443)
    frames += pcapgen.syn_flood(count=300, t=t + 2, sport=80, server="198.51.100.80")
    frames += pcapgen.port_scan(t=t + 4, server="198.51.100.99")
    frames += pcapgen.lossy_download(t=t + 5, cport=50001, sport=8443)
    frames += pcapgen.zero_window_stall(t=t + 7, cport=50002, sport=9443)
    frames += pcapgen.rst_abort_in_flight(t=t + 9, cport=50003, sport=7443)
    frames += pcapgen.close_wait_leak(cport=50004, sport=9000, t=t + 1)
    frames += pcapgen.refused(server="198.51.100.30", cport=50005, sport=5432, t=t + 3)
    frames += pcapgen.udp_port_unreachable(t=t + 6)
    frames.sort(key=lambda f: f[0])
    return frames


@pytest.fixture(scope="module")
def bad_capture(tmp_path_factory) -> str:
    return pcapgen.write_pcap(tmp_path_factory.mktemp("bad") / "bad-day.pcap", bad_day())


class Page(HTMLParser):
    """Ids, internal links, pictures and anything that could load from outside the page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self.svgs = 0
        self.external: list[str] = []
        self.findings: list[tuple[str, str]] = []  # (id, severity) in page order
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "svg":
            self.svgs += 1
        for key in ("src", "href"):
            value = a.get(key) or ""
            if key in a and not value.startswith(("#", "data:")):
                self.external.append(f"<{tag} {key}={value}>")
        if tag in ("link", "iframe", "object", "embed"):
            self.external.append(f"<{tag}>")
        if tag == "li" and a.get("id", "").startswith("finding-"):
            self.findings.append((a["id"], a["class"].split()[-1]))


def check_page(text: str) -> Page:
    page = Page(text)
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    missing = [h for h in page.hrefs if h.startswith("#") and h[1:] not in page.ids]
    assert not missing, f"links to no id: {missing}"
    assert not [h for h in page.hrefs if not h.startswith("#")], "links leaving the page"
    assert not page.external, f"resources from outside the page: {page.external}"
    assert "@import" not in text and "url(" not in text and "<link" not in text
    for sid, _title in SECTIONS:
        assert sid in page.ids
    assert not page.images, "pictures are inline SVG, not <img>"
    svgs = svg_documents(text)
    assert len(svgs) == page.svgs
    for svg in svgs:
        parse_svg(svg)
    ranks = [SEVERITIES.index(sev) for _id, sev in page.findings]
    assert ranks == sorted(ranks, reverse=True), "findings not ordered by severity"
    assert [i for i, _s in page.findings] == [f"finding-{n}" for n in range(1, len(ranks) + 1)]
    return page


def svg_documents(text: str) -> list[str]:
    """Every inline <svg>...</svg> of a page, in page order."""
    return re.findall(r"<svg .*?</svg>", text, re.DOTALL)


def parse_svg(svg: str):
    """The SVG as an XML tree (it must be well-formed XML on its own), with its size."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    assert float(root.get("width")) > 0 and float(root.get("height")) > 0
    return root


def series_of(root) -> dict[str, int]:
    """{data-label: data-points} of the chart's series."""
    return {
        e.get("data-label"): int(e.get("data-points"))
        for e in root.iter()
        if "series" in (e.get("class") or "").split()
    }


def texts_of(root) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG_NS}text")]


# ---------------------------------------------------------------- the incident sample


def refused_syn_frame(path: str) -> int:
    """The first frame of the first refused connection (the database that is down)."""
    return next(c.first_frame for c in analyze(path).connections if c.conn_state == "REJ")


@pytest.fixture(scope="module")
def incident_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("incident")
    html_path, md_path = out / "report.html", out / "report.md"
    result = invoke(
        "report", INCIDENT, "-o", html_path, "--markdown", md_path,
        "--note", f"{refused_syn_frame(INCIDENT)}=db restarted", "--note", "+45s=cache failover",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result, html_path, md_path


def test_incident_html_has_every_finding_in_severity_order(incident_report):
    result, html_path, _md = incident_report
    text = html_path.read_text(encoding="utf-8")
    page = check_page(text)
    findings = expected_findings(INCIDENT)
    assert findings, "the incident sample has findings"
    assert len(page.findings) == len(findings)
    for n, a in enumerate(findings, 1):
        block = text[text.index(f'id="finding-{n}"') :].split("</li>", 1)[0]
        assert html.escape(a.summary) in block
        assert a.kind in block and a.severity in block
        for frame in a.evidence:
            assert re.search(rf"<code>{frame}</code>", block), (a.kind, frame)
        if a.uid:  # a finding about one connection links to its ladder
            assert f'href="#conn-{a.uid}"' in block
            assert f'id="conn-{a.uid}"' in text
    counts = {s: sum(a.severity == s for a in findings) for s in SEVERITIES}
    parts = ", ".join(
        f"{counts[s]} {s}{'s' if s == 'warning' and counts[s] != 1 else ''}"
        for s in reversed(SEVERITIES)
        if counts[s]
    )
    assert f"{len(findings)} findings ({parts})" in result.stderr
    # everything, the ladders too, from one read of the capture
    assert "1 pass over the capture" in result.stderr


def test_incident_ladders_show_evidence_and_notes(incident_report):
    _result, html_path, _md = incident_report
    text = html_path.read_text(encoding="utf-8")
    articles = re.findall(
        r'<article class="ladder" id="conn-(\w+)">(.*?)</article>', text, re.DOTALL
    )
    assert articles
    for _uid, body in articles:
        pre = body.split('<pre class="ladder">', 1)[1]
        (svg,) = [d for d in svg_documents(body) if 'class="chart ladder"' in d]  # the picture
        root = parse_svg(svg)
        arrows = [e for e in root.iter() if e.get("class") == "arrow"]
        # ... has an arrow per packet row of the text ladder, labelled as the text is
        frames = [int(e.get("data-frame")) for e in arrows]
        assert len(frames) == len(set(frames))
        for e in arrows:
            (label,) = [t for t in e.iter(f"{SVG_NS}text") if t.get("class") == "label"]
            frame = e.get("data-frame")
            row = next(line for line in html.unescape(re.sub(r"<[^>]+>", "", pre)).split("\n")
                       if re.match(rf"\s*{frame}\s", line))  # fmt: skip
            assert "".join(label.itertext()).split()[0] in row
        assert re.search(r"\|-- \[S\] seq 0", html.unescape(pre)) or "ICMP" in pre or "UDP" in pre
    # the refused database connection: its SYN carries the note and is evidence
    frame = refused_syn_frame(INCIDENT)
    assert re.search(rf'<span id="frame-{frame}" class="ev">[^\n]*SYN_SENT', text)
    assert "NOTE: db restarted" in text
    # timeline: both notes, in time order with the findings
    timeline = text[text.index('id="timeline"') : text.index('id="capture"')]
    assert "db restarted" in timeline and "cache failover" in timeline
    assert timeline.index("db restarted") < timeline.index("cache failover")
    assert timeline.index("first packet of the capture") < timeline.index(
        "last packet of the capture"
    )


def test_incident_capture_facts_and_table(incident_report):
    _result, html_path, _md = incident_report
    text = html_path.read_text(encoding="utf-8")
    facts = text[text.index('id="capture"') : text.index('id="states"')]
    for fact in (
        "pcap",
        f"{analyze(INCIDENT).stats.frames:,} frames",
        "EN10MB",
        "skipped frames",
        "192.0.2.10",
        "2023-11-14 22:13:20",
    ):
        assert fact in facts, fact
    table = text[
        text.index('id="conn-table"') : text.index("</table>", text.index('id="conn-table"'))
    ]
    a = analyze(INCIDENT)
    rows = re.findall(r"<tr data-proto", table)
    assert len(rows) == len(a.connections)
    for c in a.connections:
        assert c.uid in table
    assert 'data-finding="warning"' in table
    assert "@media print" in text


def test_incident_markdown_pictures_beside_it(incident_report):
    _result, _html, md_path = incident_report
    text = md_path.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and all(i.startswith("report_files/") and i.endswith(".svg") for i in images)
    for rel in images:
        parse_svg((md_path.parent / rel).read_text(encoding="utf-8"))
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links and set(links) <= anchors
    for a in expected_findings(INCIDENT):
        assert a.summary.replace("|", "\\|") in text
    assert "```text" in text and "db restarted" in text


# ---------------------------------------------------------------- other captures


def test_bad_day_critical_first_with_example_ladders(tmp_path, bad_capture):
    out = tmp_path / "bad.html"
    result = invoke("report", bad_capture, "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    page = check_page(text)
    findings = expected_findings(bad_capture)
    assert findings[0].severity == "critical"
    assert page.findings[0] == ("finding-1", "critical")
    assert len(page.findings) == len(findings)
    for a in findings:
        assert html.escape(a.summary) in text
    # host-level findings (no uid) link to an example connection's ladder
    first = text[text.index('id="finding-1"') :].split("</li>", 1)[0]
    assert "example ladder" in first
    headline = text[
        text.index('class="headline') : text.index("</div>", text.index('class="headline'))
    ]
    assert "critical" in headline
    # the ladders are capped and the rest named
    assert len(re.findall(r'<article class="ladder"', text)) <= 12


@pytest.mark.parametrize(
    "name",
    ["clean-close.pcap", "clean-close.pcapng", "clean-close-nano.pcap.gz", "udp-dns.pcap",
     "icmp-echo.pcap", "midstream.pcap", "bulk-download.pcap", "port-reuse.pcap",
     "udp-unreachable.pcap", "clean-close-ipv6-vlan.pcap"],
)  # fmt: skip
def test_samples_render(tmp_path, name):
    path = str(SAMPLES / name)
    out = tmp_path / "r.html"
    result = invoke("report", path, "-o", out, "--markdown", tmp_path / "r.md")
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    page = check_page(text)
    findings = expected_findings(path)
    assert len(page.findings) == len(findings)
    if not findings:
        assert "No anomalies found" in text
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (tmp_path / "r.md").read_text()):
        assert (tmp_path / rel).is_file()


def test_dropped_logs_are_named_not_read_again(bad_capture):
    """Past the log budget the least useful logs go first (connections that cannot have a
    finding of their own); a chosen connection whose log went anyway is left out, named, and
    the capture is still read once."""
    full = build_report(bad_capture)
    tight = build_report(bad_capture, options=ReportOptions(max_kept_logs=3))
    assert full.passes == tight.passes == 1
    drawn = [v.uid for v in tight.ladders]
    assert 0 < len(drawn) <= 3
    assert set(drawn) | set(tight.ladders_left_out) >= {v.uid for v in full.ladders}
    # the ladders kept are the same as with room for every log
    texts = {v.uid: v.text for v in full.ladders}
    assert all(v.text == texts[v.uid] for v in tight.ladders)
    # a connection with a finding of its own outlives the spare ones
    own = {a.uid for a in tight.findings if a.uid}
    assert own & set(drawn)


def test_max_ladders_and_left_out(bad_capture):
    report = build_report(bad_capture, options=ReportOptions(max_ladders=2))
    assert len(report.ladders) == 2
    assert report.ladders_left_out
    text = render_html(report)
    check_page(text)
    assert report.ladders_left_out[0] in text


def test_charts_hold_the_data():
    """The states chart has a band per state present, stacked per busy host, with a point per
    chart time; the RTT chart a line per server with its samples and a histogram of them all;
    axis labels as `states --plot` and `rtt --plot` draw them."""
    from flowlens.reports.postmortem_figures import STATES_POINTS
    from flowlens.reports.rtt import rtt_chart
    from flowlens.reports.spantable import SpanTable
    from flowlens.reports.states import states_chart

    report = build_report(INCIDENT)
    states = parse_svg(report.states.svg)
    table = SpanTable()
    for c in analyze(INCIDENT).connections:
        table.add(c)
    shown = [h for h, _p, n in table.busy_hosts() if n >= 3][:4]
    chart = states_chart(
        table.subset(shown), report.first_ts_ns, report.last_ts_ns, max_points=STATES_POINTS
    )
    stacks = [e for e in states.iter() if e.get("class") == "stack"]
    assert [e.get("data-host") for e in stacks] == shown == [p.host for p in chart.panels]
    for stack, panel in zip(stacks, chart.panels):
        bands = {e.get("data-label"): e for e in stack if "series" in e.get("class", "")}
        assert list(bands) == [s for s, _y in panel.layers]
        for state, ys in panel.layers:
            assert int(bands[state].get("data-points")) == len(chart.xs) == len(ys)
            assert int(bands[state].get("data-peak")) == max(ys)
    labels = texts_of(states)
    assert labels.count("sockets") == len(shown)
    assert any(t.startswith("seconds since the first packet") for t in labels)
    assert any(p.title == t for p in chart.panels for t in labels)
    # the legend names each state beside its colour
    assert "TIME_WAIT" in labels and "ESTABLISHED" in labels

    rtt = parse_svg(report.rtt.svg)
    series = series_of(rtt)
    from flowlens.analyzers.rtt import RttCollector
    from flowlens.reports.rtt import Series, series_for

    collector = RttCollector()
    per: dict[str, Series] = {}
    for c in analyze(INCIDENT, analyzers=[collector]).connections:
        for label, ts, ms in series_for(c, "server", collector):
            per.setdefault(label, Series(label)).ts_s.extend(ts)
            per[label].rtt_ms.extend(ms)
    expected = rtt_chart(list(per.values()), max_lines=8)
    for s in expected.shown:
        assert series[s.label] == len(s.rtt_ms)
    assert series["samples"] == len(expected.bins) - 1
    hist = next(e for e in rtt.iter() if "histogram" in (e.get("class") or ""))
    assert int(hist.get("data-total")) == len(expected.hist_values)
    labels = texts_of(rtt)
    for axis in ("seconds since the first sample", "RTT at the capture point (ms)", "RTT (ms)",
                 "samples", f"{len(expected.values)} samples"):  # fmt: skip
        assert axis in labels, axis


def test_notes_and_stdin(tmp_path):
    data = (SAMPLES / "refused.pcap").read_bytes()
    out = tmp_path / "r.html"
    result = invoke("report", "-", "-o", out, "--note", "1=first SYN", input=data)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    check_page(text)
    assert "standard input" in text and "NOTE: first SYN" in text


def test_markdown_only(tmp_path):
    md = tmp_path / "sub" / "notes.md"
    md.parent.mkdir()
    result = invoke("report", INCIDENT, "--markdown", md)
    assert result.exit_code == 0, result.output
    parse_svg((md.parent / "notes_files" / "states.svg").read_text(encoding="utf-8"))
    _text, pictures = render_markdown(build_report(INCIDENT), "x_files")
    assert all(rel.startswith("x_files/") for rel, _pic in pictures)


def test_cli_errors(tmp_path):
    result = invoke("report", INCIDENT)
    assert result.exit_code == 2
    assert "nothing to write" in result.output
    result = invoke("report", INCIDENT, "-o", tmp_path / "r.html", "--note", "oops")
    assert result.exit_code == 2
    missing = tmp_path / "missing.pcap"
    result = invoke("report", missing, "-o", tmp_path / "r.html")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {missing}")
    assert not (tmp_path / "r.html").exists()
    help_text = invoke("report", "--help").output
    assert "Example:" in help_text and "flowlens report capture.pcap -o report.html" in help_text


def test_damaged_capture_is_reported(tmp_path):
    data = pcapgen.pcap_bytes(pcapgen.clean_close())
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-10])
    out = tmp_path / "r.html"
    result = invoke("report", cut, "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    check_page(text)
    assert "Warnings about the capture" in text
    assert "Warning:" in result.stderr


# ---------------------------------------------------------------- in a browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _require_chromium() -> str:
    path = _chromium()
    if path is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("chromium is required under CI (.ci/run installs it)", pytrace=False)
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


def _browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_report_in_headless_chromium(tmp_path, bad_capture):
    chromium = _require_chromium()
    out = tmp_path / "report.html"
    result = invoke(
        "report",
        bad_capture,
        "-o",
        out,
        "--note",
        "+3s=failover started",
        "--note",
        "790=db restarted",
    )
    assert result.exit_code == 0, result.output
    url = out.resolve().as_uri()
    dom = _browse(chromium, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    # the table script ran: it marks the page and sorts the table (findings first)
    assert 'data-js="ready"' in dom.stdout
    assert 'data-sorted-by="finding:desc"' in dom.stdout
    rows = int(re.search(r'data-shown="(\d+)"', dom.stdout).group(1))
    assert rows == len(analyze(bad_capture).connections)

    shot = tmp_path / "report.png"
    run = _browse(
        chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400",
        "--hide-scrollbars", url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert not [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    png = shot.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 50_000
    keep = os.environ.get("FLOWLENS_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "report-screenshot.png")


@pytest.mark.parametrize("name", ["incident.pcap", "time-wait-pileup.pcap", "close-wait.pcap"])
def test_span_table_counts_as_socket_states(name, bad_capture):
    """The report's SpanTable (filled by `add`) charts the same counts as SocketStates (what
    `flowlens states` fills by `parts`/`add_parts`), and both count what the spans say, summed
    by hand from `endpoint_spans`' objects at every instant a count changes: the same panels,
    bands and values, and exact busy-host peaks."""
    from collections import Counter

    from flowlens.reports.spantable import SpanTable
    from flowlens.reports.states import SocketStates, endpoint_spans, states_chart

    path = str(SAMPLES / name)
    table, index = SpanTable(), SocketStates()
    a = analyze(path)
    spans = []
    for c in a.connections:
        table.add(c)
        index.add(c)
        spans.extend(endpoint_spans(c))
    assert len(table) == len(index) == len(spans) > 0
    first, last = a.stats.first_ts_ns, a.stats.last_ts_ns
    for max_points in (4000, 50):
        ours = states_chart(table, first, last, max_points=max_points)
        theirs = states_chart(index, first, last, max_points=max_points)
        assert ours.xs == theirs.xs and ours.left_out == theirs.left_out
        assert [(p.host, p.peak, p.title, p.layers) for p in ours.panels] == [
            (p.host, p.peak, p.title, p.layers) for p in theirs.panels
        ]
        assert (ours.capture_end_s, ours.drain_note, ours.xlabel) == (
            theirs.capture_end_s, theirs.drain_note, theirs.xlabel
        )  # fmt: skip
    times = index.change_points(first, max(last, index.time_wait_horizon() or last))
    hosts = sorted({s.host for s in spans})
    by_hand = [
        {h: Counter(s.state for s in spans if s.host == h and s.holds(t)) for h in hosts}
        for t in times
    ]
    assert [dict(sorted(c.items())) for c in index.series(times)] == by_hand
    assert [dict(sorted(index.counts_at(t).items())) for t in times] == by_hand
    # the exact peak: the largest count at any change point
    exact = {h: max(sum(c[h].values()) for c in by_hand) for h in hosts}
    assert {h: p for h, p, _n in table.busy_hosts()} == exact
    assert index.peaks(times) == {h: exact[h] for h in index.hosts}


def test_svg_charts_at_their_edges():
    """One sample, samples spread over 1000x (log axes), a window edge far above the data and
    dropped rows, no socket at all: each still a well-formed picture saying what it shows."""
    from flowlens.reports.rtt import Series
    from flowlens.reports.states import StatesChart
    from flowlens.reports.streamgraph import Bar, TseqGraph
    from flowlens.reports.svg_charts import rtt_svg, states_svg, tseq_svg

    one = parse_svg(rtt_svg([Series("192.0.2.1 cap>resp>cap", [1.0], [0.5])]))
    assert series_of(one)["192.0.2.1 cap>resp>cap"] == 1 and "1 sample" in texts_of(one)
    wide = parse_svg(rtt_svg([Series("a", [1.0, 2.0, 3.0], [0.05, 5.0, 600.0])]))
    assert {"0.1", "1", "10", "100"} <= set(texts_of(wide))  # decades on the log axes
    bars = [Bar(0.1 * i, 1000 * i, 1000 * (i + 1), i + 1, "data") for i in range(5)]
    bars.append(Bar(0.6, 1000, 2000, 7, "retransmission"))
    g = TseqGraph("Cx", "orig", bars, [(0.0, 1), (0.5, 5001)], [(0.0, 10**9), (0.5, 10**9)], [],
                  dropped=(3, 0, 0))  # fmt: skip
    tseq = parse_svg(tseq_svg(g))
    s = series_of(tseq)
    assert s["data (5)"] == 5 and s["retransmission (1)"] == 1 and s["ACK"] == 2
    texts = texts_of(tseq)
    assert "receive window edge reaches 1,000,000,000 (above the graph)" in texts
    assert any(t.startswith("bounded: 3 segments") for t in texts)
    empty = parse_svg(states_svg(StatesChart([0.0, 1.0], [], [], None, "", "seconds")))
    assert "no TCP sockets match" in texts_of(empty)
