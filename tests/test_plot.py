"""`flowlens plot` and the stream graphs behind it (analyzers/streamlog.py, reports/streamgraph.py,
reports/streamgraph_plot.py): the series each graph draws, read from the data objects and from
the matplotlib artists (`get_segments`, `get_xydata`), never from pixels."""

from __future__ import annotations

import shutil
import struct

import pcapgen
import pytest
from click.testing import CliRunner
from pcapgen import ACK, FIN, PSH, SYN, Conversation

from flowlens import analyze
from flowlens.analyzers.rtt import RttCollector
from flowlens.analyzers.streamlog import StreamCollector
from flowlens.cli import cli
from flowlens.reports.streamgraph import (
    data_direction,
    rtt_graph,
    throughput_graph,
    tseq_graph,
    window_graph,
)
from flowlens.reports.streamgraph_plot import draw_figure

MSS = 1000
C_SHIFT, S_SHIFT = 7, 2  # window scale of the client (originator) and of the server
C_RAW_WIN = 512  # the client's raw window field after the handshake: 512 << 7 = 65536 bytes


def sack_ok_wscale(shift: int) -> bytes:
    """NOP, window scale (RFC 7323 §2.2), SACK permitted (RFC 2018 §2), NOP, NOP."""
    return bytes([1, 3, 3, shift, 4, 2, 1, 1])


def sack_option(*blocks: tuple[int, int]) -> bytes:
    """NOP, NOP, SACK with the given (left, right) absolute sequence numbers (RFC 2018 §3)."""
    body = b"".join(struct.pack("!II", left, right) for left, right in blocks)
    return b"\x01\x01" + bytes([5, 2 + len(body)]) + body


def bulk_with_sack(segments: int = 8, lost: int = 3) -> list:
    """A download with window scaling (client 7, server 2) and SACK: server segment `lost` is
    lost before the capture point; the client answers each later segment with a duplicate ACK
    whose SACK block covers what arrived beyond the hole; 2 ms after the third, the server fast-
    retransmits the segment; the client then ACKs everything."""
    conv = Conversation(isn_c=1000, isn_s=5000)
    conv.c(SYN, dt=0.0, opts=sack_ok_wscale(C_SHIFT), win=65535)
    conv.s(SYN | ACK, dt=0.010, opts=sack_ok_wscale(S_SHIFT), win=65535)
    conv.c(ACK, dt=0.0005, win=C_RAW_WIN)
    conv.c(PSH | ACK, b"GET /big HTTP/1.1\r\n\r\n", win=C_RAW_WIN)
    conv.s(ACK, win=4000)
    hole = None
    for i in range(segments):
        if i == lost:
            hole = conv.s_next
            conv.s_next += MSS  # never captured
            continue
        conv.s(ACK | PSH, b"d" * MSS, dt=0.001, win=4000)
        if hole is not None:
            conv.c(ACK, ack=hole, win=C_RAW_WIN, opts=sack_option((hole + MSS, conv.s_next)))
    conv.s(ACK | PSH, b"d" * MSS, seq=hole, dt=0.002, win=4000)  # fast retransmission
    conv.c(ACK, win=C_RAW_WIN)
    conv.close("client")
    return conv.frames


def collect(path, **kw):
    streams = StreamCollector(**kw)
    rtt = RttCollector()
    a = analyze(path, analyzers=[streams, rtt])
    conn = [c for c in a.connections if c.proto == 6][0]
    return conn, streams.log_of(conn), rtt


@pytest.fixture
def bulk(tmp_path):
    return pcapgen.write_pcap(tmp_path / "bulk-sack.pcap", bulk_with_sack())


# ------------------------------------------------------------------------------ tseq


