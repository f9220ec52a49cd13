"""Round-trip time samples per connection and direction, measured at the capture point.

`RttCollector` is an analyzer: it keeps a `ConnectionRtt` per connection
(`collector.state_of(conn)`) and turns packets into RTT samples, each a round trip *from the capture point* to one endpoint and
back. Which endpoint is the sample's `leg`:

- leg `resp` (`cap>resp>cap`): the originator's data and the responder's ACK of it, a query and
  its answer; the same path as the handshake's `synack_ms` (SYN -> SYN/ACK).
- leg `orig` (`cap>orig>cap`): the responder's data and the originator's ACK; the path of
  `ackdat_ms` (SYN/ACK -> ACK).

A capture taken at the client sees almost the whole path in leg `resp` and ~0 in leg `orig`; a
capture in the middle splits it; the end-to-end RTT is the sum of the two legs.

Sources of samples (one sample at most per answering packet):

- TCP, `ack`: a data segment and the first ACK covering it, as Wireshark's
  `tcp.analysis.ack_rtt`: the ACK must end exactly at a segment's end (an ACK inside a segment
  acknowledges part of it and is not a sample; the rest gets its sample when it is acked), and the
  sample is taken from the newest segment it covers. Karn's rule (Karn & Partridge 1987, RFC 6298
  §3): an ACK that covers retransmitted sequence space gives no `ack` sample, because it cannot
  tell which copy it answers. Retransmissions are segments below the highest sequence number seen,
  so a hole filled late (loss upstream of the capture point, reordering) counts too; a copy of
  the newest segment within `duplicate_window_s` is the capture seeing one packet twice, not a
  retransmission; a one-byte zero-window probe is not timed (the byte goes again as data); one
  byte at SND.NXT-1 is a keep-alive (not timed, RFC 9293 §3.8.4) only once the peer acknowledged
  it, else it is that byte retransmitted (Karn), as `TcpAnalyzer` says.
- TCP, `ts`: where Karn's rule leaves an ACK without a sample, the timestamps option (RFC 7323
  §4) still says which copy it answers: the TSval of a retransmitted segment, echoed in the TSecr
  of the peer's first packet carrying it, times the round trip from that copy (the duplicate ACK
  that a spurious retransmission draws included). Only retransmissions' TSvals are tracked: for
  other segments the `ack` sample is the same round trip, and reading options on every packet
  would cost as much as the rest of the RTT work together.
- UDP `dns` (ports 53, 5353, 5355): a query and the answer with the same id (decode's
  `Packet.udp_head`). A query sent again with the same id gives no sample (Karn).
- UDP `udp`, any other flow: one datagram from the originator followed by the next datagram
  from the responder within `RttConfig.reply_timeout_s`. Several datagrams before the reply are
  ambiguous and give no sample; streams (RTP, QUIC bulk) give few, noisy samples.
- ICMP `icmp`: an echo request and the reply that follows it, the same rule as `udp`.

RST segments are neither data nor acknowledgement here (an abort is not an answer, and an
injected RST's ACK field is anything); SYN and FIN are timed by the handshake, not here.

Memory is bounded per connection: at most `max_outstanding` unacknowledged segments and
`max_tsvals` TSvals per direction, `max_pending` DNS queries per flow. Samples are kept in full
up to `max_samples` per connection and leg (count, min, max, mean and stdev stay exact beyond
that); past it a uniform reservoir (Vitter's algorithm R, seeded by the uid so runs repeat) keeps
`max_samples` of them for the percentiles and plots, and `kept < count` says so.

Compiled by Cython (pure-Python mode): rtt.pxd makes the per-connection state classes C structs;
the code below is plain Python that also runs uncompiled.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from struct import Struct
from typing import TYPE_CHECKING, Any

import cython

from ..core.analyzer import Analyzer, Needs
from ..core.connections import Connection
from ..core.decode import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
    Packet,
    tcp_timestamps,
)

if not cython.compiled:  # (compiled: cimported in rtt.pxd, inline C)
    from ..core.constants import seq_add, seq_diff, seq_ge, seq_gt

__all__ = [
    "RttConfig",
    "RttCollector",
    "ConnectionRtt",
    "Samples",
    "RttStats",
    "Sample",
    "stats_of",
    "stats_at",
    "percentile_ranks",
    "PERCENTILES",
    "LEGS",
    "PATHS",
    "SOURCES",
]

#: leg index -> name; index = endpoint whose round trip it is (0 originator, 1 responder)
LEGS = ("orig", "resp")
#: where each leg's time was measured
PATHS = ("cap>orig>cap", "cap>resp>cap")
#: sample source codes as stored -> names
SOURCES = ("ack", "ts", "dns", "udp", "icmp")
SRC_ACK, SRC_TS, SRC_DNS, SRC_UDP, SRC_ICMP = range(5)

_ECHO_REQUEST = {IPPROTO_ICMP: 8, IPPROTO_ICMPV6: 128}
#: one sample as the bytes of five array('q') items (native order), for plain Python:
#: `frombytes` of these is several times faster than `extend` with five ints (compiled code
#: writes the items into the array's buffer)
_SAMPLE = Struct("=5q")
#: an empty outstanding-segment buffer (room for 4 segments), copied for each sender in plain
#: Python (compiled, a sender has that room inside it: _Sender._inline)
_SEGMENTS = array("q", bytes(8 * 3 * 4))
_AMBIGUOUS = (-1, -1)  # a request sent again before its answer: Karn's rule


@dataclass(frozen=True, slots=True)
class RttConfig:
    """Bounds of the per-connection state (counts) and the UDP reply window (seconds)."""

    #: unacknowledged data segments tracked per direction (Wireshark: 10000); more are not timed
    max_outstanding: int = 4096
    #: TSvals awaiting their echo per direction; the oldest are dropped first
    max_tsvals: int = 1024
    #: DNS queries awaiting an answer per flow; the oldest are dropped first
    max_pending: int = 256
    #: samples kept per connection and leg; beyond, a reservoir of this size
    max_samples: int = 4096
    #: a UDP/ICMP reply later than this after its request is not its answer
    reply_timeout_s: float = 10.0
    #: the newest segment seen again this soon is the capture duplicating a packet, not a
    #: retransmission (Linux's earliest retransmission timer, the tail loss probe, is >= 2 ms)
    duplicate_window_s: float = 0.0002


@dataclass(frozen=True, slots=True)
class Sample:
    """One round trip: `rtt_ns` from the request (`frame`) to its answer (`answer_frame`), at
    the capture point; `ts_ns` is the answer's time; `leg` the endpoint it went to and back."""

    ts_ns: int
    rtt_ns: int
    frame: int
    answer_frame: int
    source: str
    leg: str

    @property
    def rtt_ms(self) -> float:
        return self.rtt_ns / 1e6


