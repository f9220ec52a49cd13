"""ZeekTcp/ZeekUdp against Zeek's own rules and baselines.

Every expected value comes from Zeek, not from running flowlens: the four RST traces' printed
"history, conn_state" (testing/btest/.../conn_state-RST-behavior.out), the conn.log baselines and
printed endpoint records of Zeek's btests (copied into ../shared/corpus/zeek/baselines, cited per
test), or the rules written in Zeek's conn/main.zeek (history alphabet, logarithmic letters,
conn_state table). Packet sequences for the corpus traces were transcribed from `tcpdump -S`.
"""

from __future__ import annotations

from dpkt.tcp import TH_ACK, TH_FIN, TH_PUSH, TH_RST, TH_SYN

from flowlens.core.zeekstate import (
    ZEEK_LIKELY_SERVER_PORTS_TCP,
    ZeekState,
    ZeekTcp,
    ZeekUdp,
    icmp_conn_state,
    udp_conn_state,
    zeek_flips,
)

S, SA, A, PA = TH_SYN, TH_SYN | TH_ACK, TH_ACK, TH_PUSH | TH_ACK
FA, F, R, RA = TH_FIN | TH_ACK, TH_FIN, TH_RST, TH_RST | TH_ACK
O, Rs = True, False  # originator / responder, in the roles as they stand

# Two sides of an ordinary connection: client ISN 1000, server ISN 5000.
CI, SI = 1000, 5000


def feed(pkts, z: ZeekTcp | None = None, flip_first: bool = False) -> ZeekTcp:
    """pkts: (is_orig, flags, seq, ack, payload_len[, window[, bad_checksum]])."""
    z = z or ZeekTcp()
    if flip_first:
        z.flip()
    for p in pkts:
        is_orig, flags, seq, ack, plen = p[:5]
        win = p[5] if len(p) > 5 else 8192
        bad = p[6] if len(p) > 6 else None
        z.packet(is_orig, flags, seq, ack, plen, win, bad)
    return z


HANDSHAKE = [(O, S, CI, 0, 0), (Rs, SA, SI, CI + 1, 0), (O, A, CI + 1, SI + 1, 0)]


# -- the four RST traces: Zeek's conn_state-RST-behavior.out, one "history, conn_state" line each


def test_single_rst():
    # Traces/tcp/single-rst.pcap: one RST, seq 0.
    z = feed([(O, R, 0, 0, 0)])
    assert (z.history, z.conn_state()) == ("R", "OTH")


def test_syn_then_rst():
    # Traces/tcp/syn-then-rst.pcap
    z = feed([(O, S, 0, 0, 0), (O, R, 0, 0, 0)])
    assert (z.history, z.conn_state()) == ("SR", "RSTOS0")


def test_syn_then_ack_then_rst():
    # Traces/tcp/syn-then-ack-then-rst.pcap: the responder acks the SYN without a SYN/ACK.
    z = feed([(O, S, 0, 0, 0), (Rs, A, 0, 0, 0), (O, R, 0, 0, 0)])
    assert (z.history, z.conn_state()) == ("SaR", "RSTOS0")


def test_syn_then_stuff_then_rst():
    # Traces/tcp/syn-then-stuff-then-rst.pcap: an F before the R breaks the RSTOS0 pattern.
    z = feed([(O, S, 0, 0, 0), (Rs, A, 0, 0, 0), (O, F, 0, 0, 0), (O, R, 0, 0, 0)])
    assert (z.history, z.conn_state()) == ("SaFR", "OTH")


# -- complete and incomplete handshakes ------------------------------------------------------


def test_clean_connection():
    z = feed(
        HANDSHAKE
        + [
            (O, PA, CI + 1, SI + 1, 100),
            (Rs, A, SI + 1, CI + 101, 0),
            (Rs, PA, SI + 1, CI + 101, 300),
            (O, A, CI + 101, SI + 301, 0),
            (O, FA, CI + 101, SI + 301, 0),
            (Rs, FA, SI + 301, CI + 102, 0),
            (O, A, CI + 102, SI + 302, 0),
        ]
    )
    assert (z.history, z.conn_state()) == ("ShADadFf", "SF")
    # TCP_Endpoint::Size: sequence space less the SYN and FIN octets.
    assert (z.orig_bytes, z.resp_bytes, z.missed_bytes) == (100, 300, 0)
    assert (z.orig_pkts, z.resp_pkts) == (6, 4)
    assert (z.orig_state, z.resp_state) == (ZeekState.CLOSED, ZeekState.CLOSED)
    assert z.both_closed and z.close_complete


