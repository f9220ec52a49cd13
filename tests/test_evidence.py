"""Endpoint states from evidence (issue 16): each rule from its source (RFC 9293 §3.10.7,
RFC 5961 §3, Linux net/ipv4), each shown on a tiny capture built here."""

from __future__ import annotations

import json

import pcapgen
from click.testing import CliRunner

from flowlens.cli import cli
from flowlens.core.pipeline import analyze
from flowlens.core.tcpstate import TcpState

CLIENT, SERVER = pcapgen.CLIENT4, pcapgen.SERVER4
TWO_MSL = 60_000_000_000  # Config's default 2 x MSL (Linux TCP_TIMEWAIT_LEN)


def capture(tmp_path, name: str, frames) -> str:
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames))
    return str(path)


def states_at(path, when) -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["states", path, "--at", when, "--format", "json"])
    assert result.exit_code == 0, result.output
    return {r["host"]: r for r in map(json.loads, result.stdout.splitlines())}


def frame_ns(frames, i: int) -> int:
    sec = int(frames[i][0])  # as dpkt's pcap writer stores it: seconds, microseconds
    return sec * 1_000_000_000 + int(round((frames[i][0] - sec) * 1e6)) * 1000


# ---------------------------------------------------------------- 1. a retransmitted FIN


def test_retransmitted_fin_restarts_time_wait(tmp_path):
    """RFC 9293 §3.10.7.4 (TIME-WAIT: a retransmitted remote FIN is acknowledged and the
    2 MSL timeout restarted; Linux tcp_timewait_state_process re-arms TCP_TIMEWAIT_LEN): the
    client's TIME_WAIT ends 2 x MSL after the last FIN's arrival, not the first's."""
    frames = pcapgen.lost_final_ack(retries=(0.2, 0.4, 0.8))
    path = capture(tmp_path, "lost_ack", frames)
    (conn,) = analyze(path).connections
    tcp = conn.tcp
    first_fin = frame_ns(frames, len(frames) - 8)  # the server's first FIN
    last_fin = frame_ns(frames, len(frames) - 2)  # its last retransmission
    assert tcp.tw_start[0] == first_fin
    assert tcp.tw_restart[0] == last_fin
    assert tcp.time_wait_end_ns(0) == last_fin + TWO_MSL
    assert tcp.state_at(0, first_fin + TWO_MSL) is TcpState.TIME_WAIT
    assert tcp.state_at(0, last_fin + TWO_MSL - 1) is TcpState.TIME_WAIT
    assert tcp.state_at(0, last_fin + TWO_MSL) is TcpState.CLOSED
    # one TIME_WAIT span, with its timer from the last FIN
    spans = [s for s in tcp.spans() if s[0] == 0 and s[1] is TcpState.TIME_WAIT]
    assert spans == [(0, TcpState.TIME_WAIT, first_fin, last_fin + TWO_MSL, spans[0][4], True)]
    assert tcp.settled_ns() == last_fin + TWO_MSL
    # `states` says the same: TIME_WAIT still held after the first FIN's 2 x MSL
    between = (first_fin + TWO_MSL + 1_000_000) / 1e9
    assert states_at(path, f"{between:.6f}")[CLIENT]["TIME_WAIT"] == 1
    after = (last_fin + TWO_MSL) / 1e9
    assert states_at(path, f"{after:.6f}").get(CLIENT, {}).get("TIME_WAIT", 0) == 0


def test_fin_after_time_wait_ran_out_restarts_nothing(tmp_path):
    """A FIN that arrives once TIME_WAIT is over finds no socket (Linux answers RST): the
    timer is not restarted from the grave."""
    frames = pcapgen.lost_final_ack(retries=(61.0,))
    conn = analyze(capture(tmp_path, "late_fin", frames)).connections[0]  # (the late FIN
    # starts a record of its own)
    first_fin = frame_ns(frames, len(frames) - 4)
    assert conn.tcp.tw_restart[0] is None
    assert conn.tcp.time_wait_end_ns(0) == first_fin + TWO_MSL


def test_fin_retransmitted_before_time_wait_restarts_nothing(tmp_path):
    """A FIN retransmitted while its receiver is still in FIN_WAIT (not TIME_WAIT) has no
    timer to restart."""
    conv = pcapgen.Conversation()
    conv.handshake()
    conv.c(pcapgen.FIN | pcapgen.ACK)
    conv.c(pcapgen.FIN | pcapgen.ACK, seq=conv.c_next - 1, dt=0.3)
    conv.s(pcapgen.ACK)
    (conn,) = analyze(capture(tmp_path, "fin_rtx", conv.frames)).connections
    assert conn.tcp.tw_restart == [None, None]
    assert conn.tcp.state == [TcpState.FIN_WAIT_2, TcpState.CLOSE_WAIT]