@dataclass(frozen=True, slots=True)
class RttStats:
    """Summary of RTT samples in milliseconds. Percentiles interpolate linearly between ranks
    (numpy's and pandas' default); `stdev_ms` is the sample standard deviation (n - 1), None
    below two samples. `kept` < `count` when the percentiles come from a reservoir."""

    count: int
    min_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    stdev_ms: float | None
    kept: int

    FIELDS = (
        "count", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "stdev_ms", "kept",
    )  # fmt: skip

    def as_dict(self, digits: int | None = 3) -> dict:
        out = {}
        for name in self.FIELDS:
            v = getattr(self, name)
            out[name] = round(v, digits) if digits is not None and isinstance(v, float) else v
        return out


EMPTY_STATS = RttStats(0, None, None, None, None, None, None, None, 0)


#: the percentiles of `RttStats`
PERCENTILES = (50, 90, 99)


def _rank(n: int, p: float) -> tuple[float, int, int]:
    """The fractional rank of percentile `p` among `n` sorted values, and the two ranks around
    it (linear between ranks: numpy's and pandas' default)."""
    rank = p / 100 * (n - 1)
    lo = int(rank)
    return rank, lo, min(lo + 1, n - 1)


def percentile_ranks(n: int) -> list[int]:
    """The ranks (0-based, in sorted order) that `stats_at` reads of `n` kept samples."""
    out: list[int] = []
    for p in PERCENTILES:
        _r, lo, hi = _rank(n, p)
        out += (lo, hi)
    return out


def _percentile(at, n: int, p: float) -> float:
    rank, lo, hi = _rank(n, p)
    below = at(lo)
    return below + (at(hi) - below) * (rank - lo)


def stats_of(
    rtts_ns: Iterable[int],
    count: int | None = None,
    total: int | None = None,
    total_sq: int | None = None,
    lo: int | None = None,
    hi: int | None = None,
) -> RttStats:
    """Summarize RTTs (integer nanoseconds). The optional exact aggregates (`count`, sum,
    sum of squares, min, max) override what the values give, for a reservoir."""
    values = sorted(rtts_ns)
    if count is None:
        if not values:
            return EMPTY_STATS
        count, total, total_sq = len(values), sum(values), sum(v * v for v in values)
        lo, hi = values[0], values[-1]
    return stats_at(values.__getitem__, len(values), count, total, total_sq, lo, hi)


