"""One tiny capture per TCP lifecycle behaviour: records, endpoint states and timelines."""

from __future__ import annotations

import pcapgen
import pytest

from flowlens import Analyzer, Config, analyze


def run(tmp_path, name, frames=None, **config):
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(
        pcapgen.pcap_bytes(frames if frames is not None else pcapgen.SCENARIOS[name]())
    )
    return analyze(str(path), config=Config(**config) if config else None).connections


def summary(c):
    return (
        c.conn_state,
        c.history,
        c.orig_state,
        c.resp_state,
        c.handshake,
        c.teardown,
        c.close_initiator,
    )


def frames_states(c):
    """Timeline as (frame, endpoint, state) for compact assertions."""
    return [(f, e, s) for _t, f, e, s in c.timeline]


HANDSHAKE = [
    (1, "orig", "SYN_SENT"),
    (2, "resp", "SYN_RECEIVED"),
    (2, "orig", "ESTABLISHED"),
    (3, "resp", "ESTABLISHED"),
]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("clean-close", ("SF", "ShADadFf", "TIME_WAIT", "CLOSED", "3way", "4way", "orig")),
        ("close-3way", ("SF", "ShADadFf", "TIME_WAIT", "CLOSED", "3way", "3way", "orig")),
        ("server-close", ("SF", "ShADadfF", "CLOSED", "TIME_WAIT", "3way", "4way", "resp")),
        (
            "simultaneous-close",
            ("SF", "ShADadFf", "TIME_WAIT", "TIME_WAIT", "3way", "simultaneous", "orig"),
        ),
        (
            "half-close",
            ("S2", "ShADFad", "FIN_WAIT_2", "CLOSE_WAIT", "3way", "half_closed", "orig"),
        ),
        (
            "close-wait",
            ("S2", "ShADadF", "FIN_WAIT_2", "CLOSE_WAIT", "3way", "half_closed", "orig"),
        ),
        ("refused", ("REJ", "Sr", "CLOSED", "CLOSED", "rejected", "reset_resp", "resp")),
        # (the first record's SYN_SENT is handed to the retry's record at 7 s: one socket)
        ("unanswered-syn", ("S0", "S", "CLOSED", "CLOSED", "unanswered", "open", None)),
        ("rst-abort-client", ("RSTO", "ShADadR", "CLOSED", "CLOSED", "3way", "reset_orig", "orig")),
        ("rst-abort-server", ("RSTR", "ShADadr", "CLOSED", "CLOSED", "3way", "reset_resp", "resp")),
        ("midstream", ("SF", "^dAFaf", "TIME_WAIT", "CLOSED", "missing", "4way", "orig")),
    ],
)
def test_lifecycle(tmp_path, name, expected):
    conns = run(tmp_path, name)
    # Zeek's attempt timer (tcp_attempt_delay) ends the unanswered attempt 5 s after its SYN:
    # the retry at 7 s is a record of its own
    assert len(conns) == (2 if name == "unanswered-syn" else 1)
    c = conns[0]
    assert summary(c) == expected
    if name == "unanswered-syn":  # the socket, still trying, lives on in the retry's record
        assert (conns[1].orig_state, conns[1].prev_uid) == ("SYN_SENT", c.uid)


def test_clean_close_timeline_and_handshake_legs(tmp_path):
    [c] = run(tmp_path, "clean-close")
    assert frames_states(c) == HANDSHAKE + [
        (8, "orig", "FIN_WAIT_1"), (8, "resp", "CLOSE_WAIT"),
        (9, "orig", "FIN_WAIT_2"),
        (10, "resp", "LAST_ACK"), (10, "orig", "TIME_WAIT"),
        (11, "resp", "CLOSED"),
    ]  # fmt: skip
    # SYN at t0, SYN/ACK 10 ms later, ACK 0.5 ms after that (pcapgen.Conversation.handshake)
    assert (c.synack_ms, c.ackdat_ms, c.irtt_ms) == pytest.approx((10.0, 0.5, 10.5), abs=1e-6)
    r = c.to_record()
    assert (r["orig_pkts"], r["resp_pkts"], r["orig_bytes"], r["resp_bytes"]) == (6, 5, 18, 24)
    # (service is told from the payload only when a ServiceAnalyzer runs: `flows --services`)
    assert r["port_service"] == "http" and r["originator_inferred"] is False