def test_established_not_closed_is_s1():
    z = feed(HANDSHAKE)
    assert (z.history, z.conn_state()) == ("ShA", "S1")
    assert not z.close_complete


def test_syn_synack_only_is_s1():
    # Traces/tcp/syn-synack.pcap: the SYN/ACK establishes both endpoints in Zeek's model.
    z = feed([(O, S, 4263588410, 0, 0), (Rs, SA, 2779762238, 4263588411, 0)])
    assert (z.history, z.conn_state()) == ("Sh", "S1")


def test_refused():
    z = feed([(O, S, CI, 0, 0), (Rs, RA, 0, CI + 1, 0)])
    assert (z.history, z.conn_state()) == ("Sr", "REJ")
    assert z.close_complete


def test_unanswered_and_retried_syn():
    z = feed([(O, S, CI, 0, 0)])
    assert (z.history, z.conn_state()) == ("S", "S0")
    # A retransmitted SYN with the same sequence number adds no letter (main.zeek: 's' repeats
    # only when the sequence number differs).
    feed([(O, S, CI, 0, 0), (O, S, CI, 0, 0)], z)
    assert (z.history, z.conn_state(), z.orig_pkts) == ("S", "S0", 3)


# -- closes: S2, S3, SH, SHR, RSTO, RSTR, RSTRH ------------------------------------------------


def test_half_close_by_originator_is_s2():
    z = feed(HANDSHAKE + [(O, FA, CI + 1, SI + 1, 0), (Rs, A, SI + 1, CI + 2, 0)])
    assert (z.history, z.conn_state()) == ("ShAFa", "S2")
    assert not z.both_closed


def test_half_close_by_responder_is_s3():
    z = feed(HANDSHAKE + [(Rs, FA, SI + 1, CI + 1, 0), (O, A, CI + 1, SI + 2, 0)])
    assert (z.history, z.conn_state()) == ("ShAf", "S3")


def test_syn_then_fin_is_sh():
    z = feed([(O, S, CI, 0, 0), (O, F, CI + 1, 0, 0)])
    assert (z.history, z.conn_state()) == ("SF", "SH")


def test_synack_then_fin_is_shr():
    # The SYN/ACK's source port is a likely server port, so Zeek flips at creation ('^').
    assert zeek_flips(SA, 80, 40000)
    z = feed([(Rs, SA, SI, CI + 1, 0), (Rs, FA, SI + 1, CI + 1, 0)], flip_first=True)
    assert (z.history, z.conn_state()) == ("^hf", "SHR")


def test_originator_abort_is_rsto():
    z = feed(HANDSHAKE + [(O, PA, CI + 1, SI + 1, 10), (O, RA, CI + 11, SI + 1, 0)])
    assert (z.history, z.conn_state()) == ("ShADR", "RSTO")
    assert z.orig_bytes == 10


def test_responder_abort_is_rstr():
    z = feed(HANDSHAKE + [(Rs, RA, SI + 1, CI + 1, 0)])
    assert (z.history, z.conn_state()) == ("ShAr", "RSTR")


def test_synack_then_rst_is_rstrh():
    z = feed([(Rs, SA, SI, CI + 1, 0), (Rs, R, SI + 1, 0, 0)], flip_first=True)
    assert (z.history, z.conn_state()) == ("^hr", "RSTRH")


def test_fin_then_rst_from_both():
    # A FIN exchange followed by a RST: the RST does not turn a closed pair into RSTO
    # (UpdateClosedState ignores a RST once the peer has closed too).
    z = feed(
        HANDSHAKE + [(O, FA, CI + 1, SI + 1, 0), (Rs, FA, SI + 1, CI + 2, 0), (O, R, CI + 2, 0, 0)]
    )
    assert (z.history, z.conn_state()) == ("ShAFfR", "SF")


def test_fin_retransmission_trace():
    # Traces/tcp/fin_retransmission.pcap; core/tcp/fin-retransmit.out prints the endpoints at
    # removal: orig size=0 state=5 (CLOSED) num_pkts=3, resp size=0 state=6 (RESET) num_pkts=2.
    z = feed(
        [
            (O, S, 2187051757, 0, 0),
            (O, F, 2187051757, 0, 0),
            (Rs, SA, 1539553752, 2187051758, 0),
            (O, FA, 2187051757, 1539553753, 0),
            (Rs, R, 1539553753, 0, 0),
        ]
    )
    assert (z.orig_bytes, z.orig_state, z.orig_pkts) == (0, ZeekState.CLOSED, 3)
    assert (z.resp_bytes, z.resp_state, z.resp_pkts) == (0, ZeekState.RESET, 2)