def stats_at(
    at: Any,
    kept: int,
    count: int,
    total: int | None,
    total_sq: int | None,
    lo: int | None,
    hi: int | None,
) -> RttStats:
    """`stats_of` of `kept` samples that are not in memory as one list: `at(rank)` gives the
    sample (ns, an int) at each of `percentile_ranks(kept)` of their sorted order; the exact
    aggregates of all `count` samples as in `stats_of`."""
    if count == 0:
        return EMPTY_STATS
    # (the aggregates come with `count`)
    assert total is not None and total_sq is not None and lo is not None and hi is not None
    stdev = None
    if count > 1:
        # integer arithmetic: exact until the final square root
        var_num = count * total_sq - total * total
        stdev = math.sqrt(max(var_num, 0) / (count * (count - 1))) / 1e6
    return RttStats(
        count=count,
        min_ms=lo / 1e6,
        p50_ms=_percentile(at, kept, 50) / 1e6 if kept else None,
        p90_ms=_percentile(at, kept, 90) / 1e6 if kept else None,
        p99_ms=_percentile(at, kept, 99) / 1e6 if kept else None,
        max_ms=hi / 1e6,
        mean_ms=total / count / 1e6,
        stdev_ms=stdev,
        kept=kept,
    )


def _sum_squares(values) -> int:
    return sum(v * v for v in values)


@cython.cfunc
def _init_samples(s: Samples, cap: cython.longlong, seed: str | int, leg: cython.int) -> None:
    """Set up an empty `Samples` (also for one made by `Samples.__new__`, which skips
    `__init__`: this runs for most connections)."""
    s._data = None  # until a second sample, or until `data` is read
    if not cython.compiled:
        s._first = [0, 0, 0, 0, 0]  # (compiled: a C array)
    s.n = 0
    s.cap = cap
    if not cython.compiled:
        s._src = [0, 0, 0, 0, 0]  # (compiled: a C array, zeroed with the object)
    s._agg = None  # [sum, sum of squares, min, max] once past the cap
    s._rng = None
    s._seed = seed
    s._leg = leg


class Samples:
    """RTT samples of one connection and leg: all of them up to `cap`, then a reservoir.

    Stored flat in an `array('q')`, five integers per sample: answer time (ns), RTT (ns),
    request frame, answer frame, source code (`SOURCES`). The reservoir's random generator is
    seeded by `seed` (or `f"{seed}/{leg}"` when `leg` is given: formatted only if it is needed).
    """

    __slots__ = ("_data", "_first", "n", "cap", "_src", "_agg", "_rng", "_seed", "_leg")
    if TYPE_CHECKING:  # the attributes' types for mypy (rtt.pxd gives the C ones)
        _data: array | None
        _first: list[int]  # (compiled: a C array)
        n: int
        cap: int
        _src: list[int]  # (compiled: a C array)
        _agg: list[int] | None
        _rng: random.Random | None
        _seed: str | int  # (a random.Random seed)
        _leg: int

    def __init__(self, cap: int, seed: str | int = "", leg: int = -1) -> None:
        _init_samples(self, cap, seed, leg)

    @property
    def data(self) -> array:
        """The kept samples, five integers each (see above). Most legs hold one sample: it stays
        in `_first` (C fields when compiled) until a second comes, or until this is read."""
        return _kept(self)

    @property
    def by_source(self) -> list[int]:
        """Samples per source code (`SOURCES`), past the cap too."""
        src = self._src
        return [src[0], src[1], src[2], src[3], src[4]]

    # (a C method when compiled: the annotations match rtt.pxd)
    def add(
        self, ts_ns: cython.longlong, rtt_ns: cython.longlong, frame: cython.longlong,
        answer_frame: cython.longlong, source: cython.int,
    ) -> None:  # fmt: skip
        n: cython.longlong
        k: cython.Py_ssize_t
        p: cython.p_longlong
        d: cpython.array.array  # type: ignore[name-defined]  # (cimported in rtt.pxd)
        n = self.n = self.n + 1
        self._src[source] += 1
        if n <= self.cap:
            if n == 1:
                self._first[0] = ts_ns
                self._first[1] = rtt_ns
                self._first[2] = frame
                self._first[3] = answer_frame
                self._first[4] = source
                if self._data is None:
                    return
            d = _kept(self)
            if cython.compiled:
                # five items written in place (the array holds exactly n - 1 samples)
                k = 5 * (n - 1)
                cpython.array.resize_smart(d, k + 5)  # type: ignore[name-defined]  # (cimported in rtt.pxd)
                p = d.data.as_longlongs + k
                p[0] = ts_ns
                p[1] = rtt_ns
                p[2] = frame
                p[3] = answer_frame
                p[4] = source
            else:
                d.frombytes(_SAMPLE.pack(ts_ns, rtt_ns, frame, answer_frame, source))
            return
        agg = self._agg
        if agg is None:
            rtts = self.data[1::5]
            agg = self._agg = [sum(rtts), _sum_squares(rtts), min(rtts), max(rtts)]
            seed = self._seed if self._leg < 0 else f"{self._seed}/{self._leg}"
            self._rng = random.Random(seed)
        r = rtt_ns  # (a Python int: the square may not fit 64 bits)
        agg[0] += r
        agg[1] += r * r
        if rtt_ns < agg[2]:
            agg[2] = rtt_ns
        if rtt_ns > agg[3]:
            agg[3] = rtt_ns
        assert self._rng is not None  # (made with _agg)
        j = self._rng.randrange(n)
        if j < self.cap:
            self.data[5 * j : 5 * j + 5] = array("q", (ts_ns, rtt_ns, frame, answer_frame, source))

    def __len__(self) -> int:
        return self.n

    @property
    def kept(self) -> int:
        return len(self.data) // 5

    def rtts_ns(self) -> list[int]:
        return list(self.data[1::5])

    def rows(self) -> Iterator[tuple[int, int, int, int, int]]:
        """(answer ts_ns, rtt_ns, frame, answer_frame, source code) in time order."""
        d = self.data
        rows = [tuple(d[i : i + 5]) for i in range(0, len(d), 5)]
        rows.sort()
        return iter(rows)

    def totals(self) -> tuple[int, int, int, int, int]:
        """(count, sum, sum of squares, min, max) of every sample in ns, exact past the cap."""
        if self._agg is None:
            r = self.data[1::5]
            return len(r), sum(r), sum(v * v for v in r), min(r), max(r)
        s, sq, lo, hi = self._agg
        return self.n, s, sq, lo, hi

    def past_cap(self) -> cython.bint:
        """True once more samples came than `cap` (a reservoir, with exact totals)."""
        return self._agg is not None

    def single_rtt_ns(self) -> cython.longlong:
        """The RTT (ns) of the only sample, when there is exactly one (`len(self) == 1`)."""
        return self._first[1]

    def source_count(self, source: cython.int) -> cython.longlong:
        """Samples from source code `source` (`SOURCES`), past the cap too (`by_source`)."""
        return self._src[source]

    def stats(self) -> RttStats:
        if self._agg is None:
            return stats_of(self.data[1::5])
        s, sq, lo, hi = self._agg
        return stats_of(self.data[1::5], self.n, s, sq, lo, hi)


