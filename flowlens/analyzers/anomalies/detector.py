# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""Anomalies with evidence: what went wrong in a capture, one pasteable sentence per finding.

`AnomalyDetector` is an analyzer that requires the `TcpAnalyzer` (the pipeline adds one when
none is given; with `services=ServiceAnalyzer()`, or a `ServiceAnalyzer` run before it, it adds
`service_port_mismatch`, and with `services` the port scans say what answered each open port), reads the
per-connection results as each connection
ends (`on_end`), and turns them into `Anomaly` records when the capture ends (`finish`), most
severe first:

    detector = AnomalyDetector(Thresholds(close_wait_s=30))
    result = analyze("capture.pcap", analyzers=[detector])
    for finding in result.results[detector]:
        print(finding.severity, finding.summary)

Kinds (DESIGN.md, anomaly record): time_wait_accumulation, port_exhaustion_risk, close_wait,
fin_wait_2, unanswered_syn, connection_refused, syn_flood, port_scan, retransmissions,
zero_window, keep_alive, rst_abort, port_reuse, icmp_unreachable, service_port_mismatch, rst_ignored. Port scans live in
`analyzers/anomalies/scans.py`, SYN floods in `analyzers/anomalies/host_findings.py` (whose
HostFacts collects what all three need), the per-port TIME_WAIT arithmetic in
`analyzers/anomalies/port_findings.py`, the kinds about one
connection's segments and ICMP errors in `analyzers/anomalies/connection_findings.py`, the kinds
grouped per endpoint in `analyzers/anomalies/endpoint_findings.py`; this module holds the record,
the thresholds and the detector, which reads every connection into those groups.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

import cython

from ...core.analyzer import Analyzer
from ...core.connections import Connection, format_addr
from ...core.services import LINUX_EPHEMERAL
from ...core.tcpstate import TcpTracker
from ..service_id import mismatch
from ..tcpanalysis import KINDS as _NOTE_KINDS
from ..tcpanalysis import DirectionStats, TcpAnalyzer, TcpaState
from .holds import OpenStarts

__all__ = [
    "ANOMALY_FIELDS",
    "KINDS",
    "SEVERITIES",
    "Anomaly",
    "AnomalyDetector",
    "Thresholds",
]

SEVERITIES = ("info", "warning", "critical")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

KINDS = (
    "time_wait_accumulation",
    "port_exhaustion_risk",
    "close_wait",
    "fin_wait_2",
    "unanswered_syn",
    "connection_refused",
    "syn_flood",
    "port_scan",
    "retransmissions",
    "zero_window",
    "keep_alive",
    "rst_abort",
    "port_reuse",
    "icmp_unreachable",
    "service_port_mismatch",
    "rst_ignored",
    "synack_reflection",
)

ANOMALY_FIELDS = ("kind", "severity", "ts", "uid", "conn_ts", "summary", "evidence", "details")

_OOO = _NOTE_KINDS.index("out_of_order")
_NO_MARK = -(1 << 63)  # no watermark (holds.py)

#: the kinds of AnomalyDetector.parts' entries: grouped by key (the first _GROUPED), a finding
#: about one connection, a CLOSE_WAIT spell (or None: its group only), a FIN_WAIT_2 wait, an
#: unsolicited SYN/ACK; from _PROBE on, HostFacts.parts' (host_findings.py, scans.py): a scan probe, a
#: failed attempt, what answered a connection, a client port's hold
_UNANSWERED, _REFUSED, _RST, _REUSE, _MISMATCH, _GROUPED = 0, 1, 2, 3, 4, 5
_SINGLE, _CLOSE_WAIT, _FIN_WAIT_2, _UNSOLICITED = 5, 6, 7, 8
_PROBE, _ATTEMPT, _ANSWER, _HOLDS = 9, 10, 11, 12
#: the entries whose findings leave out the connections a port scan or a flood explains (the
#: `claimed` uids of `finish`)
_CLAIMABLE = (_SINGLE, _UNANSWERED, _REFUSED, _RST)


