"""Round-trip times: exact values on tiny captures, the CLI, plots, and agreement with tshark.

tshark is the reference for the handshake (tcp.analysis.initial_rtt, from ../shared/corpus/truth)
and for data RTTs (tcp.analysis.acks_frame / ack_rtt, computed here by the installed tshark).
Without tshark those tests skip, except under CI (CI=true), where they fail: CI installs it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pcapgen
import pytest
from click.testing import CliRunner
from corpus import CORPUS, needs_corpus
from pcapgen import ACK, FIN, PSH, RST, SYN, Conversation

from flowlens import Config, analyze, format_addr
from flowlens.analyzers.rtt import RttCollector, RttConfig, Samples, stats_of
from flowlens.cli import cli
from flowlens.reports.rtt import Aggregator, Series, connection_rows, draw_figure, samples_frame

TRACES = sorted((CORPUS / "zeek" / "traces").glob("*")) + sorted(
    (CORPUS / "other" / "captures").glob("*")
)
REAL_LOOPBACK = CORPUS / "zeek" / "traces" / "echo-connections.pcap"  # 500 echo connections on lo


_RTT: list[RttCollector] = []  # the collector of the last `_analyze`


def _analyze(tmp_path, frames, name="t.pcap", config=None, nano=False):
    path = tmp_path / name
    path.write_bytes(pcapgen.pcap_bytes(frames, nano=nano))
    _RTT[:] = [RttCollector(config)]
    return analyze(str(path), analyzers=_RTT)


def rtt_of(conn):
    """The RTT state the last `_analyze`'s collector keeps for `conn` (its public accessor)."""
    return _RTT[0].state_of(conn)


def _samples(conn):
    return [
        (s.leg, s.source, s.rtt_ns, s.frame, s.answer_frame) for s in rtt_of(conn).iter_samples()
    ]


# ---------------------------------------------------------------------- tiny captures, exact values


def test_exchange_gives_exact_samples_per_leg(tmp_path):
    [c] = _analyze(tmp_path, pcapgen.rtt_exchange()).connections
    assert (c.synack_ms, c.ackdat_ms) == (10.0, 0.5)
    # request 4 -> ACK 5; two response segments 6, 7 -> one ACK 8, timed from the newest (7);
    # request 9 -> answer 10 (data + ACK); answer 10 -> ACK 11. The FINs give nothing.
    assert _samples(c) == [
        ("resp", "ack", 20_000_000, 4, 5),
        ("orig", "ack", 3_000_000, 7, 8),
        ("resp", "ack", 30_000_000, 9, 10),
        ("orig", "ack", 4_000_000, 10, 11),
    ]
    st = rtt_of(c).stats("resp")
    assert (st.count, st.min_ms, st.max_ms, st.mean_ms, st.kept) == (2, 20.0, 30.0, 25.0, 2)
    assert st.p50_ms == pytest.approx(25.0) and st.p90_ms == pytest.approx(29.0)
    assert st.p99_ms == pytest.approx(29.9) and st.stdev_ms == pytest.approx(math.sqrt(50))


def test_rows_say_where_the_time_was_measured(tmp_path):
    [c] = _analyze(tmp_path, pcapgen.rtt_exchange()).connections
    rows = connection_rows(c, _RTT[0])
    assert [
        (r["leg"], r["path"], r["handshake_ms"], r["count"], r["p50_ms"], r["sources"])
        for r in rows
    ] == [
        ("resp", "cap>resp>cap", 10.0, 2, 25.0, {"ack": 2}),
        ("orig", "cap>orig>cap", 0.5, 2, 3.5, {"ack": 2}),
    ]
    assert rows[1]["stdev_ms"] == pytest.approx(0.707)  # rounded to the microsecond


def test_karn_no_sample_from_retransmitted_data(tmp_path):
    [c] = _analyze(tmp_path, pcapgen.retransmission()).connections  # no timestamps option
    st = rtt_of(c)
    assert st.count("resp") == 0 and st.karn_skipped == [0, 1]


def test_karn_one_byte_at_snd_nxt_minus_one_not_yet_acked(tmp_path):
    """The byte sent again 206 ms later at SND.NXT-1 is a retransmission (RFC 9293 §3.8.4: not a
    keep-alive, the peer had not ACKed it), so the ACK 10 ms after it gives no sample (RFC 6298
    §3, Karn), where the old keep-alive verdict timed it from the first copy: 216 ms."""
    path = tmp_path / "one.pcap"
    pcapgen.write_pcap(path, pcapgen.one_byte_retransmission())
    rtt = RttCollector()
    (conn,) = analyze(str(path), analyzers=[rtt]).connections
    st = rtt.state_of(conn)
    assert st.stats("resp").count == 0 and st.karn_skipped == [0, 1]