def test_rst_inject_trace():
    # Traces/tcp/rst-inject-rae.pcap; core/tcp/rst-after-syn.stdout prints:
    # orig size=175 state=1 (SYN_SENT) num_pkts=4, resp size=0 state=6 (RESET) num_pkts=5.
    z = feed(
        [
            (O, S, 1569339004, 0, 0),
            (Rs, RA, 0, 1569339004, 0),
            (Rs, SA, 1616457233, 1569339005, 0),
            (O, A, 1569339005, 1616457234, 0),
            (O, PA, 1569339005, 1616457234, 25),
            (Rs, A, 1616457234, 1569339030, 0),
            (Rs, RA, 1616457234, 1569339030, 0, 0),
            (O, PA, 1569339030, 1616457234, 150),
            (Rs, R, 1616457234, 0, 0, 0),
        ]
    )
    assert (z.orig_bytes, z.orig_state, z.orig_pkts) == (175, ZeekState.SYN_SENT, 4)
    assert (z.resp_bytes, z.resp_state, z.resp_pkts) == (0, ZeekState.RESET, 5)


# -- logarithmic letters: t, w, c, g ----------------------------------------------------------


def test_retransmissions_are_logarithmic():
    seg = (O, PA, CI + 1, SI + 1, 100)
    z = feed(HANDSHAKE + [seg])
    assert z.history == "ShAD"
    feed([seg], z)  # 1st retransmission
    assert z.history == "ShADT"
    feed([seg] * 8, z)  # 9 in all
    assert z.history == "ShADT"
    feed([seg], z)  # the 10th
    assert z.history == "ShADTT"
    feed([seg] * 90, z)  # the 100th
    assert z.history == "ShADTTT"
    assert z.orig_bytes == 100


def test_zero_window():
    z = feed(HANDSHAKE + [(O, PA, CI + 1, SI + 1, 100), (Rs, A, SI + 1, CI + 101, 0, 0)])
    assert z.history == "ShADaw"
    feed([(Rs, A, SI + 1, CI + 101, 0, 0)] * 9, z)  # the 10th zero window
    assert z.history == "ShADaww"
    # Zero windows in a RST do not count (update_window).
    feed([(Rs, RA, SI + 1, CI + 101, 0, 0)], z)
    assert z.history == "ShADawwr"


def test_zero_window_after_peer_fin_not_counted():
    z = feed(HANDSHAKE + [(O, FA, CI + 1, SI + 1, 0), (Rs, A, SI + 1, CI + 2, 0, 0)])
    assert z.history == "ShAFa"


def test_bad_checksum_syn():
    # Traces/tcp/syn-bad.pcap, core/tcp/bad-checksum-syn.zeek baseline:
    # orig_pkts 0, resp_pkts 0, history C, conn_state OTH.
    z = feed([(O, S, 4263588410, 0, 0, 65535, True)])
    assert (z.orig_pkts, z.resp_pkts, z.history, z.conn_state()) == (0, 0, "C", "OTH")


def test_bad_checksums_are_logarithmic_and_ignored():
    z = feed(HANDSHAKE)
    feed([(Rs, PA, SI + 1, CI + 1, 50, 8192, True)] * 10, z)
    assert z.history == "ShAcc"
    assert (z.resp_pkts, z.resp_bytes) == (1, 0)  # not counted, no data
    feed([(Rs, PA, SI + 1, CI + 1, 50, 8192, False)], z)
    assert z.history == "ShAccd"


def test_content_gap():
    # The responder's bytes 1..100 were never captured, but the client acks them: a gap.
    z = feed(
        HANDSHAKE
        + [
            (Rs, PA, SI + 101, CI + 1, 100),
            (O, A, CI + 1, SI + 201, 0),
        ]
    )
    # The client's ack adds no letter ('A' was seen); the gap is the responder's: 'g'.
    assert z.history == "ShAdg"
    assert (z.missed_bytes, z.resp_bytes) == (100, 200)
    assert z.conn_state() == "S1"


