"""Write a large real loopback capture for the benchmark: short HTTP connections with heavy port reuse.

Inside a lab namespace (tests/netlab.py; needs root, ip, tcpdump) it narrows the ephemeral port
range (2000 ports by default), lets TIME_WAIT ports be reused early (tcp_tw_reuse=1 and, where
the kernel has it, tcp_tw_reuse_delay=100 ms), and runs rounds of real HTTP clients against one
server until tcpdump has written about ``--packets`` packets. Half of the clients close first
(their ports sit in TIME_WAIT and are reused by the kernel), half let the server close first (the
same 5-tuple reopens while the server holds TIME_WAIT); some use keep-alive. A few bulk transfers
in both directions run alongside. Then it reads the file back with dpkt and prints what it made.

Example: sudo python scripts/make_loopback_capture.py -o /tmp/loopback-250k.pcap --packets 250000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import sys
import time
from collections import Counter
from pathlib import Path

import dpkt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from netlab import PCAP_MAGICS, TRAFFIC, Lab, LabError  # noqa: E402

HTTP_PORT, BULK_PORT = 8080, 9000
PORT_BASE = 40000
# (close-first, keep-alive requests per connection) for the client processes of one round.
CLIENT_MIX = [("client", 1), ("server", 1), ("client", 3), ("server", 2)]


class RecordCounter:
    """Counts the complete records of a pcap file that tcpdump is still writing, incrementally."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.count, self.endian = path, 24, 0, ""

    def update(self) -> int:
        with open(self.path, "rb") as fh:
            if not self.endian:
                magic = fh.read(4)
                if magic not in PCAP_MAGICS:
                    return 0
                self.endian = PCAP_MAGICS[magic]
            fh.seek(self.offset)
            data = fh.read()
        pos = 0
        while pos + 16 <= len(data):
            incl = struct.unpack_from(self.endian + "I", data, pos + 8)[0]
            if pos + 16 + incl > len(data):
                break
            pos += 16 + incl
            self.count += 1
        self.offset += pos
        return self.count


