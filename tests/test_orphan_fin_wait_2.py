"""An orphaned FIN_WAIT_2 is dropped after tcp_fin_timeout (issue 16: timers the kernel runs
without sending a packet). Linux's tcp_close() hands a FIN_WAIT_2 socket whose application
closed to tcp_time_wait(sk, TCP_FIN_WAIT2, tmo) with tmo = net.ipv4.tcp_fin_timeout (60 s), and
the socket is gone when it runs out; a socket that only shut down its sending half takes the
peer's data and has no such timer."""

from __future__ import annotations

import json

import pcapgen
import pytest
from click.testing import CliRunner
from pcapgen import ACK, FIN, PSH, RST, T0, Conversation

from flowlens import Config, analyze
from flowlens.cli import cli


def _orphan(quiet_s: float = 90.0, answer_at: float | None = None):
    """The client closes, the server acknowledges and says nothing more; other traffic keeps
    the capture going `quiet_s` seconds. With `answer_at`, the server's keep-alive probe at
    that time (from the FIN_WAIT_2 entry) is answered by the client."""
    conv = Conversation()
    conv.handshake()
    conv.exchange()
    conv.c(FIN | ACK)
    conv.s(ACK)
    fw2 = conv.frames[-1][0]
    if answer_at is not None:
        conv.t = fw2 + answer_at
        conv.s(ACK, dt=0.0, seq=conv.s_next - 1)
        conv.c(ACK)
    other = []
    for i in range(int(quiet_s)):
        other += pcapgen.udp_exchange(sport=50000 + i, t=fw2 + 1 + i)
    return sorted(conv.frames + other, key=lambda f: f[0]), fw2


def _tcp(tmp_path, frames, **config):
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, frames)
    [c] = [
        c for c in analyze(str(path), config=Config(**config)).connections if c.proto_name == "tcp"
    ]
    return c, path


def test_an_orphaned_fin_wait_2_is_gone_after_tcp_fin_timeout(tmp_path):
    frames, fw2 = _orphan()
    c, path = _tcp(tmp_path, frames)
    t = c.tcp
    ns = int(fw2 * 1e9)
    assert t.state_at(0, ns + int(59.9e9)).name == "FIN_WAIT_2"
    assert t.state_at(0, ns + int(60.1e9)).name == "CLOSED"
    assert t.state_at(1, ns + int(80e9)).name == "CLOSE_WAIT"  # the peer cannot know
    assert c.to_record()["orig_state"] == "CLOSED"
    # the states command counts it until then, and not after
    assert _client_fin_wait_2(path, fw2 - T0 + 30) == 1
    assert _client_fin_wait_2(path, fw2 - T0 + 70) == 0