def test_out_of_order_filled_is_no_gap():
    z = feed(
        HANDSHAKE
        + [
            (Rs, PA, SI + 101, CI + 1, 100),
            (Rs, PA, SI + 1, CI + 1, 100),
            (O, A, CI + 1, SI + 201, 0),
        ]
    )
    # No gap. But the late segment ends below what was already seen, and update_last_seq counts
    # any payload that does not advance the sequence as a retransmission: 't'.
    assert (z.history, z.missed_bytes) == ("ShAdt", 0)


def test_truncated_payload_reveals_gap():
    # The capture cut the payload (snaplen), so Zeek's reassembler never saw it.
    z = ZeekTcp()
    feed(HANDSHAKE, z)
    z.packet(Rs, PA, SI + 1, CI + 1, 1000, 8192, None, truncated=True)
    z.packet(O, A, CI + 1, SI + 1001, 0, 8192, None)
    assert (z.history, z.missed_bytes) == ("ShAdg", 1000)


def test_gap_at_rst_is_not_reported():
    # Gaps revealed by a RST's ack are unreliable: no 'g', no missed_bytes (TCP_Reassembler::Gap
    # requires both endpoints established or cleanly closing).
    z = feed(HANDSHAKE + [(Rs, PA, SI + 101, CI + 1, 100), (O, RA, CI + 1, SI + 201, 0)])
    assert (z.history, z.missed_bytes, z.conn_state()) == ("ShAdR", 0, "RSTO")


# -- roles ----------------------------------------------------------------------------------


def test_zeek_flips_rules():
    # TCP.cc WantConnection.
    assert not zeek_flips(S, 80, 40000)  # a pure SYN's sender is the originator
    assert zeek_flips(SA, 80, 40000)  # SYN/ACK from a likely server port
    assert zeek_flips(A, 22, 40000)  # midstream, from a likely server port
    assert not zeek_flips(A, 40000, 22)
    assert not zeek_flips(SA, 40000, 50000)  # neither port is known
    assert zeek_flips(A, 80, 6669)  # both known: flip when not a SYN and src < dst
    assert not zeek_flips(A, 6669, 80)
    assert not zeek_flips(SA, 80, 6669)  # both known and a SYN/ACK: keep (stealth scans)
    assert not zeek_flips(SA, 80, 40000, dst_is_broadcast=True)
    assert not zeek_flips(SA, 80, 40000, likely_server_ports=set())
    assert 80 in ZEEK_LIKELY_SERVER_PORTS_TCP
    # UDP.cc WantConnection.
    assert zeek_flips(0, 53, 40000, proto="udp")
    assert not zeek_flips(0, 40000, 53, proto="udp")
    assert not zeek_flips(0, 53, 53, proto="udp")


def test_missing_syn_flipped_at_creation():
    # Traces/tcp/missing-syn.pcap, core/tcp/missing-syn.zeek baseline: first packet a SYN/ACK
    # from port 80 -> flipped; history ^hADdFaf, SF, orig_bytes 98, resp_bytes 9417,
    # orig_pkts 11, resp_pkts 10.
    c, s = 1512382794, 2697137987
    pkts = [(Rs, SA, s, c, 0), (O, A, c, s + 1, 0), (O, PA, c, s + 1, 98)]
    for i in range(6):
        pkts.append((Rs, A, s + 1 + 1448 * i, c + 98, 1448))
    pkts += [(O, A, c + 98, s + 1 + 1448 * k, 0) for k in (1, 2, 3, 4, 5, 6)]
    pkts += [
        (Rs, PA, s + 1 + 1448 * 6, c + 98, 729),
        (O, A, c + 98, s + 9418, 0),
        (O, FA, c + 98, s + 9418, 0),
        (Rs, A, s + 9418, c + 99, 0),
        (Rs, FA, s + 9418, c + 99, 0),
        (O, A, c + 99, s + 9419, 0),
    ]
    assert zeek_flips(SA, 80, 56730)
    z = feed(pkts, flip_first=True)
    assert (z.history, z.conn_state()) == ("^hADdFaf", "SF")
    assert (z.orig_bytes, z.resp_bytes, z.missed_bytes) == (98, 9417, 0)
    assert (z.orig_pkts, z.resp_pkts) == (11, 10)


SERVER, CLIENT = 2779762238, 4263588410


