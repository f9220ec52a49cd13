"""Findings on real traffic, each checked against what the kernel and the peers logged.

One lab namespace per case (tests/netlab.py): real Python sockets talk over loopback addresses
(127.0.0.0/8, the workplace's rule for lab traffic) while tcpdump records ``lo``. Each scenario
runs as one small program inside the namespace and prints, as its last line, a JSON record of
what really happened: the times it called close() or shutdown(), the bytes each peer sent and
received, the kernel's own counters (/proc/net/netstat's TcpExtTCPKeepAlive, /proc/net/snmp's
Tcp OutRsts), `ss` in the namespace, and iptables' packet counter of the segments it dropped.
The findings of `AnomalyDetector` on the capture must match that record, never the other way
round: nothing here is derived from flowlens's own output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import textwrap

import dpkt
import pytest
from pcapgen import syn_schedule

from flowlens import analyze
from flowlens.analyzers.anomalies.detector import AnomalyDetector, Thresholds

try:
    from netlab import Lab
except ImportError:  # pragma: no cover - tests/ as a package
    from .netlab import Lab

pytestmark = pytest.mark.netlab

Lab.require_module()

PORT = 8080
#: a timestamp taken by a program next to a socket call and the capture's stamp of the packet
#: that call made: the same CLOCK_REALTIME, a scheduler slice apart (s)
CLOCK_SLACK_S = 0.05

#: helpers every scenario program starts with
PRELUDE = textwrap.dedent(
    """
    import json, socket, subprocess, sys, time

    def now():
        return time.clock_gettime_ns(time.CLOCK_REALTIME) / 1e9

    def mib(path, group, name):
        # a counter of this namespace's kernel (/proc/net/netstat, /proc/net/snmp)
        lines = open(path).read().splitlines()
        for head, values in zip(lines[::2], lines[1::2]):
            if head.startswith(group + ":"):
                return int(values.split()[head.split().index(name)])
        raise KeyError(name)

    def marker(port=9999):
        # one UDP datagram to a bound socket (no ICMP): the capture's last packet, at a
        # known time, so the capture's end is a logged moment too
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", port))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.sendto(b"end", ("127.0.0.1", port))
        t = now()
        rx.recv(16)
        return t

    PORT = int(sys.argv[1])
    srv = socket.create_server(("0.0.0.0", PORT), backlog=64)
    """
)


def scenario(lab: Lab, body: str, *args: object, timeout_s: float = 30.0) -> dict:
    """Run PRELUDE + `body` in the lab to completion; its last stdout line is JSON."""
    code = PRELUDE + textwrap.dedent(body)
    done = lab.run([sys.executable, "-c", code, PORT, *args], timeout_s=timeout_s)
    return json.loads(done.stdout.strip().splitlines()[-1])


def detect(path, **thresholds):
    detector = AnomalyDetector(Thresholds(**thresholds))
    return analyze(str(path), analyzers=[detector]).results[detector]


def only(found, kind):
    hits = [a for a in found if a.kind == kind]
    assert len(hits) == 1, [a.summary for a in found]
    return hits[0]


def unavailable(why: str) -> None:
    """Skip with `why`; under CI=true the lab is required, so fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        unavailable(f"{' and '.join(missing)} not found (apt-get install iptables)")


# ------------------------------------------------------------------------------ keep_alive
KEEP_ALIVE = """
    idle_s = float(sys.argv[2])
    cli = socket.socket()
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 9)
    cli.connect(("127.0.0.1", PORT))
    conn, _ = srv.accept()
    cli.sendall(b"ping")
    conn.recv(4)
    conn.sendall(b"pong")
    cli.recv(4)
    before = mib("/proc/net/netstat", "TcpExt", "TCPKeepAlive")
    idle_from = now()  # the last byte received: the kernel's idle clock starts here
    time.sleep(idle_s)
    probes = mib("/proc/net/netstat", "TcpExt", "TCPKeepAlive") - before
    cli.close()
    conn.close()
    print(json.dumps({"idle_from": idle_from, "probes": probes}))
"""


