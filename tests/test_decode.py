"""The struct decoder against dpkt (the reference) and per link type, IP version and option."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import pcapgen
import pytest
from corpus import CORPUS, needs_corpus

from flowlens import analyze
from flowlens.core.capture import open_capture
from flowlens.core.decode import Decoder, Packet, flags_text, parse_tcp_options


def _reference(linktype: int, buf: bytes):
    """dpkt's view of a frame: (src, dst, proto, sport, dport, flags, seq, ack, win, plen) or None."""
    try:
        if linktype == 1:
            ip = dpkt.ethernet.Ethernet(buf).data
        elif linktype == 113:
            ip = dpkt.sll.SLL(buf).data
        elif linktype == 276:
            ip = dpkt.sll2.SLL2(buf).data
        elif linktype in (0, 108):
            ip = dpkt.loopback.Loopback(buf).data
        elif linktype in (101, 12, 14, 228, 229):
            ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
        else:
            return None
    except (dpkt.UnpackError, IndexError, struct.error):
        return None
    if isinstance(ip, dpkt.ip.IP):
        if ip.mf or ip.offset:
            return None
        proto = ip.p
    elif isinstance(ip, dpkt.ip6.IP6):
        if 44 in ip.extension_hdrs and ip.extension_hdrs[44] is not None:
            return None
        proto = ip.p
    else:
        return None
    t = ip.data
    if isinstance(t, dpkt.tcp.TCP):
        # dpkt's flags include the NS bit from the offset byte; flowlens keeps the 8 classic bits
        return (
            bytes(ip.src),
            bytes(ip.dst),
            proto,
            t.sport,
            t.dport,
            t.flags & 0xFF,
            t.seq,
            t.ack,
            t.win,
            len(t.data),
        )
    if isinstance(t, dpkt.udp.UDP):
        return (bytes(ip.src), bytes(ip.dst), proto, t.sport, t.dport, 0, 0, 0, 0, len(t.data))
    if isinstance(t, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
        return (bytes(ip.src), bytes(ip.dst), proto, t.type, t.code, 0, 0, 0, 0, None)
    return None


def _ours(p):
    plen = None if p.proto in (1, 58) else p.plen
    return (p.src, p.dst, p.proto, p.sport, p.dport, p.flags, p.seq, p.ack, p.win, plen)


def _outermost(pkt):
    """What dpkt decodes of a frame: for a packet out of a tunnel, the outermost UDP datagram
    that carried it (None for an IP tunnel's outer packet, which dpkt decodes as GRE/IP-in-IP)."""
    layer = pkt
    while layer is not None and layer.encap is not None:
        layer = layer.encap
    return layer if isinstance(layer, Packet) else None


def _compare_file(path) -> tuple[int, list]:
    decoder = Decoder(verify_checksums=False)
    compared, mismatches = 0, []
    with open_capture(str(path)) as cap:
        for frame, ts, lt, data, _w in cap:
            buf = bytes(data)
            ref = _reference(lt, buf)
            pkt = _outermost(decoder.decode(frame, ts, lt, buf))
            if ref is None or pkt is None or pkt.caplen_short or pkt.fragment:
                continue
            mine = _ours(pkt)
            if ref[-1] is None:
                mine = mine[:-1] + (None,)
            compared += 1
            if mine != ref:
                mismatches.append((path.name, frame, mine, ref))
    return compared, mismatches


@needs_corpus
def test_decoder_matches_dpkt_on_every_corpus_capture():
    files = sorted((CORPUS / "zeek" / "traces").iterdir()) + sorted(
        (CORPUS / "other" / "captures").iterdir()
    )
    total, bad = 0, []
    for path in files:
        n, mism = _compare_file(path)
        total += n
        bad += mism
    assert total > 100_000
    assert bad == [], bad[:5]


@pytest.mark.parametrize("linktype", [1, 101, 0, 108, 113, 276])
def test_link_types(tmp_path, linktype):
    path = tmp_path / f"lt{linktype}.pcap"
    path.write_bytes(
        pcapgen.pcap_bytes(pcapgen.relink(pcapgen.clean_close(), linktype), linktype=linktype)
    )
    n, bad = _compare_file(path)
    assert n == len(pcapgen.clean_close()) and not bad
    [c] = analyze(str(path)).connections
    assert (c.conn_state, c.history, c.orig_state) == ("SF", "ShADadFf", "TIME_WAIT")


@pytest.mark.parametrize("vids", [(100,), (100, 200)], ids=["vlan", "qinq"])
def test_vlan_and_qinq(tmp_path, vids):
    path = tmp_path / "v.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.vlan(pcapgen.clean_close(), vids)))
    a = analyze(str(path))
    [c] = a.connections
    assert c.vlan == vids[0] and c.conn_state == "SF"


def test_ipv6(tmp_path):
    path = tmp_path / "v6.pcap"
    path.write_bytes(
        pcapgen.pcap_bytes(pcapgen.clean_close(client=pcapgen.CLIENT6, server=pcapgen.SERVER6))
    )
    [c] = analyze(str(path)).connections
    r = c.to_record()
    assert (r["id.orig_h"], r["id.resp_h"], r["conn_state"]) == (
        "2001:db8::10",
        "2001:db8::20",
        "SF",
    )
    assert r["orig_ip_bytes"] == sum(40 + 20 + n for n in (0, 0, 18, 0, 0, 0))


def test_tcp_options():
    raw = (
        bytes([2, 4, 0x05, 0xB4, 1, 3, 3, 7, 4, 2, 8, 10])
        + struct.pack("!II", 11, 22)
        + bytes([5, 10])
        + struct.pack("!II", 100, 200)
    )
    opts = parse_tcp_options(raw)
    assert (opts.mss, opts.wscale, opts.sack_permitted, opts.tsval, opts.tsecr) == (
        1460,
        7,
        True,
        11,
        22,
    )
    assert opts.sack == ((100, 200),)
    # a cut-off option ends parsing, keeping what came before
    assert parse_tcp_options(raw[:6]).mss == 1460
    # the in-place reader of the window scale walks the same way
    from flowlens.core.decode import window_scale

    for cut in range(len(raw) + 1):
        want = parse_tcp_options(raw[:cut]).wscale
        assert window_scale(raw[:cut]) == (-1 if want is None else want), cut
    assert window_scale(bytes([3, 3, 2, 3, 3, 9])) == 9  # the last one counts
    assert window_scale(bytes([0, 3, 3, 2])) == -1  # after End of options


def test_flags_text_is_tcpdumps():
    from dpkt.tcp import TH_ACK, TH_FIN, TH_PUSH, TH_RST, TH_SYN

    assert [flags_text(f) for f in (TH_SYN, TH_SYN | TH_ACK, TH_ACK, TH_PUSH | TH_ACK, TH_FIN | TH_ACK, TH_RST | TH_ACK, TH_RST, 0)] == [
        "S", "S.", ".", "P.", "F.", "R.", "R", "none",
    ]  # fmt: skip


def test_tcp_flag_bits_are_dpkts():
    """flowlens defines the TH_* bits itself (importing dpkt costs every run ~25 ms); they must
    be dpkt's, which the differential tests and the capture writers use."""
    import dpkt.tcp

    from flowlens.core import decode

    names = ("TH_FIN", "TH_SYN", "TH_RST", "TH_PUSH", "TH_ACK", "TH_URG", "TH_ECE", "TH_CWR")
    assert [getattr(decode, n) for n in names] == [getattr(dpkt.tcp, n) for n in names]


def test_running_a_command_does_not_import_dpkt():
    code = "import sys, flowlens.cli, flowlens.commands.flows, flowlens.core.pipeline; print('dpkt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_icmp_error_quotes_its_flow(tmp_path):
    path = tmp_path / "unreach.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.udp_port_unreachable()))
    a = analyze(str(path))
    udp = next(c for c in a.connections if c.proto_name == "udp")
    icmp = next(c for c in a.connections if c.proto_name == "icmp")
    assert (icmp.orig_p, icmp.resp_p) == (3, 3)
    assert [(e[1], e[2], e[3]) for e in udp.icmp_errors] == [(2, 3, 3)]


def test_ipv4_fragments_are_reassembled_by_length(tmp_path):
    """A UDP datagram in three fragments is one packet of the whole length (as Zeek counts)."""
    payload = b"z" * 3000
    u = bytes(dpkt.udp.UDP(sport=5000, dport=6000, data=payload))
    frames = []
    for i, (off, chunk) in enumerate([(0, u[:1480]), (1480, u[1480:2960]), (2960, u[2960:])]):
        more = off + len(chunk) < len(u)
        ip = dpkt.ip.IP(
            src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2]), p=17, id=77, data=chunk
        )
        ip.mf, ip.offset = int(more), off // 8  # dpkt's offset is in 8-byte units
        frames.append((pcapgen.T0 + i * 0.001, pcapgen.ethernet(ip)))
    path = tmp_path / "frag.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames[::-1]))  # out of order, too
    [c] = analyze(str(path)).connections
    assert (c.pkts, c.payload) == ([1, 0], [3000, 0])