def test_tseq_segments_retransmission_and_sack(bulk):
    conn, log, _ = collect(bulk)
    g = tseq_graph(log)
    assert g.direction == "resp" == data_direction(log)  # the server sent the bytes
    data = [b for b in g.segments if b.kind == "data" and not (b.syn or b.fin)]
    # relative numbers: the SYN/ACK is 0, the first data byte 1; segment 3 missing
    assert [(b.low, b.high) for b in data] == [
        (1 + i * MSS, 1 + (i + 1) * MSS) for i in (0, 1, 2, 4, 5, 6, 7)
    ]
    (re,) = g.by_kind("retransmission")
    assert (re.low, re.high) == (1 + 3 * MSS, 1 + 4 * MSS)
    # TcpAnalyzer's verdict, the one owner of "retransmission": this frame, fast retransmission
    from flowlens.analyzers.tcpanalysis import TcpAnalyzer

    tcp = TcpAnalyzer(keep_frames=True)
    analyze(bulk, analyzers=[tcp])
    assert tcp.kinds(re.frame) == ("fast_retransmission",)
    assert re.frame == max(b.frame for b in g.segments if not b.fin)
    # the SYN/ACK takes number 0, the FIN one number after the data
    syn = [b for b in g.segments if b.syn]
    assert [(b.low, b.high) for b in syn] == [(0, 1)]
    # SACK: each duplicate ACK's block covers segment 4 up to the newest segment
    hole = 1 + 3 * MSS
    assert [(b.low, b.high) for b in g.sacks] == [
        (hole + MSS, hole + MSS * k) for k in (2, 3, 4, 5)
    ]
    # the ACK line: the client's cumulative ACKs, stuck at the hole, then all of it
    acks = [y for _t, y in g.ack]
    assert acks.count(hole) == 4 and max(acks) == 1 + 8 * MSS + 1  # + the server's FIN


def client_windows(path) -> list[tuple[int, int]]:
    """(relative ACK, raw window) of every client packet with ACK, read with dpkt."""
    import dpkt

    out = []
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            tcp = dpkt.ethernet.Ethernet(buf).data.data
            if tcp.sport == 40000 and tcp.flags & ACK:
                out.append(((tcp.ack - 5000) & 0xFFFFFFFF, tcp.win))
    return out


def test_tseq_window_line_is_ack_plus_scaled_window(bulk):
    _, log, _ = collect(bulk)
    g = tseq_graph(log, "resp")
    assert g.window_scaled
    # every client ACK: ACK + (raw window << 7), the client's own shift (RFC 7323 §2.2)
    expected = [(a, a + (w << C_SHIFT)) for a, w in client_windows(bulk)]
    assert [(a, w) for (_t, a), (_t2, w) in zip(g.ack, g.window)] == expected
    assert expected[0] == (1, 1 + (C_RAW_WIN << C_SHIFT))  # 65536 bytes after the handshake
    # the other direction: the server's windows, scaled by its own shift (2), its SYN/ACK not
    g2 = tseq_graph(log, "orig")
    assert g2.window[0][1] - g2.ack[0][1] == 65535  # the SYN/ACK: never scaled
    assert g2.window[1][1] - g2.ack[1][1] == 4000 << S_SHIFT


def test_tseq_figure_artists_carry_the_series(bulk):
    _, log, _ = collect(bulk)
    g = tseq_graph(log)
    fig = draw_figure(g)
    (ax,) = fig.axes
    by_gid = {a.get_gid(): a for a in ax.get_children() if a.get_gid()}
    re = by_gid["segments-retransmission"].get_segments()
    assert [(s[0][1], s[1][1]) for s in re] == [
        (b.low, b.high) for b in g.by_kind("retransmission")
    ]
    assert [s[0][0] for s in re] == pytest.approx([b.t_s for b in g.by_kind("retransmission")])
    sacks = by_gid["sack"].get_segments()
    assert [(s[0][1], s[1][1]) for s in sacks] == [(b.low, b.high) for b in g.sacks]
    assert by_gid["ack"].get_xydata().tolist() == [list(p) for p in g.ack]
    assert by_gid["window"].get_xydata().tolist() == [list(p) for p in g.window]
    assert by_gid["ack"].get_drawstyle() == "steps-post"
    assert len(by_gid["segments-data"].get_segments()) == len(g.by_kind("data"))
    # the 64 KiB window over an 8 KB transfer: the axis stops above the data and says so
    edge = max(y for _t, y in g.window)
    assert ax.get_ylim()[1] < edge
    assert any(f"reaches {edge:,.0f}" in t.get_text() for t in ax.texts)