def test_3way_close_passes_fin_wait_2_on_the_combined_fin_ack(tmp_path):
    [c] = run(tmp_path, "close-3way")
    assert frames_states(c)[4:] == [
        (8, "orig", "FIN_WAIT_1"), (8, "resp", "CLOSE_WAIT"),
        (9, "orig", "FIN_WAIT_2"), (9, "resp", "LAST_ACK"), (9, "orig", "TIME_WAIT"),
        (10, "resp", "CLOSED"),
    ]  # fmt: skip


def test_simultaneous_close_goes_through_closing(tmp_path):
    [c] = run(tmp_path, "simultaneous-close")
    assert frames_states(c)[4:] == [
        (8, "orig", "FIN_WAIT_1"), (8, "resp", "CLOSE_WAIT"),
        (9, "resp", "CLOSING"), (9, "orig", "CLOSING"),
        (10, "resp", "TIME_WAIT"), (11, "orig", "TIME_WAIT"),
    ]  # fmt: skip


def test_simultaneous_open(tmp_path):
    [c] = run(tmp_path, "simultaneous-open")
    assert c.handshake == "simultaneous_open"
    assert frames_states(c)[:6] == [
        (1, "orig", "SYN_SENT"), (2, "resp", "SYN_SENT"),
        (2, "orig", "SYN_RECEIVED"), (2, "resp", "SYN_RECEIVED"),
        (3, "resp", "ESTABLISHED"), (4, "orig", "ESTABLISHED"),
    ]  # fmt: skip


def analyzed(tmp_path, name):
    """The connections of a scenario with the TCP analysis, which counts retransmissions."""
    from flowlens.analyzers.tcpanalysis import TcpAnalyzer

    path = tmp_path / f"{name}.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.SCENARIOS[name]()))
    return analyze(str(path), analyzers=[TcpAnalyzer()]).connections


def test_simultaneous_open_synacks_count_as_wiresharks_retransmissions(tmp_path):
    """Each SYN/ACK repeats its sender's SYN sequence number: tshark 4 flags both "(suspected)
    retransmission", so flows.retransmissions (the TCP analysis) counts 2, while Zeek's
    history keeps no T for them."""
    [c] = analyzed(tmp_path, "simultaneous-open")
    assert (c.retransmissions, c.out_of_order) == (2, 0)
    assert "T" not in c.history


def test_capture_starting_at_the_synack(tmp_path):
    """The SYN was missed: the SYN/ACK's receiver is the originator; its ACK of the SYN/ACK
    shows it was in SYN_SENT, so it is ESTABLISHED from that ACK on (inferred: a SYN/ACK alone
    moves no CLOSED endpoint, RFC 9293 §3.10.7.1)."""
    frames = pcapgen.clean_close()[1:]
    [c] = run(tmp_path, "no-syn", frames)
    assert (c.orig_p, c.resp_p, c.originator_inferred) == (40000, 80, False)
    assert frames_states(c)[:3] == [
        (1, "resp", "SYN_RECEIVED"),
        (2, "orig", "ESTABLISHED"),
        (2, "resp", "ESTABLISHED"),
    ]
    assert [n[1:4] for n in c.tcp.notes] == [(2, 0, "inferred")]
    assert (c.orig_state, c.resp_state, c.handshake) == ("TIME_WAIT", "CLOSED", "incomplete")


def test_unanswered_syn_counts_retries_across_the_attempt_timer(tmp_path):
    # SYNs at 0, 1, 3 and 7 s: Zeek's attempt timer ends the first record at 5 s, and the retry
    # at 7 s (same ISN) opens a second one that still counts it as the attempt's third retry
    first, second = run(tmp_path, "unanswered-syn")
    assert first.syn_retries == 2 and first.pkts == [3, 0]
    assert first.duration_s == pytest.approx(3.0)
    assert second.syn_retries == 3 and second.pkts == [1, 0]
    assert second.prev_uid == first.uid


def test_port_reuse_splits_the_5_tuple(tmp_path):
    first, second = run(tmp_path, "port-reuse")
    assert (first.orig_p, second.orig_p) == (40000, 40000)
    assert summary(first)[:2] == summary(second)[:2] == ("SF", "ShADadFf")
    # the second SYN came 2 s after the close: the first connection's TIME_WAIT was cut short
    assert second.prev_uid == first.uid and second.reused_in_time_wait
    assert first.orig_state == "CLOSED" and frames_states(first)[-1] == (12, "orig", "CLOSED")
    assert second.orig_state == "TIME_WAIT"
    assert first.uid != second.uid