def reorder_tail(z: ZeekTcp) -> None:
    """Traces/tcp/handshake-reorder.pcap from its third packet (client is now the originator)."""
    s, c = SERVER, CLIENT
    feed(
        [
            (O, A, c + 1, s + 1, 0),
            (O, PA, c + 1, s + 1, 136),
            (Rs, A, s + 1, c + 137, 0),
            (Rs, A, s + 1, c + 137, 1448),
            (Rs, A, s + 1449, c + 137, 1448),
            (Rs, A, s + 2897, c + 137, 1448),
            (Rs, PA, s + 4345, c + 137, 663),
            (O, A, c + 137, s + 2897, 0),
            (O, A, c + 137, s + 5008, 0),
            (O, FA, c + 137, s + 5008, 0),
            (Rs, FA, s + 5008, c + 138, 0),
            (O, A, c + 138, s + 5009, 0),
        ],
        z,
    )


def test_syn_synack_reversal_flips():
    # Traces/tcp/handshake-reorder.pcap with no likely server ports (community-id-logging-
    # flipped.zeek, -b): the SYN/ACK arrives before the SYN; connection_flipped.out shows
    # "H" at new_connection, "Hs^" when flipped and "Hs^ADadFf" at removal.
    z = ZeekTcp()
    assert not z.packet(O, SA, SERVER, CLIENT + 1, 0, 14480, None)
    assert z.history == "H"
    assert z.packet(Rs, S, CLIENT, 0, 0, 65535, None)  # Zeek swapped the roles
    assert z.history == "Hs^"
    reorder_tail(z)
    assert (z.history, z.conn_state()) == ("Hs^ADadFf", "SF")
    assert (z.orig_bytes, z.resp_bytes) == (136, 5007)


def test_flip_on_ack_after_first_synack():
    # Traces/tcp/http-on-irc-port-missing-syn.pcapng, core/tcp/flip-without-syn.zeek baseline:
    # ports 6669 and 80 are both likely server ports, so the SYN/ACK from 80 is not flipped at
    # creation; the ACK that follows flips it (Zeek PR #2191). Logged: ^hADadFf, SF, 136/5007
    # bytes, 6/7 packets.
    s, c = SERVER, CLIENT
    assert not zeek_flips(SA, 80, 6669)
    z = ZeekTcp()
    assert not z.packet(O, SA, s, c + 1, 0, 14480, None)
    assert z.packet(Rs, A, c + 1, s + 1, 0, 8235, None)  # flipped: the client is the originator
    feed(
        [
            (O, PA, c + 1, s + 1, 136),
            (Rs, A, s + 1, c + 137, 0),
            (Rs, A, s + 1, c + 137, 1448),
            (Rs, A, s + 1449, c + 137, 1448),
            (Rs, A, s + 2897, c + 137, 1448),
            (Rs, PA, s + 4345, c + 137, 663),
            (O, A, c + 137, s + 2897, 0),
            (O, A, c + 137, s + 5008, 0),
            (O, FA, c + 137, s + 5008, 0),
            (Rs, FA, s + 5008, c + 138, 0),
            (O, A, c + 138, s + 5009, 0),
        ],
        z,
    )
    assert (z.history, z.conn_state()) == ("^hADadFf", "SF")
    assert (z.orig_bytes, z.resp_bytes) == (136, 5007)
    assert (z.orig_pkts, z.resp_pkts) == (6, 7)


def test_no_flip_when_synack_answered_by_rst():
    # A SYN/ACK answered by a RST looks like a stealth scan: the roles stay.
    z = ZeekTcp()
    z.packet(O, SA, SI, CI + 1, 0, 8192, None)
    assert not z.packet(Rs, R, CI + 1, 0, 0, 0, None)
    assert z.history[0] == "H" and "^" not in z.history


# -- sequence space -----------------------------------------------------------------------------


def test_sequence_wraparound_sizes():
    isn = 0xFFFFFF00
    z = feed([(O, S, isn, 0, 0), (Rs, SA, SI, isn + 1, 0), (O, A, isn + 1, SI + 1, 0)])
    seq = isn + 1
    for _ in range(4):  # 4 x 200 bytes crosses 2**32
        z.packet(O, PA, seq & 0xFFFFFFFF, SI + 1, 200, 8192, None)
        seq += 200
        z.packet(Rs, A, SI + 1, seq & 0xFFFFFFFF, 0, 8192, None)
    feed([(O, FA, seq & 0xFFFFFFFF, SI + 1, 0), (Rs, FA, SI + 1, (seq + 1) & 0xFFFFFFFF, 0)], z)
    assert (z.history, z.conn_state(), z.orig_bytes, z.missed_bytes) == ("ShADaFf", "SF", 800, 0)