@cython.cfunc
def _kept(s: Samples) -> array:
    """`s.data`: the array of kept samples, made (with the first sample if any) on first use."""
    d = s._data
    if d is None:
        if s.n:  # at most one sample kept so far: the first
            f = s._first
            d = s._data = array("q", (f[0], f[1], f[2], f[3], f[4]))
        else:
            d = s._data = array("q")
    return d


class _Sender:
    """Matching state for the packets one endpoint sends (TCP). Sequence numbers are 0..2**32-1,
    so -1 stands for "none" (C integers when compiled: no None)."""

    __slots__ = (
        # new data not yet acked, oldest first: (end seq, ts_ns, frame) triples in
        # segs[seg_head:seg_tail]; segs holds seg_size integers. Compiled: a C buffer, the
        # object's own room for 4 segments (_inline) until more are in flight, then malloc'ed.
        # Plain Python: an array('q'), or None before the first segment.
        "segs",
        "seg_size",
        "seg_head",
        "seg_tail",
        "nxt",  # highest sequence number sent + 1, or -1 before any
        "karn_start",  # [start, end) of retransmitted sequence space not yet acked,
        "karn_end",  # or -1, -1
        "tsq",  # deque of (tsval, ts_ns, frame) sent with data, awaiting an echo, or None
        "last_tsval",  # newest TSval put in tsq
        "untracked",  # data segments not timed because max_outstanding were in flight
        "zero_window",  # the last packet it sent advertised a zero window
    )
    if TYPE_CHECKING:  # the attributes' types for mypy (rtt.pxd gives the C ones)
        # plain Python: None until the first segment (and read only once there is one);
        # compiled: a C pointer (long long *), never NULL
        segs: array
        seg_size: int
        _inline: list[int]  # (compiled only: a C array)
        seg_head: int
        seg_tail: int
        nxt: int
        karn_start: int
        karn_end: int
        tsq: deque[tuple[int, int, int]] | None
        last_tsval: int | None
        untracked: int
        zero_window: bool

    def __init__(self) -> None:
        _init_sender(self)

    def __dealloc__(self) -> None:  # (compiled only: frees a grown segment buffer)
        if cython.compiled:
            if self.segs != cython.address(self._inline[0]):
                free(self.segs)  # type: ignore[name-defined]  # (cimported in rtt.pxd)


