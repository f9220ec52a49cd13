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