def test_partial_connection():
    # Traces/tcp/no-handshake.pcap: one data packet, no SYN -> a partial connection.
    z = feed([(O, PA, 4263588411, 2779762239, 136)])
    assert (z.history, z.conn_state(), z.orig_bytes) == ("D", "OTH", 136)
    assert z.orig_state == ZeekState.PARTIAL


def test_multi_flag_letters():
    z = feed([(O, S | F, CI, 0, 0), (Rs, F | R, SI, 0, 0)])
    assert z.history == "Qi"  # main.zeek: q multi-flag (SYN+FIN), i inconsistent (FIN+RST)


# -- UDP and ICMP -------------------------------------------------------------------------------


def test_udp_conn_state():
    # main.zeek conn_state(), UDP branch.
    assert udp_conn_state(1, 1) == "SF"
    assert udp_conn_state(3, 0) == "S0"
    assert udp_conn_state(0, 2) == "SHR"
    assert udp_conn_state(0, 0) == "OTH"
    assert icmp_conn_state() == "OTH"


def test_zeek_udp():
    u = ZeekUdp()
    u.packet(True, None)
    u.packet(False, False)
    u.packet(True, None)
    assert (u.history, u.conn_state(), u.orig_pkts, u.resp_pkts) == ("Dd", "SF", 2, 1)
    # A bad checksum: 'c', counted by ConnSize, but the side does not become active.
    v = ZeekUdp()
    v.packet(True, None)
    v.packet(False, True)
    assert (v.history, v.conn_state(), v.resp_pkts) == ("Dc", "S0", 1)
    w = ZeekUdp()
    w.flip()
    w.packet(False, None)
    assert (w.history, w.conn_state()) == ("^d", "SHR")


def test_close_complete_and_restart_after_lone_fin():
    # Traces/tunnels/Teredo.pcap, core/tunnels/teredo.zeek conn.log: port 1576 <-> 80 gives
    # three connections: "^fA" SHR (a FIN from the server, acked), then 10 s later "R" OTH,
    # then 16 s later "^r" RSTRH, each one packet per side as logged. Zeek deletes a connection
    # tcp_close_delay after its close is complete, so the later RSTs start new ones.
    srv, cli = 3545886736, 3717931296
    assert zeek_flips(FA, 80, 1576)
    first = feed([(Rs, FA, srv, cli, 0), (O, A, cli, srv + 1, 0)], flip_first=True)
    assert (first.history, first.conn_state()) == ("^fA", "SHR")
    assert (first.orig_bytes, first.resp_bytes, first.orig_pkts, first.resp_pkts) == (0, 0, 1, 1)
    assert first.close_complete  # the FIN came while the client had said nothing
    assert not zeek_flips(RA, 1576, 80)
    second = feed([(O, RA, cli, srv + 1, 0, 0)])
    assert (second.history, second.conn_state(), second.orig_pkts) == ("R", "OTH", 1)
    assert second.close_complete
    assert zeek_flips(RA, 80, 1576)
    third = feed([(Rs, RA, srv + 1, cli, 0, 0)], flip_first=True)
    assert (third.history, third.conn_state(), third.resp_pkts) == ("^r", "RSTRH", 1)


# -- Zeek's rules that start, end, split and count connections (ConnectionTable) --------------
# Each capture is built here; what is expected is Zeek's rule, cited per test.

import dpkt  # noqa: E402
import pcapgen  # noqa: E402

from flowlens import Config, analyze  # noqa: E402


def _records(tmp_path, frames, **config):
    path = tmp_path / "t.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames))
    return analyze(str(path), config=Config(**config) if config else None).connections


def test_attempt_timer_splits_syn_retries_after_5_s(tmp_path):
    # TCPSessionAdapter::AttemptTimer (tcp_attempt_delay = 5 s, init-bare.zeek): 5 s after the
    # first SYN, a connection whose responder was never seen is removed; the SYN retried at 7 s
    # starts a new record. syn_retries keeps counting the same attempt across the split.
    conns = _records(tmp_path, pcapgen.unanswered_syn(retries=(1.0, 2.0, 4.0)))
    assert [(c.conn_state, c.history, c.pkts[0], c.syn_retries) for c in conns] == [
        ("S0", "S", 3, 2),
        ("S0", "S", 1, 3),
    ]
    assert conns[1].prev_uid == conns[0].uid
    # the record ends where Zeek's does, but its socket (still in SYN_SENT) is handed to the
    # retry's record only when the retry comes: one socket per 5-tuple in `states`
    assert conns[0].last_ts_ns < conns[0].first_ts_ns + 5_000_000_000
    assert conns[0].end_ts_ns == conns[1].first_ts_ns and conns[0].closed_by == "reused"
    assert conns[0].tcp.state_at(0, conns[1].first_ts_ns - 1).value == "SYN_SENT"
    assert conns[0].tcp.state_at(0, conns[1].first_ts_ns).value == "CLOSED"


