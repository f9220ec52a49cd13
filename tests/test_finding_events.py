"""Findings say what happened and when (issue 17): a finding's `ts` is its event's time and
`conn_ts` the connection's start; a half-close is not a CLOSE_WAIT leak; a duration is never
longer or shorter than what the capture showed; a RST once the close began says "after FIN";
unsolicited SYN/ACKs in bursts are a reflection (or backscatter) finding of their own."""

from __future__ import annotations

import pcapgen
from pcapgen import ACK, FIN, PSH, RST, SYN, T0, Conversation

from flowlens import analyze
from flowlens.analyzers.anomalies.detector import KINDS, AnomalyDetector, Thresholds


def findings(tmp_path, frames, **thresholds):
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, frames)
    detector = AnomalyDetector(Thresholds(**thresholds))
    return analyze(str(path), analyzers=[detector]).results[detector]


def of_kind(found, kind):
    return [a for a in found if a.kind == kind]


def _frame_time(frames, index):
    return frames[index][0]


# ------------------------------------------------------------------ when it happened
def test_keep_alive_finding_is_dated_by_its_probe(tmp_path):
    frames = pcapgen.close_wait_leak()  # the last two frames: a keep-alive two minutes on
    [ka] = of_kind(findings(tmp_path, frames), "keep_alive")
    probe = frames[-2][0]
    assert abs(ka.ts - probe) < 1e-6 and ka.ts - T0 > 100
    assert abs(ka.conn_ts - T0) < 1e-6
    assert ka.to_record()["conn_ts"] == round(ka.conn_ts, 6)


def test_retransmission_finding_is_dated_by_the_resent_segment(tmp_path):
    frames = pcapgen.retransmission()
    [rt] = of_kind(findings(tmp_path, frames), "retransmissions")
    resent = frames[4][0]  # handshake (3), the first copy, then the copy 0.2 s later
    assert abs(rt.ts - resent) < 1e-6 and abs(rt.conn_ts - T0) < 1e-6


def test_rst_abort_is_dated_by_the_rst(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.exchange()
    conv.s(RST | ACK, dt=3.0)
    [a] = of_kind(findings(tmp_path, conv.frames), "rst_abort")
    assert abs(a.ts - conv.frames[-1][0]) < 1e-6 and abs(a.conn_ts - T0) < 1e-6
    assert "established connection" in a.summary and "after FIN" not in a.summary


# ------------------------------------------------------------------ closes
def test_rst_after_fin_says_so(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.exchange()
    conv.c(FIN | ACK)
    conv.s(ACK)
    conv.s(RST | ACK)  # the server resets once the client's close began
    [a] = of_kind(findings(tmp_path, conv.frames), "rst_abort")
    assert a.details["after_fin"] == 1
    assert "after FIN" in a.summary and "RST instead of FIN" not in a.summary
    assert a.details["bytes_in_flight"] == 0  # the FIN is not data


def test_half_close_with_data_is_not_a_leak(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.c(PSH | ACK, b"upload done")
    conv.c(FIN | ACK)  # shutdown(SHUT_WR): the client is done sending
    conv.s(ACK)
    for _ in range(10):  # the server goes on answering for 40 s
        conv.s(PSH | ACK, b"y" * 100, dt=4.0)
        conv.c(ACK)
    [a] = of_kind(findings(tmp_path, conv.frames), "close_wait")
    assert a.severity == "info" and a.details["half_close"] is True
    assert a.details["bytes_in_close_wait"] == 1000
    assert "half-close" in a.summary and "not closing its sockets" not in a.summary


def test_close_wait_lasts_as_long_as_the_capture_shows(tmp_path):
    # the server acknowledges the client's FIN and goes quiet; the capture goes on 42 s with
    # other traffic: the socket was in CLOSE_WAIT at least to the capture's end, whatever
    # flowlens's own record timers did with the quiet connection
    leak = Conversation()
    leak.handshake()
    leak.exchange()
    leak.c(FIN | ACK)
    leak.s(ACK)
    cw_start = leak.frames[-1][0]
    other = []
    for i in range(42):
        other += pcapgen.udp_exchange(sport=50000 + i, t=T0 + 1 + i)
    frames = sorted(leak.frames + other, key=lambda f: f[0])
    end = frames[-1][0]
    [a] = of_kind(findings(tmp_path, frames), "close_wait")
    assert a.severity == "warning" and a.details["still_open"] == 1
    assert abs(a.details["max_duration_s"] - (end - cw_start)) < 0.01
    assert "at least 42 s" in a.summary and "still when the capture ended" in a.summary


def test_close_wait_that_ends_is_stated_exactly(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.exchange()
    conv.c(FIN | ACK)
    conv.s(ACK)
    conv.s(FIN | ACK, dt=7.0)  # the application closed 7 s late
    conv.c(ACK)
    [a] = of_kind(findings(tmp_path, conv.frames), "close_wait")
    assert a.severity == "info" and a.details["still_open"] == 0
    assert "for 7.0 s before it closed" in a.summary


# ------------------------------------------------------------------ reflection, backscatter
def test_synack_reflection_is_a_finding(tmp_path):
    frames = pcapgen.synack_reflection(count=30, answered_every=2)
    [a] = of_kind(findings(tmp_path, frames), "synack_reflection")
    assert "synack_reflection" in KINDS
    assert a.details["pattern"] == "reflection"
    assert a.details["synacks"] == 30 and a.details["sender_count"] == 30
    assert a.details["receivers"] == ["192.0.2.10"]
    assert a.details["answered_with_rst"] == 15
    assert a.severity == "warning"  # 30 within a second is below the flood threshold
    assert abs(a.ts - frames[0][0]) < 1e-6


def test_backscatter_is_one_sender_to_many(tmp_path):
    frames = []
    for i in range(12):  # a flooded server answers SYNs forged from 12 addresses
        conv = Conversation(
            client=f"203.0.113.{50 + i}", server="198.51.100.20", cport=31000 + i, sport=443,
            t=T0 + i * 0.01, isn_c=4000 + i,
        )  # fmt: skip
        conv.s(SYN | ACK, ack=conv.isn_c + 1, dt=0.0)
        frames += conv.frames
    [a] = of_kind(findings(tmp_path, frames), "synack_reflection")
    assert a.details["pattern"] == "backscatter" and a.details["receiver_count"] == 12
    assert a.details["senders"] == ["198.51.100.20"]


def test_a_missing_syn_is_not_a_reflection(tmp_path):
    # asymmetric routing: the SYN/ACK is missing and data flows; and a lone SYN/ACK below the
    # threshold: neither is reported
    frames = []
    for i in range(12):
        conv = Conversation(cport=42000 + i, t=T0 + i)
        conv.s(SYN | ACK, ack=conv.isn_c + 1, dt=0.0)
        conv.c(ACK)
        conv.exchange()
        frames += conv.frames
    assert of_kind(findings(tmp_path, frames), "synack_reflection") == []
    assert (
        of_kind(findings(tmp_path, pcapgen.synack_reflection(count=5)), "synack_reflection") == []
    )