def test_keep_alive_probes_as_the_kernel_counted_them(tmp_path):
    """SO_KEEPALIVE with TCP_KEEPIDLE=1 and TCP_KEEPINTVL=1 on a connection idle for 4 s: the
    kernel probes 1 s after the last segment it received, then every 1 s (each probe is
    answered, so the idle clock restarts). Its TcpExtTCPKeepAlive counter is the truth."""
    idle_s = 4.0
    path = tmp_path / "keep-alive.pcap"
    with Lab() as lab, lab.capture(path):
        truth = scenario(lab, KEEP_ALIVE, idle_s)
    probes = truth["probes"]
    assert abs(probes - int(idle_s)) <= 1, truth  # the schedule: one a second after 1 s idle

    found = detect(path)
    a = only(found, "keep_alive")
    assert a.severity == "info"
    assert a.details["keep_alives"] == {"orig": probes, "resp": 0}
    assert a.details["answers"] == probes  # the server's kernel answered every probe
    assert a.details["interval_s"]["orig"] == pytest.approx(1.0, abs=0.1)
    # when it happened: the first probe, TCP_KEEPIDLE after the connection went idle (plus the
    # timer wheel's slack, a few jiffies at 1 s), not the connection's start
    first = truth["idle_from"] + 1.0
    assert first - CLOCK_SLACK_S <= a.ts <= first + 0.3, (a.ts - truth["idle_from"], truth)
    assert "retransmissions" not in [x.kind for x in found]


# ------------------------------------------------------------------------------ close_wait
CLOSE_WAIT_LEAK = """
    wait_s = float(sys.argv[2])
    cli = socket.create_connection(("127.0.0.1", PORT))
    conn, _ = srv.accept()
    cli.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    conn.recv(100)
    conn.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\n")
    cli.recv(100)
    closed = now()
    cli.close()  # the client closes; the server never does
    time.sleep(wait_s)
    ss = subprocess.run(["ss", "-tanH"], capture_output=True, text=True).stdout
    end = marker()
    print(json.dumps({"client_closed": closed, "end": end, "ss": ss}), flush=True)
    time.sleep(60)  # holds `conn` open until the test has stopped the capture and kills us
"""


def test_close_wait_leak_as_ss_shows_it(tmp_path):
    """The server accepts, answers and never closes after the client's close: `ss` in the
    namespace shows its socket in CLOSE-WAIT when the capture ends."""
    wait_s = 2.0
    path = tmp_path / "close-wait-leak.pcap"
    with Lab() as lab:
        with lab.capture(path):
            prog = lab.start(
                [sys.executable, "-c", PRELUDE + textwrap.dedent(CLOSE_WAIT_LEAK), PORT, wait_s],
                ready_prefix="{",
                timeout_s=20.0,
            )
        truth = json.loads(prog.ready_line)  # (the lab kills it, and so closes `conn`, later)
    sockets = [ln.split() for ln in truth["ss"].splitlines() if ln.strip()]
    server_side = [s[0] for s in sockets if s[3].endswith(f":{PORT}") and s[0] != "LISTEN"]
    assert server_side == ["CLOSE-WAIT"], truth["ss"]

    a = only(detect(path, close_wait_s=1.0), "close_wait")
    assert a.severity == "warning" and a.details["endpoint"] == f"127.0.0.1:{PORT}"
    assert (a.details["still_open"], a.details["half_close"]) == (1, False)
    observed = truth["end"] - truth["client_closed"]  # the client's close to the capture's end
    assert observed - CLOCK_SLACK_S <= a.details["max_duration_s"] <= observed + CLOCK_SLACK_S
    assert a.ts >= truth["client_closed"] - CLOCK_SLACK_S  # from the client's FIN on


# ------------------------------------------------------------------------------ half-close
HALF_CLOSE = """
    send_s = float(sys.argv[2])
    cli = socket.create_connection(("127.0.0.1", PORT))
    conn, _ = srv.accept()
    cli.sendall(b"request")
    cli.shutdown(socket.SHUT_WR)  # the client is done sending, not done receiving
    got = b""
    while chunk := conn.recv(100):
        got += chunk
    eof = now()
    sent = 0
    while now() < eof + send_s:  # the server goes on answering in CLOSE_WAIT
        sent += conn.send(b"x" * 1000)
        time.sleep(0.1)
    server_closed = now()
    conn.close()
    received = 0
    while chunk := cli.recv(65536):
        received += len(chunk)
    cli.close()
    print(json.dumps({"request": got.decode(), "eof": eof, "server_sent": sent,
                      "client_received": received, "server_closed": server_closed}))
"""