def _client_fin_wait_2(path, at: float) -> int:
    out = CliRunner().invoke(cli, ["states", str(path), "--at", f"+{at:.3f}s", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return sum(r["FIN_WAIT_2"] for r in rows if r["host"] == pcapgen.CLIENT4)


def test_the_model_can_be_turned_off(tmp_path):
    frames, fw2 = _orphan()
    c, path = _tcp(tmp_path, frames, fin_wait_2_timeout_s=0)
    assert c.to_record()["orig_state"] == "FIN_WAIT_2"
    out = CliRunner().invoke(cli, ["flows", str(path), "--fin-timeout", "0", "--format", "json"])
    [rec] = [json.loads(line) for line in out.stdout.splitlines() if '"tcp"' in line]
    assert rec["orig_state"] == "FIN_WAIT_2"
    out = CliRunner().invoke(cli, ["flows", str(path), "--fin-timeout", "30", "--format", "json"])
    [rec] = [json.loads(line) for line in out.stdout.splitlines() if '"tcp"' in line]
    assert rec["orig_state"] == "CLOSED"


def test_a_socket_that_answers_after_the_timeout_had_no_timer(tmp_path):
    frames, fw2 = _orphan(answer_at=75.0)
    c, _ = _tcp(tmp_path, frames)
    assert c.tcp.state_at(0, int((fw2 + 70) * 1e9)).name == "FIN_WAIT_2"
    assert c.to_record()["orig_state"] == "FIN_WAIT_2"


def test_a_half_close_is_not_an_orphan(tmp_path):
    # shutdown(SHUT_WR): the client's socket takes the server's data for 80 s, and stays
    conv = Conversation()
    conv.handshake()
    conv.c(PSH | ACK, b"request")
    conv.c(FIN | ACK)
    conv.s(ACK)
    fw2 = conv.frames[-1][0]
    for _ in range(8):
        conv.s(PSH | ACK, b"z" * 50, dt=10.0)
        conv.c(ACK)
    c, _ = _tcp(tmp_path, conv.frames)
    assert c.tcp.state_at(0, int((fw2 + 75) * 1e9)).name == "FIN_WAIT_2"
    assert c.to_record()["orig_state"] == "FIN_WAIT_2"


def _late_fin(after_s: float = 80.0, answer: int | None = RST):
    """_orphan, then the server closes `after_s` seconds after the client entered FIN_WAIT_2;
    the client's host answers the FIN with `answer` (RST: Linux, no socket left; ACK: a socket
    that was still there), or not at all (None)."""
    conv = Conversation()
    conv.handshake()
    conv.exchange()
    conv.c(FIN | ACK)
    conv.s(ACK)
    fw2 = conv.frames[-1][0]
    conv.t = fw2 + after_s
    conv.s(FIN | ACK, dt=0.0)
    if answer is not None:
        conv.c(answer)
    other = []
    for i in range(int(after_s) + 20):
        other += pcapgen.udp_exchange(sport=50000 + i, t=fw2 + 1 + i)
    return sorted(conv.frames + other, key=lambda f: f[0]), fw2


def _fw2_ns(t) -> int:
    """When the client entered FIN_WAIT_2, as the tracker has it (ns, no float rounding)."""
    return next(e[0] for e in t.timeline if e[2] == 0 and e[3].name == "FIN_WAIT_2")


def test_a_fin_after_the_orphan_timer_finds_no_socket(tmp_path):
    """RFC 9293 §3.10.7.1: the orphan is gone at 60 s; the server's FIN at 80 s finds no TCB
    (Linux answers with RST, tcp_v4_send_reset) and puts nothing in TIME_WAIT."""
    frames, fw2 = _late_fin()
    c, path = _tcp(tmp_path, frames)
    t = c.tcp
    ns = _fw2_ns(t)
    assert [s for side, s in ((e[2], e[3].name) for e in t.timeline) if side == 0][-1] == "CLOSED"
    assert "TIME_WAIT" not in [e[3].name for e in t.timeline]
    assert t.time_wait_end_ns(0) is None
    for at in (61, 80.0005, 85):
        assert t.state_at(0, ns + int(at * 1e9)).name == "CLOSED", at
    assert t.state_at(1, ns + int(80.0005e9)).name == "LAST_ACK"  # it sent its FIN
    _close_wait, fin_wait_2 = t.spells()
    assert fin_wait_2 == [[0, ns, ns + 60_000_000_000, 9, True]]
    rec = c.to_record()
    assert (rec["orig_state"], rec["resp_state"]) == ("CLOSED", "CLOSED")
    out = CliRunner().invoke(
        cli, ["states", str(path), "--at", f"+{fw2 - T0 + 85:.3f}s", "--format", "json"]
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert sum(r["TIME_WAIT"] for r in rows) == 0


def test_a_late_fin_without_an_answer_leaves_the_closer_in_last_ack(tmp_path):
    frames, fw2 = _late_fin(answer=None)
    c, _ = _tcp(tmp_path, frames)
    rec = c.to_record()
    assert (rec["orig_state"], rec["resp_state"]) == ("CLOSED", "LAST_ACK")
    assert c.tcp.time_wait_end_ns(0) is None


def test_a_late_fin_that_is_acknowledged_shows_there_was_no_timer(tmp_path):
    """An ACK (no RST) of the late FIN: the socket was there (shut down, or a longer
    tcp_fin_timeout), so the FIN made it TIME_WAIT, from the FIN."""
    frames, fw2 = _late_fin(answer=ACK)
    c, _ = _tcp(tmp_path, frames)
    t = c.tcp
    ns = _fw2_ns(t)
    assert t.state_at(0, ns + int(70e9)).name == "FIN_WAIT_2"
    [start, _end] = t.time_wait_spell(0)
    assert start == pytest.approx(ns + 80e9, abs=1e3)  # the FIN's arrival
    assert start == next(e[0] for e in t.timeline if e[2] == 1 and e[3].name == "LAST_ACK")
    _close_wait, fin_wait_2 = t.spells()
    assert fin_wait_2 == [[0, ns, start, 9, False]]
    rec = c.to_record()
    assert (rec["orig_state"], rec["resp_state"]) == ("TIME_WAIT", "CLOSED")


def test_a_fin_before_the_orphan_timer_still_makes_time_wait(tmp_path):
    frames, fw2 = _late_fin(after_s=30.0, answer=ACK)
    c, _ = _tcp(tmp_path, frames)
    assert c.tcp.time_wait_spell(0)[0] == pytest.approx(_fw2_ns(c.tcp) + 30e9, abs=1e3)


def test_the_fin_wait_2_finding_ends_at_the_orphan_timer(tmp_path):
    from flowlens.analyzers.anomalies.detector import AnomalyDetector

    frames, _fw2 = _orphan()
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, frames)
    detector = AnomalyDetector()
    [a] = [
        a
        for a in analyze(str(path), analyzers=[detector]).results[detector]
        if a.kind == "fin_wait_2"
    ]
    assert a.details["duration_s"] == 60.0 and a.details["timed_out"] is True
    assert not a.details["still_waiting"] and "tcp_fin_timeout dropped" in a.summary