def test_undecodable_frames_are_counted_not_fatal(tmp_path):
    frames = pcapgen.clean_close()
    broken = frames[:2] + [(frames[2][0], frames[2][1][:20])] + frames[3:]  # Ethernet + 6 bytes
    path = tmp_path / "broken.pcap"
    path.write_bytes(pcapgen.pcap_bytes(broken))
    a = analyze(str(path))
    assert a.skipped == {"truncated IPv4 header": 1}
    assert len(a.connections) == 1
    assert "skipped 1 undecodable frame (1 truncated IPv4 header)" in a.warnings[-1]


def test_bad_checksum_is_flagged_and_still_analysed(tmp_path):
    frames = pcapgen.clean_close()
    bad = bytearray(frames[3][1])
    bad[14 + 20 + 16] ^= 0xFF  # TCP checksum of the request
    path = tmp_path / "cksum.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames[:3] + [(frames[3][0], bytes(bad))] + frames[4:]))
    [c] = analyze(str(path)).connections
    assert c.bad_checksums == 1
    assert "C" in c.history
    # Zeek does not count it (TCP.cc DeliverPacket returns before the conn-size analyzer), and
    # neither do the record's packet counts; flowlens's own state machines still see it
    assert c.pkts[0] == 5


def test_keep_options_false_keeps_only_syn_options():
    """Without analyzers the pipeline decodes with keep_options=False: a SYN's options stay (the
    window scale and MSS), other segments' are not copied out."""
    from dpkt.tcp import TH_ACK, TH_SYN

    syn = pcapgen.ethernet(
        pcapgen.tcp_segment(
            pcapgen.CLIENT4,
            pcapgen.SERVER4,
            40000,
            80,
            TH_SYN,
            1,
            0,
            opts=b"\x02\x04\x05\xb4\x01\x03\x03\x07",
        )
    )
    data = pcapgen.ethernet(
        pcapgen.tcp_segment(
            pcapgen.CLIENT4,
            pcapgen.SERVER4,
            40000,
            80,
            TH_ACK,
            2,
            1,
            data=b"x",
            opts=pcapgen.ts_option(7, 5),
        )
    )
    for keep, expected in ((True, [True, True]), (False, [True, False])):
        decoder = Decoder(keep_options=keep)
        pkts = [decoder.decode(i + 1, 0, 1, frame) for i, frame in enumerate((syn, data))]
        assert [bool(p.raw_options) for p in pkts] == expected
        assert pkts[0].options.mss == 1460 and pkts[0].options.wscale == 7
        assert [p.plen for p in pkts] == [0, 1]  # the payload length does not depend on it