@cython.cfunc
def _init_sender(me: _Sender) -> None:
    """Set up a new `_Sender` (also one made by `_Sender.__new__`, which skips `__init__`)."""
    if cython.compiled:
        me.segs = cython.address(me._inline[0])
        me.seg_size = 12
    else:
        me.segs = None  # type: ignore[assignment]  # (plain Python only: see _Sender's segs)
        me.seg_size = 0
    me.tsq = me.last_tsval = None
    me.seg_head = me.seg_tail = 0
    me.nxt = me.karn_start = me.karn_end = -1
    me.untracked = 0
    me.zero_window = False


@cython.cfunc
def _new_sender() -> _Sender:
    me: _Sender = _Sender.__new__(_Sender)
    _init_sender(me)
    return me


class ConnectionRtt:
    """RTT state of one connection (`RttCollector.state_of(conn)`); index 0/1 = originator/responder.

    `samples[leg]` holds the round trips to that endpoint; `karn_skipped[leg]` counts answers
    from that endpoint that gave no sample because the request had been sent twice. (Both are
    read-only lists made on access; the state itself is in C fields when compiled.)
    """

    __slots__ = (
        "_samples0", "_samples1", "_karn0", "_karn1", "_sender0", "_sender1", "pending", "_cap",
        "_uid",
    )  # fmt: skip
    if TYPE_CHECKING:  # the attributes' types for mypy (rtt.pxd gives the C ones)
        _samples0: Samples | None
        _samples1: Samples | None
        _karn0: int
        _karn1: int
        _sender0: _Sender | None
        _sender1: _Sender | None
        # DNS: {(sender, query id): (ts_ns, frame)}; other UDP and ICMP: (ts_ns, frame) of the
        # request; _AMBIGUOUS either way (see _init_state): one field, typed by the protocol
        pending: Any
        _cap: int
        _uid: str | int  # (the connection's uid: the seed of its Samples)

    def __init__(self, cfg: RttConfig, uid: str) -> None:
        _init_state(self, cfg.max_samples, uid)

    @property
    def samples(self) -> list[Samples | None]:
        return [self._samples0, self._samples1]

    @property
    def karn_skipped(self) -> list[int]:
        return [self._karn0, self._karn1]

    def leg_samples(self, leg: cython.int) -> Samples | None:
        """`samples[leg]` without the list: the leg's samples, or None before its first."""
        return self._samples1 if leg else self._samples0

    def leg_karn_skipped(self, leg: cython.int) -> cython.longlong:
        """`karn_skipped[leg]` without the list."""
        return self._karn1 if leg else self._karn0

    @property
    def senders(self) -> tuple[_Sender, _Sender] | None:
        """(_Sender, _Sender) for TCP, else None."""
        if self._sender0 is None:
            return None
        assert self._sender1 is not None  # (made with _sender0)
        return (self._sender0, self._sender1)

    # (a C method when compiled: the annotations match rtt.pxd)
    def _add(
        self, leg: cython.int, ts_ns: cython.longlong, rtt_ns: cython.longlong,
        frame: cython.longlong, answer_frame: cython.longlong, src: cython.int,
    ) -> None:  # fmt: skip
        s: Samples | None
        s = self._samples1 if leg else self._samples0
        if s is None:
            s = Samples.__new__(Samples)
            _init_samples(s, self._cap, self._uid, leg)  # seed f"{uid}/{leg}"
            if leg:
                self._samples1 = s
            else:
                self._samples0 = s
        s.add(ts_ns, rtt_ns, frame, answer_frame, src)

    @property
    def untracked(self) -> list[int]:
        """Data segments per sender (orig, resp) that were not timed (too many in flight)."""
        if self._sender0 is None:
            return [0, 0]
        assert self._sender1 is not None  # (made with _sender0)
        return [self._sender0.untracked, self._sender1.untracked]

    def stats(self, leg: int | str) -> RttStats:
        """Summary of the round trips to `leg` (0/"orig" or 1/"resp")."""
        s = self._samples1 if _leg_index(leg) else self._samples0
        return s.stats() if s is not None else EMPTY_STATS

    def count(self, leg: int | str, source: str | None = None) -> int:
        s = self._samples1 if _leg_index(leg) else self._samples0
        if s is None:
            return 0
        return s.n if source is None else s.by_source[SOURCES.index(source)]

    def iter_samples(self, leg: int | str | None = None) -> Iterator[Sample]:
        """Kept samples of one leg (or both), in time order."""
        legs = (0, 1) if leg is None else (_leg_index(leg),)
        out: list[Sample] = []
        for i in legs:
            s = self._samples1 if i else self._samples0
            if s is not None:
                out.extend(
                    Sample(t, r, f, af, SOURCES[src], LEGS[i]) for t, r, f, af, src in s.rows()
                )
        out.sort(key=lambda x: (x.ts_ns, x.answer_frame))
        return iter(out)