def test_half_close_with_data_is_not_a_leak(tmp_path):
    """shutdown(SHUT_WR) after the request; the server reads to EOF, then sends for 2 s (past
    close_wait_s=1) and closes: a half-close (RFC 9293 §3.6), every byte of it in CLOSE_WAIT."""
    send_s = 2.0
    path = tmp_path / "half-close.pcap"
    with Lab() as lab, lab.capture(path):
        truth = scenario(lab, HALF_CLOSE, send_s)
    assert truth["request"] == "request" and truth["client_received"] == truth["server_sent"]

    a = only(detect(path, close_wait_s=1.0), "close_wait")
    assert a.severity == "info" and a.details["half_close"] is True
    assert a.details["endpoint"] == f"127.0.0.1:{PORT}" and a.details["still_open"] == 0
    # the server sent nothing before it read the client's EOF: all of it was in CLOSE_WAIT
    assert a.details["bytes_in_close_wait"] == truth["server_sent"]
    held = truth["server_closed"] - truth["eof"]
    assert held - CLOCK_SLACK_S <= a.details["max_duration_s"] <= held + CLOCK_SLACK_S


# ------------------------------------------------------------------------------ lost segments
BULK = """
    import threading
    total = int(sys.argv[2])
    cli = socket.create_connection(("127.0.0.1", PORT))
    conn, _ = srv.accept()
    received = 0

    def drain():
        global received
        while chunk := conn.recv(1 << 20):
            received += len(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    cli.sendall(b"x" * total)
    cli.shutdown(socket.SHUT_WR)
    reader.join()
    conn.close()
    cli.close()
    print(json.dumps({"sent": total, "received": received}))
"""


def iptables_drops(lab: Lab, chain: str = "OUTPUT") -> int:
    """The packet counter of the DROP rule in `chain` (iptables -L -v -x)."""
    out = lab.run(["iptables", "-w", "-L", chain, "-v", "-x", "-n"]).stdout
    rows = [ln.split() for ln in out.splitlines() if re.match(r"\s*\d+\s+\d+\s+DROP\b", ln)]
    assert len(rows) == 1, out
    return int(rows[0][0])


def test_lost_segments_as_iptables_counted_them(tmp_path):
    """A 1 MiB upload in 1448-byte segments whose every tenth data segment (from the fourth) iptables drops on the
    sender's way out, before tcpdump on lo sees it, with a 5 ms delay each way so that each
    resend is stamped with a later TSval than the segments sent beyond its hole. Every drop
    forces at least one retransmission; the rule's counter is the truth."""
    need("iptables")
    ok, why = Lab.delay_available()
    if not ok:
        unavailable(f"no packet delay here: {why}")
    path = tmp_path / "lost.pcap"
    drop = ["iptables", "-w", "-A", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", PORT,
            "--tcp-flags", "SYN,FIN,RST", "NONE", "-m", "length", "--length", "500:65535",
            "-m", "statistic", "--mode", "nth", "--every", "10", "--packet", "3", "-j", "DROP"]  # fmt: skip
    with Lab(delay_ms=5) as lab:
        # one wire-sized segment per packet (no 64 KiB GSO super-packets on lo), so that each
        # drop loses one segment as it would on a real path
        lab.run(["ip", "link", "set", "lo", "mtu", 1500, "gso_max_segs", 1])
        lab.run(drop)
        with lab.capture(path):
            truth = scenario(lab, BULK, 1 << 20)
        dropped = iptables_drops(lab)
    assert truth["received"] == truth["sent"] and dropped >= 1, (truth, dropped)

    detector = AnomalyDetector()
    analysis = analyze(str(path), analyzers=[detector])
    a = only(analysis.results[detector], "retransmissions")
    assert a.details["direction"] == "orig" and a.details["receiver"] == f"127.0.0.1:{PORT}"
    assert a.details["segments"] >= dropped, (a.summary, dropped)
    assert a.severity == "warning"  # one segment in ten lost is far past retrans_rate (2 %)
    (conn,) = [c for c in analysis.connections if c.resp_p == PORT]
    assert conn.retransmissions == a.details["segments"]  # flows and anomalies agree


