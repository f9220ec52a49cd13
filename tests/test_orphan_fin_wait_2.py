"""An orphaned FIN_WAIT_2 is dropped after tcp_fin_timeout (issue 16: timers the kernel runs
without sending a packet). Linux's tcp_close() hands a FIN_WAIT_2 socket whose application
closed to tcp_time_wait(sk, TCP_FIN_WAIT2, tmo) with tmo = net.ipv4.tcp_fin_timeout (60 s), and
the socket is gone when it runs out; a socket that only shut down its sending half takes the
peer's data and has no such timer."""

from __future__ import annotations

import json

import pcapgen
from click.testing import CliRunner
from pcapgen import ACK, FIN, PSH, T0, Conversation

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
