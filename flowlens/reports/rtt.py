# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""RTT reports: rows per connection and leg, aggregates per server, client or host pair, plots.

Every row says where its time was measured (`path`): `cap>resp>cap` is the round trip from the
capture point to the responder and back (the handshake's SYN -> SYN/ACK, the originator's data
-> its ACK, a query -> its answer), `cap>orig>cap` the round trip to the originator and back
(SYN/ACK -> ACK, the responder's data -> its ACK). Aggregates keep the same two labels (by
server = responder address: its cap>resp>cap leg; by client = originator address: its
cap>orig>cap leg), so a path reads the same in every view. See `flowlens.analyzers.rtt` for how samples are taken.

The rows are plain dicts built without pandas (the per-connection table must stay as cheap as
`flowlens flows`); `samples_frame` gives pandas users every kept sample, and `draw_figure` the
matplotlib figure behind `--plot`.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, MutableSequence, Sequence
from dataclasses import dataclass, field

import cython

from ..analyzers.rtt import (
    LEGS,
    PATHS,
    SOURCES,
    ConnectionRtt,
    RttCollector,
    RttStats,
    Samples,
    percentile_ranks,
    stats_at,
    stats_of,
)
from ..core.connections import Connection, format_addr
from ..core.tcpstate import TcpTracker
from .valuespill import Chain, Column, ValuePool, by_time, order_statistics

__all__ = [
    "CONNECTION_FIELDS",
    "SAMPLE_FIELDS",
    "AGGREGATE_FIELDS",
    "BY_CHOICES",
    "connection_rows",
    "sample_rows",
    "Aggregator",
    "samples_frame",
    "Series",
    "series_for",
    "RttChart",
    "rtt_chart",
    "histogram",
    "draw_figure",
]

BY_CHOICES = ("connection", "server", "client", "pair")

_STATS = ("count", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "stdev_ms", "kept")

#: per connection and leg (`flowlens rtt`)
CONNECTION_FIELDS = (
    "uid", "ts", "proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "leg", "path",
    "handshake_ms", *_STATS, "sources", "karn_skipped",
)  # fmt: skip
#: one RTT sample (`flowlens rtt --samples`); `ts` is the answer's time, frames count from 1
SAMPLE_FIELDS = (
    "uid", "ts", "proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "leg", "path",
    "source", "rtt_ms", "frame", "answer_frame",
)  # fmt: skip
#: per server, client or pair (`flowlens rtt --by ...`)
AGGREGATE_FIELDS = (
    "orig_h", "resp_h", "host", "leg", "path", "conns", "handshakes", "handshake_p50_ms",
    *_STATS, "sources", "karn_skipped",
)  # fmt: skip