def test_acked_keep_alive_is_not_a_retransmission(tmp_path):
    """Keep-alives after the peer ACKed everything (RFC 9293 §3.8.4) hold nothing back."""
    path = tmp_path / "ka.pcap"
    pcapgen.write_pcap(path, pcapgen.keep_alive_idle())
    rtt = RttCollector()
    (conn,) = analyze(str(path), analyzers=[rtt]).connections
    assert rtt.state_of(conn).karn_skipped == [0, 0]


def test_timestamps_echo_times_the_retransmission(tmp_path):
    [c] = _analyze(tmp_path, pcapgen.rtt_retransmission_ts()).connections
    # the ACK (6) covers retransmitted data: Karn drops the ACK sample, but it echoes the second
    # copy's TSval (frame 5), so the sample is 15 ms from that copy, not 215 ms from the first
    assert _samples(c) == [("resp", "ts", 15_000_000, 5, 6), ("orig", "ack", 2_000_000, 7, 8)]
    assert rtt_of(c).karn_skipped == [0, 1]


def test_cumulative_and_partial_acks(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.c(PSH | ACK, b"a" * 100)  # 4
    conv.c(PSH | ACK, b"b" * 100, dt=0.001)  # 5
    conv.s(ACK, ack=conv.c_next - 150, dt=0.010)  # 6: ends inside segment 5: no sample
    conv.s(ACK, dt=0.002)  # 7: covers the rest: timed from segment 5's first sighting
    conv.c(PSH | ACK, b"c" * 100, dt=0.1)  # 8
    conv.c(PSH | ACK, b"d" * 100, dt=0.001)  # 9
    conv.s(ACK, dt=0.007)  # 10: covers 8 and 9, ends at 9: timed from 9
    [c] = _analyze(tmp_path, conv.frames).connections
    assert _samples(c) == [("resp", "ack", 12_000_000, 5, 7), ("resp", "ack", 7_000_000, 9, 10)]


def test_rst_is_not_an_answer(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.c(PSH | ACK, b"x" * 10)
    conv.s(RST | ACK, dt=0.005)  # acknowledges the data, but an abort is not a round trip
    [c] = _analyze(tmp_path, conv.frames).connections
    assert rtt_of(c).count("resp") == 0


def test_capture_duplicates_are_not_retransmissions(tmp_path):
    frames = [f for t, frame in pcapgen.rtt_exchange() for f in ((t, frame), (t + 0.000001, frame))]
    [c] = _analyze(tmp_path, frames).connections
    assert [(leg, src, rtt) for leg, src, rtt, _f, _a in _samples(c)] == [
        ("resp", "ack", 20_000_000), ("orig", "ack", 3_000_000),
        ("resp", "ack", 30_000_000), ("orig", "ack", 4_000_000),
    ]  # fmt: skip
    assert rtt_of(c).karn_skipped == [0, 0]


def test_zero_window_probe_is_not_a_retransmission(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.c(PSH | ACK, b"x" * 100)
    conv.s(ACK, win=0, dt=0.004)  # sample 4 ms; the server's window is closed
    probe_seq = conv.c_next
    conv.c(ACK, b"y", dt=0.2)  # zero-window probe: one byte at the next sequence number
    conv.s(ACK, win=0, ack=probe_seq, dt=0.004)  # not accepted
    conv.s(ACK, ack=probe_seq, dt=0.05)  # window update
    conv.c(PSH | ACK, b"y" * 100, seq=probe_seq, dt=0.001)  # the data, starting with that byte
    conv.s(ACK, dt=0.006)
    [c] = _analyze(tmp_path, conv.frames).connections
    assert [(s.rtt_ns, s.source) for s in rtt_of(c).iter_samples("resp")] == [
        (4_000_000, "ack"),
        (6_000_000, "ack"),
    ]


def test_sequence_numbers_wrap(tmp_path):
    conv = Conversation(isn_c=0xFFFFFF00, isn_s=0xFFFFFFF0)
    conv.handshake()
    for _ in range(3):  # crosses 2**32 on both sides
        conv.c(PSH | ACK, b"a" * 200)
        conv.s(PSH | ACK, b"b" * 100, dt=0.003)
        conv.c(ACK, dt=0.001)
    [c] = _analyze(tmp_path, conv.frames).connections
    assert [s.rtt_ns for s in rtt_of(c).iter_samples("resp")] == [3_000_000] * 3
    assert [s.rtt_ns for s in rtt_of(c).iter_samples("orig")] == [1_000_000] * 3


def test_dns_by_query_id(tmp_path):
    [c] = _analyze(tmp_path, pcapgen.rtt_dns()).connections
    # out-of-order answers pair by id; the query sent twice gives no sample (Karn)
    assert _samples(c) == [("resp", "dns", 3_000_000, 2, 3), ("resp", "dns", 8_000_000, 1, 4)]
    assert rtt_of(c).karn_skipped == [0, 1]


def test_udp_reply_after_request_and_icmp_echo(tmp_path):
    [u] = _analyze(tmp_path, pcapgen.rtt_udp_request_reply()).connections
    assert _samples(u) == [("resp", "udp", 5_000_000, 1, 2), ("resp", "udp", 7_000_000, 3, 4)]
    [i] = _analyze(tmp_path, pcapgen.icmp_echo(), "ping.pcap").connections
    assert _samples(i) == [("resp", "icmp", 2_000_000, 1, 2), ("resp", "icmp", 2_000_000, 3, 4)]


def test_nanosecond_capture_keeps_nanoseconds(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.c(PSH | ACK, b"a")
    conv.s(ACK, dt=0.000000123)
    # float seconds cannot hold 1.7e9 + 123 ns exactly: allow the builder's own rounding
    [c] = _analyze(tmp_path, conv.frames, nano=True).connections
    [s] = list(rtt_of(c).iter_samples())
    assert abs(s.rtt_ns - 123) <= 240


def test_clock_going_backwards_gives_no_negative_sample(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.c(PSH | ACK, b"a" * 10)
    conv.s(ACK, dt=-0.5)  # the capture's clock jumped back
    conv.c(PSH | ACK, b"b" * 10, dt=0.6)
    conv.s(ACK, dt=0.002)
    [c] = _analyze(tmp_path, conv.frames).connections
    assert [s.rtt_ns for s in rtt_of(c).iter_samples()] == [2_000_000]


# ---------------------------------------------------------------------- bounded memory


def test_outstanding_segments_are_bounded(tmp_path):
    conv = Conversation()
    conv.handshake()
    for _ in range(10):
        conv.c(PSH | ACK, b"a" * 10, dt=0.0001)
    conv.s(ACK, dt=0.005)
    [c] = _analyze(tmp_path, conv.frames, config=RttConfig(max_outstanding=4)).connections
    st = rtt_of(c)
    assert st.untracked == [6, 0]
    assert st.count("resp") == 0  # the ACK ends at an untracked segment: no guess


def test_reservoir_keeps_exact_aggregates():
    rng = random.Random(7)
    values = [rng.randrange(1_000, 50_000_000) for _ in range(5000)]
    s = Samples(cap=256, seed="x")
    for i, v in enumerate(values):
        s.add(i, v, i, i + 1, 0)
    st = s.stats()
    exact = stats_of(values)
    assert (st.count, st.kept, st.min_ms, st.max_ms) == (5000, 256, exact.min_ms, exact.max_ms)
    assert st.mean_ms == pytest.approx(exact.mean_ms, rel=1e-12)
    assert st.stdev_ms == pytest.approx(exact.stdev_ms, rel=1e-9)
    assert st.p50_ms == pytest.approx(exact.p50_ms, rel=0.15)  # estimated from 256 kept


def test_samples_keep_the_first_sample_and_seed_by_leg():
    s = Samples(cap=8)
    assert list(s.data) == [] and s.kept == 0 and s.by_source == [0] * 5
    s.add(10, 20, 1, 2, 0)
    assert list(s.data) == [10, 20, 1, 2, 0] and s.kept == 1
    s.add(30, 40, 3, 4, 1)
    assert list(s.rows()) == [(10, 20, 1, 2, 0), (30, 40, 3, 4, 1)]
    assert s.by_source == [1, 1, 0, 0, 0] and s.totals() == (2, 60, 2000, 20, 40)
    one = Samples(cap=8)
    one.add(5, 7, 1, 2, 2)
    assert list(one.rows()) == [(5, 7, 1, 2, 2)] and one.stats().count == 1
    # past the cap: a reservoir seeded by (seed, leg) draws as one seeded by f"{seed}/{leg}"
    a, b = Samples(cap=2, seed="C1", leg=1), Samples(cap=2, seed="C1/1")
    for i in range(50):
        a.add(i, 1000 + i, i, i + 1, 0)
        b.add(i, 1000 + i, i, i + 1, 0)
    assert list(a.rows()) == list(b.rows()) and a.stats() == b.stats() and a.kept == 2


def test_percentiles_match_numpy():
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    for n in (1, 2, 3, 10, 101):
        values = [rng.randrange(0, 10**9) for _ in range(n)]
        st = stats_of(values)
        for p, got in ((50, st.p50_ms), (90, st.p90_ms), (99, st.p99_ms)):
            assert got == pytest.approx(np.percentile(values, p) / 1e6, rel=1e-12)
        if n > 1:
            assert st.stdev_ms == pytest.approx(np.std(values, ddof=1) / 1e6, rel=1e-9)


# ---------------------------------------------------------------------- reports and CLI


def _write(tmp_path, frames, name="c.pcap"):
    path = tmp_path / name
    path.write_bytes(pcapgen.pcap_bytes(frames))
    return str(path)


def _mixed(tmp_path):
    """Two servers: the rtt_exchange connection, a second one to another server, DNS and ping."""
    other = Conversation(server="198.51.100.99", cport=40001, t=pcapgen.T0 + 1)
    other.handshake(synack_dt=0.050)
    other.exchange()
    frames = pcapgen.rtt_exchange() + other.frames + pcapgen.rtt_dns(t=pcapgen.T0 + 2)
    frames += pcapgen.icmp_echo(t=pcapgen.T0 + 3)
    frames.sort(key=lambda f: f[0])
    return _write(tmp_path, frames)


def test_cli_table_json_csv(tmp_path):
    path = _write(tmp_path, pcapgen.rtt_exchange())
    runner = CliRunner()
    res = runner.invoke(cli, ["rtt", path])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["uid", "orig", "resp", "path"]
    assert "cap>resp>cap" in lines[1] and "cap>orig>cap" in lines[2] and len(lines) == 3
    assert "path: cap>resp>cap = capture point to responder and back" in res.stderr
    wide = runner.invoke(cli, ["rtt", path, "--wide"]).stdout.splitlines()
    assert wide[0].split()[:7] == ["uid", "start", "(UTC)", "proto", "orig", "resp", "path"]
    res = runner.invoke(cli, ["rtt", path, "--format", "json"])
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["path"], r["count"], r["min_ms"], r["max_ms"], r["handshake_ms"]) for r in recs] == [
        ("cap>resp>cap", 2, 20.0, 30.0, 10.0),
        ("cap>orig>cap", 2, 3.0, 4.0, 0.5),
    ]
    res = runner.invoke(cli, ["rtt", path, "--format", "csv"])
    header, first = res.stdout.splitlines()[:2]
    assert header.startswith(
        "uid,ts,proto,id.orig_h,id.orig_p,id.resp_h,id.resp_p,leg,path,handshake_ms,count,min_ms"
    )
    assert ",resp,cap>resp>cap,10.0,2,20.0," in first


def test_cli_samples(tmp_path):
    res = CliRunner().invoke(
        cli, ["rtt", _write(tmp_path, pcapgen.rtt_exchange()), "--samples", "--format", "json"]
    )
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["leg"], r["source"], r["rtt_ms"], r["frame"], r["answer_frame"]) for r in recs] == [
        ("resp", "ack", 20.0, 4, 5), ("orig", "ack", 3.0, 7, 8), ("resp", "ack", 30.0, 9, 10), ("orig", "ack", 4.0, 10, 11),
    ]  # fmt: skip


def test_cli_by_server_client_pair(tmp_path):
    path = _mixed(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["rtt", path, "--by", "server", "--format", "json"])
    assert res.exit_code == 0, res.output
    recs = {r["host"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert set(recs) == {"198.51.100.20", "198.51.100.99"}
    a = recs["198.51.100.20"]  # the exchange, the DNS flow and the pings share this server
    assert (a["path"], a["conns"], a["handshakes"], a["handshake_p50_ms"]) == (
        "cap>resp>cap",
        3,
        1,
        10.0,
    )
    assert a["sources"] == {"ack": 2, "dns": 2, "icmp": 2}
    assert (a["count"], a["min_ms"], a["max_ms"]) == (6, 2.0, 30.0)
    b = recs["198.51.100.99"]
    assert (b["handshake_p50_ms"], b["count"], b["min_ms"]) == (50.0, 1, 1.0)
    res = runner.invoke(cli, ["rtt", path, "--by", "client", "--format", "json"])
    [r] = [json.loads(line) for line in res.stdout.splitlines()]
    assert (r["host"], r["path"], r["conns"], r["count"]) == ("192.0.2.10", "cap>orig>cap", 2, 3)
    res = runner.invoke(cli, ["rtt", path, "--by", "pair"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 1 + 4  # header, two legs per pair


def test_cli_filters(tmp_path):
    res = CliRunner().invoke(cli, ["rtt", _mixed(tmp_path), "--proto", "udp", "--format", "json"])
    [r] = [json.loads(line) for line in res.stdout.splitlines()]
    assert (r["proto"], r["id.resp_p"], r["sources"], r["karn_skipped"]) == (
        "udp",
        53,
        {"dns": 2},
        1,
    )
    assert "matching the filters" in res.stderr


def test_cli_plot(tmp_path):
    out = tmp_path / "rtt.png"
    res = CliRunner().invoke(cli, ["rtt", _mixed(tmp_path), "--by", "server", "--plot", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "rtt.nope"
    res = CliRunner().invoke(cli, ["rtt", _mixed(tmp_path), "--plot", str(bad)])
    assert res.exit_code == 1 and res.stdout == ""  # checked before the work, as every command
    assert res.stderr.startswith(f"Error: {bad}: unknown picture format ('.nope'; use png, svg")


def test_cli_help_ends_with_example():
    res = CliRunner().invoke(cli, ["rtt", "--help"])
    assert res.exit_code == 0
    body = res.stdout.split("Options:")[0].rstrip()
    assert "Example:" in body and body.splitlines()[-1].strip().startswith("flowlens rtt ")


def test_cli_missing_file(tmp_path):
    res = CliRunner().invoke(cli, ["rtt", str(tmp_path / "none.pcap")])
    assert res.exit_code == 1 and res.stderr.startswith("Error: ")


def test_figure_data():
    a = Series("a", [10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
    b = Series("b", [10.5, 10.2], [5.0, 4.0])  # out of order: drawn in time order
    fig = draw_figure([a, b])
    ax_time, ax_hist = fig.axes
    lines = {line.get_label(): line for line in ax_time.get_lines()}
    assert list(lines["a"].get_xdata()) == [0.0, 1.0, 2.0] and list(lines["a"].get_ydata()) == [
        1.0,
        2.0,
        3.0,
    ]
    assert list(lines["b"].get_xdata()) == pytest.approx([0.2, 0.5]) and list(
        lines["b"].get_ydata()
    ) == [4.0, 5.0]
    assert sum(p.get_height() for p in ax_hist.patches) == 5
    many = [Series(f"s{i}", [float(i)], [1.0 + i]) for i in range(15)]
    labels = [line.get_label() for line in draw_figure(many, max_lines=12).axes[0].get_lines()]
    assert len(labels) == 13 and labels[-1] == "other (3)"


def test_samples_frame_and_aggregator(tmp_path):
    rtt = RttCollector()
    a = analyze(_mixed(tmp_path), analyzers=[rtt])
    df = samples_frame(a.connections, rtt)
    assert len(df) == 4 + 2 + 2 + 2  # exchange, second connection (one per leg), DNS, ping
    assert df.groupby("source").size().to_dict() == {"ack": 6, "dns": 2, "icmp": 2}
    agg = Aggregator("pair", rtt)
    for c in a.connections:
        agg.add(c)
    assert [(r["resp_h"], r["leg"]) for r in agg.rows()] == [
        ("198.51.100.20", "resp"), ("198.51.100.20", "orig"), ("198.51.100.99", "resp"), ("198.51.100.99", "orig"),
    ]  # fmt: skip


# ---------------------------------------------------------------------- agreement with tshark


def _need_tshark() -> str:
    exe = shutil.which("tshark")
    if exe is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("tshark is missing under CI (.ci/run installs it)", pytrace=False)
        pytest.skip("tshark not installed")
    return exe


_FIELDS = (
    "frame.number", "frame.time_epoch", "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst",
    "ipv6.dst", "tcp.dstport", "tcp.flags", "tcp.seq", "tcp.nxtseq", "tcp.ack", "tcp.len",
    "tcp.analysis.acks_frame", "tcp.analysis.ack_rtt", "tcp.analysis.retransmission",
    "tcp.analysis.out_of_order", "tcp.analysis.spurious_retransmission",
    "tcp.analysis.zero_window_probe", "ip.len", "ip.hdr_len", "tcp.hdr_len",
)  # fmt: skip


@functools.cache
def _tshark(path: Path) -> dict[int, dict]:
    """Per TCP frame: tshark's view (relative sequence numbers); read-only, cached per file."""
    cmd = [_need_tshark(), "-r", str(path), "-n", "-Y", "tcp && !icmp && !icmpv6", "-T", "fields",
           "-E", "separator=\t", "-o", "tcp.relative_sequence_numbers:TRUE"]  # fmt: skip
    for f in _FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    frames = {}
    for line in out.splitlines():
        v = dict(zip(_FIELDS, line.split("\t")))
        last = lambda k: v[k].split(",")[-1]  # noqa: E731, B023 - tunnels list outer then inner
        if not v["tcp.stream"]:
            continue
        frames[int(v["frame.number"])] = {
            "ts_ns": round(float(v["frame.time_epoch"]) * 1e9),
            "stream": int(v["tcp.stream"].split(",")[0]),
            "src": (last("ip.src") or last("ipv6.src"), int(v["tcp.srcport"].split(",")[0])),
            "dst": (last("ip.dst") or last("ipv6.dst"), int(v["tcp.dstport"].split(",")[0])),
            "flags": int(v["tcp.flags"].split(",")[0], 16),
            "seq": int(v["tcp.seq"].split(",")[0] or 0),
            "nxtseq": int(v["tcp.nxtseq"].split(",")[0] or 0),
            "ack": int(v["tcp.ack"].split(",")[0] or 0),
            "len": int(v["tcp.len"].split(",")[0] or 0),
            "ip_payload": (int(last("ip.len")) - int(last("ip.hdr_len")) - int(v["tcp.hdr_len"].split(",")[0]))
            if v["ip.len"] else None,
            "acks": int(v["tcp.analysis.acks_frame"]) if v["tcp.analysis.acks_frame"] else None,
            # tshark prints no ack_rtt when it is 0
            "ack_rtt_ns": round(float(v["tcp.analysis.ack_rtt"]) * 1e9) if v["tcp.analysis.ack_rtt"] else 0,
            "resent": bool(v["tcp.analysis.retransmission"] or v["tcp.analysis.out_of_order"]
                           or v["tcp.analysis.spurious_retransmission"]),
            "probe": bool(v["tcp.analysis.zero_window_probe"]),
        }  # fmt: skip
    return frames


#: Where flowlens and tshark's tcp.analysis.ack_rtt intentionally differ, and why.
ACK_RTT_DIFFERENCES = {
    "tunnel": "a connection inside a tunnel that tshark does not decode there (Teredo that Zeek's "
    "rules detect on a port other than 3544): flowlens times it, tshark sees only UDP",
    "handshake": "tshark times SYN -> SYN/ACK and SYN/ACK -> ACK as ack_rtt; flowlens reports them "
    "as the handshake legs synack_ms and ackdat_ms, not as data samples",
    "fin": "a bare FIN's ACK: FINs are timed by neither side's data RTT (the ACK often waits for "
    "the application's own close)",
    "rst": "the answer is a RST: an abort is not a round trip, and an injected RST's ACK field "
    "can be anything",
    "karn": "Karn's rule: the ACK covers retransmitted (or late, hole-filling) data, so it cannot "
    "say which copy it answers; tshark times it from the first copy anyway",
    "karn_ts": "Karn's rule dropped the ACK sample and the timestamps echo gave one instead, timed "
    "from the copy whose TSval the ACK echoes",
    "zero_window_probe": "the ACK of a zero-window probe: flowlens does not time probes (the "
    "byte goes again as data once the window opens)",
    "dup_ack": "the ACK acknowledges nothing new (a duplicate ACK answering a spurious "
    "retransmission, or a replayed copy of the conversation): flowlens takes samples "
    "only from ACKs that cover new data",
    "ip_length": "the capture cut the segment (IP total length > captured bytes): flowlens takes "
    "the segment's end from the IP header, tshark from the captured bytes, so only "
    "flowlens sees the ACK end exactly at it",
}

#: Concrete cases, checked by frame so that the reasons above stay true.
ACK_RTT_EXAMPLES = {
    ("tcp__retransmit-fast009.pcap", 38): "karn",  # tshark: 425 ms from frame 26; 32-36 resent
    ("tcp__reassembly.pcap", 40): "karn",  # tshark: 2.27 s from frame 18, the hole filled by 39
    ("smtp.pcap", 31): "karn",  # path MTU: 1460-byte segments resent as 1452
    ("tcp__reassembly.pcap", 8): "ip_length",
}


def _classify_tshark_only(frames, ack_frame: int, ours_answers: dict) -> str:
    a = frames[ack_frame]
    f = frames[a["acks"]]
    if f["flags"] & SYN:
        return "handshake"
    if a["flags"] & RST:
        return "rst"
    if f["flags"] & FIN and f["len"] == 0:
        return "fin"
    if f["probe"]:
        return "zero_window_probe"
    if ours_answers.get(ack_frame) == "ts":
        return "karn_ts"
    # the highest ACK the acker sent before this one, in this stream
    before = [x["ack"] for n, x in frames.items() if n < ack_frame and x["stream"] == a["stream"]
              and x["src"] == a["src"] and x["flags"] & ACK]  # fmt: skip
    prev_ack = max(before, default=0)
    if before and a["ack"] <= prev_ack:
        return "dup_ack"
    for n, x in frames.items():
        if (n < ack_frame and x["stream"] == a["stream"] and x["src"] == f["src"] and x["resent"]
                and x["seq"] < a["ack"] and x["nxtseq"] > prev_ack):  # fmt: skip
            return "karn"
    return "unexplained"


def _ack_rtt_comparison(path: Path):
    frames = _tshark(path)
    rtt = RttCollector()
    a = analyze(str(path), config=_AS_TSHARK, analyzers=[rtt])
    ours, answers, tunnelled = {}, {}, set()
    for c in a.connections:
        st = rtt.state_of(c)
        if st is None:
            continue
        for s in st.iter_samples():
            answers[s.answer_frame] = s.source
            if s.source == "ack":
                ours[s.answer_frame] = (s.frame, s.rtt_ns)
                if c.tunnel_parents:
                    tunnelled.add(s.answer_frame)
    theirs = {n: (x["acks"], x["ack_rtt_ns"]) for n, x in frames.items() if x["acks"] is not None}
    result, cases = Counter(), {}
    for n, (frame, rtt) in ours.items():
        if n in theirs:
            same = theirs[n][0] == frame and abs(theirs[n][1] - rtt) <= 1000  # within 1 us
            result["match" if same else "differ"] += 1
            cases[n] = "match" if same else f"differ: ours {frame} {rtt} ns, tshark {theirs[n]}"
        else:
            f = frames.get(frame)
            why = (
                "ip_length"
                if f and f["ip_payload"] is not None and f["ip_payload"] > f["len"]
                else "tunnel"
                if n in tunnelled and n not in frames
                else "unexplained_ours"
            )
            result[why] += 1
            cases[n] = why
    for n in theirs.keys() - ours.keys():
        why = _classify_tshark_only(frames, n, answers)
        result[why] += 1
        cases[n] = why
    return result, cases


def _size_param(path: Path):
    marks = [pytest.mark.slow] if path.stat().st_size > 1_000_000 else []
    return pytest.param(path, id=path.name, marks=marks)


@needs_corpus
@pytest.mark.parametrize(
    "path", [_size_param(p) for p in TRACES if p.name != "tcpdump__timestamp_invalid_nano.pcap"]
)
def test_ack_rtt_agrees_with_tshark(path):
    result, cases = _ack_rtt_comparison(path)
    bad = {n: why for n, why in cases.items() if why != "match" and why not in ACK_RTT_DIFFERENCES}
    assert not bad, bad
    for (name, frame), why in ACK_RTT_EXAMPLES.items():
        if name == path.name:
            assert cases.get(frame) == why, (frame, cases.get(frame))


@needs_corpus
@pytest.mark.slow
def test_ack_rtt_agrees_with_tshark_on_a_real_loopback_capture():
    result, cases = _ack_rtt_comparison(REAL_LOOPBACK)
    assert result["match"] > 50_000, result
    assert set(result) <= {"match", *ACK_RTT_DIFFERENCES}, result


@needs_corpus
def test_ack_rtt_agreement_totals_on_the_corpus_sample():
    """The small captures together: most data samples agree exactly, and the differences are
    the ones the dict explains (pinned, so a change in either tool shows up here)."""
    names = ["smtp.pcap", "tcp__reassembly.pcap", "tcp__retransmit-fast009.pcap", "http__m57-long-49583-80.pcap",
             "tcp__ssh-dups.pcap", "ftp__bruteforce.pcap", "tcp__timestamp.pcap"]  # fmt: skip
    total = Counter()
    for name in names:
        total += _ack_rtt_comparison(CORPUS / "zeek" / "traces" / name)[0]
    assert total["differ"] == 0 and total["unexplained"] == 0 and total["unexplained_ours"] == 0
    assert total["match"] >= 470, total


# --- the handshake: irtt_ms against tcp.analysis.initial_rtt

#: Streams where flowlens's irtt_ms intentionally differs from tshark's initial_rtt (or is None).
IRTT_DIFFERENCES = {
    "rst": "tshark ends the handshake at the first packet with ACK and without SYN after the SYN, "
    "a RST/ACK included (refused connections, injected RSTs); a RST is not a handshake "
    "completion, so flowlens has no irtt (or times the real SYN/ACK)",
    "no_synack": "no SYN/ACK in the capture: tshark times SYN -> first ACK; flowlens has no "
    "SYN -> SYN/ACK leg, hence no sum",
    "reordered": "the capture has the SYN/ACK before the SYN: the SYN -> SYN/ACK leg would be "
    "negative, so flowlens reports none",
    "synack_resent": "the SYN/ACK was sent several times: flowlens's ackdat_ms starts at the most "
    "recent SYN/ACK (the one the ACK answers), tshark's span at the most recent SYN",
}
_IRTT_SKIP = {
    "tcpdump__timestamp_invalid_nano.pcap": "nanosecond fields >= 1e9: the tools normalize them differently"
}


def _classify_irtt(stream_frames: list[dict]) -> str:
    """Why tshark's initial_rtt differs, from tshark's own rule: the most recent SYN to the first
    packet with ACK and without SYN (packet-tcp.c, ts_mru_syn / ts_first_rtt)."""
    syn_ts, end = None, None
    for x in stream_frames:
        if x["flags"] & SYN and not x["flags"] & ACK:
            syn_ts = x["ts_ns"]
        elif x["flags"] & (SYN | ACK) == ACK and syn_ts is not None:
            end = x
            break
    if end is None:
        return "unexplained"
    before = [x for x in stream_frames if x is not end and x["ts_ns"] <= end["ts_ns"]]
    synacks = [x for x in before if x["flags"] & (SYN | ACK) == SYN | ACK]
    if end["flags"] & RST:
        return "rst"
    if not synacks:
        return "no_synack"
    first_syn = next(x for x in before if x["flags"] & (SYN | ACK) == SYN)
    if synacks[0]["ts_ns"] < first_syn["ts_ns"] or stream_frames.index(
        synacks[0]
    ) < stream_frames.index(first_syn):
        return "reordered"
    if len(synacks) > 1:
        return "synack_resent"
    return "unexplained"


#: tshark does not verify checksums, and flowlens (as Zeek) drops packets with a bad IPv4
#: header checksum: compare like with like
_AS_TSHARK = Config(verify_checksums=False)


def _irtt_comparison(path: Path):
    truth = {}
    for line in (CORPUS / "truth" / f"{path.name}.irtt.tsv").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].isdigit() and parts[1]:
            truth[int(parts[0])] = float(parts[1]) * 1e3
    if not truth:
        return Counter(), {}
    frames = _tshark(path)
    first = {}
    for n in sorted(frames):
        x = frames[n]
        first.setdefault(x["stream"], x)
    a = analyze(str(path), config=_AS_TSHARK)
    by_tuple = defaultdict(list)
    for c in a.connections:
        if c.proto == 6:
            key = frozenset([(format_addr(c.orig_h), c.orig_p), (format_addr(c.resp_h), c.resp_p)])
            by_tuple[key].append(c)
    result, cases = Counter(), {}
    for stream, irtt in truth.items():
        x = first[stream]
        cands = by_tuple[frozenset([x["src"], x["dst"]])]
        # the stream starts with one of our connections; tshark runs reused ports together
        start = [c for c in cands if abs(c.first_ts_ns - x["ts_ns"]) <= 1000]
        if not start:
            result["unmatched"] += 1
            cases[stream] = "unmatched"
            continue
        later = [c for c in cands if c.first_ts_ns >= start[0].first_ts_ns]
        conn = next((c for c in later if c.irtt_ms is not None), start[0])
        if conn.irtt_ms is not None and abs(conn.irtt_ms - irtt) <= 0.001:  # 1 us
            why = "match"
        else:
            why = _classify_irtt(
                [frames[n] for n in sorted(frames) if frames[n]["stream"] == stream]
            )
        result[why] += 1
        cases[stream] = why
    return result, cases


@needs_corpus
@pytest.mark.parametrize(
    "path",
    [
        _size_param(p)
        for p in TRACES
        if (CORPUS / "truth" / f"{p.name}.irtt.tsv").exists() and p.name not in _IRTT_SKIP
    ],
)
def test_irtt_equals_tshark_initial_rtt(path):
    result, cases = _irtt_comparison(path)
    bad = {s: why for s, why in cases.items() if why != "match" and why not in IRTT_DIFFERENCES}
    assert not bad, (result, bad)


@needs_corpus
@pytest.mark.slow
def test_irtt_on_a_real_loopback_capture():
    result, _cases = _irtt_comparison(REAL_LOOPBACK)
    assert result == Counter(match=500)


def test_plot_of_one_sample_has_sane_axes():
    """One sample: one point at x = 0 on axes from 0 (not a point at -0.05 s), one bar, and the
    histogram counts whole samples (no 0.2-sample ticks); the title says `1 sample`."""
    fig = draw_figure([Series("C1 cap>resp>cap", [10.0], [2.5])])
    ax_time, ax_hist = fig.axes
    assert ax_time.get_xlim()[0] == 0 and ax_time.get_xlim()[1] > 0
    assert ax_time.get_ylim()[0] == 0 and ax_time.get_ylim()[1] > 2.5
    bars = [p for p in ax_hist.patches if p.get_height() > 0]
    assert [b.get_height() for b in bars] == [1]
    assert bars[0].get_x() < 2.5 < bars[0].get_x() + bars[0].get_width()
    assert ax_hist.get_xlim()[0] == 0 and ax_hist.get_xlim()[1] >= 5
    fig.canvas.draw()
    ticks = [t for t in ax_hist.get_yticks() if ax_hist.get_ylim()[0] <= t <= ax_hist.get_ylim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax_hist.get_title() == "1 sample"