def test_attempt_timer_spares_an_answered_attempt(tmp_path):
    # AttemptTimer acts only while the responder is INACTIVE: a SYN/ACK 6 s late would be a new
    # connection, but one answered within 5 s stays one record however long it lasts.
    conv = pcapgen.Conversation()
    conv.c(pcapgen.SYN, dt=0.0)
    conv.s(pcapgen.SYN | pcapgen.ACK, dt=4.0)
    conv.c(pcapgen.ACK, dt=3.0)
    conns = _records(tmp_path, conv.frames)
    assert [(c.conn_state, c.history) for c in conns] == [("S1", "ShA")]


def test_syn_after_rej_is_a_new_rej_record(tmp_path):
    # TCPSessionAdapter::IsReuse: once either side's close was reported (IsClosed), any SYN,
    # the same ISN too, starts a new connection.
    conv = pcapgen.Conversation()
    for _ in range(2):
        conv.c(pcapgen.SYN, seq=conv.isn_c, dt=1.0)
        conv.s(pcapgen.RST | pcapgen.ACK, seq=0, ack=conv.isn_c + 1, dt=0.0002)
    conns = _records(tmp_path, conv.frames)
    assert [(c.conn_state, c.history, c.pkts) for c in conns] == [("REJ", "Sr", [1, 1])] * 2


def _lone_rsts(gaps):
    conv = pcapgen.Conversation()
    for gap in gaps:
        conv.c(pcapgen.RST, seq=conv.isn_c, dt=gap)
    return conv.frames


def test_lone_rsts_60_s_apart_are_one_record_each(tmp_path):
    # A lone RST completes the close (ConnectionClosed: close_complete on a RESET endpoint); the
    # delete timer fires tcp_close_delay (5 s) after it, so the next RST starts a new record.
    conns = _records(tmp_path, _lone_rsts([0.0, 60.0, 60.0]))
    assert [(c.conn_state, c.history) for c in conns] == [("OTH", "R")] * 3


def test_close_delay_counts_from_the_close_not_from_later_packets(tmp_path):
    # ConnectionClosed sets the delete timer at last_time (of the close) + tcp_close_delay; the
    # RSTs 2 s apart do not push it back, so the one 6 s after the first is a new record.
    conns = _records(tmp_path, _lone_rsts([0.0, 2.0, 2.0, 2.0]))
    assert [c.pkts[0] for c in conns] == [3, 1]


def _bad_tcp_checksum(frame: bytes) -> bytes:
    eth = dpkt.ethernet.Ethernet(frame)
    eth.data.data.sum ^= 0x5A5A  # neither right nor the pseudo-header sum of offload
    return bytes(eth)


def _bad_ip_checksum(frame: bytes) -> bytes:
    eth = dpkt.ethernet.Ethernet(frame)
    eth.data.sum ^= 0x5A5A
    return bytes(eth)


def test_bad_tcp_checksum_scores_c_but_is_not_counted(tmp_path):
    # TCP.cc TCPAnalyzer::DeliverPacket: ValidateChecksum fails -> ChecksumError ('C'/'c',
    # TCP_Endpoint.cc) and return, before the conn-size analyzer counts the packet and before
    # last_time moves.
    frames = pcapgen.clean_close()
    t, last = frames[-1]
    frames[-1] = (t + 1.0, _bad_tcp_checksum(last))  # the final ACK, bad and 1 s late
    [c] = _records(tmp_path, frames)
    good = _records(tmp_path, pcapgen.clean_close())[0]
    assert c.history == good.history + "C"
    assert c.pkts == [good.pkts[0] - 1, good.pkts[1]]
    assert c.ip_bytes[0] == good.ip_bytes[0] - 40
    assert c.to_record()["duration"] == good.to_record()["duration"]
    assert c.bad_checksums == 1
    # without checksum verification (zeek -C) it is an ordinary packet
    [c] = _records(tmp_path, frames, verify_checksums=False)
    assert c.pkts == good.pkts and c.history == good.history