def summarize(path: Path) -> dict:
    """Counts read back with dpkt: packets, TCP connections (SYNs), 4-tuple reuse, closes."""
    packets = tcp = syns = fins = rsts = payload = 0
    tuples: Counter = Counter()
    first_ts = last_ts = None
    with open(path, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            packets += 1
            first_ts = ts if first_ts is None else first_ts
            last_ts = ts
            ip = dpkt.ethernet.Ethernet(buf).data
            seg = getattr(ip, "data", None)
            if not isinstance(seg, dpkt.tcp.TCP):
                continue
            tcp += 1
            payload += len(seg.data)
            if seg.flags & dpkt.tcp.TH_SYN and not seg.flags & dpkt.tcp.TH_ACK:
                syns += 1
                tuples[
                    (socket.inet_ntoa(ip.src), seg.sport, socket.inet_ntoa(ip.dst), seg.dport)
                ] += 1
            fins += bool(seg.flags & dpkt.tcp.TH_FIN)
            rsts += bool(seg.flags & dpkt.tcp.TH_RST)
    client_ports = {t[1] for t in tuples}
    return {
        "packets": packets,
        "tcp_packets": tcp,
        "connections": syns,
        "distinct_4tuples": len(tuples),
        "reused_4tuples": sum(1 for n in tuples.values() if n > 1),
        "max_connections_per_4tuple": max(tuples.values(), default=0),
        "distinct_client_ports": len(client_ports),
        "fin_packets": fins,
        "rst_packets": rsts,
        "tcp_payload_bytes": payload,
        "duration_s": round(float(last_ts - first_ts), 3) if packets else 0.0,
        "file_bytes": path.stat().st_size,
    }


def make(args: argparse.Namespace) -> dict:
    out = Path(args.output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    lab = Lab(port_range=(PORT_BASE, PORT_BASE + args.ports - 1), tw_reuse=1)
    started = time.monotonic()
    rounds = 0
    with lab:
        with contextlib.suppress(
            LabError
        ):  # reuse TIME_WAIT ports after 100 ms, not 1 s (Linux >= 6.13)
            lab.sysctl("net.ipv4.tcp_tw_reuse_delay", 100)
        servers = [
            lab.start_traffic("http-server", HTTP_PORT, "--timeout", args.time_limit),
            lab.start_traffic("bulk-server", BULK_PORT, "--timeout", args.time_limit),
        ]
        with lab.capture(
            out, snaplen=args.snaplen, buffer_kib=262144, packet_buffered=False
        ) as cap:
            counter = RecordCounter(out)
            bulk_left = args.bulk
            per_conn = 11.0  # packets per connection; re-estimated after each round
            conns = 0
            while counter.update() < args.packets:
                if time.monotonic() - started > args.time_limit:
                    raise LabError(f"time limit: {counter.count} packets after {args.time_limit} s")
                remaining = args.packets - counter.count
                batch = max(50, min(args.round_connections, int(remaining / per_conn)))
                procs = []
                if bulk_left:
                    bulk_left -= 1
                    bulk = [
                        sys.executable,
                        TRAFFIC,
                        "bulk",
                        BULK_PORT,
                        "--bytes",
                        args.bulk_bytes,
                        "--timeout",
                        60,
                    ]
                    procs.append(lab.start(bulk, ready_prefix=None))
                for close_first, keep in CLIENT_MIX:
                    n = max(1, batch // (len(CLIENT_MIX) * keep))
                    procs.append(
                        lab.start(
                            [
                                sys.executable,
                                TRAFFIC,
                                "http-clients",
                                HTTP_PORT,
                                "--count",
                                n,
                                "--keepalive",
                                keep,
                                "--close-first",
                                close_first,
                                "--retry-busy",
                                "--concurrency",
                                2,
                                "--rate",
                                args.rate / len(CLIENT_MIX) / keep,
                                "--timeout",
                                120,
                            ],
                            ready_prefix=None,
                        )
                    )
                    conns += n
                for proc in procs:
                    if proc.wait(timeout_s=180) != 0:
                        raise LabError(
                            f"{proc.argv} exited {proc.returncode}: {proc.stderr[-500:]}"
                        )
                for server in servers:
                    # a server that died (it once did under load, at 1.27M packets) leaves the
                    # clients' retries to pad the capture with refusals: stop, and say why
                    if server.popen.poll() is not None:
                        server.stop()
                        raise LabError(
                            f"{server.argv} exited {server.returncode} in round {rounds + 1}: "
                            f"{server.stderr[-500:]}"
                        )
                rounds += 1
                before = counter.count
                per_conn = max(5.0, counter.update() / max(1, conns))
                print(
                    f"round {rounds}: {counter.count} packets (+{counter.count - before}), "
                    f"{time.monotonic() - started:.1f} s",
                    file=sys.stderr,
                )
    summary = summarize(out)
    summary.update(
        output=str(out),
        rounds=rounds,
        seconds=round(time.monotonic() - started, 1),
        tcpdump_captured=cap.packets_captured,
        tcpdump_dropped=cap.packets_dropped,
        ephemeral_ports=args.ports,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog=__doc__.rsplit("\n\n", 1)[-1]
    )
    parser.add_argument("-o", "--output", required=True, help="pcap file to write")
    parser.add_argument(
        "--packets", type=int, default=250_000, help="about this many packets (default 250000)"
    )
    parser.add_argument(
        "--ports", type=int, default=2000, help="size of the ephemeral port range (default 2000)"
    )
    parser.add_argument(
        "--bulk",
        type=int,
        default=4,
        help="bulk transfers, one per round from the first (default 4)",
    )
    parser.add_argument(
        "--bulk-bytes", type=int, default=4 << 20, help="bytes each way per bulk (4 MiB)"
    )
    parser.add_argument(
        "--rate", type=float, default=6000.0, help="connections/s over all clients (default 6000)"
    )
    parser.add_argument(
        "--round-connections", type=int, default=6000, help="connections per round at most"
    )
    parser.add_argument("--snaplen", type=int, default=262144)
    parser.add_argument(
        "--time-limit", type=float, default=600.0, help="give up after this many seconds"
    )
    args = parser.parse_args(argv)
    ok, reason = Lab.available()
    if not ok:
        print(f"Error: cannot make a lab here: {reason}", file=sys.stderr)
        return 1
    try:
        summary = make(args)
    except LabError as exc:
        print(f"Error: {args.output}: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {summary['output']}: {summary['packets']} packets, {summary['connections']} TCP connections "
        f"on {summary['distinct_4tuples']} 4-tuples ({summary['reused_4tuples']} reused, up to "
        f"{summary['max_connections_per_4tuple']} times), {summary['distinct_client_ports']} client ports, "
        f"in {summary['seconds']} s"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