#: forged segments for the scenarios that send their own (raw sockets, IP_HDRINCL)
FORGE = """
    import struct

    def checksum(data):
        # RFC 1071: the ones' complement sum of 16-bit words
        data += b"\\0" * (len(data) % 2)
        s = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    def segment(src, sport, dst, dport, seq, flags, window=0, opts=b""):
        # an RFC 9293 §3.1 TCP header (ACK field 0) with `opts`, in an RFC 791 IPv4 header
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(opts) // 4) << 4,
                          flags, window, 0, 0) + opts
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(
            "!BBH", 0, socket.IPPROTO_TCP, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64,
                         socket.IPPROTO_TCP, 0, socket.inet_aton(src), socket.inet_aton(dst))
        return ip + tcp

    def syn(src, dst, sport, dport, seq):
        # SYN only, with an MSS option, as a client's connect() sends it
        return segment(src, sport, dst, dport, seq, 0x02, 64240, struct.pack("!BBH", 2, 4, 1460))

    def rst(src, sport, dst, dport, seq):
        # RST only (no ACK: RFC 5961 §3.2 checks the sequence number)
        return segment(src, sport, dst, dport, seq, 0x04)
"""


# ------------------------------------------------------------------------------ reflection
VICTIM = "127.0.0.100"
REFLECTORS = [f"127.0.1.{i}" for i in range(1, 13)]

REFLECTION = """
    victim, reflectors = sys.argv[2], sys.argv[3].split(",")

    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
    rsts = mib("/proc/net/snmp", "Tcp", "OutRsts")
    for i, dst in enumerate(reflectors):
        raw.sendto(syn(victim, dst, 41000 + i, PORT, 1000 * (i + 1)), (dst, 0))
        time.sleep(0.02)
    time.sleep(0.3)
    rsts = mib("/proc/net/snmp", "Tcp", "OutRsts") - rsts
    print(json.dumps({"syns": len(reflectors), "kernel_rsts": rsts}))
"""


def victim_view(path, victim: str) -> tuple[int, set[str], int]:
    """(SYN/ACKs to `victim`, their senders, RSTs from `victim`), read with dpkt."""
    synacks, senders, rsts = 0, set(), 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            src, dst, flags = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst), ip.data.flags
            if dst == victim and flags & dpkt.tcp.TH_SYN and flags & dpkt.tcp.TH_ACK:
                synacks += 1
                senders.add(src)
            elif src == victim and flags & dpkt.tcp.TH_RST:
                rsts += 1
    return synacks, senders, rsts


def test_synack_reflection_onto_a_spoofed_source(tmp_path):
    """Raw SYNs forged with the victim's address go to a listening port on twelve reflector
    addresses; their kernel's SYN/ACKs land on the victim, whose kernel answers each with a
    RST (no socket there). The capture filter is the victim's vantage point: it never sees the
    forged SYNs, which went from the attacker to the reflectors."""
    path = tmp_path / "reflection.pcap"
    victim_only = f"host {VICTIM} and not tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"
    with Lab() as lab, lab.capture(path, bpf_filter=victim_only):
        truth = scenario(lab, FORGE + REFLECTION, VICTIM, ",".join(REFLECTORS))
    synacks, senders, rsts = victim_view(path, VICTIM)
    assert synacks == truth["syns"] and senders == set(REFLECTORS), (synacks, senders)
    assert rsts == truth["kernel_rsts"] == truth["syns"], (rsts, truth)

    a = only(detect(path), "synack_reflection")
    assert a.details["pattern"] == "reflection"
    assert a.details["synacks"] == synacks and a.details["sender_count"] == len(senders)
    assert a.details["receivers"] == [VICTIM] and a.details["sender_ports"] == {str(PORT): 12}
    assert a.details["answered_with_rst"] == rsts