def test_tseq_bounded_memory(bulk):
    _, log, _ = collect(bulk, max_points=3)
    g = tseq_graph(log)
    assert len(g.segments) == 3 and g.dropped[0] > 0
    assert len(g.ack) <= 3


def test_tseq_only_for_wanted_connections(tmp_path):
    path = pcapgen.write_pcap(
        tmp_path / "two.pcap",
        sorted(pcapgen.clean_close() + pcapgen.clean_close(cport=40001, t=pcapgen.T0 + 1)),
    )
    streams = StreamCollector(lambda c: c.orig_p == 40001)
    a = analyze(path, analyzers=[streams])
    logs = [streams.log_of(c) for c in a.connections]
    assert logs[0] is None and logs[1] is not None


# ------------------------------------------------------------------------------ zero window


def test_zero_window_stall(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "zw.pcap", pcapgen.zero_window_stall())
    _, log, _ = collect(path)
    g = tseq_graph(log, "resp")
    assert len(g.by_kind("zero_window_probe")) == 4
    # during the stall the window's edge is the ACK itself (window 0)
    stalled = [(a, w) for (_t, a), (_t2, w) in zip(g.ack, g.window) if a == w]
    assert len(stalled) == 5  # the zero window and the four probe ACKs
    w = window_graph(log)
    client = [y for _t, y in w.windows["orig"]]
    assert client.count(0.0) == 5 and client[-1] == 65535.0
    # bytes in flight: the 1000 bytes that filled the window, until the client ACKs them
    assert max(y for _t, y in w.in_flight) == 1000.0
    fig = draw_figure(w)
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    assert lines["window-orig"].get_xydata()[:, 1].tolist() == client
    assert lines["in-flight"].get_xydata().tolist() == [list(p) for p in w.in_flight]


def test_linux_zero_window_probes_are_drawn_as_probes(tmp_path):
    """Probes at SND.NXT - 1 while the peer's window is 0 are the TCP analysis' zero-window
    probes in the stream graph too, not keep-alives (zero-length ones draw no segment bar, as
    zero-length keep-alives do not: the one-byte form here)."""
    path = pcapgen.write_pcap(tmp_path / "lzw.pcap", pcapgen.linux_zero_window_probe(garbage=True))
    _, log, _ = collect(path)
    g = tseq_graph(log, "resp")
    assert len(g.by_kind("zero_window_probe")) == 3 and g.by_kind("keep_alive") == []


def test_in_flight_of_the_bulk_transfer(bulk):
    _, log, _ = collect(bulk)
    w = window_graph(log)
    assert w.direction == "resp"
    # the request was ACKed (ack 1); before the client's first dup ACK, segments 0-2 and 4 are
    # out: highest sent 5001 (segment 4's end) - 1 = 5000 bytes
    values = [y for _t, y in w.in_flight]
    assert 5000.0 in values
    assert values[-1] == 0.0  # everything ACKed at the end


# ------------------------------------------------------------------------------ throughput


def steady_stream(count: int = 40, gap: float = 0.01) -> list:
    conv = Conversation()
    conv.handshake()
    for _ in range(count):
        conv.c(PSH | ACK, b"u" * MSS, dt=gap)
    conv.s(ACK)
    conv.close("client")
    return conv.frames


def test_throughput_moving_average(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "steady.pcap", steady_stream())
    _, log, _ = collect(path)
    g = throughput_graph(log, window_s=0.095)
    orig, resp = g.series
    assert orig.direction == "orig" and resp.throughput == []
    assert len(orig.throughput) == 40 and all(y == MSS for _t, y in orig.segments)
    # a full window holds 10 segments (every 10 ms) over 95 ms
    assert orig.throughput[-1][1] == pytest.approx(10 * MSS * 8 / 0.095)
    assert orig.goodput == orig.throughput  # nothing sent twice
    fig = draw_figure(g)
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    assert lines["throughput-orig"].get_xydata().tolist() == [list(p) for p in orig.throughput]