def test_bad_ip_header_checksum_is_dropped_before_connections(tmp_path):
    # IP.cc IPAnalyzer::AnalyzePacket: "bad_IP_checksum", and the packet goes no further.
    frames = pcapgen.clean_close()
    frames[0] = (frames[0][0], _bad_ip_checksum(frames[0][1]))  # the SYN
    path = tmp_path / "t.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames))
    analysis = analyze(str(path))
    [c] = analysis.connections
    assert c.history.startswith("^h") or not c.history.startswith("S")
    assert sum(c.pkts) == len(frames) - 1


def test_duration_stops_once_both_sides_closed(tmp_path):
    # TCPSessionAdapter::Process: `if ( ! orig->did_close || ! resp->did_close )
    # Conn()->SetLastTime(...)`; duration = last_time - start_time (Conn.cc). The last ACK of a
    # clean close comes after both FINs and is not part of it.
    frames = pcapgen.clean_close()
    t, last = frames[-1]
    frames[-1] = (t + 2.0, last)
    [c] = _records(tmp_path, frames)
    assert c.to_record()["duration"] == round(frames[-2][0] - frames[0][0], 6)
    assert round(c.duration_s, 6) == round(frames[-1][0] - frames[0][0], 6)  # flowlens's span


def _icmp_frame(t, src, dst, icmp, v6=False):
    if v6:
        ip = dpkt.ip6.IP6(src=pcapgen._addr(src), dst=pcapgen._addr(dst), nxt=58, hlim=255)
        ip.data = icmp
        ip.plen = len(bytes(icmp))
        icmp.sum = 0
        ip.data = dpkt.icmp6.ICMP6(bytes(dpkt.ip6.IP6(bytes(ip)).data))
        eth = dpkt.ethernet.Ethernet(
            src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP6, data=ip
        )
        return (t, bytes(eth))
    return (t, pcapgen.ethernet(pcapgen.ip_packet(src, dst, icmp, dpkt.ip.IP_PROTO_ICMP)))


def test_icmp_first_message_sender_is_the_originator(tmp_path):
    # ICMP.cc ICMPAnalyzer::InitConnKey: (src, type, dst, counterpart type), no flip: an echo
    # reply seen first is logged with the replier as originator, 0 > 8, and the request joins it.
    rep = dpkt.icmp.ICMP(type=0, code=0, data=dpkt.icmp.ICMP.Echo(id=7, seq=1, data=b"x"))
    req = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=7, seq=2, data=b"x"))
    frames = [
        _icmp_frame(pcapgen.T0, pcapgen.SERVER4, pcapgen.CLIENT4, rep),
        _icmp_frame(pcapgen.T0 + 1, pcapgen.CLIENT4, pcapgen.SERVER4, req),
    ]
    [c] = _records(tmp_path, frames)
    r = c.to_record()
    assert (r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"]) == (
        pcapgen.SERVER4,
        0,
        pcapgen.CLIENT4,
        8,
    )
    assert c.pkts == [1, 1]


def test_icmpv6_advertisement_sender_is_the_originator(tmp_path):
    # ICMP6_counterpart: a router advertisement (134) pairs with solicitation (133), a neighbour
    # advertisement (136) with solicitation (135); the advertiser that spoke first originates
    # (Zeek's pppoe.pcap baseline: fe80::c801:eff:fe88:8 134 > fe80::ce05:eff:fe88:0 133).
    ra = dpkt.icmp6.ICMP6(type=134, code=0, data=b"\x40\x00\x07\x08" + b"\x00" * 8)
    na = dpkt.icmp6.ICMP6(type=136, code=0, data=b"\x20\x00\x00\x00" + b"\x00" * 16)
    frames = [
        _icmp_frame(pcapgen.T0, "fe80::1", "fe80::2", ra, v6=True),
        _icmp_frame(pcapgen.T0 + 1, "fe80::1", "ff02::1", na, v6=True),
    ]
    conns = _records(tmp_path, frames, verify_checksums=False)
    got = sorted((r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"], r["orig_pkts"])
                 for r in (c.to_record() for c in conns))  # fmt: skip
    assert got == [("fe80::1", 134, "fe80::2", 133, 1), ("fe80::1", 136, "ff02::1", 135, 1)]
