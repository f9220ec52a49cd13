"""`flowlens anomalies`: one tiny capture per kind (and clean ones that must stay quiet), the
corpus's scans, flood and zero window, and the command line."""

from __future__ import annotations

import json

import pcapgen
import pytest
from click.testing import CliRunner
from corpus import CORPUS, skip_or_fail

from flowlens import Pipeline, Selection, analyze
from flowlens.analyzers.anomalies.detector import ANOMALY_FIELDS, KINDS, AnomalyDetector, Thresholds
from flowlens.analyzers.anomalies.holds import OpenStarts
from flowlens.analyzers.service_id import ServiceAnalyzer
from flowlens.analyzers.tcpanalysis import TcpAnalyzer
from flowlens.cli import cli

CAPTURES = CORPUS / "other" / "captures"


def findings(tmp_path, name, frames=None, **thresholds):
    path = tmp_path / f"{name}.pcap"
    pcapgen.write_pcap(path, frames if frames is not None else pcapgen.SCENARIOS[name]())
    detector = AnomalyDetector(Thresholds(**thresholds))
    return analyze(str(path), analyzers=[detector]).results[detector]


def only(found, kind):
    hits = [a for a in found if a.kind == kind]
    assert len(hits) == 1, [a.summary for a in found]
    return hits[0]


# ------------------------------------------------------------------ quiet when nothing is wrong
@pytest.mark.parametrize(
    "name",
    ["clean-close", "close-3way", "server-close", "simultaneous-open", "simultaneous-close",
     "half-close", "midstream", "udp-dns", "icmp-echo", "time-wait-pileup"],
)  # fmt: skip
def test_clean_captures_have_no_warnings(tmp_path, name):
    found = findings(tmp_path, name)
    assert [a for a in found if a.severity != "info"] == []
    if name != "time-wait-pileup":  # 20 ports in TIME_WAIT is below every threshold
        assert found == []


# ------------------------------------------------------------------ one capture per kind
def test_time_wait_accumulation(tmp_path):
    a = only(findings(tmp_path, "time-wait-pileup", time_wait_min=10), "time_wait_accumulation")
    assert a.severity == "info" and a.uid is None
    assert a.details["time_wait_peak"] == 20 and a.details["time_wait_side"] == "orig"
    assert a.summary.startswith(
        "192.0.2.10 held up to 20 connections to 198.51.100.20:80 in TIME_WAIT"
    )
    warn = only(findings(tmp_path, "time-wait-pileup", time_wait_min=10, ephemeral_range=(40000, 40099)),
                "time_wait_accumulation")  # fmt: skip
    assert warn.severity == "warning"  # 20 of 100 ports


def test_port_exhaustion_risk_from_the_rate(tmp_path):
    a = only(
        findings(tmp_path, "time-wait-pileup", ephemeral_range=(40000, 40029)),
        "port_exhaustion_risk",
    )
    assert a.severity == "warning"
    d = a.details
    assert (d["peak_in_use"], d["range_size"], d["connections"]) == (20, 30, 20)
    assert d["rate_per_s"] == pytest.approx(100.0)
    assert d["time_wait_s"] == 60.0 and d["steady_state_ports"] > 30
    assert d["time_to_exhaustion_s"] == pytest.approx(0.3)
    assert "runs out after about 300 ms" in a.summary


def test_port_exhaustion_when_ports_ran_out(tmp_path):
    found = findings(tmp_path, "exhausted-ports")
    a = only(found, "port_exhaustion_risk")
    assert a.severity == "critical"
    assert a.details["ports_exhausted"] == [40000, 40009]
    assert a.details["time_wait_reuses"] == 20
    assert "ran out of ephemeral ports toward 198.51.100.20:80" in a.summary
    assert only(found, "port_reuse").details["reuses"] == 20
    assert found[0] is a  # most severe first


def test_port_outside_the_range_names_the_os(tmp_path):
    convs = []
    for i in range(25):
        conv = pcapgen.Conversation(cport=2000 + i, t=pcapgen.T0 + i * 0.01, isn_c=1000 + i * 7919)
        conv.handshake()
        conv.exchange()
        conv.close("client")
        convs.extend(conv.frames)
    convs.sort(key=lambda f: f[0])
    a = only(findings(tmp_path, "bsd", convs, exhaustion_fraction=0.005), "port_exhaustion_risk")
    assert a.details["range_guess"] == "old BSD/Windows XP"
    assert a.details["ephemeral_range"] == [1024, 5000]
    assert "old BSD/Windows XP range its ports fit" in a.summary