def test_goodput_leaves_out_the_retransmission(bulk):
    _, log, _ = collect(bulk)
    (series,) = throughput_graph(log, 10.0, "resp").series
    last_t, last = series.throughput[-1]
    assert series.goodput[-1][1] == pytest.approx(last * 7 / 8)


# ------------------------------------------------------------------------------ rtt


def test_rtt_samples_from_the_collector(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "rtt.pcap", pcapgen.rtt_exchange())
    conn, log, rtt = collect(path)
    g = rtt_graph(log, rtt.state_of(conn))
    assert [y for _t, y in g.samples[("resp", "ack")]] == pytest.approx([20.0, 30.0], abs=1e-6)
    assert [y for _t, y in g.samples[("orig", "ack")]] == pytest.approx([3.0, 4.0], abs=1e-6)
    fig = draw_figure(g)
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    assert lines["rtt-resp-ack"].get_xydata()[:, 1].tolist() == pytest.approx([20.0, 30.0])
    assert lines["rtt-resp-ack"].get_linestyle() == "None"


def test_rtt_marked_by_source(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "rtt-ts.pcap", pcapgen.rtt_retransmission_ts())
    conn, log, rtt = collect(path)
    g = rtt_graph(log, rtt.state_of(conn))
    # the retransmitted request: no `ack` sample (Karn), its TSval echoed: 15 ms from the copy
    assert [y for _t, y in g.samples[("resp", "ts")]] == pytest.approx([15.0], abs=1e-6)
    lines = {line.get_gid(): line for line in draw_figure(g).axes[0].get_lines()}
    assert lines["rtt-resp-ts"].get_marker() != lines["rtt-orig-ack"].get_marker()


# ------------------------------------------------------------------------------ the command


def uid_of(path, proto: int = 6) -> str:
    return [c.uid for c in analyze(path).connections if c.proto == proto][0]


