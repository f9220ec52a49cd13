"""The lab makes real captures: real clients and servers in a namespace, tcpdump, read back with dpkt.

These tests need root, ``ip`` and ``tcpdump`` (and ``iptables`` for the delay test on kernels
without netem). Where that is missing they skip, except under CI (``CI`` set), where they fail
with the reason: CI installs the tools and runs as root, so a skip there would hide a broken lab.
Select them with ``pytest -m netlab``, leave them out with ``-m "not netlab"``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

pytestmark = pytest.mark.netlab  # registered in pyproject.toml [tool.pytest.ini_options]

try:  # tests/ on sys.path (rootdir-relative "prepend" import) or tests/ as a package
    from netlab import TRAFFIC, Lab, LabError
except ModuleNotFoundError:
    from tests.netlab import TRAFFIC, Lab, LabError

HTTP, BULK, CLOSED, UDP = 8080, 9000, 9999, 7000


def require(ok_reason: tuple[bool, str]) -> None:
    ok, reason = ok_reason
    if not ok:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"netlab unavailable under CI: {reason}", pytrace=False)
        pytest.skip(f"netlab unavailable: {reason}")


@pytest.fixture
def lab_ok() -> None:
    require(Lab.available())


@dataclasses.dataclass(frozen=True, slots=True)
class Seg:
    """One TCP segment as captured."""

    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    ack: int
    payload: int  # bytes of TCP payload

    def has(self, *flags: int) -> bool:
        return all(self.flags & f for f in flags)


def ip_packets(path: Path) -> tuple[int, list[tuple[float, dpkt.Packet]]]:
    """(datalink, [(ts_s, IP or IP6 packet)]) for EN10MB, LINUX_SLL and LINUX_SLL2 captures."""
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        link = reader.datalink()
        frame = {
            dpkt.pcap.DLT_EN10MB: dpkt.ethernet.Ethernet,
            dpkt.pcap.DLT_LINUX_SLL: dpkt.sll.SLL,
            dpkt.pcap.DLT_LINUX_SLL2: dpkt.sll2.SLL2,
        }[link]
        out = []
        for ts, buf in reader:
            ip = frame(buf).data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                out.append((float(ts), ip))
    return link, out


def segments(path: Path) -> list[Seg]:
    segs = []
    for ts, ip in ip_packets(path)[1]:
        tcp = ip.data
        if isinstance(tcp, dpkt.tcp.TCP):
            family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
            segs.append(
                Seg(
                    ts,
                    socket.inet_ntop(family, ip.src),
                    tcp.sport,
                    socket.inet_ntop(family, ip.dst),
                    tcp.dport,
                    tcp.flags,
                    tcp.seq,
                    tcp.ack,
                    len(tcp.data),
                )
            )
    return segs


def syns(segs: list[Seg]) -> list[Seg]:
    return [s for s in segs if s.has(dpkt.tcp.TH_SYN) and not s.has(dpkt.tcp.TH_ACK)]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_http_connections_show_one_syn_each(lab_ok, tmp_path, host):
    with Lab() as lab:
        lab.start_traffic("http-server", HTTP, "--host", host)
        with lab.capture(tmp_path / "http.pcap") as cap:
            result = lab.traffic("http-clients", HTTP, "--host", host, "--count", 5)
    assert result["connections_ok"] == 5
    segs = segments(cap.path)
    assert cap.packets_dropped == 0 and cap.packets_in_file == len(segs)
    opened = syns(segs)
    assert [(s.src, s.dst, s.dport) for s in opened] == [(host, host, HTTP)] * 5
    assert len({s.sport for s in opened}) == 5
    synacks = [s for s in segs if s.has(dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK)]
    assert sorted(s.dport for s in synacks) == sorted(s.sport for s in opened)
    # --close-first server (the default): each connection's first FIN comes from the server.
    for syn in opened:
        fin = next(s for s in segs if s.has(dpkt.tcp.TH_FIN) and syn.sport in (s.sport, s.dport))
        assert fin.sport == HTTP


def test_refused_connection_shows_rst_answering_syn(lab_ok, tmp_path):
    with Lab() as lab, lab.capture(tmp_path / "refused.pcap") as cap:
        result = lab.traffic("refused", CLOSED)
    assert result["refused"] == 1
    syn, rst = segments(cap.path)
    assert syn.dport == CLOSED and syn.flags == dpkt.tcp.TH_SYN
    assert rst.sport == CLOSED and rst.dport == syn.sport
    assert rst.has(dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK) and rst.ack == syn.seq + 1


def test_delay_shows_in_the_handshake(tmp_path):
    """Every packet is delayed once, before tcpdump on lo sees it: SYN->SYN/ACK and
    SYN/ACK->ACK are each one delay (20 ms), the handshake RTT SYN->ACK two (40 ms)."""
    require(Lab.available())
    require(Lab.delay_available())
    delay_s = 0.020
    with Lab(delay_ms=delay_s * 1000) as lab:
        lab.start_traffic("http-server", HTTP)
        with lab.capture(tmp_path / "delay.pcap") as cap:
            lab.traffic("http-clients", HTTP, "--count", 3)
    segs = segments(cap.path)
    for syn in syns(segs):
        synack = next(
            s for s in segs if s.dport == syn.sport and s.has(dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK)
        )
        ack = next(
            s
            for s in segs
            if s.sport == syn.sport and s.ts > synack.ts and s.flags == dpkt.tcp.TH_ACK
        )
        # The lower bounds are the point; the upper ones only allow for a busy machine.
        assert delay_s <= synack.ts - syn.ts < 2 * delay_s
        assert 2 * delay_s <= ack.ts - syn.ts < 4 * delay_s


def test_timewait_pileup_runs_out_of_ports(lab_ok, tmp_path):
    with Lab(port_range=(40000, 40009), tw_reuse=0) as lab:
        lab.start_traffic("http-server", HTTP)
        with lab.capture(tmp_path / "pileup.pcap") as cap:
            result = lab.traffic("timewait-pileup", HTTP, "--count", 50)
        time_wait = lab.run(["ss", "-Htan", "state", "time-wait"]).stdout.splitlines()
    assert result["port_range"] == [40000, 40009]
    assert result["connections_ok"] == 10 and result["distinct_local_ports"] == 10
    assert result["EADDRNOTAVAIL"] == 1 and result["first_failure_at"] == 11
    assert len(time_wait) == 10
    segs = segments(cap.path)
    assert sorted(s.sport for s in syns(segs)) == list(range(40000, 40010))
    for syn in syns(segs):  # client closes first: it is the one left in TIME_WAIT
        assert (
            next(
                s for s in segs if s.has(dpkt.tcp.TH_FIN) and syn.sport in (s.sport, s.dport)
            ).sport
            == syn.sport
        )


def test_port_reuse_opens_the_same_tuple_twice(lab_ok, tmp_path):
    with Lab() as lab:
        lab.start_traffic("http-server", HTTP)
        with lab.capture(tmp_path / "reuse.pcap") as cap:
            result = lab.traffic("port-reuse", HTTP, "--bind-port", 45000, "--count", 2)
    assert result["outcomes"] == ["ok", "ok"]
    segs = segments(cap.path)
    one, two = syns(segs)
    assert (one.sport, one.dport) == (two.sport, two.dport) == (45000, HTTP)
    assert one.seq != two.seq
    # The first connection closed (the server's TIME_WAIT took the new SYN) before the second opened.
    assert any(s.has(dpkt.tcp.TH_FIN) and one.ts < s.ts < two.ts for s in segs)


def test_abort_closes_with_rst_not_fin(lab_ok, tmp_path):
    with Lab() as lab:
        lab.start_traffic("http-server", HTTP)
        with lab.capture(tmp_path / "abort.pcap") as cap:
            lab.traffic("abort", HTTP)
    segs = segments(cap.path)
    client = syns(segs)[0].sport
    from_client = [s for s in segs if s.sport == client]
    assert from_client[-1].has(dpkt.tcp.TH_RST)
    assert not any(s.has(dpkt.tcp.TH_FIN) for s in from_client)
    assert any(s.sport == HTTP and s.payload for s in segs)  # the response came before the RST


def test_half_close_sends_fin_before_the_response(lab_ok, tmp_path):
    with Lab() as lab:
        lab.start_traffic("http-server", HTTP)
        with lab.capture(tmp_path / "half.pcap") as cap:
            result = lab.traffic("half-close", HTTP)
    assert result["half_closed"] == 1 and result["body_bytes"] > 0
    segs = segments(cap.path)
    client_fin = next(s for s in segs if s.dport == HTTP and s.has(dpkt.tcp.TH_FIN))
    response = next(s for s in segs if s.sport == HTTP and s.payload)
    assert client_fin.ts <= response.ts


def test_leak_server_leaves_close_wait(lab_ok, tmp_path):
    with Lab() as lab:
        server = lab.start_traffic("leak-server", HTTP)
        with lab.capture(tmp_path / "leak.pcap") as cap:
            lab.traffic("http-clients", HTTP, "--close-first", "client")
        close_wait = lab.run(["ss", "-Htan", "state", "close-wait"]).stdout.splitlines()
        server.stop()
    assert len(close_wait) == 1 and f":{HTTP}" in close_wait[0]
    assert server.result()["leaked"] == 1
    segs = segments(cap.path)
    assert any(s.dport == HTTP and s.has(dpkt.tcp.TH_FIN) for s in segs)
    assert not any(s.sport == HTTP and s.has(dpkt.tcp.TH_FIN) for s in segs)


def test_bulk_moves_bytes_both_ways(lab_ok, tmp_path):
    size = 1 << 20
    with Lab() as lab:
        lab.start_traffic("bulk-server", BULK)
        with lab.capture(tmp_path / "bulk.pcap") as cap:
            result = lab.traffic("bulk", BULK, "--bytes", size)
    assert result["bytes_received"] == result["bytes_sent"] == size
    segs = segments(cap.path)

    def sent(segs):  # payload bytes counted once per sequence number: a real path may retransmit
        by_seq: dict[int, int] = {}
        for s in segs:
            if s.payload:
                by_seq[s.seq] = max(by_seq.get(s.seq, 0), s.payload)
        return sum(by_seq.values())

    assert sent([s for s in segs if s.dport == BULK]) == 16 + size  # 16-byte header first
    assert sent([s for s in segs if s.sport == BULK]) == size


def test_udp_echo_and_icmp_port_unreachable(lab_ok, tmp_path):
    with Lab() as lab:
        lab.start_traffic("udp-echo", UDP)
        with lab.capture(tmp_path / "udp.pcap") as cap:
            echoed = lab.traffic("udp-client", UDP, "--count", 3)
            closed = lab.traffic("udp-closed", CLOSED)
    assert echoed["received"] == 3 and closed["icmp_unreachable"] is True
    packets = [ip for _, ip in ip_packets(cap.path)[1]]
    assert sum(isinstance(ip.data, dpkt.udp.UDP) and ip.data.sport == UDP for ip in packets) == 3
    icmp = [ip.data for ip in packets if isinstance(ip.data, dpkt.icmp.ICMP)]
    assert [(m.type, m.code) for m in icmp] == [
        (dpkt.icmp.ICMP_UNREACH, dpkt.icmp.ICMP_UNREACH_PORT)
    ]
    assert icmp[0].data.data.data.dport == CLOSED  # the quoted UDP header


@pytest.mark.parametrize(
    ("options", "datalink", "magic"),
    [
        ({"interface": "any"}, dpkt.pcap.DLT_LINUX_SLL2, 0xA1B2C3D4),
        ({"interface": "any", "linktype": "LINUX_SLL"}, dpkt.pcap.DLT_LINUX_SLL, 0xA1B2C3D4),
        ({"nano": True}, dpkt.pcap.DLT_EN10MB, 0xA1B23C4D),
    ],
    ids=["any-sll2", "any-sll", "lo-nano"],
)
def test_capture_options(lab_ok, tmp_path, options, datalink, magic):
    with Lab() as lab:
        lab.start_traffic("http-server", HTTP)
        with lab.capture(tmp_path / "opt.pcap", **options) as cap:
            lab.traffic("http-clients", HTTP, "--count", 2)
    assert int.from_bytes(cap.path.read_bytes()[:4], "little") == magic
    assert ip_packets(cap.path)[0] == datalink
    assert len(syns(segments(cap.path))) == 2


def test_lab_cleans_up_after_a_failure(lab_ok):
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        server = lab.start_traffic("http-server", HTTP)
        name = lab.name
        raise RuntimeError("boom")
    assert server.popen.poll() is not None
    listed = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert name not in listed
    with pytest.raises(LabError, match="with"):
        lab.run(["true"])


def test_traffic_refuses_to_run_outside_a_lab():
    """No lab needed: outside a flowlens-* namespace traffic.py sends nothing and exits 2."""
    run = [sys.executable, str(TRAFFIC)]
    outside = subprocess.run(
        run + ["refused", str(CLOSED)], capture_output=True, text=True, timeout=30
    )
    assert outside.returncode == 2 and "refusing to run outside" in outside.stderr
    remote = subprocess.run(
        run + ["refused", "80", "--host", "192.0.2.1"], capture_output=True, text=True, timeout=30
    )
    assert remote.returncode == 2 and "not a loopback address" in remote.stderr