def test_narrowed_range_inferred_from_linux_port_choice(tmp_path):
    """16 ports, even ones first then odd (Linux's __inet_hash_connect two passes), all held at
    once in TIME_WAIT, no attempt after: no range given, the block is the range, ports ran
    out (critical), and the pile-up counts against the 16 ports, not an absolute 100."""
    found = findings(tmp_path, "linux-ports-run-out")
    a = only(found, "port_exhaustion_risk")
    assert a.severity == "critical" and found[0] is a
    d = a.details
    assert (d["range_source"], d["ephemeral_range"], d["range_size"]) == (
        "inferred",
        [40000, 40015],
        16,
    )
    assert d["ports_exhausted"] == [40000, 40015] and d["peak_in_use"] == 16
    assert (
        "all 16 ports of the range 40000-40015 (inferred: a contiguous block of 16 ports"
        in a.summary
    )
    assert "even ports all taken before any odd one" in a.summary
    assert "no new connection began after that" in a.summary
    pile = only(found, "time_wait_accumulation")
    assert pile.severity == "warning" and pile.details["time_wait_peak"] == 16
    assert "100.0% of the 16-port ephemeral range 40000-40015" in pile.summary


def test_sequential_ports_are_not_inferred_as_a_range(tmp_path):
    """20 consecutive ports in port order (no Linux parity passes, no recycling): a capture
    that ends after them cannot tell a range's edge; Linux's default range stays."""
    found = findings(tmp_path, "time-wait-pileup", exhaustion_fraction=0.0005)
    a = only(found, "port_exhaustion_risk")
    assert a.severity == "warning" and a.details["range_source"] == "default"
    assert a.details["ephemeral_range"] == [32768, 60999]
    assert "(Linux's default (no range given))" in a.summary


def test_a_given_range_is_never_replaced(tmp_path):
    """One connection outside the configured range used to switch the finding to the Linux
    default silently; the configured range stays and the finding says how many lie outside."""
    frames = pcapgen.linux_ports_run_out()
    conv = pcapgen.Conversation(cport=50000, t=pcapgen.T0 + 0.5, isn_c=77)
    conv.handshake()
    conv.exchange()
    conv.close("client")
    frames = sorted(frames + conv.frames, key=lambda f: f[0])
    found = findings(tmp_path, "given", frames, ephemeral_range=(40000, 40015))
    a = only(found, "port_exhaustion_risk")
    d = a.details
    assert (d["range_source"], d["ephemeral_range"], d["range_size"]) == (
        "configured",
        [40000, 40015],
        16,
    )
    assert a.severity == "critical"
    assert "40000-40015 (configured; 1 client port outside it)" in a.summary


def test_close_wait(tmp_path):
    a = only(findings(tmp_path, "close-wait"), "close_wait")
    assert (a.severity, a.details["endpoint"], a.details["still_open"]) == (
        "warning",
        "198.51.100.20:80",
        1,
    )
    assert a.uid is not None and a.details["max_duration_s"] == pytest.approx(120.0, abs=0.01)
    assert "198.51.100.20:80 did not close 1 connection" in a.summary
    assert a.evidence == (8,)  # the client's FIN


def test_close_wait_below_the_threshold(tmp_path):
    assert [
        a for a in findings(tmp_path, "close-wait", close_wait_s=200) if a.kind == "close_wait"
    ] == []


def test_fin_wait_2(tmp_path):
    a = only(findings(tmp_path, "close-wait"), "fin_wait_2")
    assert a.severity == "info" and a.details["endpoint"] == "192.0.2.10:40000"
    assert a.details["duration_s"] == pytest.approx(120.0, abs=0.01)


def test_unanswered_syn(tmp_path):
    a = only(findings(tmp_path, "unanswered-syn"), "unanswered_syn")
    assert a.severity == "warning"
    # (SYNs at 0, 1, 3, 7 s: Zeek's attempt timer ends the record 5 s after the first SYN, so
    # the retry at 7 s is a record of its own, linked by prev_uid; it is still one attempt)
    assert a.details["retry_s"] == [1.0, 3.0, 7.0]
    assert a.details["destination"] == "198.51.100.20:80" and a.details["syns"] == 4
    assert a.details["attempts"] == 1 and len(a.details["uids"]) == 2
    assert a.evidence == (1, 2, 3, 4)
    assert "(1 connection attempt, retried after 1 s, 3 s, 7 s)" in a.summary
    assert a.uid == a.details["uids"][0] and a.conn_ts == a.ts


def test_unanswered_syn_schedule_spans_the_attempt_timer(tmp_path):
    """Linux's whole schedule (tcp_syn_retries = 6: 1, 3, 7, 15, 31, 63 s) is one attempt in
    six records; a second connect() from another port (a new ISN) is an attempt of its own."""
    frames = pcapgen.unanswered_syn(retries=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0))
    frames += pcapgen.unanswered_syn(retries=(1.0,), cport=40001, isn_c=777, t=pcapgen.T0 + 200)
    a = only(findings(tmp_path, "schedule", frames=frames), "unanswered_syn")
    assert a.details["attempts"] == 2 and a.details["syns"] == 9
    assert a.details["retry_s"] == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert "9 SYNs" in a.summary and "(2 connection attempts, retried after 1 s" in a.summary
    assert a.uid is None and a.conn_ts is None