def test_same_isn_syn_is_a_retry_not_a_new_connection(tmp_path):
    # within tcp_attempt_delay (5 s) of the first SYN
    conns = run(tmp_path, "unanswered-syn", frames=pcapgen.unanswered_syn(retries=(1.0, 2.0)))
    assert len(conns) == 1 and conns[0].syn_retries == 2


def test_time_wait_ends_after_two_msl(tmp_path):
    """The client's TIME_WAIT turns CLOSED 2 x MSL after it began, if the capture lasts that long."""
    frames = pcapgen.clean_close()
    later = pcapgen.udp_exchange(t=frames[-1][0] + 61.0)  # a packet 61 s after the close
    conns = run(tmp_path, "tw", frames + later)
    tcp = next(c for c in conns if c.proto_name == "tcp")
    assert tcp.orig_state == "CLOSED"
    assert tcp.timeline[-1][1:] == (None, "orig", "CLOSED")
    assert tcp.timeline[-1][0] - tcp.tcp.tw_start[0] == 60_000_000_000
    # with MSL 60 s, TIME_WAIT lasts 120 s and is still on when the capture ends
    tcp = next(c for c in run(tmp_path, "tw2", frames + later, msl_s=60.0) if c.proto_name == "tcp")
    assert tcp.orig_state == "TIME_WAIT"


def test_state_at(tmp_path):
    [c] = run(tmp_path, "clean-close")
    t_fin = c.timeline[4][0]
    assert c.state_at(0, t_fin - 1).value == "ESTABLISHED"
    assert c.state_at(0, t_fin).value == "FIN_WAIT_1"
    tw = c.tcp.tw_start[0]
    assert c.state_at(0, tw + 59_999_999_999).value == "TIME_WAIT"
    assert c.state_at(0, tw + 60_000_000_000).value == "CLOSED"


def test_midstream_originator_is_inferred_from_ports(tmp_path):
    [c] = run(tmp_path, "midstream")
    assert c.originator_inferred and c.flipped
    assert (c.orig_p, c.resp_p) == (40000, 80)
    assert c.handshake == "missing"


def test_retransmission_counted(tmp_path):
    [c] = analyzed(tmp_path, "retransmission")
    assert c.retransmissions == 1
    assert c.out_of_order == 0
    assert "T" in c.history


def test_udp_and_icmp_flows(tmp_path):
    [dns] = run(tmp_path, "udp-dns")
    assert (dns.proto_name, dns.conn_state, dns.pkts, dns.port_service) == (
        "udp",
        "SF",
        [1, 1],
        "dns",
    )
    [echo] = run(tmp_path, "icmp-echo")
    assert (echo.proto_name, echo.orig_p, echo.resp_p, echo.pkts) == ("icmp", 8, 0, [2, 2])


def test_udp_idle_timeout_splits_flows(tmp_path):
    frames = pcapgen.udp_exchange(dport=5000) + pcapgen.udp_exchange(dport=5000, t=pcapgen.T0 + 100)
    conns = run(tmp_path, "udp-idle", frames, udp_idle_s=30.0)
    assert len(conns) == 2
    assert len(run(tmp_path, "udp-idle2", frames, udp_idle_s=300.0)) == 1


def test_dns_flows_end_after_ten_idle_seconds(tmp_path):
    """Zeek's dns_session_timeout: a query 16 s after the last one is a new flow."""
    frames = pcapgen.udp_exchange() + pcapgen.udp_exchange(t=pcapgen.T0 + 16)
    assert [c.history for c in run(tmp_path, "dns", frames)] == ["Dd", "Dd"]
    frames = pcapgen.udp_exchange() + pcapgen.udp_exchange(t=pcapgen.T0 + 9)
    assert len(run(tmp_path, "dns2", frames)) == 1


def test_closed_connections_leave_the_table(tmp_path):
    """Memory follows open connections: finished ones are emitted while the capture streams."""
    from flowlens import Pipeline

    path = tmp_path / "many.pcap"
    frames = pcapgen.time_wait_pileup(count=200, interval=1.0)  # one per second for 200 s
    path.write_bytes(pcapgen.pcap_bytes(frames))
    pipe = Pipeline(str(path))
    emitted = sum(1 for _ in pipe)
    assert emitted == 200
    # TIME_WAIT holds each for 60 s, so about 61 are open at once, not 200
    assert 55 <= pipe.table.open_peak <= 65