def _ms(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@cython.cfunc
@cython.locals(
    x=cython.double, scale=cython.double, y=cython.double, k=cython.longlong, f=cython.double
)
def _round(x: float, scale: float) -> float:
    """round(x, 3) for scale 1e3, round(x, 6) for scale 1e6: the same float, about twice as fast
    (round() with digits goes through a decimal string; a row has up to nine of them).

    round() gives the double nearest to k / scale, k the integer nearest to x * scale (exactly,
    ties to even). y = x * scale is off the exact product by at most half an ulp of y, and a
    fraction of y clearly away from .5 (on the grid of y's ulps, which are powers of two up to
    0.5 below 2**52) leaves no doubt about k; k / scale is then the same correctly rounded
    division. Ties, near-ties, negative and huge values take round() itself.
    """
    y = x * scale
    if 0.0 < y < 4503599627370496.0:  # 2**52 (and not -0.0, which round() keeps)
        k = int(y)
        f = y - k  # exact
        if f < 0.4999:
            return k / scale
        if f > 0.5001:
            return (k + 1) / scale
    return round(x, 3 if scale == 1e3 else 6)


# packed address -> text; a capture has far fewer addresses than connections, and inet_ntop
# twice per row was a good part of the table's cost (bounded: a spoofed flood has many)
_ADDR_TEXT: dict[bytes, str] = {}
_ADDR_CACHE_MAX = 1 << 16


def _addr(addr: bytes) -> str:
    text = _ADDR_TEXT.get(addr)
    if text is None:
        if len(_ADDR_TEXT) >= _ADDR_CACHE_MAX:
            _ADDR_TEXT.clear()
        text = _ADDR_TEXT[addr] = format_addr(addr)
    return text


def _five_tuple(conn: Connection) -> dict:
    return {
        "uid": conn.uid,
        "ts": round(conn.ts, 6),
        "proto": conn.proto_name,
        "id.orig_h": _addr(conn.orig_h),
        "id.orig_p": conn.orig_p,
        "id.resp_h": _addr(conn.resp_h),
        "id.resp_p": conn.resp_p,
    }


def _handshake_leg(conn: Connection, leg: int) -> float | None:
    """The handshake's leg to `leg`: synack_ms (responder) or ackdat_ms (originator)."""
    return conn.synack_ms if leg == 1 else conn.ackdat_ms


# the statistics columns of a leg without samples (stats_of(()).as_dict())
_NO_STATS = (0, None, None, None, None, None, None, None, 0)


@cython.cfunc
@cython.locals(
    sorted_ns=list, p=cython.double, rank=cython.double, lo=cython.Py_ssize_t, hi=cython.Py_ssize_t
)
def _percentile(sorted_ns: list[int], p: float) -> float:
    # the same arithmetic as flowlens.analyzers.rtt's (linear between ranks), so the same floats
    rank = p / 100 * (len(sorted_ns) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(sorted_ns) - 1)
    return sorted_ns[lo] + (sorted_ns[hi] - sorted_ns[lo]) * (rank - lo)


@cython.cfunc
@cython.locals(s=Samples, rtt=cython.longlong)
def _leg_stats(s) -> tuple:
    """`s.stats().as_dict()`'s values (count, min_ms ... stdev_ms, kept; ms rounded to 3
    digits) without the RttStats and dict in between: most legs have one or two samples, and
    this runs for every connection. A reservoir (past the cap) goes the long way."""
    if s.past_cap():
        return tuple(s.stats().as_dict().values())
    if s.n == 1:
        # stats_of with one value: every statistic is that value, no stdev
        rtt = s.single_rtt_ns()
        v = _round(rtt / 1e6, 1e3)
        return 1, v, v, v, v, v, v, None, 1
    values = sorted(s.data[1::5])
    count = len(values)
    if count == 0:
        return _NO_STATS
    # as stats_of: integer sums, exact until the final square root
    total = sum(values)
    var_num = count * sum(v * v for v in values) - total * total
    stdev = math.sqrt(max(var_num, 0) / (count * (count - 1))) / 1e6
    return (
        count, _round(values[0] / 1e6, 1e3), _round(_percentile(values, 50) / 1e6, 1e3),
        _round(_percentile(values, 90) / 1e6, 1e3), _round(_percentile(values, 99) / 1e6, 1e3),
        _round(values[-1] / 1e6, 1e3), _round(total / count / 1e6, 1e3), _round(stdev, 1e3),
        count,
    )  # fmt: skip


_ACK, _TS, _DNS, _UDP, _ICMP = SOURCES


@cython.cfunc
@cython.locals(s=Samples)
def _sources(s) -> dict:
    """{source name: samples} of the sources that gave any (unrolled: one call per leg)."""
    out = {}
    if n := s.source_count(0):
        out[_ACK] = n
    if n := s.source_count(1):
        out[_TS] = n
    if n := s.source_count(2):
        out[_DNS] = n
    if n := s.source_count(3):
        out[_UDP] = n
    if n := s.source_count(4):
        out[_ICMP] = n
    return out


_LEG_ORIG, _LEG_RESP = LEGS
_PATH_ORIG, _PATH_RESP = PATHS


@cython.cfunc
@cython.locals(st=ConnectionRtt, s=Samples, leg=cython.int)
def _leg_row(base: tuple, st, leg, hs) -> dict:
    """The row of one leg (`base`: the connection's columns, from uid to id.resp_p)."""
    if st is None:
        s = None
        karn = 0
    else:
        s = st.leg_samples(leg)
        karn = st.leg_karn_skipped(leg)
    uid, ts, proto, orig_h, orig_p, resp_h, resp_p = base
    if s is None:
        count, lo, p50, p90, p99, hi, mean, stdev, kept = _NO_STATS
        sources = {}
    else:
        count, lo, p50, p90, p99, hi, mean, stdev, kept = _leg_stats(s)
        sources = _sources(s)
    # keys in CONNECTION_FIELDS order
    return {
        "uid": uid, "ts": ts, "proto": proto, "id.orig_h": orig_h, "id.orig_p": orig_p,
        "id.resp_h": resp_h, "id.resp_p": resp_p, "leg": _LEG_RESP if leg else _LEG_ORIG,
        "path": _PATH_RESP if leg else _PATH_ORIG,
        "handshake_ms": None if hs is None else _round(hs, 1e3), "count": count,
        "min_ms": lo, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": hi,
        "mean_ms": mean, "stdev_ms": stdev, "kept": kept, "sources": sources,
        "karn_skipped": karn,
    }  # fmt: skip


@cython.locals(conn=Connection, rtt=RttCollector, st=ConnectionRtt, t=TcpTracker)
def connection_rows(conn: Connection, rtt: RttCollector) -> list[dict]:
    """Rows for one connection: one per leg that has a handshake leg or samples (responder's
    leg first), the samples from `rtt`'s state of it. Empty when the connection gave no round
    trip at all."""
    st = rtt.state_of(conn)
    hs1 = hs0 = None
    if conn.tcp is not None:  # conn.synack_ms and conn.ackdat_ms, from the tracker
        t = conn.tcp
        hs1 = t.synack_ms
        if hs1 is not None:
            hs0 = t.ackdat_ms
    if st is None:
        has1, has0 = hs1 is not None, hs0 is not None
    else:
        has1 = hs1 is not None or st.leg_samples(1) is not None
        has0 = hs0 is not None or st.leg_samples(0) is not None
    if not (has1 or has0):
        return []
    base = (
        conn.uid, _round(conn.first_ts_ns / 1e9, 1e6), conn.proto_name, _addr(conn.orig_h),
        conn.orig_p, _addr(conn.resp_h), conn.resp_p,
    )  # fmt: skip
    if has1 and has0:
        return [_leg_row(base, st, 1, hs1), _leg_row(base, st, 0, hs0)]
    if has1:
        return [_leg_row(base, st, 1, hs1)]
    return [_leg_row(base, st, 0, hs0)]


def sample_rows(conn: Connection, rtt: RttCollector) -> list[dict]:
    """One row per kept sample of `conn` (from `rtt`'s state of it), in time order."""
    st = rtt.state_of(conn)
    if st is None:
        return []
    base = None
    rows = []
    for smp in st.iter_samples():
        if base is None:
            base = _five_tuple(conn)
        row = dict(base)
        leg = LEGS.index(smp.leg)
        row.update(
            ts=round(smp.ts_ns / 1e9, 6), leg=smp.leg, path=PATHS[leg], source=smp.source,
            rtt_ms=round(smp.rtt_ns / 1e6, 6), frame=smp.frame, answer_frame=smp.answer_frame,
        )  # fmt: skip
        rows.append(row)
    return rows


@dataclass(slots=True)
class _Group:
    """Samples of many connections toward one end."""

    #: handshake legs (ms) and kept samples (ns): a group keeps one of each per connection of a
    #: whole capture, so they are columns of the Aggregator's pool, written to its temporary
    #: file past valuespill.SPILL_VALUES in memory (of all groups together)
    handshakes: Column
    rtts: Column
    conns: int = 0
    count: int = 0
    total: int = 0
    total_sq: int = 0
    lo: int | None = None
    hi: int | None = None
    sources: Counter = field(default_factory=Counter)
    karn_skipped: int = 0

    def stats(self) -> RttStats:
        rtts = self.rtts
        if rtts.in_memory():
            if self.count == len(rtts):
                return stats_of(rtts.values)
            return stats_of(rtts.values, self.count, self.total, self.total_sq, self.lo, self.hi)
        # written out: the few ranks the percentiles read, found exactly in bounded memory
        kept = len(rtts)
        at = order_statistics(rtts, percentile_ranks(kept))
        return stats_at(at.__getitem__, kept, self.count, self.total, self.total_sq, self.lo,
                        self.hi)  # fmt: skip

    def handshake_median(self) -> float | None:
        """The median handshake leg (ms), as `_median` of them all."""
        hs = self.handshakes
        if hs.in_memory():
            return _median(hs.values)
        n = len(hs)
        mid = n // 2
        at = order_statistics(hs, (mid - 1, mid) if n % 2 == 0 else (mid,))
        return at[mid] if n % 2 else (at[mid - 1] + at[mid]) / 2


#: the legs each grouping merges: the responder's (1), the originator's (0), or both
_LEGS_BY = {"server": (1,), "client": (0,), "pair": (1, 0)}


class Aggregator:
    """Merge connections' legs into groups: `server` (responder address, its leg), `client`
    (originator address, its leg) or `pair` (both addresses, both legs). Counts, min, max, mean
    and stdev are exact; percentiles come from the kept samples."""

    def __init__(self, by: str, rtt: RttCollector | None) -> None:
        if by not in ("server", "client", "pair"):
            raise ValueError(f"by must be server, client or pair, not {by!r}")
        self.by = by
        self.rtt = rtt  # whose samples are merged (None: only add_parts is used)
        self.groups: dict[tuple, _Group] = {}
        self.pool = ValuePool()  # the groups' columns

    def add(self, conn: Connection) -> None:
        self.add_parts(self.parts(conn))

    def parts(self, conn: Connection) -> list[tuple]:
        """What `conn` adds to its groups, as plain values (a shard of `--jobs` hands them to
        the process that merges: `add_parts` in the order one process would add them)."""
        assert self.rtt is not None, "an Aggregator without an RttCollector only merges parts"
        st = self.rtt.state_of(conn)
        out: list[tuple] = []
        for leg in _LEGS_BY[self.by]:
            hs = _handshake_leg(conn, leg)
            s = st.samples[leg] if st is not None else None
            if hs is None and s is None:
                continue
            key: tuple  # the group: its address(es), then the leg
            if self.by == "server":
                key = (conn.resp_h, leg)
            elif self.by == "client":
                key = (conn.orig_h, leg)
            else:
                key = (conn.orig_h, conn.resp_h, leg)
            karn = st.karn_skipped[leg] if st is not None else 0
            if s is None:
                out.append((key, hs, karn, None, None, None))
            else:
                out.append((key, hs, karn, s.totals(), s.rtts_ns(), list(s.by_source)))
        return out

    def add_parts(self, parts: list[tuple]) -> None:
        pool = self.pool
        added = 0  # (values put in the columns' arrays: the pool checks its budget once)
        for key, hs, karn, totals, rtts, by_source in parts:
            g = self.groups.get(key)
            if g is None:
                g = self.groups[key] = _Group(pool.column("d"), pool.column("q"))
            g.conns += 1
            if hs is not None:
                g.handshakes.values.append(hs)
                added += 1
            g.karn_skipped += karn
            if totals is None:
                continue
            count, total, total_sq, lo, hi = totals
            g.rtts.values.extend(rtts)
            added += len(rtts)
            g.count += count
            g.total += total
            g.total_sq += total_sq
            g.lo = lo if g.lo is None else min(g.lo, lo)
            g.hi = hi if g.hi is None else max(g.hi, hi)
            for i, n in enumerate(by_source):
                if n:
                    g.sources[SOURCES[i]] += n
        if added:
            pool.added(added)

    def rows(self) -> list[dict]:
        """One row per group, ordered by address (and leg: responder first)."""
        out = []
        for key in sorted(self.groups, key=lambda k: (*k[:-1], -k[-1])):
            g = self.groups[key]
            leg = key[-1]
            row: dict[str, object] = {"orig_h": None, "resp_h": None, "host": None}
            if self.by == "pair":
                row["orig_h"], row["resp_h"] = format_addr(key[0]), format_addr(key[1])
            else:
                row["host"] = format_addr(key[0])
            row["path"] = PATHS[leg]
            row["leg"] = LEGS[leg]
            row["conns"] = g.conns
            row["handshakes"] = len(g.handshakes)
            row["handshake_p50_ms"] = _ms(g.handshake_median())
            row.update(g.stats().as_dict())
            row["sources"] = dict(sorted(g.sources.items()))
            row["karn_skipped"] = g.karn_skipped
            out.append({k: row[k] for k in AGGREGATE_FIELDS})
        return out


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def samples_frame(conns: Iterable[Connection], rtt: RttCollector):
    """Every sample `rtt` kept, as a pandas DataFrame (columns of SAMPLE_FIELDS), for scripts:
    `samples_frame(a.connections, rtt).groupby("id.resp_h").rtt_ms.describe()`."""
    import pandas as pd

    rows = [r for c in conns for r in sample_rows(c, rtt)]
    return pd.DataFrame(rows, columns=list(SAMPLE_FIELDS))


# ---------------------------------------------------------------------- plots


@dataclass(slots=True)
class Series:
    """Samples of one plotted line: answer times (epoch s) and RTTs (ms)."""

    label: str
    #: lists, C arrays of doubles, or (the report's lines of a whole capture) valuespill
    #: Columns, written to a temporary file past their budget and read back a block at a time
    ts_s: MutableSequence[float] | Column = field(default_factory=list)
    rtt_ms: MutableSequence[float] | Column = field(default_factory=list)


def series_for(
    conn: Connection, by: str, rtt: RttCollector
) -> list[tuple[str, list[float], list[float]]]:
    """(label, ts_s, rtt_ms) per leg of `conn` for the plot: a line per connection and leg
    (`connection`), per server (`server`, `pair`: the responder leg) or per client (`client`)."""
    st = rtt.state_of(conn)
    if st is None:
        return []
    out = []
    legs: tuple[int, ...]
    if by == "client":
        legs = (0,)
    elif by in ("server", "pair"):
        legs = (1,)
    else:
        legs = (1, 0)
    for leg in legs:
        s = st.samples[leg]
        if s is None:
            continue
        if by == "connection":
            label = f"{conn.uid} {PATHS[leg]}"
        elif by == "client":  # (_addr: the address's text kept, not spelt per connection)
            label = f"{_addr(conn.orig_h)} {PATHS[leg]}"
        else:
            label = f"{_addr(conn.resp_h)} {PATHS[leg]}"
        data = s.data
        ts_ns = data[0::5]
        if _increasing(ts_ns):  # s.rows()' order already (it sorts by time, then the rest)
            out.append((label, [t / 1e9 for t in ts_ns], [r / 1e6 for r in data[1::5]]))
            continue
        rows = list(s.rows())
        out.append((label, [r[0] / 1e9 for r in rows], [r[1] / 1e6 for r in rows]))
    return out


@cython.cfunc
@cython.locals(i=cython.Py_ssize_t)
def _increasing(values) -> cython.bint:
    """Each of `values` larger than the one before (no two equal)."""
    for i in range(1, len(values)):  # noqa: SIM110 (a C loop: no generator per leg)
        if values[i - 1] >= values[i]:
            return False
    return True


#: samples from which a line is put in time order by numpy (a stable argsort: the same order
#: as sorted()'s, 8 bytes an index where sorted() holds an int and a float key per sample)
_ARGSORT_AT = 1 << 16


def _by_time(s: Series) -> Series:
    """A copy of `s` in time order (a server's line gathers samples of many connections), its
    values in C arrays of doubles (a long capture's line holds every sample of a server)."""
    n = len(s.ts_s)
    if n < _ARGSORT_AT:
        order = sorted(range(n), key=s.ts_s.__getitem__)
        return Series(
            s.label,
            array("d", [s.ts_s[i] for i in order]),
            array("d", [s.rtt_ms[i] for i in order]),
        )
    import numpy as np  # (a line this long: numpy is loaded by then, for the states chart)

    ts = np.asarray(s.ts_s, dtype=np.float64)
    index = np.argsort(ts, kind="stable")
    rtt = np.asarray(s.rtt_ms, dtype=np.float64)
    return Series(s.label, array("d", ts[index].tobytes()), array("d", rtt[index].tobytes()))


@dataclass(slots=True)
class RttChart:
    """What the RTT chart draws (`draw_figure` with matplotlib, `svg_charts.rtt_svg` as SVG)."""

    #: the lines, in time order: the `max_lines` largest series, then "other (N)"
    shown: list[Series]
    #: the last of `shown` merges the series past `max_lines`: points, no line
    merged_other: bool
    t0: float  # epoch seconds of the first sample: x is seconds since it
    values: Sequence[float]  # every sample (ms): a C array of doubles
    #: samples spread over more than 100x (LAN to satellite): both axes' RTT on log scales
    wide: bool
    #: the histogram's bin edges (ms) over the samples (positive ones when `wide`), [] without
    bins: list[float]

    @property
    def hist_values(self) -> Iterable[float]:
        if not self.wide:
            return self.values
        if isinstance(self.values, Chain):
            return Chain(self.values.parts, positive=True)
        return array("d", [v for v in self.values if v > 0])


def _spilled_by_time(label: str, series: Sequence[Series]) -> Series:
    """The samples of `series` (some of them `valuespill.Column`s), one after the other, in
    time order as `_by_time` orders them, in bounded memory (valuespill.by_time, an external
    merge sort, into two new columns of the same pool)."""
    pool = next(s.ts_s.pool for s in series if isinstance(s.ts_s, Column))
    sources = []
    for s in series:
        ts, rtt = s.ts_s, s.rtt_ms
        if not isinstance(ts, Column):  # (a line of a few samples in memory: as columns)
            ts, rtt = pool.column("d"), pool.column("d")
            ts.extend(s.ts_s)
            rtt.extend(s.rtt_ms)
        assert isinstance(rtt, Column)
        sources.append((ts, rtt))
    ts_col, rtt_col = by_time(sources, pool)
    return Series(label, ts_col, rtt_col)


def rtt_chart(series: Sequence[Series], max_lines: int = 12) -> RttChart:
    """RTT over time (the `max_lines` largest series, the rest merged into "other") and the
    histogram's bins: at most 60, about four samples each; log-spaced when `wide`; one value
    is one bar a tenth of it wide. Series whose samples are `valuespill.Column`s (the report's
    lines of a long capture, written to its temporary file) are ordered and read back a block
    at a time, and `values` is then a `valuespill.Chain` of them."""
    ordered = sorted(series, key=lambda s: (-len(s.rtt_ms), s.label))
    spilled = any(isinstance(s.ts_s, Column) for s in ordered)
    shown = [
        _spilled_by_time(s.label, [s]) if isinstance(s.ts_s, Column) else _by_time(s)
        for s in ordered[:max_lines]
    ]
    rest = ordered[max_lines:]
    if rest:
        label = f"other ({len(rest)})"
        if spilled and any(isinstance(s.ts_s, Column) for s in rest):
            shown.append(_spilled_by_time(label, rest))
        else:
            other = Series(label, array("d"), array("d"))
            for s in rest:
                other.ts_s.extend(s.ts_s)
                other.rtt_ms.extend(s.rtt_ms)
            shown.append(_by_time(other))
    t0 = min((s.ts_s[0] for s in shown if s.ts_s), default=0.0)
    values: Sequence[float]
    if spilled:
        values = Chain([s.rtt_ms for s in shown])  # type: ignore[assignment]
    else:
        values = array("d")
        for s in shown:
            values.extend(s.rtt_ms)  # type: ignore[attr-defined]
    # the smallest and largest positive samples (no list of them: a long capture has millions)
    pos_lo = min((v for v in values if v > 0), default=None)
    pos_hi = max((v for v in values if v > 0), default=None)
    # RTTs of one capture can span LAN (0.05 ms) to satellite (600 ms): log scales then
    wide = pos_lo is not None and pos_hi is not None and pos_hi / pos_lo > 100
    bins: list[float] = []
    if values:
        n_bins = min(60, max(5, len(values) // 4))
        if wide:
            assert pos_lo is not None and pos_hi is not None
            lo, hi = pos_lo, pos_hi
            bins = [lo * (hi / lo) ** (i / n_bins) for i in range(n_bins + 1)]
        elif max(values) == min(values):
            half = abs(values[0]) * 0.05 or 0.05
            bins = [values[0] - half, values[0] + half]
        else:
            lo, hi = min(values), max(values)
            bins = [lo + (hi - lo) * i / n_bins for i in range(n_bins + 1)]
    return RttChart(shown, bool(rest), t0, values, wide, bins)


def histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """Samples per bin of `edges` (numpy's and matplotlib's rule: [a, b), the last bin closed)."""
    import bisect

    counts = [0] * max(len(edges) - 1, 0)
    if not counts:
        return counts
    lo, hi = edges[0], edges[-1]
    for v in values:
        if v < lo or v > hi:
            continue
        i = min(bisect.bisect_right(edges, v) - 1, len(counts) - 1)
        counts[i] += 1
    return counts


def draw_figure(series: Sequence[Series], title: str = "", max_lines: int = 12):
    """RTT over time (one marker line per series, the `max_lines` largest; the rest merged into
    "other") above a histogram of every sample (`rtt_chart`). Both axes start at 0 (seconds,
    and ms on a linear scale) and the histogram counts in whole samples, so one sample reads as
    one point and one bar, not as a point at -0.05 s with 0.2-sample ticks. Returns the
    matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    chart = rtt_chart(series, max_lines)
    shown, t0, values, wide = chart.shown, chart.t0, chart.values, chart.wide
    fig = Figure(figsize=(10, 7), layout="constrained")
    ax_time, ax_hist = fig.subplots(2, 1, height_ratios=(3, 2))
    for s in shown:
        merged = chart.merged_other and s is shown[-1]  # "other": many connections, no line
        ax_time.plot(
            [t - t0 for t in s.ts_s], s.rtt_ms, marker=".", linestyle="none" if merged else "-",
            linewidth=0.6, label=s.label,
        )  # fmt: skip
    ax_time.set_xlabel("seconds since the first sample")
    ax_time.set_ylabel("RTT at the capture point (ms)")
    ax_time.set_title(title or "RTT over time")
    span = max((t - t0 for s in shown for t in s.ts_s), default=0.0)
    ax_time.set_xlim(0, span * 1.02 if span > 0 else 1.0)
    if wide:
        ax_time.set_yscale("log")
    elif values:
        top = max(values)
        ax_time.set_ylim(0, top * 1.1 if top > 0 else 1.0)
    if shown:
        ax_time.legend(fontsize="small", loc="upper right")
    if values:
        ax_hist.hist(chart.hist_values, bins=chart.bins)
        if wide:
            ax_hist.set_xscale("log")
        elif len(chart.bins) == 2 and max(values) == min(values):
            ax_hist.set_xlim(0, values[0] * 2 if values[0] > 0 else 1.0)
    ax_hist.set_xlabel("RTT (ms)")
    ax_hist.set_ylabel("samples")
    ax_hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_hist.set_title(f"{len(values)} sample{'' if len(values) == 1 else 's'}")
    return fig