# ---------------------------------------------------------------- 2. RST validation


def findings(path) -> list[dict]:
    result = CliRunner().invoke(cli, ["anomalies", path, "--format", "json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_rst_not_acknowledging_the_syn_is_ignored(tmp_path):
    """RFC 9293 §3.10.7.3 (SYN-SENT, the RST bit: only a RST whose ACK acknowledges the SYN,
    ISS < SEG.ACK =< SND.NXT, resets; Linux tcp_rcv_synsent_state_process): a RST/ACK with
    ACK = ISN is not a refusal; the handshake that follows is."""
    frames = pcapgen.injected_rst_syn_sent()
    path = capture(tmp_path, "rst_syn_sent", frames)
    (conn,) = analyze(path).connections
    t = conn.tcp
    assert not t.rejected and t.reset_by is None
    assert t.handshake() == "3way" and t.teardown() == "4way"
    assert t.rst_ignored[1:3] == (2, 1) and "acknowledge the SYN" in t.rst_ignored[3]
    assert t.rst_ignored_then == 3  # the SYN/ACK
    assert [n[1:4] for n in t.notes] == [(2, 1, "rst_ignored")]
    # no state changed at the RST: the client stays SYN_SENT until the SYN/ACK
    assert all(frame != 2 for _ts, frame, _side, _st in t.timeline)
    (f,) = [f for f in findings(path) if f["kind"] == "rst_ignored"]
    assert f["evidence"] == [2, 3] and f["details"]["went_on_frame"] == 3
    assert "connection_refused" not in {x["kind"] for x in findings(path)}


def test_rst_acknowledging_the_syn_refuses(tmp_path):
    """The valid RST/ACK (ACK = ISN + 1) still refuses the connection."""
    (conn,) = analyze(capture(tmp_path, "refused", pcapgen.refused())).connections
    assert conn.tcp.rejected and conn.tcp.rst_ignored is None
    assert conn.tcp.state == [TcpState.CLOSED, TcpState.CLOSED]


def test_rst_outside_the_window_is_ignored(tmp_path):
    """RFC 9293 §3.10.7.4 (first, check the sequence number) and RFC 5961 §3.2: a RST outside
    RCV.NXT .. RCV.NXT + RCV.WND is dropped; the connection goes on, and the anomaly says a
    blind RST came."""
    frames = pcapgen.blind_rst()
    path = capture(tmp_path, "blind_rst", frames)
    (conn,) = analyze(path).connections
    t = conn.tcp
    rst = next(i + 1 for i, (_t, f) in enumerate(frames) if f[47] & pcapgen.RST)
    assert t.rst_ignored[1] == rst and "outside the receive window" in t.rst_ignored[3]
    assert t.reset_by is None and t.teardown() == "4way"
    assert t.state == [TcpState.TIME_WAIT, TcpState.CLOSED]
    (f,) = [f for f in findings(path) if f["kind"] == "rst_ignored"]
    assert f["severity"] == "warning" and f["details"]["went_on_frame"] == rst + 1
    assert "rst_abort" not in {x["kind"] for x in findings(path)}
    # the timeline shows the RST with its note, no state change
    out = CliRunner().invoke(cli, ["timeline", path])
    assert out.exit_code == 0, out.output
    assert "RST ignored" in out.stdout


def test_rst_in_the_window_resets(tmp_path):
    """The same RST at RCV.NXT (offset 0) is accepted: both endpoints CLOSED."""
    frames = pcapgen.blind_rst(offset=0)
    (conn,) = analyze(capture(tmp_path, "rst_in", frames)).connections[:1]
    assert conn.tcp.rst_ignored is None and conn.tcp.reset_by == 1


def test_rst_with_unknown_window_is_accepted():
    """Lenient where the capture cannot know: a receiver that never sent an ACK (so no
    RCV.NXT or window is known) accepts the RST."""
    from flowlens.core.tcpstate import TcpTracker

    t = TcpTracker()
    t.start_midstream(0, 1)
    t.packet(0, pcapgen.RST, 123456789, 0, 0, 10, 2, 65535)
    assert t.rst_ignored is None and t.state == [TcpState.CLOSED, TcpState.CLOSED]


# ---------------------------------------------------------------- 3. unsolicited SYN/ACK


def test_unsolicited_synack_leaves_the_receiver_closed(tmp_path):
    """RFC 9293 §3.10.7.1: a CLOSED endpoint answers a SYN/ACK with a RST (or not at all)
    and stays CLOSED; the reflectors, which answered a (spoofed) SYN, are the ones with a
    half-open SYN_RECEIVED socket (until their SYN/ACK retries give up)."""
    frames = pcapgen.synack_reflection(count=5)
    path = capture(tmp_path, "reflection", frames)
    conns = analyze(path).connections
    assert len(conns) == 5
    for c in conns:
        victim = (
            0
            if c.orig_h == c.resp_h
            else [c.orig_h, c.resp_h].index(__import__("socket").inet_aton(CLIENT))
        )
        assert c.tcp.state_at(victim, c.last_ts_ns) is TcpState.CLOSED
        assert all(st is not TcpState.ESTABLISHED for _t, _f, _s, st in c.tcp.timeline)
    rows = states_at(path, "end")
    assert rows.get(CLIENT, {}).get("ESTABLISHED", 0) == 0
    assert rows.get(CLIENT, {}).get("total", 0) == 0
    # the two reflectors the victim did not reset still hold SYN_RECEIVED
    reflectors = {h: r for h, r in rows.items() if h.startswith("203.0.113.")}
    assert sum(r["SYN_RECEIVED"] for r in reflectors.values()) == 2


def test_synack_after_a_missed_syn_then_ack_is_established(tmp_path):
    """The capture began after the SYN: the SYN/ACK's receiver answers it with an ACK, which
    shows it was in SYN_SENT: it is ESTABLISHED from that ACK, marked as inferred."""
    frames = pcapgen.clean_close()[1:]
    (conn,) = analyze(capture(tmp_path, "late", frames)).connections
    (note,) = conn.tcp.notes
    assert note[1:4] == (2, 0, "inferred") and "SYN/ACK" in note[4]
    assert conn.tcp.state_at(0, frame_ns(frames, 1)) is TcpState.ESTABLISHED


# ---------------------------------------------------------------- 4. SYN/ACK missing


def test_missing_synack_both_established_inferred(tmp_path):
    """SYN seen, SYN/ACK not: the client's ACK (it sends nothing but its SYN in SYN_SENT,
    RFC 9293 §3.10.7.3) and the server's ACK of ISN + 1 show both synchronized: both
    ESTABLISHED from the packet that completes the evidence, each marked as inferred, instead
    of the client sitting in SYN_SENT through the exchange."""
    frames = pcapgen.synack_missing()
    path = capture(tmp_path, "no_synack", frames)
    (conn,) = analyze(path).connections
    t = conn.tcp
    # frames: 1 SYN, 2 ACK, 3 request, 4 server's ACK: the evidence is complete at frame 4
    assert [(f, s, st) for _t, f, s, st in t.timeline][:3] == [
        (1, 0, TcpState.SYN_SENT),
        (4, 0, TcpState.ESTABLISHED),
        (4, 1, TcpState.ESTABLISHED),
    ]
    assert [n[1:4] for n in t.notes] == [(4, 0, "inferred"), (4, 1, "inferred")]
    assert t.handshake() == "incomplete"  # not "unanswered": it was answered, out of sight
    assert t.state == [TcpState.TIME_WAIT, TcpState.CLOSED] and t.teardown() == "4way"
    # the timeline command shows the inference
    out = CliRunner().invoke(cli, ["timeline", path])
    assert out.exit_code == 0, out.output
    assert "inferred" in out.stdout


def test_syn_sent_alone_is_not_inferred_established(tmp_path):
    """Unanswered SYNs stay SYN_SENT: no inference without both sides' evidence."""
    (conn,) = analyze(capture(tmp_path, "unanswered", pcapgen.unanswered_syn((1.0,)))).connections
    assert conn.tcp.notes == [] and conn.tcp.state[0] is TcpState.SYN_SENT


def test_one_way_capture_of_the_server_infers_the_client(tmp_path):
    """Only the server's side was captured (SYN/ACK, data, ACKs of the client's data): its
    ACKs beyond the client's ISN + 1 show the client sent data, which it does only once
    ESTABLISHED; the SYN/ACK alone did not make it so."""
    conv = pcapgen.Conversation()
    conv.c_next = conv.isn_c + 1  # the client's SYN, not captured
    conv.s(pcapgen.SYN | pcapgen.ACK, dt=0.0)
    conv.c_next += 100  # 100 bytes from the client, not captured
    conv.s(pcapgen.PSH | pcapgen.ACK, b"x" * 50)
    conv.s(pcapgen.FIN | pcapgen.ACK)
    (conn,) = analyze(capture(tmp_path, "one_way", conv.frames)).connections
    t = conn.tcp
    client = 0 if conn.orig_p == 40000 else 1
    assert [(n[1], n[2], n[3]) for n in t.notes] == [
        (2, client, "inferred"),
        (2, 1 - client, "inferred"),
    ]
    assert t.state[client] is TcpState.CLOSE_WAIT and t.state[1 - client] is TcpState.FIN_WAIT_1
