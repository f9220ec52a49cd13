"""Compare service_id's names with Zeek's `service` column on the corpus baselines.

Only the baselines Zeek wrote with its default scripts count (MANIFEST.tsv's baseline_invocation
without -b: with bare mode no protocol analyzer is loaded and `service` stays empty). This script
checks the functions on their own, so it reassembles the first bytes of each direction itself
(tests/test_service_flows.py checks the pipeline's ServiceAnalyzer on the same baselines): for each TCP row of Zeek's conn.log it takes the segments of that 4-tuple
within the row's time span, in sequence order from the SYN (or from the lowest sequence number
seen when the SYN is missing), at most MAX_BYTES per direction, and calls identify().

    python scripts/service_agreement.py [--corpus ../shared/corpus] [--details]

Prints one line per trace (rows, agreeing, differing) and, with --details, every difference.
UDP and ICMP rows are counted but not compared (service_id names TCP byte streams), and so are
nDPI's flows it named by port or guessed (its Confidence is not "DPI"), column "skipped".
"""

from __future__ import annotations

import argparse
import csv
import re
import socket
import sys
from collections import defaultdict
from pathlib import Path

import dpkt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flowlens.analyzers.service_id import MAX_BYTES, identify  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


def parse_log(path: Path) -> list[dict]:
    fields, rows = None, []
    for line in path.read_text().splitlines():
        if line.startswith("### "):
            continue
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
            continue
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("\t")
        if fields is None:  # zeek-cut -m output: the first line names the columns
            fields = parts
            continue
        rows.append(dict(zip(fields, parts)))
    return rows


def _ip_layer(buf: bytes, link: int):
    if link == dpkt.pcap.DLT_EN10MB:
        frame = dpkt.ethernet.Ethernet(buf)
        ip = frame.data
        if isinstance(ip, dpkt.pppoe.PPPoE):
            ip = ip.data.data if isinstance(ip.data, dpkt.ppp.PPP) else ip.data
        return ip
    if link == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    if link in (dpkt.pcap.DLT_RAW, 101, 228, 229):
        return dpkt.ip.IP(buf) if buf[:1] and buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    if link == dpkt.pcap.DLT_NULL:
        return dpkt.loopback.Loopback(buf).data
    return None