def _write(tmp_path, name, frames):
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames))
    return str(path)


class _Recorder(Analyzer):  # a Python subclass of the (compiled) base class
    """Records every hook it is given, tagged with its name, into a shared list."""

    def __init__(self, name, log, keep=True):
        super().__init__()
        self.name, self.log, self.keep = name, log, keep

    def on_start(self, conn, pkt):
        self.log.append((self.name, "start", pkt.frame))
        return {"packets": 0} if self.keep else None

    def on_packet(self, conn, pkt, from_orig):
        self.state_of(conn)["packets"] += 1
        self.log.append((self.name, "packet", pkt.frame, from_orig, conn.tcp.state[0].name))

    def on_flip(self, conn):
        self.log.append((self.name, "flip", conn.orig_p))

    def on_end(self, conn):
        self.log.append((self.name, "end", conn.closed_by))

    def finish(self, end_ns=None):
        self.log.append((self.name, "finish", end_ns))
        return self.name


def test_analyzer_hooks_in_order_after_the_table(tmp_path):
    """start before the first packet, every packet after the table applied it, the end once the
    record is final, finish after the last end; analyzers in the order given."""
    from flowlens import Pipeline

    log = []
    a, b = _Recorder("a", log), _Recorder("b", log)
    path = _write(tmp_path, "clean-close", pcapgen.SCENARIOS["clean-close"]())
    pipe = Pipeline(path, analyzers=[a, b])
    (conn,) = list(pipe)
    frames = conn.pkts[0] + conn.pkts[1]
    assert log[:4] == [
        ("a", "start", 1), ("a", "packet", 1, True, "SYN_SENT"),  # after the table's SYN
        ("b", "start", 1), ("b", "packet", 1, True, "SYN_SENT"),
    ]  # fmt: skip
    assert [e[:3] for e in log[4:-4]] == [
        (n, "packet", f) for f in range(2, frames + 1) for n in ("a", "b")
    ]
    assert log[5][3] is False  # the SYN/ACK came from the responder
    end_ns = pipe.stats.last_ts_ns
    assert log[-4:] == [
        ("a", "end", "capture_end"), ("b", "end", "capture_end"),
        ("a", "finish", end_ns), ("b", "finish", end_ns),
    ]  # fmt: skip
    assert a.state_of(conn) == {"packets": frames}
    assert pipe.results == {a: "a", b: "b"}


def test_an_analyzer_without_state_sees_no_packets_but_the_end(tmp_path):
    log = []
    quiet = _Recorder("q", log, keep=False)
    path = _write(tmp_path, "clean-close", pcapgen.SCENARIOS["clean-close"]())
    (conn,) = analyze(path, analyzers=[quiet]).connections
    assert [e[1] for e in log] == ["start", "end", "finish"]
    assert quiet.state_of(conn) is None


def test_on_end_on_every_exit_path(tmp_path):
    """idle, closed (after the linger), reused and capture end all pass through on_end, once each."""
    log = []
    rec = _Recorder("r", log)
    path = _write(tmp_path, "port-reuse", pcapgen.SCENARIOS["port-reuse"]())
    conns = analyze(path, analyzers=[rec]).connections
    ends = [e[2] for e in log if e[1] == "end"]
    assert len(ends) == len(conns) >= 2
    assert sorted(ends) == sorted(c.closed_by for c in conns)
    assert "reused" in ends


def test_on_flip_when_the_table_swaps_the_roles(tmp_path):
    """A SYN/ACK first between two ports Zeek has no opinion on, then the ACK: Zeek flips the
    roles on the second packet (flip-without-syn); the analyzers hear it before that packet."""
    from dpkt.tcp import TH_ACK, TH_SYN

    c, s = pcapgen.CLIENT4, pcapgen.SERVER4
    frames = [
        (1.0, pcapgen.ethernet(pcapgen.tcp_segment(s, c, 50001, 40001, TH_SYN | TH_ACK, 500, 101))),
        (1.1, pcapgen.ethernet(pcapgen.tcp_segment(c, s, 40001, 50001, TH_ACK, 101, 501))),
    ]  # fmt: skip
    log = []
    rec = _Recorder("r", log)
    (conn,) = analyze(_write(tmp_path, "flip", frames), analyzers=[rec]).connections
    assert conn.history.startswith("^") and conn.orig_p == 40001
    assert [e[:3] for e in log[:4]] == [
        ("r", "start", 1), ("r", "packet", 1), ("r", "flip", 40001), ("r", "packet", 2),
    ]  # fmt: skip
    assert log[1][3] is True and log[3][3] is True  # each packet from the originator of its time