def run(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("kind", ["tseq", "throughput", "rtt", "window"])
def test_cli_writes_png(bulk, tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    r = run("plot", bulk, "--uid", uid_of(bulk), "--kind", kind, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.stdout == "" and f"Wrote {out}" in r.stderr


def test_cli_svg_keeps_the_artists_ids(bulk, tmp_path):
    out = tmp_path / "tseq.svg"
    r = run("plot", bulk, "--uid", uid_of(bulk)[:6], "-o", str(out), "--direction", "resp")
    assert r.exit_code == 0, r.stderr
    svg = out.read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
    assert 'id="segments-retransmission"' in svg and 'id="sack"' in svg


def test_cli_unknown_uid(bulk, tmp_path):
    r = run("plot", bulk, "--uid", "Cnothere", "-o", str(tmp_path / "x.png"))
    assert r.exit_code == 0  # nothing matched: said, exit 0, no picture (as every command)
    assert r.stderr == f"{bulk}: no connection matches the filters\n"
    assert not (tmp_path / "x.png").exists()


def test_cli_ambiguous_and_missing_uid(tmp_path):
    path = pcapgen.write_pcap(
        tmp_path / "two.pcap",
        sorted(pcapgen.clean_close() + pcapgen.clean_close(cport=40001, t=pcapgen.T0 + 1)),
    )
    r = run("plot", path, "--uid", "C", "-o", str(tmp_path / "x.png"))
    assert r.exit_code == 1
    assert r.stderr == f"Error: {path}: uid prefix C matches 2 connections\n"
    r = run("plot", path, "-o", str(tmp_path / "x.png"))
    assert r.exit_code == 2 and "Missing option '--uid'" in r.stderr


def test_cli_udp_uid(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "udp.pcap", pcapgen.udp_exchange())
    uid = uid_of(path, proto=17)
    r = run("plot", path, "--uid", uid, "-o", str(tmp_path / "x.png"))
    assert r.exit_code == 1
    assert r.stderr == (
        f"Error: {path}: {uid} is a UDP flow; stream graphs draw TCP connections "
        "(`flowlens rtt` shows its round trips)\n"
    )


def test_cli_checks_the_picture_format_first(bulk, tmp_path):
    r = run("plot", "/nonexistent.pcap", "--uid", "C", "-o", str(tmp_path / "x.txt"))
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {tmp_path / 'x.txt'}: unknown picture format ('.txt'")


def test_help_has_an_example():
    r = run("plot", "--help")
    assert r.exit_code == 0 and "flowlens plot capture.pcap --uid" in r.stdout


def test_fin_counts_in_the_sequence_space(bulk):
    _, log, _ = collect(bulk)
    fins = [b for b in tseq_graph(log, "orig").segments if b.fin]
    assert len(fins) == 1 and fins[0].high == fins[0].low + 1


def test_flags_kept(bulk):
    _, log, _ = collect(bulk)
    rows = log.sides[1].rows("segments")
    assert rows[0][3] & SYN and any(r[3] & FIN for r in rows)


# ------------------------------------------------------------------------------ the report


def report_capture(tmp_path) -> str:
    """A lossy download (retransmissions), a zero-window stall, and five clean connections."""
    t = pcapgen.T0
    frames = pcapgen.lossy_download(t=t, cport=50001, sport=8443)
    frames += pcapgen.zero_window_stall(t=t + 2, cport=50002, sport=9443)
    for i in range(5):
        frames += pcapgen.clean_close(t=t + 4 + i, cport=51000 + i)
    frames.sort(key=lambda f: f[0])
    return pcapgen.write_pcap(tmp_path / "report.pcap", frames)


def _svg_series(svg: str) -> dict[str, int]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    return {
        e.get("data-kind") or e.get("data-label"): int(e.get("data-points"))
        for e in root.iter()
        if "series" in (e.get("class") or "").split()
    }


def test_report_draws_tseq_for_retransmissions_and_zero_window(tmp_path):
    from flowlens.reports.html import render_html
    from flowlens.reports.postmortem import ReportOptions, build_report

    path = report_capture(tmp_path)
    report = build_report(path, options=ReportOptions(max_stream_graphs=4))
    drawn = {v.uid: v for v in report.ladders}
    with_graph = [uid for uid, v in drawn.items() if v.stream is not None]
    ports = {v.record["id.resp_p"] for v in drawn.values() if v.stream is not None}
    assert ports == {8443, 9443} and len(with_graph) == 2
    assert report.passes == 1  # the graphs' segments come from the same pass
    for uid in with_graph:
        pic = drawn[uid].stream
        assert pic.svg.startswith("<svg ") and pic.name == f"tseq-{uid}"
    text = render_html(report)
    assert text.count('aria-label="time-sequence graph of') == 2
    # the same series `flowlens plot` draws
    lossy = next(uid for uid, v in drawn.items() if v.record["id.resp_p"] == 8443)
    _, log, _ = collect(path, wants=lambda c: c.uid == lossy)
    graph = tseq_graph(log)
    assert len(graph.by_kind("retransmission")) == 4
    series = _svg_series(drawn[lossy].stream.svg)
    assert series["retransmission"] == 4
    assert series["data"] == len(graph.by_kind("data"))
    assert series["ACK"] == len(graph.ack)
    # bounded, and none at all by default: the ladder names the command instead
    one = build_report(path, options=ReportOptions(max_stream_graphs=1))
    assert sum(v.stream is not None for v in one.ladders) == 1
    assert sum(v.stream_hint is not None for v in one.ladders) == 1
    none = build_report(path)
    assert none.passes == 1 and all(v.stream is None for v in none.ladders)
    hints = [v.stream_hint for v in none.ladders if v.stream_hint]
    assert hints == [
        f"flowlens plot {path} --uid {v.uid} --kind tseq -o {v.uid}-tseq.png"
        for v in none.ladders
        if v.uid in with_graph
    ]
    assert f"Time-sequence graph: <code>{hints[0]}</code>" in render_html(none)


def test_report_markdown_saves_the_tseq_picture(tmp_path):
    path = report_capture(tmp_path)
    md = tmp_path / "r.md"
    r = run("report", path, "--markdown", str(md), "--stream-graphs", "4")
    assert r.exit_code == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "r_files").iterdir())
    assert sum(n.startswith("tseq-") and n.endswith(".svg") for n in names) == 2
    assert "tseq-" in md.read_text()


def test_report_from_stdin_draws_the_graphs_in_its_one_pass(tmp_path):
    path = report_capture(tmp_path)
    out = tmp_path / "r.html"
    with open(path, "rb") as f:
        r = CliRunner().invoke(
            cli, ["report", "-", "-o", str(out), "--stream-graphs", "4"], input=f.read()
        )
    assert r.exit_code == 0, r.stderr
    assert "cannot be read twice" not in r.stderr
    assert out.read_text().count('aria-label="time-sequence graph of') == 2


# ------------------------------------------------------------------------------ against tshark

TSHARK_CAPTURES = (
    "other/captures/suricata__bug-4376_syn_retransmit_with_ts.pcap",  # SACK, window scaling
    "zeek/traces/tcp__retransmit-fast009.pcap",
    "zeek/traces/http__m57-long-49583-80.pcap",
    "zeek/traces/ssh__ssh.pcap",
)


def tshark_acks(path: str) -> dict[int, tuple]:
    """frame -> (relative ACK, calculated window size, SACK blocks) as tshark says."""
    import subprocess

    out = subprocess.run(
        ["tshark", "-r", path, "-Y", "tcp.flags.ack == 1", "-T", "fields", "-E", "separator=|",
         "-e", "frame.number", "-e", "tcp.ack", "-e", "tcp.window_size",
         "-e", "tcp.options.sack_le", "-e", "tcp.options.sack_re"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = {}
    for line in out.splitlines():
        frame, ack, win, le, re = line.split("|")
        blocks = list(zip(map(int, le.split(",")), map(int, re.split(",")))) if le else []
        rows[int(frame)] = (int(ack), int(win), blocks)
    return rows


@pytest.mark.corpus
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", TSHARK_CAPTURES)
def test_ack_window_and_sack_agree_with_tshark(name):
    """The ACK and window lines and SACK blocks of every connection, frame by frame, equal
    tshark's relative `tcp.ack`, its scaled `tcp.window_size` and its relative SACK edges."""
    from corpus import CORPUS

    path = str(CORPUS / name)
    want = tshark_acks(path)
    streams = StreamCollector(lambda c: True)
    a = analyze(path, analyzers=[streams])
    checked = 0
    for conn in a.connections:
        log = streams.log_of(conn)
        if log is None:
            continue
        for side in log.sides:
            sacks: dict[int, list] = {}
            for _ts, left, right, frame in side.rows("sacks"):
                sacks.setdefault(frame, []).append((left, right))
            for _ts, ack, win, flags, frame in side.rows("acks"):
                if flags & ACK and frame in want:
                    assert (ack, win, sacks.get(frame, [])) == want[frame], (name, frame)
                    checked += 1
    assert checked > 30


def test_midstream_window_scale_unknown(tmp_path):
    """No handshake: the scale is unknown, the window is drawn raw and the graph says so."""
    path = pcapgen.write_pcap(tmp_path / "mid.pcap", pcapgen.midstream())
    _, log, _ = collect(path)
    g = tseq_graph(log)
    assert not g.window_scaled
    assert all(w - a == 65535 for (_t, a), (_t2, w) in zip(g.ack, g.window))
    labels = [line.get_label() for line in draw_figure(g).axes[0].get_lines()]
    assert "receive window (scale unknown: unscaled)" in labels
    # a side whose SYN was not seen starts at 1, as Wireshark's relative numbers do
    assert min(b.low for b in g.segments) == 1
