"""Per-packet records of selected connections, kept by an analyzer.

The ladder and the flag timeline need every packet of a few connections, not of all of them. A
`PacketCollector` is one of the pipeline's analyzers and decides on each connection's *first*
packet (`on_start`) whether to keep it (`wants`), so a capture is read once, the packets of
unwanted connections are never stored, and stdin works. (`collect` / `select_logs` then apply the
filters that need the finished connection, like its end state.)

While a connection is open its log keeps each packet as a fixed row of 13 C integers (an
`array('q')`; the core's findings and a SYN's option bytes beside it only when the packet has
some), and `ConnLog.items` builds the rows from them when it is first read, in one of two modes:

- ``full=True`` (the timeline, ``ladder --full``): one `PacketRow` per packet.
- ``full=False`` (the ladder's default): runs of *plain* packets (no SYN/FIN/RST, no state
  change, no finding, no user note) longer than ``collapse_after`` are folded into one
  `CollapsedRun`, and findings in the data phase stop being kept one by one after
  ``max_findings`` (they are counted in the run instead).

So a log the caller never draws (the report keeps a couple of thousand in case a finding names
one) never builds a row, and the module is compiled (flowlens/compiled.py) so the table calls its
hooks as C code (`packetlog.pxd`).

Each row records the endpoints' states *after* the packet (analyzers run after the table applied
it) and the transitions it caused, read from `TcpTracker.timeline`. Findings come from the core's
own signals (the record's retransmission counter, which the TCP analysis keeps, zero window,
handshake legs, RST) and, when a `tcp` analyzer is given (a `TcpAnalyzer(keep_frames=True)`, a
dependency that sees each packet first; give it the same `wants` to analyse the kept connections
only), from its per-frame analysis notes, which replace the rough core signals.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import cython

from ..core.analyzer import Analyzer, Needs
from ..core.connections import Connection
from ..core.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, Packet, parse_tcp_options
from ..core.tcpstate import TIMER_REASONS, TcpState
from .tcpanalysis import TcpAnalyzer

__all__ = [
    "CollapsedRun",
    "ConnLog",
    "Finding",
    "PacketCollector",
    "PacketRow",
    "StateChange",
    "collect",
    "first_packet_filter",
    "select_logs",
    "time_wait_until",
]

#: findings that accompany a data phase without changing its story: in the collapsed ladder
#: they are counted in the run's summary instead of breaking it
FOLDABLE_KINDS = frozenset(
    ("dup_ack", "window_update", "window_full", "keep_alive", "keep_alive_ack")
)
#: the core's own signals, replaced by a TcpAnalyzer's verdicts when there is one
_CORE_ROUGH = frozenset(("retransmission", "syn_retransmission", "zero_window"))

_EXT_KEY = "packetlog"
_UNDECIDED = object()
_M32 = 0xFFFFFFFF
_TS_NS = attrgetter("ts_ns")
#: a TcpState's index by the member's identity (an Enum's hash is a Python call), and the
#: names by index: a log keeps states as small integers and names them when it builds its rows
_STATE_CODE = {id(s): i for i, s in enumerate(TcpState)}
_STATE_NAMES = [s.value for s in TcpState]


@dataclass(slots=True, frozen=True)
class Finding:
    """Something worth a line on the diagram, attached to the packet where it happened."""

    #: short machine name: retransmission, syn_retransmission, zero_window, window_reopen,
    #: handshake_synack, handshake_ack, refused, reset, or a kind from the notes source
    #: (flowlens.analyzers.tcpanalysis.KINDS: dup_ack, fast_retransmission, window_full ...)
    kind: str
    #: the sentence shown beside the arrow
    text: str


@dataclass(slots=True)
class PacketRow:
    """One packet of a kept connection, with the state of both endpoints after it."""

    frame: int  # 1-based frame number (tcpdump -#, Wireshark)
    ts_ns: int  # capture time, integer nanoseconds since the epoch
    from_orig: bool  # sent by the originator
    proto: int  # IP protocol number
    flags: int  # TCP flags byte (TH_* bits); 0 for UDP/ICMP
    seq: int  # raw 32-bit sequence number
    ack: int  # raw 32-bit acknowledgment number (meaningful when flags has ACK)
    win: int  # raw 16-bit window, unscaled
    plen: int  # payload bytes
    mss: int | None  # MSS option (SYN, SYN/ACK)
    wscale: int | None  # window scale shift (SYN, SYN/ACK)
    icmp: tuple[int, int] | None  # (type, code) for ICMP
    orig_state: str | None  # originator's TCP state after this packet (None for UDP/ICMP)
    resp_state: str | None
    #: transitions this packet caused, in order: (0 orig / 1 resp, state name)
    entered: tuple[tuple[int, str], ...]
    #: what the packet showed (one shared empty tuple for most packets: no list per row)
    findings: tuple[Finding, ...] = ()


@dataclass(slots=True)
class CollapsedRun:
    """A run of plain packets folded into one summary (the ladder's data phase)."""

    first_frame: int
    last_frame: int
    first_ts_ns: int
    last_ts_ns: int
    pkts: list[int]  # [orig, resp]
    payload: list[int]  # [orig, resp] payload bytes
    #: findings of packets folded in after the per-connection limit, by kind
    findings: Counter = field(default_factory=Counter)

    @classmethod
    def of(cls, rows: Sequence[PacketRow]) -> CollapsedRun:
        run = cls(rows[0].frame, rows[0].frame, rows[0].ts_ns, rows[0].ts_ns, [0, 0], [0, 0])
        for row in rows:
            run.add(row)
        return run

    def add(self, row: PacketRow) -> None:
        self.count_in(0 if row.from_orig else 1, row.plen, row.frame, row.ts_ns, row.findings)

    def count_in(
        self, side: int, plen: int, frame: int, ts_ns: int, findings: Sequence[Finding]
    ) -> None:
        """Fold one packet in from its fields (the collector does not build its row)."""
        self.pkts[side] += 1
        self.payload[side] += plen
        self.last_frame = frame
        if ts_ns > self.last_ts_ns:
            self.last_ts_ns = ts_ns
        for f in findings:
            self.findings[f.kind] += 1

    @property
    def count(self) -> int:
        return self.pkts[0] + self.pkts[1]


@dataclass(slots=True, frozen=True)
class StateChange:
    """A transition no packet of the connection caused: TIME_WAIT running out after 2 x MSL,
    or cut short because a new connection took the 5-tuple."""

    ts_ns: int
    side: int  # 0 orig, 1 resp
    state: str
    why: str


#: the fields of one packet in `ConnLog`'s cells (one array of C integers per connection)
_FRAME, _TS, _FROM_ORIG, _PROTO, _FLAGS, _SEQ, _ACK, _WIN, _PLEN = range(9)
_ORIG, _RESP, _TL0, _TL1 = range(9, 13)  # both endpoints' state codes; the timeline's span
_WIDTH = 13


class _Folder:
    """The collapsed ladder's runs as a log's packets are replayed (`ConnLog.items`)."""

    __slots__ = ("items", "pending", "run")

    def __init__(self) -> None:
        self.items: list = []
        self.pending: list[PacketRow] = []  # plain rows not yet known to be a long run
        self.run: CollapsedRun | None = None  # the CollapsedRun being filled

    def flush(self) -> None:
        if self.run is not None:
            self.items.append(self.run)
            self.run = None
        elif self.pending:
            self.items.extend(self.pending)
        self.pending = []

    def plain(self, row: PacketRow, collapse_after: int) -> None:
        if self.run is not None:
            self.run.add(row)
            return
        self.pending.append(row)
        if len(self.pending) > collapse_after:
            self.run = CollapsedRun.of(self.pending)
            self.pending = []


class ConnLog:
    """The kept packets of one connection: `items` in capture order (PacketRow, CollapsedRun,
    StateChange), the first sequence number of each side for relative numbers, and counts.

    While the connection is open, each packet is a fixed row of C integers (`_cells`: frame,
    time, direction, header fields, both endpoints' state codes after it, the span of the
    tracker's timeline it caused), with its findings and SYN options beside it only when it
    has some: no object per packet. `items` builds the rows, the collapsed runs and the state
    changes from them when first read (after the connection ended, once), so a log that is
    never drawn never builds them. The TCP analysis notes are read then too
    (`TcpAnalyzer(keep_frames=True)` keeps every flagged frame's for the whole run)."""

    __slots__ = (
        "_ackdat_ms",
        "_breaks",  # sorted absolute ns where a user time note splits a run
        "_cells",  # array('q'), _WIDTH integers per packet (see _FRAME ...)
        "_changes",  # StateChange list merged in by time (made when the items are built)
        "_codes_at",  # the timeline length _orig_code/_resp_code were read at (-1: not read)
        "_end_ns",  # when the record ended (on_end): a timed state's run-out past it is not shown
        "_ended",
        "_found",  # packet index -> the core's findings on it (TCP; only when some; the handshake
        # legs as numbers until _spelt)
        "_items",  # the built items, once the connection ended
        "_notes_len",  # TcpTracker.notes already attributed
        "_orig_code",  # both endpoints' state codes after the last packet (see _codes_at)
        "_owner",  # the PacketCollector: mode, pins and the TCP analyzer
        "_rare",  # packet index -> a SYN's option bytes, or an ICMP (type, code)
        "_rejected",
        "_reset_seen",
        "_resp_code",
        "_retrans",  # Connection.retransmissions already attributed
        "_synack_ms",
        "_tcp",  # the connection's TcpTracker (its timeline names the transitions), or None
        "_tl_len",  # TcpTracker.timeline entries already attributed
        "_zero_win",  # [orig, resp]: last window advertised was 0
        "base_seq",  # [orig, resp]: ISN, or one below the first sequence number seen (Wireshark)
        "packets",  # packets seen, kept or folded
        "uid",
    )

    def __init__(self, uid: str, breaks: Sequence[int] = (), owner=None, tcp=None) -> None:
        self.uid = uid
        self.base_seq: list[int | None] = [None, None]
        self.packets = 0
        self._cells = array("q")
        self._found: dict = {}
        self._rare: dict = {}
        self._owner = owner
        self._tcp = tcp
        self._changes: list | None = None
        self._items: list | None = None
        self._ended = False
        self._end_ns = 0
        self._codes_at = -1
        self._orig_code = -1
        self._resp_code = -1
        self._tl_len = 0
        self._notes_len = 0
        self._retrans = 0
        self._synack_ms: float | None = None
        self._ackdat_ms: float | None = None
        self._zero_win = [False, False]
        self._reset_seen = False
        self._breaks = sorted(breaks)
        self._rejected = False

    def _swap(self) -> None:
        """The table swapped originator and responder (Zeek found the roles reversed): every
        per-side fact recorded so far moves with its endpoint (the tracker swaps the sides of
        its timeline itself)."""
        cells = self._cells
        for o in range(0, len(cells), _WIDTH):
            cells[o + _FROM_ORIG] = 1 - cells[o + _FROM_ORIG]
            cells[o + _ORIG], cells[o + _RESP] = cells[o + _RESP], cells[o + _ORIG]
        self.base_seq.reverse()
        self._zero_win.reverse()
        self._codes_at = -1  # (the tracker swapped its sides: read its states again)

    @property
    def items(self) -> list:
        """PacketRow, CollapsedRun and StateChange in capture order (built when first read)."""
        if self._items is not None:
            return self._items
        items = self._replay()
        if self._ended:
            self._items = items
        return items

    def rows(self) -> list[PacketRow]:
        """The kept packet rows (every packet in full mode)."""
        return [item for item in self.items if isinstance(item, PacketRow)]

    def rel_seq(self, row: PacketRow) -> int:
        base = self.base_seq[0 if row.from_orig else 1]
        return row.seq if base is None else (row.seq - base) & _M32

    def rel_ack(self, row: PacketRow) -> int:
        base = self.base_seq[1 if row.from_orig else 0]
        return row.ack if base is None else (row.ack - base) & _M32

    # ------------------------------------------------------------------ the rows
    def _replay(self) -> list:
        """The rows of the packets recorded, folded as the collector's mode says."""
        owner = self._owner
        full = owner is None or owner.full
        an = None if owner is None else owner.tcp
        tcp = self._tcp
        cells = self._cells
        folder = _Folder()
        breaks = list(self._breaks)
        data_findings = 0
        for k in range(len(cells) // _WIDTH):
            o = k * _WIDTH
            frame, ts_ns, flags = cells[o + _FRAME], cells[o + _TS], cells[o + _FLAGS]
            while breaks and ts_ns >= breaks[0]:
                breaks.pop(0)
                folder.flush()
            findings = [_spelt(f) for f in self._found.get(k, ())]
            if an is not None:
                # the analyzer's verdicts replace the core's rough ones (same signals,
                # Wireshark's rules)
                if findings:
                    findings = [f for f in findings if f.kind not in _CORE_ROUGH]
                if tcp is not None:
                    kinds = an.kinds(frame)
                    if kinds:
                        reopened = any(f.kind == "window_reopen" for f in findings)
                        for kind, text in zip(kinds, an.notes(frame)):
                            if not (reopened and kind == "window_update"):
                                findings.append(Finding(kind, text))
            entered: tuple = ()
            if cells[o + _TL1] > cells[o + _TL0]:
                entered = tuple(
                    (side, _STATE_NAMES[_STATE_CODE[id(st)]])
                    for _t, _f, side, st in (
                        tcp.transition(i) for i in range(cells[o + _TL0], cells[o + _TL1])
                    )
                )
            mss = wscale = icmp = None
            rare = self._rare.get(k)
            if isinstance(rare, bytes):  # a SYN's TCP options
                opts = parse_tcp_options(rare)
                mss, wscale = opts.mss, opts.wscale
            elif rare is not None:
                icmp = rare
            orig, resp = cells[o + _ORIG], cells[o + _RESP]
            row = PacketRow(
                frame, ts_ns, bool(cells[o + _FROM_ORIG]), cells[o + _PROTO], flags,
                cells[o + _SEQ], cells[o + _ACK], cells[o + _WIN], cells[o + _PLEN], mss, wscale,
                icmp, None if orig < 0 else _STATE_NAMES[orig],
                None if resp < 0 else _STATE_NAMES[resp], entered, tuple(findings),
            )  # fmt: skip
            if full:
                folder.items.append(row)
                continue
            structural = (
                bool(flags & (TH_SYN | TH_FIN | TH_RST)) or bool(entered) or frame in owner.pinned
            )
            if structural:
                folder.flush()
                folder.items.append(row)
            elif (
                findings
                and data_findings < owner.max_findings
                and not all(f.kind in FOLDABLE_KINDS for f in findings)
            ):
                data_findings += 1
                folder.flush()
                folder.items.append(row)
            else:
                folder.plain(row, owner.collapse_after)
        folder.flush()
        return _merge(folder.items, self._state_changes() if self._ended else [])

    def _state_changes(self) -> list:
        """The transitions no packet caused, by time (made once, when the items are first
        built: the tracker's timeline is final once the record ended)."""
        if self._changes is not None:
            return self._changes
        extra = []
        tcp = self._tcp
        if tcp is not None:
            for i in range(self._tl_len, tcp.timeline_len):
                ts, frame, side, state = tcp.transition(i)
                why = "TIME_WAIT cut short: the 5-tuple was reused"
                if frame is not None:
                    why += f" (frame {frame})"
                extra.append(StateChange(ts, side, state.value, why))
            end = self._end_ns
            for side, state, _start, stop, _frame, timed_out in tcp.spans():
                if timed_out and stop <= end:  # a timed state ran out (TcpTracker.spans)
                    extra.append(StateChange(stop, side, "CLOSED", TIMER_REASONS[state]))
            extra.sort(key=_TS_NS)
        self._changes = extra
        return extra


class PacketCollector(Analyzer):
    """Analyzer keeping the packets of the connections `wants` picks, one `ConnLog` each.

    `wants(conn)` is asked once, on a connection's first packet (`on_start`), so it can only use
    what is known then (addresses, ports, protocol, uid); filters on how a connection ends are
    applied by the caller to finished connections. `breaks(conn)` returns absolute times (ns)
    where the caller will put a note, `pinned` frames are always kept as rows. `tcp` (a
    `TcpAnalyzer(keep_frames=True)`, made a dependency so it sees each packet first) gives each
    kept row its Wireshark analysis notes. A log is completed when its connection ends
    (`on_end`); `log_of(conn)` then returns it (None for a connection not kept).
    """

    #: reads only SYNs' TCP options (MSS, window scale)
    needs = Needs.SYN_OPTIONS

    def __init__(
        self,
        wants: Callable[[Connection], bool] | None = None,
        *,
        full: bool = True,
        collapse_after: int = 6,
        max_findings: int = 40,
        pinned: Iterable[int] = (),
        breaks: Callable[[Connection], Sequence[int]] | None = None,
        tcp: TcpAnalyzer | None = None,
    ) -> None:
        super().__init__()
        self.wants = wants
        self.full = full
        self.collapse_after = collapse_after
        self.max_findings = max_findings
        self.pinned = frozenset(pinned)
        self.breaks = breaks
        self.tcp = tcp
        self.kept = 0  # connections kept so far

    def dependencies(self) -> tuple:
        # without an analyzer of its own, any TcpAnalyzer keeps the record's retransmission
        # counter, which the rough core signals read
        return (TcpAnalyzer,) if self.tcp is None else (self.tcp,)

    def log_of(self, conn: Connection) -> ConnLog | None:
        """The log of `conn` (complete once the connection ended), or None when not kept."""
        return self.state_of(conn)

    # ------------------------------------------------------------------ hooks
    def on_start(self, conn, pkt: Packet):  # -> ConnLog | None (cpdef object in the .pxd)
        if self.wants is not None and not self.wants(conn):
            return None
        self.kept += 1
        return ConnLog(conn.uid, self.breaks(conn) if self.breaks else (), self, conn.tcp)

    def on_packet(self, conn, pkt: Packet, from_orig: cython.bint) -> None:
        c = cython.cast(Connection, conn, typecheck=True)  # (C fields when compiled)
        self._add(self.state_of(c), c, pkt, from_orig)

    def on_flip(self, conn) -> None:
        self.state_of(conn)._swap()

    def on_end(self, conn) -> None:
        """Complete the log: the transitions no packet caused are read from the tracker when
        the items are built (`ConnLog._state_changes`; most logs never are), up to this end."""
        log: ConnLog | None = self.state_of(conn)
        if log is None:
            return
        log._ended = True
        log._tcp = conn.tcp
        log._end_ns = conn.end_ts_ns if conn.end_ts_ns is not None else conn.last_ts_ns
        if cython.compiled:  # the array's spare room, left by growing it, given back
            cpython.array.resize(log._cells, len(log._cells))  # type: ignore[name-defined]  # (cimported in packetlog.pxd)

    # ------------------------------------------------------------------ one packet
    def _add(self, log: ConnLog, conn: Connection, pkt: Packet, from_orig: cython.bint) -> None:
        log.packets += 1
        side = 0 if from_orig else 1
        flags = pkt.flags
        tcp = conn.tcp
        cells: cpython.array.array = log._cells  # type: ignore[name-defined]  # (cimported in packetlog.pxd)
        p: cython.p_longlong
        k: cython.Py_ssize_t = len(cells) // _WIDTH
        tl0: cython.longlong = 0
        tl1: cython.longlong = 0
        orig_code: cython.longlong = -1
        resp_code: cython.longlong = -1
        if tcp is not None:
            # Wireshark's relative numbers: a side's SYN is 0, so its first byte is 1; a side
            # whose SYN was not seen starts at 1 too (its base is one below the first number)
            if log.base_seq[side] is None:
                log.base_seq[side] = pkt.seq if flags & TH_SYN else (pkt.seq - 1) & _M32
            if flags & TH_ACK and log.base_seq[1 - side] is None:
                log.base_seq[1 - side] = (pkt.ack - 1) & _M32
            if flags & TH_SYN and pkt.raw_options:
                log._rare[k] = pkt.raw_options  # (parsed when the row is built)
            tl0 = log._tl_len
            tl1 = tcp.timeline_len
            log._tl_len = tl1
            if tl1 != log._codes_at:
                # the states change only with a timeline entry (TcpTracker._set) or a swap
                # (on_flip): read them again only then
                states = tcp.state
                log._orig_code = _STATE_CODE[id(states[0])]
                log._resp_code = _STATE_CODE[id(states[1])]
                log._codes_at = tl1
            orig_code, resp_code = log._orig_code, log._resp_code
            findings = self._core_findings(log, conn, pkt, side)
            if findings:
                log._found[k] = findings
        elif pkt.proto != 17:
            log._rare[k] = (pkt.sport, pkt.dport)  # ICMP type and code
        if cython.compiled:
            # the packet's integers written in place (array.extend would parse each one)
            cpython.array.resize_smart(cells, (k + 1) * _WIDTH)  # type: ignore[name-defined]  # (cimported in packetlog.pxd)
            p = cells.data.as_longlongs + k * _WIDTH
            p[_FRAME] = pkt.frame
            p[_TS] = pkt.ts_ns
            p[_FROM_ORIG] = from_orig
            p[_PROTO] = pkt.proto
            p[_FLAGS] = flags
            p[_SEQ] = pkt.seq
            p[_ACK] = pkt.ack
            p[_WIN] = pkt.win
            p[_PLEN] = pkt.plen
            p[_ORIG] = orig_code
            p[_RESP] = resp_code
            p[_TL0] = tl0
            p[_TL1] = tl1
        else:
            cells.extend(
                (
                    pkt.frame, pkt.ts_ns, from_orig, pkt.proto, flags, pkt.seq, pkt.ack, pkt.win,
                    pkt.plen, orig_code, resp_code, tl0, tl1,
                )
            )  # fmt: skip

    def _core_findings(self, log: ConnLog, conn: Connection, pkt: Packet, side: cython.int) -> list:
        tcp = conn.tcp
        assert tcp is not None  # (called for TCP packets only)
        flags = pkt.flags
        out: list[Finding | tuple[int, float, float]] = []  # (a tuple: see _spelt)
        who = "orig" if side == 0 else "resp"
        if conn.retransmissions != log._retrans:
            log._retrans = conn.retransmissions
            if (
                flags & TH_SYN
                and flags & TH_ACK
                and tcp.syn_count[side]
                and tcp.synack_count[side] == 1
            ):
                pass  # simultaneous open: a SYN/ACK repeats its own SYN's sequence number by design
            elif flags & TH_SYN:
                what = "SYN/ACK" if flags & TH_ACK else "SYN"
                out.append(Finding("syn_retransmission", f"{what} retransmission"))
            else:
                out.append(Finding("retransmission", "retransmission"))
        # the handshake's legs as their numbers: spelt as Findings only when a row is built
        # (`_spelt`), as most logs never are (two frozen dataclasses and three float formats
        # per connection were a third of the collector's cost)
        if log._synack_ms is None and tcp.synack_ms is not None:  # (the log's test first: cheaper)
            log._synack_ms = tcp.synack_ms
            out.append((_SYNACK, tcp.synack_ms, 0.0))
        if log._ackdat_ms is None and tcp.ackdat_ms is not None and tcp.synack_ms is not None:
            log._ackdat_ms = tcp.ackdat_ms
            out.append((_ACKDAT, tcp.ackdat_ms, tcp.synack_ms))
        ignored = False
        if tcp.notes_len > log._notes_len:
            # the tracker's notes on this packet: a RST its receiver would not accept (no state
            # changed), a state change inferred from evidence (TcpTracker.notes)
            for _ts, _frame, note_side, kind, text in tcp.notes[log._notes_len :]:
                if kind == "rst_ignored":
                    ignored = True
                    out.append(Finding("rst_ignored", f"RST ignored: {text}"))
                else:
                    out.append(Finding(kind, f"{'orig' if note_side == 0 else 'resp'} {text}"))
            log._notes_len = tcp.notes_len
        if flags & TH_RST and ignored:
            pass
        elif flags & TH_RST:
            if tcp.rejected and not log._rejected:
                log._rejected = True
                out.append(Finding("refused", "SYN answered by RST: connection refused"))
            elif not log._reset_seen:
                out.append(Finding("reset", f"RST from {who}: connection aborted"))
            log._reset_seen = True
        elif not flags & TH_SYN:
            if pkt.win == 0:
                if not log._zero_win[side]:
                    out.append(
                        Finding("zero_window", f"zero window: {who}'s receive buffer is full")
                    )
                log._zero_win[side] = True
            elif log._zero_win[side]:
                log._zero_win[side] = False
                out.append(Finding("window_reopen", f"window opens again ({who})"))
        return out


#: the handshake legs a log keeps as numbers (`_core_findings`) until its rows are built
_SYNACK, _ACKDAT = 0, 1


def _spelt(found: Finding | tuple[int, float, float]) -> Finding:
    """A kept finding as the Finding it stands for: a handshake leg's (kind code, ms, SYN ->
    SYN/ACK ms) becomes its sentence; a Finding is itself."""
    if isinstance(found, Finding):
        return found
    code, ms, synack_ms = found
    if code == _SYNACK:
        return Finding("handshake_synack", f"SYN -> SYN/ACK {ms:.3f} ms")
    return Finding("handshake_ack", f"SYN/ACK -> ACK {ms:.3f} ms (iRTT {synack_ms + ms:.3f} ms)")


def _item_ts(item) -> int:
    return item.first_ts_ns if isinstance(item, CollapsedRun) else item.ts_ns


def _merge(items: list, changes: list[StateChange]) -> list:
    """Insert `changes` (sorted) among `items` (capture order) by time, packets first on ties."""
    if not changes:
        return items
    out, i = [], 0
    for item in items:
        while i < len(changes) and changes[i].ts_ns < _item_ts(item):
            out.append(changes[i])
            i += 1
        out.append(item)
    out.extend(changes[i:])
    return out


def time_wait_until(conn: Connection) -> list[tuple[int, int]]:
    """[(side, ns)] for each endpoint still in TIME_WAIT when the record ended: when it runs out
    (`TcpTracker.time_wait_end_ns`)."""
    out: list[tuple[int, int]] = []
    if conn.tcp is None:
        return out
    record_end = conn.end_ts_ns if conn.end_ts_ns is not None else conn.last_ts_ns
    for side in (0, 1):
        end = conn.tcp.time_wait_end_ns(side)
        if end is not None and end > record_end:
            out.append((side, end))
    return out


def select_logs(
    connections: Iterable[Connection], selection, collector: PacketCollector, path: str
) -> Iterator[tuple[Connection, ConnLog]]:
    """Drain a pipeline whose analyzers include `collector`, yielding (connection, log) for each
    connection `selection` (a `flowlens.core.filters.Selection`) keeps, as soon as it ends.

    A ``--uid`` value is a filter like the others (a prefix keeps every connection whose uid
    starts with it, as in `flows`); a selection that keeps nothing yields nothing, and the
    command says so (flowlens.commands._common.nothing_line). `path` is kept for callers that
    name the capture.
    """
    for conn in connections:
        log = collector.log_of(conn)
        if log is not None and selection.matches(conn):
            yield conn, log


def collect(
    connections: Iterable[Connection], selection, collector: PacketCollector, path: str
) -> list[tuple[Connection, ConnLog]]:
    """`select_logs` gathered and ordered by first packet."""
    kept = list(select_logs(connections, selection, collector, path))
    kept.sort(key=lambda pair: (pair[0].first_ts_ns, pair[0].first_frame))
    return kept


def first_packet_filter(selection) -> Callable[[Connection], bool]:
    """The part of a Selection that can be decided on a connection's first packet (everything
    but the end-state filter), as a `wants` predicate for PacketCollector."""
    import dataclasses

    early = dataclasses.replace(selection, states=set())
    return early.matches