class _Base(Analyzer):
    def on_start(self, conn, pkt):
        return [0]

    def on_packet(self, conn, pkt, from_orig):
        self.state_of(conn)[0] += 1


class _Dependent(Analyzer):
    requires = (_Base,)

    def bind(self, deps):
        (self.base,) = deps

    def on_start(self, conn, pkt):
        return []

    def on_packet(self, conn, pkt, from_orig):
        # the dependency has already seen this packet
        self.state_of(conn).append(self.base.state_of(conn)[0])


def test_dependencies_are_added_ordered_first_and_bound(tmp_path):
    from flowlens.core.analyzer import resolve

    dep = _Dependent()
    order = resolve([dep])
    assert [type(a) for a in order] == [_Base, _Dependent] and dep.base is order[0]
    assert [a.slot for a in order] == [0, 1]
    given = _Base()
    assert resolve([_Dependent(), given])[0] is given  # an instance given is the one used
    path = _write(tmp_path, "clean-close", pcapgen.SCENARIOS["clean-close"]())
    dep = _Dependent()
    (conn,) = analyze(path, analyzers=[dep]).connections
    n = conn.pkts[0] + conn.pkts[1]
    assert dep.state_of(conn) == list(range(1, n + 1))


def test_resolve_refuses_cycles_and_non_analyzers():
    from flowlens.core.analyzer import resolve

    class Loop(Analyzer):
        def dependencies(self):
            return (self,)

    with pytest.raises(ValueError, match="cycle"):
        resolve([Loop()])
    with pytest.raises(TypeError):
        resolve([lambda conn, pkt, from_orig: None])


def test_no_analyzer_sees_another_analyzers_slot(tmp_path):
    path = _write(tmp_path, "clean-close", pcapgen.SCENARIOS["clean-close"]())
    a, b = _Base(), _Base()
    (conn,) = analyze(path, analyzers=[a, b]).connections
    assert a.state_of(conn) is not b.state_of(conn)
    assert _Base().state_of(conn) is None  # an analyzer that was not in the pipeline


def test_finished_connections_are_freed_while_the_capture_is_read(tmp_path, monkeypatch):
    """A closed connection's idle-timeout entry in the deadline heap must not keep it (and its
    analyzers' state) alive: memory follows the open connections, not the last minutes'."""
    import gc

    import flowlens.core.connections as fc
    from flowlens import Pipeline

    path = tmp_path / "many.pcap"
    # 600 short connections, 5 ms apart, each closed by the client (TIME_WAIT 2 x 0.05 s)
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.time_wait_pileup(count=600, interval=0.005)))
    config = Config(msl_s=0.05, close_linger_s=0.01)

    def run(prune_min):
        monkeypatch.setattr(fc, "_HEAP_PRUNE_MIN", prune_min)
        pipe = Pipeline(str(path), config)
        records, alive = [], 0
        for i, c in enumerate(pipe):
            records.append(c.to_record())
            if i == 500:
                alive = sum(1 for o in gc.get_objects() if type(o) is fc.Connection)
        return records, alive

    pruned, alive = run(64)
    unpruned, alive_unpruned = run(10**9)
    assert pruned == unpruned  # the same records either way
    assert alive_unpruned > 500  # (the test sees the problem when there is one)
    # at most 256 recent connections (the table's lookup slots), a few in TIME_WAIT and the
    # entries not yet pruned
    assert alive < 256 + 100


def _slow_close():
    """The client closes; the server's FIN comes 8 s later (longer than the 5 s close linger),
    then the last ACK."""
    conv = pcapgen.Conversation()
    conv.handshake()
    conv.exchange()
    conv.c(pcapgen.FIN | pcapgen.ACK)
    conv.s(pcapgen.ACK)
    conv.s(pcapgen.FIN | pcapgen.ACK, dt=8.0)
    conv.c(pcapgen.ACK)
    return conv.frames


