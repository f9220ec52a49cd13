# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""Findings about hosts and ports rather than one connection: SYN floods here, port scans
(scans.py), TIME_WAIT accumulation and ephemeral port exhaustion (port_findings.py). Used by
`flowlens.analyzers.anomalies.detector`: `HostFacts` collects what they need from every
finished connection (a client port's hold as bytes: `_hold_of`) and makes them at the end.
"""

from __future__ import annotations

from array import array
from collections import defaultdict

import cython

from ...core.connections import Connection
from ...core.decode import IPPROTO_TCP
from ...core.pipeline import flow_owner
from ...core.tcpstate import TcpTracker
from .detector import _ATTEMPT, _HOLDS, _PROBE, Anomaly, _ep, _s, _sample, _secs
from .holds import HOLD, HoldGroup
from .port_findings import port_group
from .scans import ProbeSlot, answer_part, probe_of, scan_findings

__all__ = ["HostFacts"]

#: a hold as HostFacts.parts hands it over: the HOLD integers of a hold (holds.py),
#: then the TIME_WAIT length and the watermark (`_hold_of`)
_HOLD_PART = HOLD + 2
#: where in a hold's part: its start, the TIME_WAIT length, the watermark
_START, _PORT, _TIME_WAIT, _WATERMARK = 0, 2, HOLD, HOLD + 1


class HostFacts:
    """What the host- and port-level findings need, a few numbers per connection.

    `parts(conn, st, out)` for every finished connection, where it was read, and `take` of
    each entry, in the one-process order; `findings(claimed, end_ns)` at the end puts the
    uids a scan or a flood explains into `claimed`.
    """

    def __init__(self, th, answers: bool = False, shards: int = 1, first: int = -1) -> None:
        self.th = th
        #: the parts come from this many hash shards (AnomalyDetector.from_shards): a hold's
        #: watermark says nothing of the other shards' connections of its group
        self.shards = shards
        #: ... shard 0 owning this many of the hash's slots (-1: an even share)
        self.first = first
        #: (client, server, (port, proto)) -> what answered its connections with data, the best
        #: seen: (rank, service or None, responder facts or None, uid); None: no detection runs,
        #: so nothing is said of what answered
        self.answers: dict[tuple, tuple] | None = {} if answers else None
        #: how long TIME_WAIT lasts, s (the connections' trackers say: 2 x MSL of the table's
        #: Config), for the findings' text; None until a TCP connection was added
        self.time_wait_s: float | None = None
        # (scanner, target host, (port, proto)) -> its probes: the first one as it came,
        # (verdict, ts_ns, uid, frame, scan type, arrival number), a tuple of atoms (a flood of
        # one-packet "connections" costs the garbage collector nothing); from the second on, a
        # ProbeSlot, so that a client connecting to one port a million times keeps one entry,
        # not a million (the uid only when a finding might name the connection: see
        # AnomalyDetector.parts)
        self.probes: dict[tuple, tuple | ProbeSlot] = {}
        self._arrivals = 0
        # (server host, port) -> [(ts_ns, client host, answered by SYN/ACK, uid, frame)]
        self.attempts: defaultdict[tuple, list[tuple]] = defaultdict(list)
        # (client host, server host, port) -> the holds of its connections, summed up as they
        # come (holds.py): no object per connection, and the holds themselves only until the
        # watermark that comes with them lets them be swept
        self.holds: dict[tuple, HoldGroup] = {}

    @cython.locals(c=Connection, t=TcpTracker, out=list)
    def parts(self, c, st, out: list, watermark: int) -> None:
        """Append to `out` what finished connection `c` (its TcpaState `st`, or None) gives
        these findings, read from `c` alone: (kind, key, item) entries (a scan probe, a failed
        attempt, what answered it, its client port's hold) of atoms, bytes and tuples, which
        pickle, for `take` here or in the process that merges `--jobs` shards
        (AnomalyDetector.parts). `watermark`: no connection of `c`'s host pair that is still
        open or yet to start began before it (holds.OpenStarts.done), carried in the hold."""
        p = probe_of(c, st)
        if p is not None:
            kind, verdict, side = p
            src = c.orig_h if side == 0 else c.resp_h
            dst, dport = (c.resp_h, c.resp_p) if side == 0 else (c.orig_h, c.orig_p)
            out.append(
                (_PROBE, None,
                 (src, dst, (dport, c.proto_name), verdict, c.first_ts_ns, c.uid, c.first_frame,
                  kind))
            )  # fmt: skip
        if c.proto != IPPROTO_TCP:
            return
        t = c.tcp
        if not t.syns_sent(0):
            return
        if (
            self.answers is not None
            and t.handshake_acked
            and (c.payload_sent(0) or c.payload_sent(1))
        ):
            out.append(answer_part(c))
        if not t.handshake_acked and not t.rejected:
            out.append(
                (_ATTEMPT, (c.resp_h, c.resp_p),
                 (c.first_ts_ns, c.orig_h, bool(t.synacks_sent(1)), c.uid, c.first_frame))
            )  # fmt: skip
        if not c.originator_inferred:
            end = c.end_ts_ns if c.end_ts_ns is not None else c.last_ts_ns
            out.append((_HOLDS, (c.orig_h, c.resp_h, c.resp_p), _hold_of(c, end, watermark)))

    def take(self, kind: int, key, item) -> None:
        """Take in one entry `parts` made. Connections come in the order one pipeline gives
        them: the groups' order is the findings' order where their sort ties."""
        if kind == _HOLDS:
            group = self.holds.get(key)
            if group is None:
                group = self.holds[key] = HoldGroup(self.th.evidence_max, self.shards)
                time_wait_ns = _hold_field(item, _TIME_WAIT)
                if self.time_wait_s is None and time_wait_ns >= 0:
                    self.time_wait_s = time_wait_ns / 1e9
            _hold_into(group.pending, item)
            # (shards hash the 5-tuple: a group's connections are in every shard)
            shard = 0
            if self.shards > 1:
                client, server, sport = key
                shard = flow_owner(
                    client, server, _hold_field(item, _PORT), sport, 6, self.shards, self.first
                )
            group.arrived(_hold_field(item, _START), _hold_field(item, _WATERMARK), shard)
        elif kind == _PROBE:
            src, dst, port, verdict, ts, uid, frame, scan_type = item
            where = (src, dst, port)
            seen = self._arrivals
            self._arrivals = seen + 1
            slot = self.probes.get(where)
            if slot is None:
                self.probes[where] = (verdict, ts, uid, frame, scan_type, seen)
                return
            if isinstance(slot, tuple):
                slot = self.probes[where] = ProbeSlot(*slot)
            slot.add(verdict, ts, uid, frame, scan_type, seen, 4 * self.th.evidence_max)
        elif kind == _ATTEMPT:
            self.attempts[key].append(item)
        else:  # _ANSWER: a port spoken to several times keeps the best answer
            assert self.answers is not None, "parts makes _ANSWER entries only with answers kept"
            best = self.answers.get(key)
            if best is None or item[0] > best[0]:
                self.answers[key] = item

    def findings(self, claimed: set, end_ns: int) -> list[Anomaly]:
        out = scan_findings(self.probes, self.th, claimed, self.answers)
        out.extend(_floods(self.attempts, self.th, claimed))
        for (client, server, sport), group in self.holds.items():
            if group.count() > 1:
                group.finish(end_ns)
                out.extend(port_group(client, server, sport, group, self.th, self.time_wait_s))
        return out


def _floods(attempts, th, claimed: set) -> list[Anomaly]:
    window_ns = int(th.syn_flood_window_s * 1e9)
    out = []
    for (host, port), group in attempts.items():
        if len(group) < th.syn_flood_min:
            continue
        group = [g for g in group if g[3] not in claimed]  # scan probes are not a flood
        if len(group) < th.syn_flood_min:
            continue
        group.sort()
        times = [g[0] for g in group]
        best, best_at, j = 0, 0, 0
        for i, t in enumerate(times):
            while t - times[j] >= window_ns:
                j += 1
            if i - j + 1 > best:
                best, best_at = i - j + 1, j
        if best < th.syn_flood_min:
            continue
        sources = {g[1] for g in group}
        answered = sum(1 for g in group if g[2])
        rate = best / th.syn_flood_window_s
        span_s = max((times[-1] - times[0]) / 1e9, 1e-9)
        severity = "critical" if best >= 10 * th.syn_flood_min else "warning"
        answer = (
            f"the server answered {answered} with SYN/ACK and none completed"
            if answered
            else "the server answered none of them"
        )
        # the rate over the window only where the flood lasted longer than it: 300 SYNs sent
        # in 7 ms are 300 in their one-second window, but "peaking at 300/s" would understate
        # them by a hundredfold
        if span_s > th.syn_flood_window_s:
            during = (
                f"in {_secs(span_s)} ({best:,} within the busiest {_secs(th.syn_flood_window_s)}"
            )
        elif span_s >= 0.001:
            during = f"in {_secs(span_s)} ({len(group) / span_s:,.0f}/s"
        else:
            during = "in under 1 ms (at once"
        summary = (
            f"SYN flood toward {_ep(host, port)}: "
            f"{_s(len(group), 'half-open connection attempt')} from "
            f"{_s(len(sources), 'source')} {during}; {answer})."
        )
        claimed.update(g[3] for g in group)
        out.append(
            Anomaly(
                "syn_flood",
                severity,
                times[best_at] / 1e9,
                None,
                summary,
                _sample(
                    (g[4] for g in group[best_at : best_at + th.evidence_max]), th.evidence_max
                ),
                {
                    "target": _ep(host, port),
                    "attempts": len(group),
                    "sources": len(sources),
                    "peak_per_s": round(rate, 1),
                    "mean_per_s": round(len(group) / span_s, 1),
                    "duration_s": round(span_s, 3),
                    "synack_answered": answered,
                },
            )
        )
    return out


# ---------------------------------------------------------------------------- TIME_WAIT and ports
@cython.locals(
    c=Connection, t=TcpTracker, until=cython.longlong, first=cython.longlong,
    open_end=cython.longlong, tw0_a=cython.longlong, tw0_b=cython.longlong,
    tw1_a=cython.longlong, tw1_b=cython.longlong, reused=cython.longlong,
    time_wait=cython.longlong, hold=bytes, p=cython.p_longlong, w=cython.longlong,
)  # fmt: skip
def _hold_of(c, end_ns: int, watermark: int) -> bytes:
    """The client port's hold by connection `c` (whose record ended at `end_ns`), as the
    bytes of _HOLD_PART native 64-bit integers: the HOLD of a hold (port_findings.py), then
    the tracker's TIME_WAIT length in ns (-1: none) and `watermark`. Bytes, not a tuple: no Python number per
    field (this runs for every TCP connection), and a small pickle for `--jobs`.

    The tracker answers (`TcpTracker.time_wait_spell`, `held_until_ns`: the rule of
    `TcpTracker.spans`): each side's TIME_WAIT spell, cut short on reuse; the client's port is
    held until its TIME_WAIT ends, or until the client side closed without one (its last state
    change), or gave up on a timer (an attempt's SYN retries spent), else to the end of the
    record."""
    t = c.tcp
    open_end = end_ns if end_ns > c.last_ts_ns else c.last_ts_ns
    tw0_a = tw0_b = tw1_a = tw1_b = -1
    spell = t.time_wait_spell(0)
    if spell is not None:
        tw0_a = spell[0]
        tw0_b = end_ns if spell[1] is None else spell[1]
    spell = t.time_wait_spell(1)
    if spell is not None:
        tw1_a = spell[0]
        tw1_b = end_ns if spell[1] is None else spell[1]
    until = t.held_until_ns(0, open_end)
    first = c.first_ts_ns
    if until < first:
        until = first
    reused = 1 if c.prev_uid is not None and c.reused_in_time_wait else 0
    time_wait = -1 if t.time_wait_ns is None else t.time_wait_ns
    w = watermark
    if cython.compiled:
        hold = cpython.bytes.PyBytes_FromStringAndSize(cython.NULL, _HOLD_PART * 8)  # type: ignore[name-defined]  # (cimported in host_findings.pxd)
        p = cython.cast(cython.p_longlong, cpython.bytes.PyBytes_AS_STRING(hold))  # type: ignore[name-defined]  # (cimported in host_findings.pxd)
        p[0], p[1], p[2], p[3], p[4] = first, until, c.orig_p, tw0_a, tw0_b
        p[5], p[6], p[7], p[8], p[9] = tw1_a, tw1_b, reused, c.first_frame, time_wait
        p[10] = w
        return hold
    return array(
        "q",
        (first, until, c.orig_p, tw0_a, tw0_b, tw1_a, tw1_b, reused, c.first_frame, time_wait, w),
    ).tobytes()


@cython.locals(hold=bytes, i=cython.Py_ssize_t)
def _hold_field(hold, i) -> int:
    """Integer `i` of what `_hold_of` put in `hold` (_START, _TIME_WAIT, _WATERMARK)."""
    if cython.compiled:
        return cython.cast(cython.p_longlong, cpython.bytes.PyBytes_AS_STRING(hold))[i]  # type: ignore[name-defined]  # (cimported in host_findings.pxd)
    return array("q", hold)[i]


@cython.locals(i=cython.Py_ssize_t, k=cython.Py_ssize_t, p=cython.p_longlong, q=cython.p_longlong)
def _hold_into(holds, hold: bytes) -> None:
    """Append `hold` (from `_hold_of`) to `holds`, a HoldGroup's pending array; compiled, in
    place."""
    if cython.compiled:
        k = len(holds)
        cpython.array.resize_smart(holds, k + HOLD)  # type: ignore[name-defined]  # (cimported in host_findings.pxd)
        p = holds.data.as_longlongs + k
        q = cython.cast(cython.p_longlong, cpython.bytes.PyBytes_AS_STRING(hold))  # type: ignore[name-defined]  # (cimported in host_findings.pxd)
        for i in range(HOLD):
            p[i] = q[i]
    else:
        holds.frombytes(hold[: HOLD * 8])