# ------------------------------------------------------------------------------ zero_window
ZERO_WINDOW = """
    import threading
    hold_s = float(sys.argv[2])
    total = int(sys.argv[3])
    cli = socket.socket()
    # a small receive buffer (the kernel doubles it and keeps a floor) that fills at once
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    cli.connect(("127.0.0.1", PORT))
    conn, _ = srv.accept()
    to_zero = mib("/proc/net/netstat", "TcpExt", "TCPToZeroWindowAdv")
    probes = mib("/proc/net/netstat", "TcpExt", "TCPWinProbe")
    sender = threading.Thread(target=conn.sendall, args=(b"z" * total,))
    sender.start()  # the server writes more than the client's buffer holds
    stalled = now()
    time.sleep(hold_s)  # the client does not read: its window closes, the server probes
    to_zero = mib("/proc/net/netstat", "TcpExt", "TCPToZeroWindowAdv") - to_zero
    probes = mib("/proc/net/netstat", "TcpExt", "TCPWinProbe") - probes
    reopened = now()
    received = 0
    while received < total:
        received += len(cli.recv(65536))
    sender.join()
    conn.close()
    cli.close()
    print(json.dumps({"to_zero": to_zero, "probes": probes, "stalled": stalled,
                      "reopened": reopened, "received": received}))
"""


def test_zero_window_and_the_kernels_window_probes(tmp_path):
    """A client that stops reading while the server writes 1 MiB: its receive buffer fills and
    its kernel advertises a zero window (TcpExtTCPToZeroWindowAdv), and the server's persist
    timer sends window probes (TcpExtTCPWinProbe; Linux's tcp_xmit_probe_skb sends them at
    SND.UNA - 1 with no data, which is what a keep-alive looks like on the wire) until the
    client reads again 3 s later. The counters are the truth: one closed window, that many
    probes, and no keep-alive."""
    hold_s, total = 3.0, 1 << 20
    path = tmp_path / "zero-window.pcap"
    with Lab() as lab, lab.capture(path):
        truth = scenario(lab, ZERO_WINDOW, hold_s, total)
    assert truth["received"] == total and truth["to_zero"] >= 1 and truth["probes"] >= 2, truth

    found = detect(path)
    a = only(found, "zero_window")
    # the client's window closed on the server's data
    assert a.details["sender"] == f"127.0.0.1:{PORT}", a.details
    assert a.details["spells"] == truth["to_zero"], (a.details, truth)
    assert a.details["probes"] == truth["probes"], (a.details, truth)
    assert a.severity == "warning"  # closed for about 3 s, past zero_window_s (1 s)
    # closed from the buffer filling (just after `stalled`) until the client read again
    closed = truth["reopened"] - truth["stalled"]
    assert closed - 0.5 <= a.details["longest_s"] <= closed + CLOCK_SLACK_S, (a.details, truth)
    assert truth["stalled"] - CLOCK_SLACK_S <= a.ts <= truth["stalled"] + 0.5
    assert "keep_alive" not in [x.kind for x in found], [x.summary for x in found]


# ------------------------------------------------------------------------------ rst_ignored
RST_INJECTION = """
    offset = int(sys.argv[2])  # the forged RST's sequence number, relative to RCV.NXT

    # the lab's own view of lo (the kernel's packets, not flowlens's): the server's next
    # sequence number, which is the client's RCV.NXT once the client has acknowledged it
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sniff.bind(("lo", 0))
    sniff.settimeout(5)
    cli = socket.create_connection(("127.0.0.1", PORT))
    conn, _ = srv.accept()
    cport = cli.getsockname()[1]
    cli.sendall(b"hello")
    conn.recv(5)
    conn.sendall(b"world")
    cli.recv(5)
    rcv_nxt = None
    while rcv_nxt is None:
        frame = sniff.recv(65535)
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        sport, dport, seq = struct.unpack("!HHI", ip[ihl:ihl + 8])
        doff = (ip[ihl + 12] >> 4) * 4
        plen = struct.unpack("!H", ip[2:4])[0] - ihl - doff
        if (sport, dport) == (PORT, cport) and plen == 5:
            rcv_nxt = (seq + plen) & 0xFFFFFFFF
    sniff.close()
    time.sleep(0.1)  # the client's ACK of "world" is out: nothing is in flight
    challenge = mib("/proc/net/netstat", "TcpExt", "TCPChallengeACK")
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.sendto(rst("127.0.0.1", PORT, "127.0.0.1", cport, (rcv_nxt + offset) & 0xFFFFFFFF),
               ("127.0.0.1", 0))
    injected = now()
    time.sleep(0.2)
    challenge = mib("/proc/net/netstat", "TcpExt", "TCPChallengeACK") - challenge
    reset = False
    try:
        cli.sendall(b"again")  # does the client's socket still exist?
        conn.settimeout(2)
        got = conn.recv(5)
        conn.sendall(b"fine!")
        cli.settimeout(2)
        got += cli.recv(5)
    except (ConnectionResetError, BrokenPipeError):
        reset, got = True, b""
    cli.close()
    conn.close()
    print(json.dumps({"rcv_nxt": rcv_nxt, "challenge_acks": challenge, "reset": reset,
                      "after": got.decode(), "injected": injected}))
"""


