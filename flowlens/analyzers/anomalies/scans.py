# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""Port scans: which finished connections look like a scanner's probes (`probe_of`), what
answered the open ports (`answer_part`), and the `port_scan` findings made from the probes
HostFacts (host_findings.py) collected (`scan_findings`).

Port scan verdicts follow nmap's port states (nmap book, "Port Scanning Basics"): a SYN or connect
probe answered by SYN/ACK is open, by RST closed, by nothing or an ICMP unreachable filtered; a
FIN, NULL or Xmas probe answered by RST is closed and unanswered open|filtered; an ACK probe is
unfiltered when answered by RST; a UDP probe answered by data is open, by ICMP port unreachable
closed, by another unreachable filtered, by nothing open|filtered.

What answered each open port, as `nmap -sV` reports it (nmap book, "Service and Application
Version Detection"): the scanner comes back to an open port, completes the handshake and waits for
a banner or sends probes; the answer is what the service analyzer named from the responder's
bytes (`service_id.answered`: read from `conn.service`/`conn.app`, never identified here).
Collected only when the detector runs with a ServiceAnalyzer.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import cython

from ...core.connections import Connection, format_addr
from ...core.decode import IPPROTO_TCP, IPPROTO_UDP, TH_ACK, TH_FIN, TH_PUSH, TH_RST, TH_SYN, TH_URG
from ..service_id import UNKNOWN, answered
from ..tcpanalysis import TcpaState
from .connection_findings import is_port_unreachable
from .detector import _ANSWER, Anomaly, _ep, _s, _sample

__all__ = ["ProbeSlot", "answer_part", "probe_of", "scan_findings"]

_PROBE_TYPES = {
    TH_SYN: "SYN",
    0: "NULL",
    TH_FIN: "FIN",
    TH_FIN | TH_PUSH | TH_URG: "XMAS",
    TH_ACK: "ACK",
    TH_FIN | TH_ACK: "Maimon",
}
_STEALTH = {"NULL", "FIN", "XMAS", "Maimon"}
# verdict strength: a port probed twice keeps the most informative answer
_RANK = {"open": 4, "closed": 3, "unfiltered": 2, "filtered": 1, "open|filtered": 0}
_LIST_MAX = 256
#: the rank of what answered a connection to an open port: a service named from the responder's
#: bytes, bytes no rule names, nothing at all (the client sent, the server stayed silent); a
#: port spoken to several times keeps the best answer
_NAMED, _UNNAMED, _SILENT = 3, 2, 1
#: the app facts shown beside a service in the summary (the first there), as nmap's VERSION
_VERSION_FACTS = ("software", "tls_version", "mysql_server_version")


@cython.locals(c=Connection, st=TcpaState)
def probe_of(c, st):
    """(scan type, verdict, prober side) when connection `c` (with `st`, its TcpaState or None)
    looks like a scanner's probe, else None.

    A probe carries no payload either way (UDP: at most two datagrams out, one back) and starts
    the way scanners start: a SYN, or a packet no TCP stack sends first (FIN, NULL, Xmas, ACK).
    """
    if c.proto == IPPROTO_TCP:
        if c.payload_sent(0) or c.payload_sent(1):
            return None
        if st is None:
            return None
        first = st.first_flags & (TH_SYN | TH_ACK | TH_FIN | TH_RST | TH_PUSH | TH_URG)
        kind = _PROBE_TYPES.get(first)
        if kind is None:
            return None
        side = 0 if st.first_from_orig else 1
        reply = st.reply_flags
        icmp = bool(c.icmp_errors)
        if kind == "SYN":
            t = c.tcp
            if side == 0 and t.handshake_acked:
                kind = "connect"
            if reply is not None and reply & TH_SYN and reply & TH_ACK:
                verdict = "open"
            elif reply is not None and reply & TH_RST:
                verdict = "closed"
            elif reply is None or icmp:
                verdict = "filtered"
            else:
                return None
        elif kind == "ACK":
            verdict = "unfiltered" if reply is not None and reply & TH_RST else "filtered"
        else:
            if reply is not None and reply & TH_RST:
                verdict = "closed"
            elif icmp:
                verdict = "filtered"
            elif reply is None:
                verdict = "open|filtered"
            else:
                return None
        return kind, verdict, side
    if c.proto == IPPROTO_UDP:
        side = 1 if c.flipped else 0
        if c.pkts[side] > 2 or c.pkts[1 - side] > 1:
            return None
        if c.icmp_errors:
            v6 = len(c.orig_h) == 16
            e = c.icmp_errors[0]
            verdict = "closed" if is_port_unreachable(v6, e[2], e[3]) else "filtered"
        elif c.pkts[1 - side]:
            verdict = "open"
        else:
            verdict = "open|filtered"
        return "UDP", verdict, side
    return None


@cython.locals(c=Connection)
def answer_part(c) -> tuple:
    """The `HostFacts.parts` entry of what answered `c`, a connection with data after its
    handshake (a version scan's connection to an open port, or any other: the scans pick
    theirs at the end)."""
    if c.payload_sent(1):
        service, facts = answered(c.service, c.app)
        rank = _UNNAMED if service == UNKNOWN else _NAMED
    else:
        service, facts, rank = None, None, _SILENT
    # (no dict per empty facts)
    return (
        _ANSWER, (c.orig_h, c.resp_h, (c.resp_p, c.proto_name)),
        (rank, service, facts or None, c.uid),
    )  # fmt: skip


class ProbeSlot:
    """The probes of one scanner to one (target, port, proto), from the second on: the best
    verdict, the first time, the uids a finding might name, per scan type its first arrival
    and count, and the first frames (with their arrival numbers: a scan's evidence is its
    first frames over all its ports)."""

    __slots__ = ("verdict", "ts", "uids", "types", "frames", "count")

    def __init__(self, verdict, ts, uid, frame, scan_type, seen) -> None:
        self.verdict, self.ts, self.count = verdict, ts, 1
        self.uids = [] if uid is None else [uid]
        self.types = {scan_type: [seen, 1]}
        self.frames = [(seen, frame)]

    def add(self, verdict, ts, uid, frame, scan_type, seen, max_frames: int) -> None:
        if _RANK[verdict] > _RANK[self.verdict]:
            self.verdict = verdict
        if ts < self.ts:
            self.ts = ts
        if uid is not None:
            self.uids.append(uid)
        entry = self.types.get(scan_type)
        if entry is None:
            self.types[scan_type] = [seen, 1]
        else:
            entry[1] += 1
        if len(self.frames) < max_frames:
            self.frames.append((seen, frame))
        self.count += 1


def _slot_of(slot) -> ProbeSlot:
    return ProbeSlot(*slot) if type(slot) is tuple else slot


def scan_findings(probes, th, claimed: set, answers=None) -> list[Anomaly]:
    # a source with fewer probes than either threshold cannot be scanning: skip the many
    # one-probe "sources" of a spoofed flood before grouping anything
    least = min(th.scan_min_ports, th.scan_min_hosts)
    counts: Counter = Counter()
    for (src, _dst, _port), slot in probes.items():
        counts[src] += 1 if type(slot) is tuple else slot.count
    by_scanner = defaultdict(list)
    for key, slot in probes.items():
        if counts[key[0]] >= least:
            by_scanner[key[0]].append((key, _slot_of(slot)))
    out = []
    max_frames = 4 * th.evidence_max
    for scanner, items in by_scanner.items():
        # target host -> (port, proto) -> [best verdict, first ts, [uids]], in the order of
        # their first probes (as are the scan types and the frames)
        targets: defaultdict[bytes, dict[tuple, list]] = defaultdict(dict)
        first_type: dict[str, int] = {}
        counted: Counter = Counter()  # scan type -> probes
        arrivals: list[tuple[int, int]] = []
        for (_src, dst, port), slot in items:
            targets[dst][port] = [slot.verdict, slot.ts, slot.uids]
            for scan_type, (seen, n) in slot.types.items():
                if scan_type not in first_type or seen < first_type[scan_type]:
                    first_type[scan_type] = seen
                counted[scan_type] += n
            arrivals.extend(slot.frames)
        types = {k: counted[k] for k in sorted(first_type, key=first_type.__getitem__)}
        frames = [frame for _seen, frame in sorted(arrivals)[:max_frames]]
        vertical = [h for h, ports in targets.items() if len(ports) >= th.scan_min_ports]
        by_port = defaultdict(set)
        for h, ports in targets.items():
            for key in ports:
                by_port[key].add(h)
        horizontal = [k for k, hosts in by_port.items() if len(hosts) >= th.scan_min_hosts]
        if not vertical and not horizontal:
            continue
        stealth = any(k in _STEALTH for k in types)
        # (the scanned host, or None for several; the probed ports of each host)
        groups: list[tuple[bytes | None, dict[bytes, dict[tuple, list]]]]
        if vertical and not horizontal:
            groups = [(h, {h: targets[h]}) for h in vertical]
        else:
            groups = [(None, targets)]
        for target, hosts in groups:
            finding = _scan_finding(scanner, target, hosts, types, frames, stealth, th, answers)
            if finding is None:
                continue
            out.append(finding)
            for ports in hosts.values():
                for slot in ports.values():
                    claimed.update(slot[2])
    return out


def _port_key(v):
    """Ports sort as numbers, "host:port/proto" entries as text."""
    return (1, v) if isinstance(v, str) else (0, str(v).zfill(5))


def _open_services(scanner, hosts, answers) -> list[dict]:
    """Each open port of `hosts` with what answered the scanner's connections to it (details'
    `open_services`): `spoken_to` false when the scanner never came back with data, `answered`
    whether the responder sent bytes, `service` the names from them ("unknown": none fits)."""
    entries = []
    for h, ports in hosts.items():
        for (port, proto), (verdict, _ts, _uids) in ports.items():
            if verdict != "open":
                continue
            entry = {"host": format_addr(h), "port": port, "proto": proto, "state": "open"}
            best = answers.get((scanner, h, (port, proto)))
            if best is None:
                entry.update(spoken_to=False, answered=None, service=None)
            else:
                rank, service, facts, uid = best
                entry.update(spoken_to=True, answered=rank != _SILENT, service=service)
                entry.update(facts or ())
                entry["uid"] = uid
            entries.append((h, port, entry))
    entries.sort(key=lambda x: (x[0], x[1]))
    return [entry for _h, _port, entry in entries]


def _answer_text(entry: dict, single: bool) -> str:
    """'22/tcp open ssh (OpenSSH_9.2p1)', nmap's PORT STATE SERVICE VERSION in a line."""
    where = f"{entry['port']}/{entry['proto']}"
    if not single:
        host = entry["host"]
        where = f"[{host}]:{where}" if ":" in host else f"{host}:{where}"
    if not entry["answered"]:
        return f"{where} open, nothing answered"
    if entry["service"] == UNKNOWN:
        return f"{where} open, an answer no rule names"
    version = next((entry[k] for k in _VERSION_FACTS if k in entry), None)
    return f"{where} open {entry['service']}" + (f" ({version})" if version else "")


def _scan_finding(scanner, target, hosts, types, frames, stealth, th, answers=None):
    verdicts = defaultdict(list)  # verdict -> ["port" or "host:port"]
    first_ns = None
    protos = set()
    single = target is not None
    for h, ports in hosts.items():
        for (port, proto), (verdict, ts, _uids) in ports.items():
            protos.add(proto)
            verdicts[verdict].append(port if single else f"{_ep(h, port)}/{proto}")
            first_ns = ts if first_ns is None else min(first_ns, ts)
    probed = sum(len(v) for v in verdicts.values())
    open_ = sorted(verdicts["open"], key=_port_key)
    if len(open_) > probed / 2 and not stealth:
        return None  # mostly answered: a busy client, not a scan
    closed = len(verdicts["closed"]) + len(verdicts["unfiltered"])
    filtered = sorted(verdicts["filtered"], key=_port_key)
    openf = sorted(verdicts["open|filtered"], key=_port_key)
    type_names = [k for k, _n in sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))]
    proto_text = "/".join(sorted(p.upper() for p in protos))
    if single:
        where = f"{_s(probed, proto_text + ' port')} on {format_addr(target)}"
        direction = "vertical"
    else:
        port_set = {k for ports in hosts.values() for k in ports}
        direction = "horizontal" if len(port_set) < th.scan_min_ports else "vertical+horizontal"
        where = f"{_s(len(port_set), proto_text + ' port')} across {_s(len(hosts), 'host')} ({probed} probes)"
    parts = []
    if open_:
        shown = ", ".join(str(p) for p in open_[:10]) + (" ..." if len(open_) > 10 else "")
        parts.append(f"{len(open_)} open ({shown})")
    else:
        parts.append("0 open")
    parts.append(f"{closed} closed")
    if filtered:
        parts.append(f"{len(filtered)} filtered")
    if openf:
        parts.append(f"{len(openf)} open|filtered")
    summary = (
        f"{format_addr(scanner)} ran a {direction} {'/'.join(type_names)} port scan of {where}: "
        f"{', '.join(parts)}."
    )
    extra = {}
    if answers is not None:
        services = _open_services(scanner, hosts, answers)
        extra["open_services"] = services[:_LIST_MAX]
        spoken = [e for e in services if e["spoken_to"]]
        if spoken:
            shown = "; ".join(_answer_text(e, single) for e in spoken[:10])
            summary += f" When it spoke to them: {shown}{' ...' if len(spoken) > 10 else ''}."
    return Anomaly(
        "port_scan",
        "warning",
        first_ns / 1e9,
        None,
        summary,
        _sample(frames, th.evidence_max),
        {
            "scanner": format_addr(scanner),
            "target": format_addr(target) if single else f"{len(hosts)} hosts",
            "targets": sorted(format_addr(h) for h in hosts)[:_LIST_MAX],
            "direction": direction,
            "scan_type": type_names[0],
            "scan_types": dict(types),
            "ports_probed": probed,
            "open": open_[:_LIST_MAX],
            "closed_count": closed,
            "filtered": filtered[:_LIST_MAX],
            "filtered_count": len(filtered),
            "open_filtered": openf[:_LIST_MAX],
            "open_filtered_count": len(openf),
            **extra,
        },
    )