def test_connection_refused(tmp_path):
    a = only(findings(tmp_path, "refused"), "connection_refused")
    assert (a.severity, a.details["destination"], a.evidence) == (
        "warning",
        "198.51.100.20:80",
        (1, 2),
    )


def test_syn_flood(tmp_path):
    found = findings(tmp_path, "syn-flood")
    a = only(found, "syn_flood")
    assert a.severity == "warning"
    d = a.details
    assert (d["attempts"], d["sources"], d["synack_answered"]) == (300, 300, 150)
    assert d["peak_per_s"] == 300.0
    assert [x.kind for x in found] == ["syn_flood"]  # the attempts are not also unanswered SYNs
    assert "syn_flood" not in [x.kind for x in findings(tmp_path, "syn-flood", syn_flood_min=400)]


@pytest.mark.parametrize(
    ("duration", "pace"),
    [
        (0.007, "in 7 ms (42,998/s;"),  # shorter than the window: the rate it really had
        (3.0, "in 3.0 s (100 within the busiest 1.0 s;"),  # longer: the busiest window
        (0.0, "in under 1 ms (at once;"),
    ],
)
def test_syn_flood_states_its_real_pace(tmp_path, duration, pace):
    """300 SYNs sent in 7 ms are not "300/s": the summary gives the window's count only when
    the flood outlasted the window, and the flood's own rate otherwise."""
    frames = pcapgen.syn_flood(count=300, duration=duration)
    a = only(findings(tmp_path, "syn-flood", frames, syn_flood_min=100), "syn_flood")
    assert pace in a.summary, a.summary
    assert a.details["duration_s"] == pytest.approx(duration * 299 / 300, abs=0.001)


@pytest.mark.parametrize(
    "name, scan_type, open_, closed, filtered, open_filtered",
    [
        ("syn-scan", "SYN", [22, 25], 20, [23, 30, 31], []),
        ("xmas-scan", "XMAS", [], 20, [], [22, 23, 25, 30, 31]),
    ],
)
def test_port_scan(tmp_path, name, scan_type, open_, closed, filtered, open_filtered):
    found = findings(tmp_path, name)
    a = only(found, "port_scan")
    d = a.details
    assert (d["scanner"], d["target"], d["scan_type"], d["direction"]) == (
        "203.0.113.66", "198.51.100.20", scan_type, "vertical")  # fmt: skip
    assert (d["open"], d["closed_count"], d["filtered"], d["open_filtered"]) == (
        open_,
        closed,
        filtered,
        open_filtered,
    )
    assert d["ports_probed"] == 25
    assert [x.kind for x in found] == ["port_scan"]  # probes are not refused connections too


def test_a_scan_from_a_busy_client(tmp_path):
    """A client that connects to one port hundreds of times without a byte (a health check:
    a connect probe each time, kept as one probe slot however many connections, so memory
    follows the ports probed, not the connections) and also probes 25 closed ports: one
    vertical scan of 26 ports with port 80 open, and the refused probes stay explained by it
    (no connection_refused besides)."""
    frames = []
    t = pcapgen.T0
    for i in range(25):
        frames += pcapgen.refused(cport=50000 + i, sport=1000 + i, t=t)
        t += 0.001
    for i in range(300):
        conv = pcapgen.Conversation(cport=40000 + i, t=t)
        conv.handshake()
        conv.close("client")
        frames += conv.frames
        t += 0.01
    found = findings(tmp_path, "busy-scan", frames)
    a = only(found, "port_scan")
    d = a.details
    assert (d["scanner"], d["target"], d["direction"]) == (
        pcapgen.CLIENT4, pcapgen.SERVER4, "vertical")  # fmt: skip
    assert (d["ports_probed"], d["open"], d["closed_count"]) == (26, [80], 25)
    assert d["scan_types"] == {"SYN": 25, "connect": 300}
    assert "connection_refused" not in [x.kind for x in found]


def test_horizontal_udp_scan(tmp_path):
    found = findings(tmp_path, "udp-scan")
    a = only(found, "port_scan")
    d = a.details
    assert (d["scanner"], d["direction"], d["scan_type"], d["closed_count"]) == (
        "203.0.113.66", "horizontal", "UDP", 10)  # fmt: skip
    assert len(d["open_filtered"]) == 2 and d["target"] == "12 hosts"
    assert [x.kind for x in found] == ["port_scan"]  # no icmp_unreachable per probe


def test_few_ports_are_not_a_scan(tmp_path):
    assert [a.kind for a in findings(tmp_path, "syn-scan", scan_min_ports=30)].count(
        "port_scan"
    ) == 0