def test_a_slow_close_stays_one_record(tmp_path):
    """Zeek's rule: after one side's FIN (close not complete) TCPSessionAdapter::
    ConnectionClosed only sets the ExpireTimer (tcp_session_timer), which removes a connection
    with one side closed only if the other closed too, was reset or never sent anything
    (ExpireTimer); a peer that is still there keeps it, so the peer's FIN 8 s later belongs to
    the same record (the kernel meanwhile holds FIN_WAIT_2 and CLOSE_WAIT)."""
    [c] = run(tmp_path, "slow-close", _slow_close())
    assert summary(c) == ("SF", "ShADadFf", "TIME_WAIT", "CLOSED", "3way", "4way", "orig")
    assert [s for _f, e, s in frames_states(c) if e == "orig"][-2:] == ["FIN_WAIT_2", "TIME_WAIT"]
    assert [s for _f, e, s in frames_states(c) if e == "resp"][-3:] == [
        "CLOSE_WAIT", "LAST_ACK", "CLOSED",
    ]  # fmt: skip


def _fin_retransmitted_late(gaps=(0.2, 0.4, 0.8, 1.6, 3.2, 6.4)):
    """The client closes first; its final ACK is lost beyond the capture point, so the server
    (LAST_ACK) retransmits its FIN with Linux's doubling RTO (tcp_retransmit_timer); the client
    (TIME_WAIT) answers only the last one. The retransmissions 7.2 s and 13.6 s after the close
    completed come after Zeek's tcp_close_delay (5 s): Zeek starts a new connection with each."""
    conv = pcapgen.Conversation()
    conv.handshake()
    conv.exchange()
    conv.c(pcapgen.FIN | pcapgen.ACK)
    conv.s(pcapgen.ACK)
    conv.s(pcapgen.FIN | pcapgen.ACK, dt=1.0)
    fin = conv.s_next - 1
    for gap in gaps:
        conv.s(pcapgen.FIN | pcapgen.ACK, seq=fin, dt=gap)
    conv.c(pcapgen.ACK, dt=0.0005)
    return conv.frames


def test_a_close_split_by_zeeks_delete_timer_keeps_the_endpoint_states(tmp_path):
    """The records split where Zeek splits them (history ^f, ^fA: Zeek's letters for a record
    that began with the responder's FIN), but the sockets are the same: the continuing records
    take the endpoints over in LAST_ACK and TIME_WAIT, not ESTABLISHED -> FIN_WAIT_1 /
    CLOSE_WAIT as a capture that began mid-connection would; each retransmitted FIN restarts
    the client's TIME_WAIT (RFC 9293 §3.10.7.4), and one record holds each socket at a time."""
    first, second, third = run(tmp_path, "late-fin", _fin_retransmitted_late())
    assert [r.history for r in (first, second, third)] == ["ShADadFf", "^f", "^fA"]
    assert (second.prev_uid, third.prev_uid) == (first.uid, second.uid)
    assert first.closed_by == second.closed_by == "continued"
    # the continuing records: TIME_WAIT and LAST_ACK from their first packet
    assert frames_states(second) == [
        (15, "orig", "TIME_WAIT"), (15, "resp", "LAST_ACK"), (16, "orig", "CLOSED"),
        (16, "resp", "CLOSED"),
    ]  # fmt: skip
    assert frames_states(third) == [
        (16, "orig", "TIME_WAIT"), (16, "resp", "LAST_ACK"), (17, "resp", "CLOSED"),
    ]  # fmt: skip
    assert (third.orig_state, third.resp_state, third.teardown) == ("TIME_WAIT", "CLOSED", "4way")
    assert third.close_initiator == "orig"
    # TIME_WAIT: 2 x MSL (60 s) after the last FIN, handed on from record to record
    last_fin_ns = third.first_ts_ns
    assert third.tcp.time_wait_end_ns(0) == last_fin_ns + 60 * 10**9
    assert first.tcp.time_wait_end_ns(0) == second.first_ts_ns
    # one socket at a time: at any moment at most one record has the client in TIME_WAIT
    for t in range(2, 80):  # (the client entered TIME_WAIT at 1.0165 s)
        at = first.first_ts_ns + t * 10**9
        held = [r for r in (first, second, third) if r.tcp.state_at(0, at).name == "TIME_WAIT"]
        assert len(held) == (1 if at < last_fin_ns + 60 * 10**9 else 0), t