@cython.cfunc
def _init_state(st: ConnectionRtt, cap: cython.longlong, uid: str | int) -> None:
    """Set up a new `ConnectionRtt` (also one made by `ConnectionRtt.__new__`)."""
    st._samples0 = st._samples1 = None
    st._karn0 = st._karn1 = 0
    st._sender0 = st._sender1 = None
    st.pending = None  # UDP/ICMP: {(sender, id): (ts_ns, frame)} for DNS, else (ts_ns, frame)
    st._cap = cap
    st._uid = uid


def _leg_index(leg: int | str) -> int:
    if isinstance(leg, str):
        return LEGS.index(leg)
    return leg


@cython.cfunc
@cython.locals(
    size=cython.Py_ssize_t, n=cython.Py_ssize_t, head=cython.Py_ssize_t, tail=cython.Py_ssize_t,
    grown=cython.p_longlong,
)  # fmt: skip
def _push_segment(
    me: _Sender, end: cython.longlong, ts: cython.longlong, frame: cython.longlong
) -> None:
    """Queue a new data segment's (end seq, ts_ns, frame), making room in `me.segs` if needed."""
    tail = me.seg_tail
    size = me.seg_size
    if tail == size:
        head = me.seg_head
        n = tail - head
        if cython.compiled:
            if head >= size // 2:
                # the front half is free: move the queue there (segs: a C pointer, and the C
                # functions are cimported in rtt.pxd)
                memmove(me.segs, me.segs + head, n * 8)  # type: ignore[name-defined, operator]
            else:
                grown = cython.cast(cython.p_longlong, malloc(2 * size * 8))  # type: ignore[name-defined]
                if not grown:
                    raise MemoryError()
                memcpy(grown, me.segs + head, n * 8)  # type: ignore[name-defined, operator]
                if me.segs != cython.address(me._inline[0]):
                    free(me.segs)  # type: ignore[name-defined]
                me.segs = grown
                me.seg_size = 2 * size
        elif me.segs is None:
            me.segs = _SEGMENTS[:]  # grown as needed
            me.seg_size = len(_SEGMENTS)
        elif head >= size // 2:
            me.segs[0:n] = me.segs[head:tail]
        else:
            segs = array("q", bytes(8 * 2 * size))
            segs[0:n] = me.segs[head:tail]
            me.segs = segs
            me.seg_size = 2 * size
        me.seg_head = 0
        tail = n
    me.segs[tail] = end
    me.segs[tail + 1] = ts
    me.segs[tail + 2] = frame
    me.seg_tail = tail + 3


@cython.cfunc
def _retransmitted(me: _Sender, seq: cython.longlong, end: cython.longlong) -> None:
    """Sequence space sent before (a retransmission, or a hole filled late): Karn's rule holds
    every ACK covering [seq, end) back from the `ack` samples."""
    if me.karn_start < 0:
        me.karn_start = seq
        me.karn_end = end
    else:
        if seq_gt(me.karn_start, seq):
            me.karn_start = seq
        if seq_gt(end, me.karn_end):
            me.karn_end = end
    if seq_gt(end, me.nxt):
        me.nxt = end