def test_retransmissions(tmp_path):
    a = only(findings(tmp_path, "lossy-download"), "retransmissions")
    d = a.details
    assert a.severity == "warning" and d["direction"] == "resp"
    assert (d["retransmission"], d["fast_retransmission"], d["spurious_retransmission"]) == (
        2,
        1,
        1,
    )
    assert (d["segments"], d["bytes"], d["data_segments"], d["lost_segment"]) == (4, 4000, 33, 1)
    assert d["dup_acks_received"] == 4 and d["rate"] == pytest.approx(4 / 33, abs=1e-4)
    assert a.evidence == (26, 38, 39, 49)
    assert "lost before the capture point" in a.summary


def test_single_retransmission_is_info(tmp_path):
    a = only(findings(tmp_path, "retransmission"), "retransmissions")
    assert a.severity == "info" and a.details["segments"] == 1


def test_reordering_is_not_loss(tmp_path):
    a = only(findings(tmp_path, "reordered"), "retransmissions")
    assert a.severity == "info" and a.details["segments"] == 0 and a.details["out_of_order"] == 1
    assert "reordered, not lost" in a.summary


def test_holes_filled_with_a_later_tsval_are_retransmissions(tmp_path):
    """Three server segments lost before the capture point, each sent again 1 ms after the
    segment beyond its hole: Wireshark's timing calls them out-of-order, but their TSval is
    later than that segment's (RFC 7323 §3), so they were resent. The rate (3 of 10), the
    severity, the summary, flows.retransmissions and flows.out_of_order all count them so."""
    frames = pcapgen.lost_upstream_ts(lost=(2, 5, 8))
    a = only(findings(tmp_path, "lost-ts", frames), "retransmissions")
    assert a.severity == "warning"
    assert (a.details["segments"], a.details["rate"], a.details["bytes"]) == (3, 0.3, 3000)
    assert (a.details["resent_out_of_order"], a.details["out_of_order"]) == (3, 0)
    assert "retransmitted 3 segments (3000 bytes) of 10 data segments" in a.summary
    assert "3 gaps in the sequence (filled by retransmissions" in a.summary
    path = tmp_path / "lost-ts.pcap"
    (conn,) = analyze(str(path)).connections
    assert (conn.retransmissions, conn.out_of_order) == (3, 0)


def test_holes_filled_with_the_same_tsval_are_reordering(tmp_path):
    """The same late segments carrying the TSval of their place in the stream were sent before
    the segments beyond the hole: reordered on the path, not lost."""
    frames = pcapgen.lost_upstream_ts(lost=(2, 5, 8), later_ts=False)
    a = only(findings(tmp_path, "reordered-ts", frames), "retransmissions")
    assert a.severity == "info" and a.details["segments"] == 0
    assert a.details["out_of_order"] == 3 and "resent_out_of_order" not in a.details
    assert "arrived out of order (reordering on the path)" in a.summary
    (conn,) = analyze(str(tmp_path / "reordered-ts.pcap")).connections
    assert (conn.retransmissions, conn.out_of_order) == (0, 3)


def test_keep_alive_needs_the_byte_acknowledged(tmp_path):
    """RFC 9293 §3.8.4: the unacknowledged byte resent at SND.NXT-1 is no keep-alive."""
    found = findings(tmp_path, "one-byte-retransmission", retrans_min=1)
    assert [a.kind for a in found] == ["retransmissions"]
    assert found[0].details["retransmission"] == 1


def test_zero_window(tmp_path):
    a = only(findings(tmp_path, "zero-window"), "zero_window")
    d = a.details
    assert a.severity == "warning" and d["receiver"] == "192.0.2.10:40000"
    assert (d["probes"], d["probe_acks"], d["window_full"], d["still_closed"]) == (4, 4, 1, False)
    assert d["closed_s"] == pytest.approx(2.1, abs=0.01)


def test_linux_zero_window_probes_are_no_keep_alives(tmp_path):
    """Linux's persist-timer probes (SEQ = SND.UNA - 1, no data, while the peer's window is 0)
    are the zero_window finding's probes; no keep_alive finding says the connection idled."""
    found = findings(tmp_path, "linux-zwp", pcapgen.linux_zero_window_probe())
    assert [a.kind for a in found] == ["zero_window"]
    d = found[0].details
    assert (d["probes"], d["probe_acks"], d["still_closed"]) == (3, 3, False)
    assert "3 zero-window probes" in found[0].summary


def test_keep_alive(tmp_path):
    a = only(findings(tmp_path, "keep-alive"), "keep_alive")
    assert a.severity == "info"
    assert a.details["keep_alives"] == {"orig": 3, "resp": 0} and a.details["answers"] == 3
    assert a.details["interval_s"] == {"orig": pytest.approx(15.0, abs=0.01)}