@cython.locals(out=list, i=cython.Py_ssize_t, probe=cython.Py_ssize_t)
def _elide_probe_uid(out: list) -> None:
    """A scan probe's uid serves only to leave the connection out of the findings that name
    connections (`_CLAIMABLE`) when a port scan explains it: a connection with no such entry
    keeps its probe without the uid, so that a scanner's per-port slot (HostFacts.take) does
    not keep one uid per connection of a client that connects to one port all day."""
    probe = -1
    for i in range(len(out)):
        kind = out[i][0]
        if kind in _CLAIMABLE:
            return
        if kind == _PROBE:
            probe = i
    if probe >= 0:
        kind, key, item = out[probe]
        out[probe] = (kind, key, (*item[:5], None, *item[6:]))


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One finding (DESIGN.md, anomaly record)."""

    #: one of `KINDS`
    kind: str
    #: "info", "warning" or "critical"
    severity: str
    #: epoch seconds of when it happened: the first packet that shows it (a retransmission, a
    #: keep-alive, the RST, the start of a CLOSE_WAIT spell), or for a finding about many
    #: connections the first of them or the moment a count peaked
    ts: float
    #: the connection's uid, or None for a finding about a host, a port or many connections
    uid: str | None
    #: one sentence a person can paste into a postmortem
    summary: str
    #: frame numbers (1-based, as tcpdump -# and Wireshark count) that show it; a bounded sample
    evidence: tuple[int, ...] = ()
    #: kind-specific facts (counts, durations in seconds, addresses as text)
    details: dict = field(default_factory=dict)
    #: epoch seconds of the connection's first packet, for a finding about one connection
    #: (`ts` is when the event itself happened); None for a finding about many
    conn_ts: float | None = None

    def to_record(self) -> dict:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "ts": round(self.ts, 6),
            "uid": self.uid,
            "conn_ts": None if self.conn_ts is None else round(self.conn_ts, 6),
            "summary": self.summary,
            "evidence": list(self.evidence),
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a pattern becomes a finding. Durations in seconds, rates per second."""

    #: the clients' ephemeral port range, inclusive (Linux net.ipv4.ip_local_port_range), as
    #: configured; None: not given, Linux's default 32768-60999 unless the ports a client used
    #: show a narrowed range or another OS's (port_findings.py `_range_for`). A given range is
    #: always the one used.
    ephemeral_range: tuple[int, int] | None = None
    #: time_wait_accumulation: client ports toward one server port in TIME_WAIT at once
    time_wait_min: int = 100
    #: ... a warning from this fraction of the ephemeral range
    time_wait_warn_fraction: float = 0.10
    #: port_exhaustion_risk: warn when the peak of ports in use reaches this fraction of the
    #: range, or when the observed rate needs more ports than the range at steady state
    exhaustion_fraction: float = 0.5
    #: ... and only for a (client, server, port) with at least this many connections; the rate
    #: must have lasted this many seconds before it is projected to a steady state
    exhaustion_min_connections: int = 20
    exhaustion_min_span_s: float = 10.0
    #: close_wait: the peer closed and this endpoint did not for this long
    close_wait_s: float = 5.0
    #: fin_wait_2: FIN acknowledged, no FIN back for this long (Linux tcp_fin_timeout: 60 s)
    fin_wait_2_s: float = 60.0
    #: unanswered_syn: a SYN without retries counts once the capture ran this long after it
    unanswered_syn_s: float = 1.0
    #: syn_flood: half-open attempts toward one host:port within `syn_flood_window_s`
    syn_flood_min: int = 100
    syn_flood_window_s: float = 1.0
    #: port_scan: distinct ports probed on one host (vertical) ...
    scan_min_ports: int = 5
    #: ... or hosts probed on one port (horizontal)
    scan_min_hosts: int = 10
    #: retransmissions: report a direction with at least this many retransmitted segments ...
    retrans_min: int = 1
    #: ... as a warning from this retransmission rate (retransmitted / data segments) and
    #: `retrans_warn_min` segments
    retrans_rate: float = 0.02
    retrans_warn_min: int = 3
    #: zero_window: a warning when the window stayed closed this long in total
    zero_window_s: float = 1.0
    #: synack_reflection: unsolicited SYN/ACKs toward one host (reflection) or from one host
    #: (backscatter); critical from `syn_flood_min` within `syn_flood_window_s`
    reflection_min: int = 10
    #: frames kept as evidence per finding
    evidence_max: int = 10

    def __post_init__(self) -> None:
        lo, hi = self.ephemeral_range or LINUX_EPHEMERAL
        if not 0 < lo <= hi <= 65535:
            raise ValueError(f"bad ephemeral range {lo}-{hi}")

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _ep(addr: bytes, port: int) -> str:
    """host:port, IPv6 in brackets."""
    text = format_addr(addr)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _s(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _secs(value: float) -> str:
    if value >= 2 * 86400:
        return f"{value / 86400:.1f} days"
    if value >= 2 * 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    if value >= 10:
        return f"{value:.0f} s"
    if value >= 1:
        return f"{value:.1f} s"
    return f"{value * 1000:.0f} ms"


def _of(finding: Anomaly, conn) -> Anomaly:
    """`finding` about `conn` alone, with the connection's start as its conn_ts."""
    return replace(finding, conn_ts=conn.first_ts_ns / 1e9)


def _sample(frames: Iterable[int | None], limit: int) -> tuple[int, ...]:
    return tuple(sorted({f for f in frames if f is not None})[:limit])


class AnomalyDetector(Analyzer):
    """Analyzer that collects what the findings need as connections end and makes the findings.

    It sees no packets: it requires a `TcpAnalyzer` (the pipeline's own, or one it adds) and
    reads its `TcpaState` of each finished connection in `on_end`, which is
    `add_parts(parts(conn))`: `parts` reads the connection alone, `add_parts` keeps what
    crosses connections (so `--jobs` shards make the parts and one process keeps the rest:
    commands/anomalies.py); `finish(end_ns)` returns the findings (and starts over). `selection` (a `flowlens.core.filters.Selection`) limits the
    connections looked at, as the commands' filters do. No per-packet data is kept, and no
    connection objects: across the capture the detector keeps a small tuple per TCP connection
    for the TIME_WAIT arithmetic and per scan probe or failed attempt, and the findings of
    single connections.
    """

    # (Analyzer.requires is an unannotated `()` in core/analyzer.py, which mypy types as the
    # empty tuple: annotating it there as tuple[type[Analyzer] | Analyzer, ...] ends this)
    # OpenStarts: the watermarks that let the holds of TIME_WAIT accumulation be summed up as
    # they come (holds.py); without one, each group's holds are kept to the end
    requires = (TcpAnalyzer, OpenStarts)  # type: ignore[assignment]

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        selection=None,
        services=None,
    ) -> None:
        super().__init__()
        self.thresholds = thresholds or Thresholds()
        #: the TCP analyzer whose results are read (bound by the pipeline: see `bind`)
        self.tcp = None
        #: the OpenStarts that says how early the connections yet to come may start (bound:
        #: see `bind`; None: no watermark, every hold is kept to the end)
        self.open_starts: OpenStarts | None = None
        #: only connections this Selection matches are looked at (None: all)
        self.selection = selection if selection else None
        #: the ServiceAnalyzer whose `conn.service`/`conn.app` the findings read (a dependency,
        #: so it decides each connection before this one's on_end): `service_port_mismatch` and
        #: what answered each open port of a port scan. None: no detection, so a port scan says
        #: nothing of what answered (a ServiceAnalyzer listed before the detector still gives
        #: the mismatches, which need only `conn.service`)
        self.services = services
        #: connections looked at so far
        self.seen = 0
        self._shards = 1
        self._first = -1  # (an even split: core/pipeline.py's shard_split)
        self._reset()

    def dependencies(self) -> tuple:
        return self.requires if self.services is None else (*self.requires, self.services)

    def bind(self, deps: tuple) -> None:
        """The analyzers of `dependencies()` (a TcpAnalyzer, an OpenStarts, a
        ServiceAnalyzer), or some of them: by their kind (the commands bind their own)."""
        self.tcp, self.open_starts = deps[0], None
        for d in deps[1:]:
            if isinstance(d, OpenStarts):
                self.open_starts = d
            else:
                self.services = d

    def _reset(self) -> None:
        # the kind modules import this one: bind them here, not at import time
        from .connection_findings import icmp_finding, rst_ignored_finding, segment_findings
        from .host_findings import HostFacts

        self._icmp_finding, self._segment_findings = icmp_finding, segment_findings
        self._rst_ignored_finding = rst_ignored_finding

        self._hosts = HostFacts(
            self.thresholds, answers=self.services is not None, shards=self._shards,
            first=self._first,
        )  # fmt: skip
        self._single: list[tuple[str, Anomaly]] = []  # (uid, finding about that connection)
        self._unanswered: defaultdict[tuple, list[tuple]] = defaultdict(list)
        self._refused: defaultdict[tuple, list[tuple]] = defaultdict(list)
        self._close_wait: defaultdict[tuple, list[tuple]] = defaultdict(list)
        self._fin_wait_2: list[tuple] = []
        self._rst: defaultdict[tuple, list[tuple]] = defaultdict(list)
        self._reuse: defaultdict[tuple, list[tuple]] = defaultdict(list)
        self._mismatch: defaultdict[tuple, list[tuple]] = defaultdict(list)
        self._unsolicited: list[tuple] = []
        #: the groups of `parts`' entries of kind _UNANSWERED .. _MISMATCH, by kind
        self._grouped = (self._unanswered, self._refused, self._rst, self._reuse, self._mismatch)
        self._end_ns = 0

    def from_shards(self, n: int, first: int = -1) -> None:
        """The parts `add_parts` takes come from `n` hash shards (flowlens.core.shard; shard 0
        owning `first` of the hash's slots, core/pipeline.py's shard_split), merged:
        a watermark then holds only for its own shard's connections (holds.py). Call it
        before the first `add_parts`; a one-process run needs nothing."""
        self._shards, self._first = n, first
        self._hosts.shards, self._hosts.first = n, first

    def on_end(self, conn) -> None:
        """Take one finished connection (any protocol) into account: `add_parts(parts(conn))`."""
        parts = self.parts(conn)
        if parts is not None:
            self.add_parts(parts)

    # (compiled: C reads of the connection's, the tracker's and the analysis' fields, through
    # the arrays behind their list properties; this runs for every connection)
    @cython.locals(conn=Connection, t=TcpTracker, st=TcpaState, d=DirectionStats, out=list)
    def parts(self, conn):
        """What finished connection `conn` gives the findings, read from it alone (its record,
        its tracker, its TcpaState, what service identification wrote on it), or None when the
        selection does not look at it: (its record's end in ns, a list of (kind, key, item)
        entries, this module's and `HostFacts.parts`'), atoms, bytes and tuples that pickle.
        `add_parts` takes them in; a `--jobs` shard (flowlens.core.shard) makes them where it
        read the connection, and the merging process adds them in the one-process order."""
        # (every connection leaves the open ones, selected or not)
        watermark = _NO_MARK
        if self.open_starts is not None and conn.tcp is not None:
            watermark = self.open_starts.done(conn)
        if self.selection is not None and not self.selection.matches(conn):
            return None
        st = self.tcp.state_of(conn) if self.tcp is not None else None
        end = conn.end_ts_ns if conn.end_ts_ns is not None else conn.last_ts_ns
        out = []
        self._hosts.parts(conn, st, out, watermark)
        th = self.thresholds
        if conn.icmp_errors:
            out.append((_SINGLE, None, (conn.uid, _of(self._icmp_finding(conn, th), conn))))
        # a responder that was there and said nothing (a scanner's GET to a silent port) shows
        # only what the client spoke, not what the server speaks
        if (
            conn.service is not None
            and (conn.payload_sent(1) or not conn.pkts_sent(1))
            and mismatch(conn.service, conn.proto_name, conn.resp_p)
        ):
            out.append(
                (_MISMATCH, (conn.resp_h, conn.resp_p, conn.proto_name, conn.service),
                 (conn.first_ts_ns, conn.uid, conn.orig_h, conn.service_frames or ()))
            )  # fmt: skip
        if conn.tcp is None:
            _elide_probe_uid(out)
            return end, out
        t = conn.tcp
        if t.syns_sent(0):
            if t.rejected:
                frames = (st.rst[1],) if st is not None and st.rst is not None else ()
                out.append(
                    (_REFUSED, (conn.resp_h, conn.resp_p),
                     (conn.first_ts_ns, conn.uid, conn.orig_h, (conn.first_frame, *frames)))
                )  # fmt: skip
            elif not t.synacks_sent(1) and not conn.pkts_sent(1) and t.reset_by is None:
                # (syn_retries counts the retries of earlier records of the same attempt, which
                # Zeek's attempt timer ended: a lone SYN continuing one is a retry too)
                if conn.syn_retries or (end - conn.first_ts_ns) / 1e9 >= th.unanswered_syn_s:
                    syns = (
                        tuple(st.syns)
                        if st is not None and st.syns
                        else ((conn.first_ts_ns, conn.first_frame),)
                    )
                    # a record that goes on with an earlier one's attempt names it (prev_uid)
                    cont = conn.prev_uid if conn.syn_retries >= t.syns_sent(0) else None
                    out.append(
                        (_UNANSWERED, (conn.resp_h, conn.resp_p),
                         (conn.first_ts_ns, conn.uid, conn.orig_h, t.syns_sent(0), syns, cont))
                    )  # fmt: skip
        if not t.handshake_acked:
            for side in (0, 1):
                # a SYN/ACK no SYN asked for, which its receiver did not go on with
                # (reflection.py)
                if (
                    t.synacks_sent(side)
                    and not t.syns_sent(1 - side)
                    and not conn.payload_sent(1 - side)
                ):
                    out.append(
                        (_UNSOLICITED, None, (conn.first_ts_ns, conn.uid,
                         conn.orig_h if side == 0 else conn.resp_h,
                         conn.orig_p if side == 0 else conn.resp_p,
                         conn.resp_h if side == 0 else conn.orig_h,
                         conn.resp_p if side == 0 else conn.orig_p,
                         t.reset_by == 1 - side, conn.first_frame))
                    )  # fmt: skip
                    break
        if t.reset_by is not None and not t.rejected:
            if t.handshake_acked or (
                t.midstream and (conn.payload_sent(0) or conn.payload_sent(1))
            ):
                rst = st.rst if st is not None else None
                # after FIN: a close had begun (a FIN came first, TcpTracker.first_close)
                after_fin = t.first_close is not None and t.first_close[1] == "F"
                out.append(
                    (_RST, (conn.orig_h, conn.resp_h, conn.resp_p, t.reset_by),
                     (rst[2] if rst else conn.first_ts_ns, conn.uid, rst[1] if rst else None,
                      (rst[3] or 0) if rst else 0, (rst[4] or 0) if rst else 0,
                      conn.first_ts_ns, after_fin))
                )  # fmt: skip
        if t.rst_ignored is not None and t.rst_ignored_then is not None:
            # a RST no endpoint accepted, and the connection went on (TcpTracker._rst_valid)
            out.append((_SINGLE, None, (conn.uid, _of(self._rst_ignored_finding(conn, th), conn))))
        if conn.prev_uid is not None and conn.reused_in_time_wait:
            failed = t.handshake() not in ("3way", "simultaneous_open")
            out.append(
                (_REUSE, (conn.orig_h, conn.resp_h, conn.resp_p),
                 (conn.first_ts_ns, conn.uid, conn.prev_uid, conn.orig_p, conn.first_frame,
                  failed))
            )  # fmt: skip
        if t.fin_sent(0) or t.fin_sent(1):  # CLOSE_WAIT needs a FIN
            self._note_closes(conn, out)
        if st is not None:
            for d in st.dirs:  # most connections have nothing more to report
                if (
                    d.retrans_segments > d.retrans_syn + d.retrans_fin
                    or d.retrans_fin
                    or d.zero_window_spells
                    or d.keep_alive_first_ns is not None
                    or (d.counts and d.counts[_OOO])
                ):
                    for a in self._segment_findings(conn, st, th, end):
                        out.append((_SINGLE, None, (conn.uid, _of(a, conn))))
                    break
        _elide_probe_uid(out)
        return end, out

    def add_parts(self, parts) -> None:
        """Take in what `parts(conn)` gave for one connection. Connections come in the order
        one pipeline gives them (on_end's, or a ConnectionStream's with `--jobs`): the groups'
        order is the findings' order where their sort ties."""
        end, entries = parts
        self.seen += 1
        if end > self._end_ns:
            self._end_ns = end
        for kind, key, item in entries:
            if kind >= _PROBE:
                self._hosts.take(kind, key, item)
            elif kind < _GROUPED:
                self._grouped[kind][key].append(item)
            elif kind == _SINGLE:
                self._single.append(item)
            elif kind == _CLOSE_WAIT:
                spells = self._close_wait[key]  # (the group exists either way: finding order)
                if item is not None:
                    spells.append(item)
            elif kind == _FIN_WAIT_2:
                self._fin_wait_2.append(item)
            else:
                self._unsolicited.append(item)

    @cython.locals(c=Connection, t=TcpTracker, out=list)
    def _note_closes(self, c: Connection, out: list) -> None:
        # a side still in CLOSE_WAIT or FIN_WAIT_2 when the record ended stayed there at least
        # that long: to the capture's end (None: known at finish), or until flowlens stopped
        # waiting for an idle connection or a new one took its 5-tuple
        t = c.tcp
        assert t is not None  # (TCP connections only)
        close_wait, fin_wait_2 = t.spells()
        if close_wait is None and fin_wait_2 is None:
            return
        # only a new connection on the 5-tuple shows that the socket was gone; a record that
        # flowlens's own timers ended (close linger, idle timeout) says nothing about the
        # socket, which stayed as it was to the capture's end as far as the capture shows
        stop_at = c.end_ts_ns if c.closed_by == "reused" else None
        th = self.thresholds
        for side, start, stop, frame, _timed_out in close_wait or ():
            if not c.pkts_sent(side):
                continue  # a one-sided capture: nothing says what that side did
            host, port = (c.orig_h, c.orig_p) if side == 0 else (c.resp_h, c.resp_p)
            peer_h, peer_p = (c.resp_h, c.resp_p) if side == 0 else (c.orig_h, c.orig_p)
            # a server leaks on its service port; a client on whatever port it had
            key = (host, port, None, None) if side == 1 else (host, None, peer_h, peer_p)
            until = stop if stop is not None else stop_at
            # a spell already known to be shorter than the threshold can never be reported (the
            # group is made either way: finding order)
            if until is None or (until - start) / 1e9 >= th.close_wait_s:
                spell = (start, until, stop is None and until is None, frame, c.uid,
                         t.sent_in_close_wait(side), c.first_ts_ns)  # fmt: skip
            else:
                spell = None
            out.append((_CLOSE_WAIT, key, spell))
        for side, start, stop, frame, timed_out in fin_wait_2 or ():
            if not c.pkts_sent(1 - side):
                continue
            until = stop if stop is not None else stop_at
            if until is not None and (until - start) / 1e9 < th.fin_wait_2_s:
                continue  # too short to be reported (the test of fin_wait_2_findings)
            host, port = (c.orig_h, c.orig_p) if side == 0 else (c.resp_h, c.resp_p)
            peer = _ep(c.resp_h, c.resp_p) if side == 0 else _ep(c.orig_h, c.orig_p)
            out.append(
                (_FIN_WAIT_2, None,
                 (c.uid, _ep(host, port), peer, start, until, stop is None and until is None,
                  frame, c.pkts_sent(1 - side), c.first_ts_ns, timed_out))
            )  # fmt: skip

    def finish(self, end_ns: int | None = None) -> list[Anomaly]:
        """Every finding, most severe first, then by time; resets the detector. `end_ns` is the
        capture's last timestamp (default: the latest record end seen)."""
        # Grouping and sorting tens of thousands of small tuples makes no reference cycles,
        # but the collector's passes over them would cost as much as the work (as in Pipeline)
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._finish(end_ns)
        finally:
            if enabled:
                gc.enable()

    def _finish(self, end_ns: int | None) -> list[Anomaly]:
        th = self.thresholds
        end_ns = self._end_ns if end_ns is None else end_ns
        claimed: set[str] = set()  # uids explained by a scan or a flood
        from .endpoint_findings import (
            close_wait_findings,
            fin_wait_2_findings,
            mismatch_findings,
            refused_findings,
            reuse_findings,
            rst_findings,
            unanswered_findings,
        )

        out: list[Anomaly] = self._hosts.findings(claimed, end_ns)
        out.extend(unanswered_findings(self._unanswered, th, claimed))
        out.extend(refused_findings(self._refused, th, claimed))
        out.extend(close_wait_findings(self._close_wait, th, end_ns))
        out.extend(fin_wait_2_findings(self._fin_wait_2, th, end_ns))
        out.extend(rst_findings(self._rst, th, claimed))
        out.extend(reuse_findings(self._reuse, th))
        out.extend(mismatch_findings(self._mismatch, th))
        if self._unsolicited:
            from .reflection import reflection_findings

            out.extend(reflection_findings(self._unsolicited, th))
        out.extend(a for uid, a in self._single if uid not in claimed)
        out.sort(key=lambda a: (-_RANK[a.severity], a.ts, a.kind, a.uid or ""))
        self._reset()
        return out