def test_pipeline_copies_options_only_for_analyzers_that_need_them():
    from flowlens.analyzers.packetlog import PacketCollector
    from flowlens.analyzers.rtt import RttCollector
    from flowlens.analyzers.tcpanalysis import TcpAnalyzer
    from flowlens.core.analyzer import Analyzer, Needs
    from flowlens.core.pipeline import Pipeline

    sample = str(Path(__file__).resolve().parent.parent / "sample_pcaps" / "clean-close.pcap")

    def keeps(*analyzers):
        decoder = Pipeline(sample, analyzers=analyzers).decoder
        return decoder.keep_options, decoder.timestamps

    assert keeps() == (False, False)
    # the TCP analysis reads every segment's TSval (a hole filled after later segments is a
    # retransmission): as numbers, not option bytes
    assert keeps(TcpAnalyzer(), PacketCollector(lambda c: True)) == (False, True)
    # RTT reads every segment's timestamps: as numbers, not option bytes
    assert keeps(TcpAnalyzer(), RttCollector()) == (False, True)
    # an analyzer that says nothing needs nothing; one that needs every segment's options says so
    assert keeps(Analyzer()) == (False, False)

    class AllOptions(Analyzer):
        needs = Needs.ALL_OPTIONS

    assert keeps(AllOptions(), RttCollector()) == (True, True)

    class Payload(Analyzer):
        needs = Needs.PAYLOAD

    # payload bytes are copied only for an analyzer that declares it needs them
    assert Pipeline(sample, analyzers=[TcpAnalyzer()]).decoder.payload == 0
    assert Pipeline(sample, analyzers=[Payload()]).decoder.payload == 512