@pytest.mark.parametrize(
    "name, severity, sender, in_flight",
    [("rst-abort-client", "info", "192.0.2.10", 0), ("rst-abort-server", "info", "198.51.100.20:80", 0),
     ("rst-abort-in-flight", "warning", "192.0.2.10", 2000)],
)  # fmt: skip
def test_rst_abort(tmp_path, name, severity, sender, in_flight):
    a = only(findings(tmp_path, name), "rst_abort")
    assert (a.severity, a.details["sender"], a.details["bytes_in_flight"]) == (
        severity,
        sender,
        in_flight,
    )


def test_rst_after_fin_is_not_data_in_flight(tmp_path):
    """The server's FIN the RST left unacknowledged is no data (RFC 9293 §3.4): info, 0 bytes
    (was: a warning for "1 bytes of unacknowledged data in flight")."""
    a = only(findings(tmp_path, "rst-after-fin"), "rst_abort")
    assert a.severity == "info" and a.details["bytes_in_flight"] == 0
    assert "with no data in flight" in a.summary


def test_port_reuse(tmp_path):
    a = only(findings(tmp_path, "port-reuse"), "port_reuse")
    assert a.severity == "info" and a.details["client_ports"] == [40000] and a.uid is not None
    assert a.details["previous_uids"][0] != a.uid


def test_icmp_unreachable(tmp_path):
    a = only(findings(tmp_path, "udp-unreachable"), "icmp_unreachable")
    assert a.severity == "warning" and a.details["port_unreachable"] is True
    assert a.details["flow"] == "192.0.2.10:54000 -> 198.51.100.20:9999"
    assert a.evidence == (1, 2)


def test_synack_reflection(tmp_path):
    a = only(
        findings(tmp_path, "reflection", pcapgen.synack_reflection(count=12)), "synack_reflection"
    )
    assert a.details["pattern"] == "reflection" and a.details["synacks"] == 12
    # (tests/test_finding_events.py: backscatter, thresholds, a missing SYN; below: a real one)


def test_every_kind_is_tested():
    tested = {n[5:] for n in globals() if n.startswith("test_")}
    assert all(any(kind in t for t in tested) for kind in KINDS)


def test_record_shape(tmp_path):
    a = only(findings(tmp_path, "refused"), "connection_refused")
    rec = a.to_record()
    assert tuple(rec) == ANOMALY_FIELDS
    assert isinstance(rec["evidence"], list) and json.dumps(rec)


def test_thresholds_reject_a_bad_range():
    with pytest.raises(ValueError):
        Thresholds(ephemeral_range=(5000, 1000))


def test_detector_streams_and_resets(tmp_path):
    path = tmp_path / "r.pcap"
    pcapgen.write_pcap(path, pcapgen.refused())
    detector = AnomalyDetector()
    result = analyze(str(path), analyzers=[detector])
    assert [a.kind for a in result.results[detector]] == ["connection_refused"]
    assert isinstance(detector.tcp, TcpAnalyzer)  # the pipeline added the dependency
    assert detector.finish() == []  # finish() starts over


def test_detector_reads_the_tcp_analyzer_it_is_given(tmp_path):
    path = tmp_path / "r.pcap"
    pcapgen.write_pcap(path, pcapgen.refused())
    tcp, detector = TcpAnalyzer(keep_frames=True), AnomalyDetector()
    pipe = Pipeline(str(path), analyzers=[detector, tcp])
    # dependencies first (the one it was given, and the OpenStarts added for its watermarks)
    assert pipe.analyzers[0] is tcp and pipe.analyzers[-1] is detector and detector.tcp is tcp
    assert [type(a) for a in pipe.analyzers[1:-1]] == [OpenStarts]
    assert detector.open_starts is pipe.analyzers[1]
    list(pipe)
    assert [a.kind for a in pipe.results[detector]] == ["connection_refused"]


def test_detector_honours_its_selection(tmp_path):
    path = tmp_path / "r.pcap"
    pcapgen.write_pcap(path, pcapgen.refused())
    elsewhere = AnomalyDetector(selection=Selection.build(ports=[1]))
    assert analyze(str(path), analyzers=[elsewhere]).results[elsewhere] == []
    assert elsewhere.seen == 0


# ------------------------------------------------------------------ the corpus
def corpus(name):
    path = CAPTURES / name
    if not path.exists():
        skip_or_fail()
    detector = AnomalyDetector()
    return analyze(str(path), analyzers=[detector]).results[detector]