class RttCollector(Analyzer):
    """Analyzer that collects each connection's RTT samples into a `ConnectionRtt`.

    >>> rtt = RttCollector()
    >>> a = analyze("capture.pcap", analyzers=[rtt])   # doctest: +SKIP
    >>> rtt.state_of(a.connections[0]).stats("resp").p50_ms

    Role flips are not followed (`on_flip` is the base's): samples keep the leg they were taken
    in, as they always have.
    """

    __slots__ = (
        "config", "_timeout_ns", "_max_outstanding", "_max_tsvals", "_dup_ns", "_max_samples",
    )  # fmt: skip

    #: reads the TCP options of SYNs only, and every segment's timestamps as numbers: the
    #: pipeline's decoder then copies no option bytes out of the other segments
    needs = Needs.SYN_OPTIONS | Needs.TIMESTAMPS

    def __init__(self, config: RttConfig | None = None) -> None:
        super().__init__()
        self.config = config or RttConfig()
        self._timeout_ns = int(self.config.reply_timeout_s * 1e9)
        self._max_outstanding = self.config.max_outstanding
        self._max_tsvals = self.config.max_tsvals
        self._dup_ns = int(self.config.duplicate_window_s * 1e9)
        self._max_samples = self.config.max_samples

    def state_of(self, conn):  # -> ConnectionRtt | None (cpdef object in the .pxd)
        """The `ConnectionRtt` of `conn`, or None when this collector saw no packet of it."""
        return Analyzer.state_of(self, conn)

    def on_start(self, conn, pkt: Packet):
        """Every connection gets a `ConnectionRtt` (empty until a sample comes)."""
        st: ConnectionRtt = ConnectionRtt.__new__(ConnectionRtt)
        _init_state(st, self._max_samples, conn.uid)
        return st

    # A C method when compiled (`cpdef` in analyzer.pxd): the connection table calls it
    # directly. Python sees the same method, `collector.on_packet(...)`.
    def on_packet(self, conn, pkt: Packet, from_orig: cython.bint) -> None:
        """Take one packet of `conn`."""
        st: ConnectionRtt
        proto: cython.int
        c: Connection = cython.cast(Connection, conn, typecheck=True)  # (C fields when compiled)
        assert c.states is not None  # (the table calls this after on_start)
        st = c.states[self.slot]
        if st is None:
            return  # (the table calls this only with a state; a direct call may not)
        proto = pkt.proto
        if proto == IPPROTO_TCP:
            self._tcp(st, pkt, 0 if from_orig else 1)
        elif proto == IPPROTO_UDP:
            if pkt.udp_head is not None:
                self._dns(st, pkt, 0 if from_orig else 1)
            else:
                self._reply(st, pkt, from_orig, SRC_UDP)
        elif c.orig_p == _ECHO_REQUEST.get(proto):
            self._reply(st, pkt, from_orig, SRC_ICMP)

    # ------------------------------------------------------------------ TCP
    # One function for the per-packet path: it runs for every TCP packet of the capture, and
    # the sequence comparisons are written out (RFC 9293 §3.4 modulo 2**32) for the same reason.
    # (C methods when compiled: the annotations match rtt.pxd)
    @cython.locals(
        me=_Sender, peer=_Sender, flags=cython.int, ts=cython.longlong,
        sampled=cython.bint, ack=cython.longlong, head=cython.Py_ssize_t, tail=cython.Py_ssize_t,
        last=cython.Py_ssize_t, t0=cython.longlong,
        plen=cython.longlong, retransmitted=cython.bint, seq=cython.longlong,
        nxt=cython.longlong, end=cython.longlong,
    )  # fmt: skip
    def _tcp(self, st: ConnectionRtt, pkt: Packet, side: cython.int) -> None:
        flags = pkt.flags
        if flags & TH_RST:
            return
        if st._sender0 is None:
            st._sender0 = _new_sender()
            st._sender1 = _new_sender()
        if side:
            me, peer = st._sender1, st._sender0
        else:
            me, peer = st._sender0, st._sender1
        assert me is not None and peer is not None  # (made together, above)
        ts = pkt.ts_ns
        sampled = False
        if flags & TH_ACK:
            # The ACK field answers the peer's data: the newest segment it covers, if it ends
            # exactly there, is a sample unless retransmitted data is covered too (Karn).
            ack = pkt.ack
            head = peer.seg_head
            tail = peer.seg_tail
            if head < tail and seq_ge(ack, peer.segs[head]):
                # pop every segment the ACK covers; `last` is the newest of them
                last = head
                head += 3
                while head < tail and seq_ge(ack, peer.segs[head]):
                    last = head
                    head += 3
                if head == tail:
                    head = tail = peer.seg_tail = 0  # empty: start again at the front
                peer.seg_head = head
                if peer.segs[last] == ack:
                    t0 = peer.segs[last + 1]
                    if peer.karn_start >= 0 and seq_gt(ack, peer.karn_start):
                        if side:
                            st._karn1 += 1
                        else:
                            st._karn0 += 1
                    elif ts >= t0:  # (a capture clock that went backwards gives none)
                        st._add(side, ts, ts - t0, peer.segs[last + 2], pkt.frame, SRC_ACK)
                        sampled = True
            if peer.karn_end >= 0 and seq_ge(ack, peer.karn_end):
                peer.karn_start = peer.karn_end = -1
        if not pkt.win:
            me.zero_window = True
        elif me.zero_window:
            me.zero_window = False
        plen = pkt.plen
        retransmitted = False
        if plen and not flags & TH_SYN:
            seq = pkt.seq
            nxt = me.nxt
            if plen == 1 and peer.zero_window and seq == nxt:
                pass  # a zero-window probe: the byte is sent again when the window opens
            elif nxt < 0 or seq_ge(seq, nxt):  # new data (maybe after a gap)
                end = me.nxt = seq_add(seq, plen + (1 if flags & TH_FIN else 0))
                if me.seg_tail - me.seg_head < 3 * self._max_outstanding:
                    _push_segment(me, end, ts, pkt.frame)
                else:
                    me.untracked += 1
            elif (
                plen > 1
                or seq_diff(nxt, seq) != 1
                or (me.seg_head < me.seg_tail and me.segs[me.seg_tail - 3] == nxt)
            ):
                # not a keep-alive's garbage byte: one byte at SND.NXT-1 is a keep-alive only
                # once the peer acknowledged it (RFC 9293 §3.8.4), i.e. no segment ending at
                # SND.NXT is still waiting for its ACK; else it is that byte again, and Karn's
                # rule (RFC 6298 §3) gives no sample from the ACK that covers it. The verdict
                # is TcpAnalyzer's (tcpanalysis.py).
                end = seq_add(seq, plen + (1 if flags & TH_FIN else 0))
                tail = me.seg_tail
                if not (
                    end == nxt
                    and me.seg_head < tail
                    and me.segs[tail - 3] == end
                    and ts - me.segs[tail - 2] <= self._dup_ns
                ):  # fmt: skip
                    _retransmitted(me, seq, end)
                    retransmitted = True
                # else: the newest segment again, too soon for any retransmission timer (the
                # capture saw one packet twice: a span port, `-i any` over a bridge)
        elif flags & (TH_SYN | TH_FIN):
            # SYN, SYN + Fast Open data, bare FIN: sequence space, timed by the handshake
            end = seq_add(
                pkt.seq, plen + (1 if flags & TH_SYN else 0) + (1 if flags & TH_FIN else 0)
            )
            if me.nxt < 0 or seq_gt(end, me.nxt):
                me.nxt = end
        if (retransmitted or not sampled and peer.tsq) and (pkt.tsval >= 0 or pkt.raw_options):
            self._timestamps(st, pkt, side, me, peer, sampled, retransmitted)

    def _timestamps(
        self, st: ConnectionRtt, pkt: Packet, side: cython.int, me: _Sender, peer: _Sender,
        sampled: cython.bint, retransmitted: cython.bint,
    ) -> None:  # fmt: skip
        """The `ts` source: TSvals of retransmissions and their echoes (rare: off the main path)."""
        # read by the decoder (Decoder(timestamps=True), as the pipeline asks), else parsed here
        pair = (pkt.tsval, pkt.tsecr) if pkt.tsval >= 0 else tcp_timestamps(pkt.raw_options)
        if pair is not None:
            ts: cython.longlong = pkt.ts_ns
            tsval, tsecr = pair
            q = peer.tsq
            if q and pkt.flags & TH_ACK:
                # an echo of a retransmission's TSval says which copy the ACK answers
                while q and seq_gt(tsecr, q[0][0]):
                    q.popleft()  # never echoed
                if q and q[0][0] == tsecr:
                    _tsval, t0, f0 = q.popleft()
                    if not sampled and ts >= t0:
                        st._add(side, ts, ts - t0, f0, pkt.frame, SRC_TS)
            if retransmitted:
                last = me.last_tsval
                if last is None or seq_gt(tsval, last):
                    q = me.tsq
                    if q is None:
                        q = me.tsq = deque(maxlen=self._max_tsvals)
                    q.append((tsval, ts, pkt.frame))
                    me.last_tsval = tsval

    # ------------------------------------------------------------------ UDP and ICMP
    def _dns(self, st: ConnectionRtt, pkt: Packet, side: cython.int) -> None:
        head = pkt.udp_head
        assert head is not None  # (on_packet's test)
        qid = (head[0] << 8) | head[1]
        pending = st.pending
        if pending is None:
            pending = st.pending = {}
        if not head[2] & 0x80:  # QR = 0: a query
            key = (side, qid)
            if key in pending:
                pending[key] = _AMBIGUOUS
            else:
                if len(pending) >= self.config.max_pending:
                    del pending[next(iter(pending))]
                pending[key] = (pkt.ts_ns, pkt.frame)
            return
        q = pending.pop((1 - side, qid), None)
        if q is None:
            return
        if q is _AMBIGUOUS:
            if side:
                st._karn1 += 1
            else:
                st._karn0 += 1
            return
        if 0 <= pkt.ts_ns - q[0] <= self._timeout_ns:
            st._add(side, pkt.ts_ns, pkt.ts_ns - q[0], q[1], pkt.frame, SRC_DNS)

    def _reply(
        self, st: ConnectionRtt, pkt: Packet, from_orig: cython.bint, src: cython.int
    ) -> None:
        """Request/reply flows: one datagram from the originator, then the responder's."""
        if from_orig:
            if st.pending is None:
                st.pending = (pkt.ts_ns, pkt.frame)
            else:
                st.pending = _AMBIGUOUS
            return
        req = st.pending
        if req is None:
            return
        st.pending = None
        if req is _AMBIGUOUS:
            return
        if 0 <= pkt.ts_ns - req[0] <= self._timeout_ns:
            st._add(1, pkt.ts_ns, pkt.ts_ns - req[0], req[1], pkt.frame, src)