@needs_corpus
def test_decoder_timestamps_are_tcp_timestamps_of_the_option_bytes():
    """Decoder(timestamps=True) reads TSval/TSecr in place: the same answer as
    tcp_timestamps(raw_options), on every TCP packet of the corpus and of odd option lists."""
    from flowlens.core.decode import tcp_timestamps

    files = [*sorted((CORPUS / "zeek" / "traces").iterdir()),
             *sorted((CORPUS / "other" / "captures").iterdir())]  # fmt: skip
    checked = with_ts = 0
    for path in files:
        both = Decoder(keep_options=True, timestamps=True)
        with open_capture(str(path)) as cap:
            for ref in cap.frames():
                p = both.decode_frame(ref)
                if p is None or p.proto != 6:
                    continue
                pair = tcp_timestamps(p.raw_options) if p.raw_options else None
                assert ((p.tsval, p.tsecr) if p.tsval >= 0 else None) == pair, (path, p.frame)
                checked += 1
                with_ts += pair is not None
    assert checked > 50_000 and with_ts > 10_000
    # option lists that are not NOP, NOP, Timestamps: the last well-formed one, none after damage
    ts = struct.pack("!II", 1, 2)
    for raw, want in [
        (bytes([2, 4, 5, 180, 8, 10]) + struct.pack("!II", 7, 9), (7, 9)),
        (bytes([8, 10]) + ts + bytes([8, 10]) + struct.pack("!II", 3, 4), (3, 4)),
        (bytes([1, 0, 8, 10]) + ts, None),  # after End of options
        (bytes([3, 1, 8, 10]) + ts, None),  # a bad length ends the list
        (bytes([1, 1, 8, 10]), None),  # a timestamps option longer than what is left
    ]:
        raw += bytes(-len(raw) % 4)  # (padded with End of options to whole words)
        assert tcp_timestamps(raw) == want
        segment = pcapgen.tcp_segment(
            pcapgen.CLIENT4, pcapgen.SERVER4, 1000, 80, 0x10, 1, 1, opts=raw
        )
        frame = bytes(segment)
        p = Decoder(keep_options=True, timestamps=True).decode(1, 0, 101, frame)
        assert p is not None and ((p.tsval, p.tsecr) if p.tsval >= 0 else None) == want, raw


def test_decoder_payload_is_the_first_captured_payload_bytes_when_asked():
    """Decoder(payload=N): each TCP/UDP packet's first N captured payload bytes; None without
    payload, and None for every packet when not asked (the default)."""
    from pcapgen import CLIENT4, SERVER4, _udp_frame, ethernet, tcp_segment

    data = bytes(range(256)) * 3  # 768 bytes
    tcp = ethernet(tcp_segment(CLIENT4, SERVER4, 40000, 80, 0x18, 1, 1, data))
    empty = ethernet(tcp_segment(CLIENT4, SERVER4, 40000, 80, 0x10, 1, 1))
    _t, udp = _udp_frame(0.0, CLIENT4, SERVER4, 5000, 6000, b"hello", True)
    asked = Decoder(payload=512)
    assert asked.decode(1, 0, 1, tcp).payload == data[:512]
    assert asked.decode(2, 0, 1, empty).payload is None
    assert asked.decode(3, 0, 1, udp).payload == b"hello"
    assert Decoder(payload=1000).decode(1, 0, 1, tcp).payload == data
    # cut by the snaplen: what was captured
    assert asked.decode(1, 0, 1, tcp[: 14 + 20 + 20 + 100]).payload == data[:100]
    plain = Decoder()
    assert plain.decode(1, 0, 1, tcp).payload is None
    assert plain.decode(3, 0, 1, udp).payload is None