@pytest.mark.parametrize(
    "name, scanner, target, scan_type",
    [
        ("markofu__nmap_XMAS_TREE_SCAN.pcap", "192.168.1.10", "192.168.1.25", "XMAS"),
        ("chrissanders__synscan.pcapng", "172.16.0.8", "64.13.134.52", "SYN"),
        ("ndpi__synscan.pcap", "172.16.0.8", "64.13.134.52", "SYN"),
        ("ndpi__tcp_scan.pcapng", "192.168.1.178", "192.168.1.2", "SYN"),
    ],
)
def test_corpus_scans(name, scanner, target, scan_type):
    found = corpus(name)
    (scan,) = [a for a in found if a.kind == "port_scan"]
    assert (scan.details["scanner"], scan.details["target"], scan.details["scan_type"]) == (
        scanner,
        target,
        scan_type,
    )
    assert [a for a in found if a.severity != "info" and a.kind != "port_scan"] == []


def test_corpus_nmap_verdicts():
    (scan,) = [a for a in corpus("chrissanders__synscan.pcapng") if a.kind == "port_scan"]
    assert scan.details["open"] == [22, 53, 80] and scan.details["ports_probed"] == 1000
    (scan,) = [a for a in corpus("ndpi__tcp_scan.pcapng") if a.kind == "port_scan"]
    assert scan.details["scan_types"] == {"connect": 2, "SYN": 2, "FIN": 1, "NULL": 1, "XMAS": 1}
    assert scan.details["open"] == [80, 443] and scan.details["closed_count"] == 5


def test_corpus_syn_flood():
    found = corpus("stopddos__pkt.TCP.synflood.spoofed.pcap")
    (flood,) = [a for a in found if a.kind == "syn_flood"]
    assert flood.details["target"] == "10.10.10.10:25565" and flood.severity == "critical"
    assert flood.details["attempts"] > 37_000 and flood.details["sources"] > 37_000
    assert [a.kind for a in found] == ["syn_flood"]


def test_corpus_zero_window():
    found = corpus("chrissanders__tcp_zerowindowrecovery.pcapng")
    assert [a.kind for a in found] == ["zero_window"]
    assert (
        found[0].details["receiver"] == "192.168.0.20:2235"
        and found[0].details["still_closed"] is False
    )


# ------------------------------------------------------------------ command line
def run_cli(*args):
    return CliRunner().invoke(cli, ["anomalies", *map(str, args)])


@pytest.fixture
def scan_pcap(tmp_path):
    path = tmp_path / "scan.pcap"
    pcapgen.write_pcap(path, pcapgen.port_scan("SYN"))
    return path


def test_cli_table(scan_pcap):
    result = run_cli(scan_pcap)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["severity", "kind", "time", "(UTC)", "evidence", "summary"]
    assert lines[1].startswith("warning   port_scan  22:13:20.000")
    wide = run_cli(scan_pcap, "--wide").stdout.splitlines()
    assert wide[0].split() == ["severity", "kind", "time", "(UTC)", "uid", "evidence", "summary"]
    assert wide[1].startswith("warning   port_scan  2023-11-14 22:13:20.000")
    assert "1 finding (1 warning) in 25 connections, 49 frames" in result.stderr


def test_cli_json_and_csv(scan_pcap):
    result = run_cli(scan_pcap, "--format", "json")
    rec = json.loads(result.stdout)
    assert tuple(rec) == ANOMALY_FIELDS and rec["details"]["scanner"] == "203.0.113.66"
    result = run_cli(scan_pcap, "--format", "csv")
    assert result.stdout.splitlines()[0] == ",".join(ANOMALY_FIELDS)


def test_cli_filters(scan_pcap):
    assert run_cli(scan_pcap, "--min-severity", "critical", "--format", "json").stdout == ""
    assert "1 hidden by --min-severity/--kind" in run_cli(scan_pcap, "--kind", "syn_flood").stderr
    result = run_cli(scan_pcap, "--scan-min-ports", "26", "--format", "json")
    kinds = [json.loads(line)["kind"] for line in result.stdout.splitlines()]
    assert "port_scan" not in kinds and "connection_refused" in kinds


def test_cli_ephemeral_range(tmp_path):
    path = tmp_path / "tw.pcap"
    pcapgen.write_pcap(path, pcapgen.time_wait_pileup())
    result = run_cli(
        path,
        "--ephemeral-range",
        "40000-40029",
        "--kind",
        "port_exhaustion_risk",
        "--format",
        "json",
    )
    assert json.loads(result.stdout)["details"]["ephemeral_range"] == [40000, 40029]
    bad = run_cli(path, "--ephemeral-range", "6000-5000")
    assert bad.exit_code == 2 and "need 1 <= LO <= HI <= 65535" in bad.stderr
    bad = run_cli(path, "--ephemeral-range", "many")
    assert bad.exit_code == 2 and "is not a port range like 32768-60999" in bad.stderr


def test_cli_errors_and_help(tmp_path):
    result = run_cli(tmp_path / "missing.pcap")
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")
    help_text = run_cli("--help").output
    assert (
        "Example:" in help_text and "--ephemeral-range" in help_text and "--close-wait" in help_text
    )