@pytest.mark.parametrize("offset", [0, 1000])
def test_injected_rst_as_the_kernel_judged_it(tmp_path, offset):
    """A RST forged from the server's address into an idle connection whose every byte is
    acknowledged, so that the client's RCV.NXT is known to the byte. At RCV.NXT (offset 0) the
    kernel resets the connection; 1000 bytes into the window it only sends a challenge ACK
    (RFC 5961 §3.2; Linux tcp_validate_incoming counts TcpExtTCPChallengeACK) and the
    connection goes on. What the client's socket did is the truth."""
    path = tmp_path / f"rst-{offset}.pcap"
    with Lab() as lab, lab.capture(path):
        truth = scenario(lab, FORGE + RST_INJECTION, offset)

    detector = AnomalyDetector()
    analysis = analyze(str(path), analyzers=[detector])
    found = analysis.results[detector]
    (conn,) = [c for c in analysis.connections if c.resp_p == PORT]
    if offset == 0:
        assert truth["reset"] and truth["challenge_acks"] == 0, truth
        assert "rst_ignored" not in [a.kind for a in found]
        assert conn.conn_state == "RSTR" and conn.orig_state == "CLOSED", conn.to_record()
    else:
        assert not truth["reset"] and truth["after"] == "againfine!", truth
        assert truth["challenge_acks"] == 1, truth
        a = only(found, "rst_ignored")
        assert a.details["sender"] == f"127.0.0.1:{PORT}" and a.details["rsts"] == 1
        assert "challenge ACK" in a.details["reason"], a.details  # in the window, not RCV.NXT
        # a RST occupies no sequence space: the server's next segment is new data, not resent
        assert "retransmissions" not in [x.kind for x in found], [x.summary for x in found]
        assert conn.retransmissions == 0
        assert abs(a.ts - truth["injected"]) <= CLOCK_SLACK_S
        # the RST closed nothing: the client, which closed first, ends in TIME_WAIT (conn_state
        # stays Zeek's, which takes any RST in the window)
        assert (conn.orig_state, conn.resp_state) == ("TIME_WAIT", "CLOSED"), conn.to_record()


# ------------------------------------------------------------------------------ syn_flood
SYN_FLOOD = """
    n, sources = int(sys.argv[2]), sys.argv[3]

    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    cookies = mib("/proc/net/netstat", "TcpExt", "SyncookiesSent")
    sent = []
    for i in range(n):
        src = f"{sources}.{1 + i % 200}"
        raw.sendto(syn(src, "127.0.0.1", 20000 + i, PORT, 7777 * (i + 1)), ("127.0.0.1", 0))
        sent.append(src)
        time.sleep(0.001)  # (300 in about 0.4 s: within the 1 s window, and tcpdump keeps up)
    last = now()
    time.sleep(0.5)
    cookies = mib("/proc/net/netstat", "TcpExt", "SyncookiesSent") - cookies
    ss = subprocess.run(["ss", "-tanH", "state", "syn-recv"], capture_output=True, text=True)
    half_open = len([ln for ln in ss.stdout.splitlines() if ln.strip()])
    print(json.dumps({"syns": n, "sources": len(set(sent)), "cookies": cookies,
                      "syn_recv": half_open, "sent_by": last}))
"""