def tcp_segments(trace: Path) -> dict[tuple, list[tuple[float, int, int, bytes]]]:
    """(src, sport, dst, dport) -> [(ts, seq, flags, payload)] in capture order."""
    out: dict[tuple, list] = defaultdict(list)
    with open(trace, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        link = reader.datalink()
        for ts, buf in reader:
            try:
                ip = _ip_layer(buf, link)
            except (dpkt.UnpackError, IndexError, struct_error):
                continue
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(
                ip.data, dpkt.tcp.TCP
            ):
                continue
            family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
            tcp = ip.data
            key = (
                socket.inet_ntop(family, ip.src),
                tcp.sport,
                socket.inet_ntop(family, ip.dst),
                tcp.dport,
            )
            out[key].append((float(ts), tcp.seq, tcp.flags, bytes(tcp.data)))
    return out


try:
    from struct import error as struct_error
except ImportError:  # pragma: no cover
    struct_error = ValueError


def first_bytes(segs: list[tuple[float, int, int, bytes]]) -> bytes:
    """The contiguous first MAX_BYTES of one direction, in sequence order."""
    syn = next((seq for _ts, seq, flags, _data in segs if flags & dpkt.tcp.TH_SYN), None)
    with_data = [(seq, data) for _ts, seq, _flags, data in segs if data]
    if not with_data:
        return b""
    base = (syn + 1) % (1 << 32) if syn is not None else min(seq for seq, _ in with_data)
    buf, have = bytearray(MAX_BYTES), bytearray(MAX_BYTES)
    for seq, data in with_data:
        offset = (seq - base) % (1 << 32)
        if offset >= MAX_BYTES:
            continue
        chunk = data[: MAX_BYTES - offset]
        buf[offset : offset + len(chunk)] = chunk
        have[offset : offset + len(chunk)] = b"\x01" * len(chunk)
    end = have.find(0) if 0 in have else MAX_BYTES
    return bytes(buf[:end])


def _number(text: str) -> float | None:
    """A conn.log number, or None for '-' and for values the btest masked (XXXXXXXXXX.XXXXXX)."""
    try:
        return float(text)
    except ValueError:
        return None


def _in_span(segs, start: float | None, end: float):
    if start is None:  # ts masked in the baseline: every segment of the 4-tuple
        return segs
    return [s for s in segs if start - 1e-6 <= s[0] <= end + 1e-6]


def compare(corpus: Path) -> list[dict]:
    zeek = corpus / "zeek"
    with open(zeek / "MANIFEST.tsv", newline="") as fh:
        manifest = list(csv.DictReader(fh, delimiter="\t"))
    results = []
    for entry in manifest:
        baseline, invocation = entry["baseline_path"], entry["baseline_invocation"]
        if baseline in ("", "none") or "-b" in invocation.split() or "-br" in invocation.split():
            continue
        rows = parse_log(zeek / baseline)
        if not rows or "service" not in rows[0] or "id.orig_h" not in rows[0]:
            continue
        segments = tcp_segments(zeek / "traces" / entry["trace_file"])
        result = {"trace": entry["trace_file"], "tcp": 0, "other": 0, "agree": 0, "differ": []}
        for row in rows:
            if row.get("proto") != "tcp":
                result["other"] += 1
                continue
            result["tcp"] += 1
            start, duration = _number(row["ts"]), _number(row.get("duration", "-")) or 0.0
            key = (row["id.orig_h"], int(row["id.orig_p"]), row["id.resp_h"], int(row["id.resp_p"]))
            rkey = (key[2], key[3], key[0], key[1])
            orig = first_bytes(_in_span(segments.get(key, []), start, (start or 0.0) + duration))
            resp = first_bytes(_in_span(segments.get(rkey, []), start, (start or 0.0) + duration))
            ours = identify(orig, resp)
            theirs = (
                set() if row["service"] in ("-", "", "(empty)") else set(row["service"].split(","))
            )
            if set(ours.services) == theirs:
                result["agree"] += 1
            else:
                result["differ"].append(
                    {
                        "conn": f"{key[0]}:{key[1]} -> {key[2]}:{key[3]}",
                        "zeek": row["service"],
                        "flowlens": ours.service,
                        "orig": orig[:40],
                        "resp": resp[:40],
                    }
                )
        results.append(result)
    return results


# nDPI's master protocol names (src/include/ndpi_protocol_ids.h) for the protocols service_id names.
NDPI_TO_ZEEK = {
    "HTTP": "http", "TLS": "ssl", "SSH": "ssh", "DNS": "dns", "SMTP": "smtp", "SMTPS": "ssl",
    "POP3": "pop3", "IMAP": "imap", "FTP_CONTROL": "ftp", "Redis": "redis",
    "PostgreSQL": "postgresql", "MySQL": "mysql", "RDP": "rdp", "SMBv1": "smb", "SMBv23": "smb",
    "IRC": "irc", "LDAP": "ldap_tcp", "Unknown": None,
}  # fmt: skip
_NDPI_FLOW = re.compile(r"\tTCP (\S+) <?-> (\S+) \[proto: [0-9.]+/([^\]]+)\]")


def _endpoint(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def compare_ndpi(corpus: Path) -> list[dict]:
    """nDPI's per-flow labels (other/expected/ndpi__*.out) against identify() on the same flows."""
    other = corpus / "other"
    results = []
    for out in sorted((other / "expected").glob("ndpi__*.out")):
        trace = other / "captures" / out.name.split(".pcap")[0].replace("ndpi__", "ndpi__", 1)
        trace = next(
            iter(sorted((other / "captures").glob(out.name.split(".")[0] + ".pcap*"))), trace
        )
        segments = tcp_segments(trace)
        result = {"trace": trace.name, "tcp": 0, "other": 0, "agree": 0, "differ": []}
        for line in out.read_text().splitlines():
            found = _NDPI_FLOW.search(line)
            if not found:
                continue
            client, server = _endpoint(found.group(1)), _endpoint(found.group(2))
            master = found.group(3).split(".")[0]
            confidence = re.search(r"\[Confidence: ([^\]]+)\]", line)
            if master != "Unknown" and confidence and confidence.group(1) != "DPI":
                result["other"] += 1  # named by port or guessed: flowlens never looks at ports
                continue
            result["tcp"] += 1
            key = (*client, *server)
            rkey = (*server, *client)
            orig, resp = first_bytes(segments.get(key, [])), first_bytes(segments.get(rkey, []))
            ours = identify(orig, resp)
            theirs = NDPI_TO_ZEEK.get(master, master)
            if set(ours.services) == ({theirs} if theirs else set()):
                result["agree"] += 1
            else:
                result["differ"].append(
                    {
                        "conn": f"{client[0]}:{client[1]} -> {server[0]}:{server[1]}",
                        "zeek": found.group(3),
                        "flowlens": ours.service,
                        "orig": orig[:40],
                        "resp": resp[:40],
                    }
                )
        results.append(result)
    return results


def _table(title: str, results: list[dict], details: bool) -> None:
    total_tcp = total_agree = 0
    print(f"{title:55} {'tcp':>5} {'agree':>6} {'differ':>6} {'skipped':>8}")
    for res in results:
        total_tcp += res["tcp"]
        total_agree += res["agree"]
        print(
            f"{res['trace']:55} {res['tcp']:5} {res['agree']:6} {len(res['differ']):6} {res['other']:8}"
        )
    print(f"{'total':55} {total_tcp:5} {total_agree:6} {total_tcp - total_agree:6}")
    if details:
        for res in results:
            for diff in res["differ"]:
                print(
                    f"{res['trace']}: {diff['conn']} theirs={diff['zeek']} flowlens={diff['flowlens']} "
                    f"orig={diff['orig']!r} resp={diff['resp']!r}"
                )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--details", action="store_true", help="list every difference")
    args = parser.parse_args(argv)
    _table("Zeek baselines (default scripts)", compare(args.corpus), args.details)
    _table("nDPI expected labels", compare_ndpi(args.corpus), args.details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