def test_service_port_mismatch(tmp_path):
    """HTTP spoken on PostgreSQL's port (tests/test_service_flows.py has the grouping)."""
    conv = pcapgen.Conversation(sport=5432)
    conv.handshake()
    conv.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n")
    conv.close()
    path = tmp_path / "http-on-5432.pcap"
    pcapgen.write_pcap(path, conv.frames)
    detector = AnomalyDetector()
    found = analyze(str(path), analyzers=[ServiceAnalyzer(), detector]).results[detector]
    a = only(found, "service_port_mismatch")
    assert a.severity == "info" and a.details["service"] == "http"
    assert a.details["port_service"] == "postgresql" and a.evidence == (4, 6)


def test_rst_ignored(tmp_path):
    """A RST outside the receive window (RFC 9293 §3.10.7.4, RFC 5961 §3) after which the
    connection goes on: one warning, with the RST and the next packet as evidence, and no
    rst_abort."""
    frames = pcapgen.blind_rst()
    found = findings(tmp_path, "blind-rst", frames)
    a = only(found, "rst_ignored")
    rst = next(i + 1 for i, (_t, f) in enumerate(frames) if f[47] & pcapgen.RST)
    assert a.severity == "warning" and a.evidence == (rst, rst + 1)
    assert a.details["rsts"] == 1 and a.details["sender"] == "198.51.100.20:80"
    assert "outside the receive window" in a.summary and "injected" in a.summary
    assert "rst_abort" not in {x.kind for x in found}


def _tcp_record(tmp_path, name, frames):
    path = tmp_path / f"{name}.pcap"
    pcapgen.write_pcap(path, frames)
    [c] = [c for c in analyze(str(path)).connections if c.proto_name == "tcp"]
    return c


def test_rst_in_the_window_but_not_at_rcv_nxt_is_ignored(tmp_path):
    """RFC 5961 §3.2 (Linux tcp_validate_incoming): the client had acknowledged everything the
    server sent, so its RCV.NXT is known exactly; a RST 100 bytes into its window is answered
    with a challenge ACK and resets nothing, and the exchange goes on."""
    frames = pcapgen.blind_rst(offset=100)
    found = findings(tmp_path, "rst-in-window", frames)
    a = only(found, "rst_ignored")
    assert "not at RCV.NXT" in a.summary and "challenge ACK" in a.summary
    assert "rst_abort" not in {x.kind for x in found}
    c = _tcp_record(tmp_path, "rst-in-window", frames)
    assert c.tcp.teardown() == "4way" and c.to_record()["orig_state"] == "TIME_WAIT"


def test_rst_at_rcv_nxt_resets(tmp_path):
    frames = pcapgen.blind_rst(offset=0)
    rst = next(i for i, (_t, f) in enumerate(frames) if f[47] & pcapgen.RST)
    c = _tcp_record(tmp_path, "rst-exact", frames[: rst + 1])
    assert c.tcp.teardown() == "reset_resp" and c.tcp.notes == []
    assert (c.to_record()["orig_state"], c.to_record()["resp_state"]) == ("CLOSED", "CLOSED")


def test_rst_in_the_window_with_data_in_flight_resets(tmp_path):
    """1000 bytes of the server's are not acknowledged yet: the client's RCV.NXT is somewhere in
    them, so the window rule holds and a RST inside it is accepted."""
    conv = pcapgen.Conversation()
    conv.handshake()
    conv.exchange()
    conv.s(pcapgen.ACK, b"d" * 1000)
    conv.s(pcapgen.RST, seq=conv.s_next - 500, ack=0)
    c = _tcp_record(tmp_path, "rst-in-flight", conv.frames)
    assert c.tcp.teardown() == "reset_resp" and c.tcp.notes == []


def test_rst_at_rcv_nxt_minus_1_after_the_peers_fin_resets(tmp_path):
    """Linux tcp_reset_check: in CLOSE_WAIT (also LAST_ACK, CLOSING) a RST carrying the
    peer's FIN's sequence number, RCV.NXT - 1, resets, though it is below the window."""
    conv = pcapgen.Conversation()
    conv.handshake()
    conv.exchange()
    conv.c(pcapgen.FIN | pcapgen.ACK)
    conv.s(pcapgen.ACK)  # the server is in CLOSE_WAIT, its RCV.NXT the FIN + 1
    conv.c(pcapgen.RST, seq=conv.c_next - 1, ack=0)
    c = _tcp_record(tmp_path, "rst-fin-seq", conv.frames)
    assert c.tcp.notes == [] and c.tcp.teardown() == "reset_orig"
    assert c.to_record()["resp_state"] == "CLOSED"
    # one more byte below is not accepted (RFC 5961: no RCV.NXT - 2)
    conv.frames.pop()
    conv.c(pcapgen.RST, seq=conv.c_next - 2, ack=0)
    c = _tcp_record(tmp_path, "rst-fin-seq-2", conv.frames)
    assert [n[3] for n in c.tcp.notes] == ["rst_ignored"]
    assert c.to_record()["resp_state"] == "CLOSE_WAIT"