def test_syn_flood_from_spoofed_sources(tmp_path):
    """300 SYNs forged from 200 addresses to a listener (backlog 64): the listener's kernel
    answers every one, from its SYN queue (ss's SYN-RECV) or, once that is full, with a SYN
    cookie (TcpExtSyncookiesSent), and iptables drops the forged sources' RSTs so that every
    attempt stays half-open, as spoofed ones do. The kernel's own accounting is the truth."""
    need("iptables")
    n = 300
    path = tmp_path / "syn-flood.pcap"
    with Lab() as lab:
        lab.run(["iptables", "-w", "-A", "OUTPUT", "-s", "127.0.3.0/24", "-p", "tcp",
                 "--tcp-flags", "RST", "RST", "-j", "DROP"])  # fmt: skip
        with lab.capture(path):
            truth = scenario(lab, FORGE + SYN_FLOOD, n, "127.0.3")
    assert truth["syn_recv"] + truth["cookies"] >= n, truth  # every SYN was answered

    a = only(detect(path), "syn_flood")
    assert a.details["attempts"] == n and a.details["sources"] == truth["sources"], a.details
    assert a.details["synack_answered"] == n, a.details
    assert a.severity == "warning"  # 300 is past syn_flood_min (100), short of 10x
    assert a.ts <= truth["sent_by"] + CLOCK_SLACK_S


# ------------------------------------------------------------------------------ unanswered_syn
UNANSWERED = """
    import errno
    dark = int(sys.argv[2])  # a port whose SYNs iptables drops on the way in
    retrans = mib("/proc/net/netstat", "TcpExt", "TCPSynRetrans")
    attempts = []
    for _ in range(2):
        s = socket.socket()
        start = now()
        try:
            s.connect(("127.0.0.1", dark))
            result = "connected"
        except OSError as exc:
            result = errno.errorcode.get(exc.errno, str(exc.errno))
        attempts.append({"start": start, "gave_up": now(), "result": result})
        s.close()
    retrans = mib("/proc/net/netstat", "TcpExt", "TCPSynRetrans") - retrans
    print(json.dumps({"attempts": attempts, "syn_retrans": retrans}))
"""


def test_unanswered_syns_on_the_kernels_retry_schedule(tmp_path):
    """Two connect() calls to a port whose SYNs are dropped, with net.ipv4.tcp_syn_retries = 2
    in the namespace: the kernel resends each SYN on its schedule (syn_schedule: 1, 3 s before
    Linux 6.5; 1, 2, 3, 4, 5 s with tcp_syn_linear_timeouts = 4) and connect() fails with
    ETIMEDOUT 7 s after it began. The truth: what connect() returned and when, and the
    kernel's TcpExtTCPSynRetrans counter."""
    need("iptables")
    dark = PORT + 1
    path = tmp_path / "unanswered.pcap"
    with Lab() as lab:
        assert lab.sysctl("net.ipv4.tcp_syn_retries", 2) == "2"
        try:
            linear = int(lab.sysctl("net.ipv4.tcp_syn_linear_timeouts"))
        except Exception:  # (no such sysctl before Linux 6.5)
            linear = 0
        lab.run(["iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", dark,
                 "--tcp-flags", "SYN,ACK", "SYN", "-j", "DROP"])  # fmt: skip
        with lab.capture(path):
            truth = scenario(lab, UNANSWERED, dark, timeout_s=40.0)
    attempts = truth["attempts"]
    retries, give_up = syn_schedule(2, linear)
    assert [a["result"] for a in attempts] == ["ETIMEDOUT", "ETIMEDOUT"], truth
    for a in attempts:
        assert give_up - 0.1 <= a["gave_up"] - a["start"] <= give_up + 0.5, (truth, give_up)
    assert truth["syn_retrans"] == 2 * len(retries), (truth, retries)

    a = only(detect(path), "unanswered_syn")
    assert a.details["destination"] == f"127.0.0.1:{dark}"
    assert a.details["attempts"] == 2, a.details  # (Zeek's attempt timer may split records)
    assert a.details["syns"] == 2 + truth["syn_retrans"], a.details
    # the timer wheel fires a jiffy or a few late each time: the slack grows along the schedule
    assert a.details["retry_s"] == pytest.approx(retries, abs=0.05 * len(retries)), a.details
    assert abs(a.ts - attempts[0]["start"]) <= CLOCK_SLACK_S