def test_rst_ignored_needs_the_connection_to_go_on(tmp_path):
    """An invalid RST that is the last packet proves nothing about injection: no finding."""
    frames = pcapgen.blind_rst()
    rst = next(i for i, (_t, f) in enumerate(frames) if f[47] & pcapgen.RST)
    assert "rst_ignored" not in {x.kind for x in findings(tmp_path, "rst-last", frames[: rst + 1])}


def test_synack_reflection_on_a_real_attack_capture():
    # stopddos's capture of a SYN/ACK reflection: 6,650 SYN/ACKs toward 10.10.10.10 from
    # thousands of reflectors' service ports, none asked for
    found = corpus("stopddos__amp.TCP.reflection.SYNACK.pcap")
    a = only(found, "synack_reflection")
    assert a.severity == "critical" and a.details["pattern"] == "reflection"
    assert a.details["receivers"] == ["10.10.10.10"] and a.details["synacks"] > 6000
    assert not [x for x in found if x.kind in ("connection_refused", "port_scan", "syn_flood")]


def _scaled_conversation(offset: int, in_flight: bool):
    """Window scale 7 both ways (RFC 7323), the client advertising 64 << 7 = 8192 bytes; one
    exchange, then a RST from the server's address `offset` bytes past the client's RCV.NXT,
    with or without a server segment in flight, then the exchange goes on."""
    conv = pcapgen.Conversation()
    ws = pcapgen.wscale_option(7)
    conv.c(pcapgen.SYN, dt=0.0, opts=ws, win=65535)
    conv.s(pcapgen.SYN | pcapgen.ACK, dt=0.01, opts=ws, win=65535)
    conv.c(pcapgen.ACK, dt=0.0005, win=64)
    conv.c(pcapgen.PSH | pcapgen.ACK, b"hello", win=64)
    conv.s(pcapgen.PSH | pcapgen.ACK, b"world", win=64)
    if not in_flight:
        conv.c(pcapgen.ACK, win=64)
    else:  # the server's next segment is on its way: RCV.NXT is not known to the byte
        conv.s(pcapgen.PSH | pcapgen.ACK, b"more!", win=64)
    rcv_nxt = conv.s_next if not in_flight else conv.s_next - 5
    s_next = conv.s_next
    conv.s(pcapgen.RST, seq=rcv_nxt + offset, ack=0)
    conv.s_next = s_next
    conv.c(pcapgen.PSH | pcapgen.ACK, b"again", win=64)
    conv.s(pcapgen.PSH | pcapgen.ACK, b"fine!", win=64)
    conv.close("client")
    return conv.frames


def test_the_rst_window_is_scaled_and_the_rst_moves_no_sequence(tmp_path):
    """1000 bytes past RCV.NXT is inside the client's 8192-byte window, scaled (it is far
    outside the 64 the field says): with nothing in flight RCV.NXT is known and only a RST at
    it resets (RFC 5961 §3.2: a challenge ACK, ignored), and the RST, which occupies no
    sequence space, does not make the server's next segment a retransmission."""
    path = tmp_path / "scaled.pcap"
    pcapgen.write_pcap(path, _scaled_conversation(1000, in_flight=False))
    detector = AnomalyDetector()
    analysis = analyze(str(path), analyzers=[detector, TcpAnalyzer()])
    found = analysis.results[detector]
    a = only(found, "rst_ignored")
    assert "not at RCV.NXT" in a.details["reason"], a.details
    assert "outside the receive window" not in a.details["reason"]
    (conn,) = analysis.connections
    assert conn.retransmissions == 0 and "retransmissions" not in [x.kind for x in found]
    assert (conn.orig_state, conn.resp_state) == ("TIME_WAIT", "CLOSED")


def test_a_scaled_window_takes_a_rst_while_data_is_in_flight(tmp_path):
    """With a segment in flight the capture cannot know RCV.NXT to the byte: a RST anywhere in
    the scaled window is taken (RFC 9293 §3.10.7.4), one past it is not."""
    for offset, taken in ((1000, True), (9000, False)):
        path = tmp_path / f"flight-{offset}.pcap"
        pcapgen.write_pcap(path, _scaled_conversation(offset, in_flight=True))
        detector = AnomalyDetector()
        analysis = analyze(str(path), analyzers=[detector])
        kinds = [x.kind for x in analysis.results[detector]]
        conns = analysis.connections
        if taken:
            assert "rst_ignored" not in kinds and conns[0].conn_state.startswith("RST"), kinds
        else:
            assert "rst_ignored" in kinds, kinds
