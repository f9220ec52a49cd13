# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""Findings about single connections: ICMP errors that quote them, retransmissions, zero
windows and keep-alives (from the per-segment analysis in `flowlens.analyzers.tcpanalysis`). Used by
`flowlens.analyzers.anomalies.detector`."""

from __future__ import annotations

from collections import defaultdict

from ...core.connections import Connection, format_addr
from .detector import Anomaly, Thresholds, _ep, _s, _sample, _secs

__all__ = [
    "icmp_error_name",
    "is_port_unreachable",
    "icmp_finding",
    "rst_ignored_finding",
    "segment_findings",
]


_ICMP4_UNREACH = {
    0: "net unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
    5: "source route failed",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    13: "communication administratively prohibited",
}
_ICMP6_UNREACH = {
    0: "no route",
    1: "administratively prohibited",
    2: "beyond scope",
    3: "address unreachable",
    4: "port unreachable",
    5: "source address failed policy",
    6: "reject route",
}


def icmp_error_name(v6: bool, itype: int, code: int) -> str:
    """Human name of an ICMP/ICMPv6 error (RFC 792, RFC 4443)."""
    if v6:
        names = {
            1: ("unreachable", _ICMP6_UNREACH),
            2: ("packet too big", {}),
            3: ("time exceeded", {}),
            4: ("parameter problem", {}),
        }
    else:
        names = {
            3: ("unreachable", _ICMP4_UNREACH),
            11: ("time exceeded", {}),
            12: ("parameter problem", {}),
            4: ("source quench", {}),
            5: ("redirect", {}),
        }
    base, codes = names.get(itype, (f"type {itype}", {}))
    if base == "unreachable":
        return codes.get(code, f"unreachable (code {code})")
    return base if not code else f"{base} (code {code})"


def is_port_unreachable(v6: bool, itype: int, code: int) -> bool:
    return (itype, code) == ((1, 4) if v6 else (3, 3))


def _is_pmtu(v6: bool, itype: int, code: int) -> bool:
    """ICMPv6 packet too big, ICMP fragmentation needed (RFC 8201, RFC 1191)."""
    return itype == 2 if v6 else (itype, code) == (3, 4)


def icmp_finding(c: Connection, th: Thresholds) -> Anomaly:
    """icmp_unreachable: the ICMP errors quoting one flow."""
    v6 = len(c.orig_h) == 16
    errs = c.icmp_errors
    assert errs is not None  # (the detector calls it for a flow with ICMP errors)
    kinds: defaultdict[str, int] = defaultdict(int)  # error name -> errors
    reporters: set[bytes] = set()
    for _ts, _frame, itype, code, reporter in errs:
        kinds[icmp_error_name(v6, itype, code)] += 1
        reporters.add(reporter)
    text = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(kinds.items()))
    by = ", ".join(sorted(format_addr(r) for r in reporters))
    closed = all(is_port_unreachable(v6, e[2], e[3]) for e in errs)
    # the error answers a datagram sent toward its reporter, or past it (a router)
    back = reporters == {c.orig_h}
    (sh, sp), (dh, dp) = (
        ((c.resp_h, c.resp_p), (c.orig_h, c.orig_p))
        if back
        else ((c.orig_h, c.orig_p), (c.resp_h, c.resp_p))
    )
    proto = c.proto_name.upper()
    pmtu = all(_is_pmtu(v6, e[2], e[3]) for e in errs)
    if closed:
        hint = f": nothing listens on {proto} port {dp} of {format_addr(dh)}" + (
            " (the answer came after the client gave up)" if back else ""
        )
    elif pmtu:
        hint = ": the path MTU is smaller than these packets (path MTU discovery)"
    elif all(e[2] == (3 if v6 else 11) for e in errs):
        hint = ": the TTL ran out on the way (a routing loop, or traceroute)"
    else:
        hint = ": the path or a firewall rejected it"
    summary = f"{by} answered {proto} {_ep(sh, sp)} -> {_ep(dh, dp)} with ICMP {text}{hint}."
    return Anomaly(
        "icmp_unreachable",
        "info" if pmtu else "warning",
        errs[0][0] / 1e9,
        c.uid,
        summary,
        _sample([c.first_frame] + [e[1] for e in errs], th.evidence_max),
        {
            "flow": f"{_ep(sh, sp)} -> {_ep(dh, dp)}",
            "proto": c.proto_name,
            "errors": dict(kinds),
            "reporters": sorted(format_addr(r) for r in reporters),
            "port_unreachable": closed,
        },
    )


def rst_ignored_finding(c: Connection, th: Thresholds) -> Anomaly:
    """rst_ignored: a RST its receiver would not accept (not acknowledging the SYN in
    SYN_SENT, RFC 9293 §3.10.7.3; outside the receive window in a synchronized state,
    RFC 9293 §3.10.7.4 and RFC 5961 §3), after which the connection went on: what a blind or
    injected RST (a middlebox, an attacker guessing sequence numbers) looks like."""
    t = c.tcp
    assert t is not None and t.rst_ignored is not None  # (called for an ignored RST)
    ts, frame, side, why = t.rst_ignored
    src, dst = (
        (_ep(c.orig_h, c.orig_p), _ep(c.resp_h, c.resp_p))
        if side == 0
        else (_ep(c.resp_h, c.resp_p), _ep(c.orig_h, c.orig_p))
    )
    ignored = [n for n in t.notes if n[3] == "rst_ignored"]
    summary = (
        f"{_s(len(ignored), 'RST')} claiming to come from {src} reached {dst} and "
        f"{'was' if len(ignored) == 1 else 'were'} not acceptable ({why}), and the connection "
        f"went on (frame {t.rst_ignored_then}): a blind or injected RST, not a close by {src}."
    )
    return Anomaly(
        "rst_ignored",
        "warning",
        ts / 1e9,
        c.uid,
        summary,
        _sample([n[1] for n in ignored] + [t.rst_ignored_then], th.evidence_max),
        {
            "sender": src,
            "receiver": dst,
            "rsts": len(ignored),
            "reason": why,
            "went_on_frame": t.rst_ignored_then,
        },
    )


# ---------------------------------------------------------------------------- segments
def segment_findings(c: Connection, st, th: Thresholds, end_ns: int) -> list[Anomaly]:
    """retransmissions and zero_window per direction, keep_alive per connection, of `c` (`st`:
    its TcpaState).

    `end_ns`: when the record ended (a window still closed then counts as closed until it)."""
    out = []
    ka_total = 0
    ka_frames = []
    ka_first = None
    for side in (0, 1):
        d = st.dirs[side]
        src = _ep(c.orig_h, c.orig_p) if side == 0 else _ep(c.resp_h, c.resp_p)
        dst = _ep(c.resp_h, c.resp_p) if side == 0 else _ep(c.orig_h, c.orig_p)
        peer = st.dirs[1 - side]
        # SYN retries are unanswered_syn's business; FIN retries are counted apart (no data)
        fins = d.retrans_fin
        # what was really sent again: Wireshark's three retransmission kinds and the segments
        # it calls out-of-order that their TSval shows were sent after the segments beyond
        # their hole (RFC 7323 §3; tcpanalysis.py `resent_ooo`): the rate counts both
        resent = d.resent_ooo
        data_retrans = d.retrans_segments - d.retrans_syn - fins + resent
        ooo = d.count("out_of_order") - resent
        if data_retrans + ooo + fins >= th.retrans_min:
            rate = data_retrans / max(d.data_segments, 1)
            counts = {
                "retransmission": d.count("retransmission") - d.retrans_syn - fins,
                "fin_retransmission": fins,
                "fast_retransmission": d.count("fast_retransmission"),
                "spurious_retransmission": d.count("spurious_retransmission"),
                "resent_out_of_order": resent,
                "out_of_order": ooo,
                "lost_segment": d.count("lost_segment"),
                "dup_acks_received": peer.count("dup_ack"),
            }
            names = (
                ("retransmission", "by timeout"),
                ("fast_retransmission", "fast"),
                ("spurious_retransmission", "spurious"),
                ("resent_out_of_order", "filling a hole after later segments (TSval)"),
            )
            parts = [f"{counts[k]} {label}" for k, label in names if counts[k]]
            severity = (
                "warning"
                if rate >= th.retrans_rate and data_retrans >= th.retrans_warn_min
                else "info"
            )
            if data_retrans:
                what = (
                    f"{src} retransmitted {_s(data_retrans, 'segment')} "
                    f"({d.retrans_bytes + d.resent_ooo_bytes} bytes) "
                    f"of {d.data_segments} data segments to {dst} ({rate:.1%}: {', '.join(parts)})"
                )
                if ooo:
                    what += f", and {ooo} arrived out of order"
            elif ooo:
                what = f"{_s(ooo, 'segment')} from {src} to {dst} arrived out of order (reordering on the path)"
            else:
                what = f"{src} sent its FIN to {dst} again {_s(fins, 'time')} (the close went unacknowledged)"
            if fins and (data_retrans or ooo):
                what += f"; its FIN went {_s(fins, 'more time')}"
            lost = counts["lost_segment"]
            if lost:
                if data_retrans:
                    filled = "filled by retransmissions: lost before the capture point"
                elif ooo:
                    filled = "filled by the late segments: reordered, not lost"
                else:
                    filled = "never filled: not captured"
                what += f"; {_s(lost, 'gap')} in the sequence ({filled})"
            summary = what + "."
            frames = []
            for k in RETRANS_EVIDENCE:
                frames.extend(d.frames(k))
            out.append(
                Anomaly(
                    "retransmissions",
                    severity,
                    _when(d.first_time_ns(*RETRANS_EVIDENCE, "out_of_order"), c),
                    c.uid,
                    summary,
                    _sample(frames, th.evidence_max),
                    {
                        "direction": "orig" if side == 0 else "resp",
                        "sender": src,
                        "receiver": dst,
                        "segments": data_retrans,
                        "bytes": d.retrans_bytes + d.resent_ooo_bytes,
                        "data_segments": d.data_segments,
                        "syn_retransmissions": d.retrans_syn,
                        "rate": round(rate, 4),
                        # (resent_out_of_order only when there are some: older outputs stay)
                        **{k: n for k, n in counts.items() if n or k != "resent_out_of_order"},
                    },
                )
            )
        if d.zero_window_spells:
            closed_ns = d.zero_window_ns
            still = d.zero_window_since_ns is not None
            if still:
                closed_ns += max(0, end_ns - d.zero_window_since_ns)
            closed_s = closed_ns / 1e9
            probes = peer.window_probes
            full = peer.count("window_full")
            severity = "warning" if closed_s >= th.zero_window_s or still else "info"
            reopened = (
                "and it was still closed when the capture ended" if still else "then reopened it"
            )
            summary = (
                f"{src} advertised a zero receive window to {dst} {_s(d.zero_window_spells, 'time')} "
                f"for {_secs(closed_s)} in total ({_s(probes, 'zero-window probe')}, {full} window-full), "
                f"{reopened}: the receiving application on {src} was not reading fast enough."
            )
            frames = (
                d.frames("zero_window")
                + peer.frames("zero_window_probe")
                + peer.frames("window_full")
            )
            out.append(
                Anomaly(
                    "zero_window",
                    severity,
                    _when(d.first_time_ns("zero_window"), c),
                    c.uid,
                    summary,
                    _sample(frames, th.evidence_max),
                    {
                        "receiver": src,
                        "sender": dst,
                        "spells": d.zero_window_spells,
                        "closed_s": round(closed_s, 6),
                        "longest_s": round(d.zero_window_max_ns / 1e9, 6),
                        "still_closed": still,
                        "zero_window_segments": d.count("zero_window"),
                        "probes": probes,
                        "probe_acks": d.count("zero_window_probe_ack"),
                        "window_full": full,
                        "window_updates": d.count("window_update"),
                    },
                )
            )
        n = d.count("keep_alive")
        if n:
            ka_total += n
            ka_frames.extend(d.frames("keep_alive"))
            if ka_first is None or d.keep_alive_first_ns < ka_first:
                ka_first = d.keep_alive_first_ns
    if ka_total:
        sides = []
        intervals = {}
        for side in (0, 1):
            d = st.dirs[side]
            n = d.count("keep_alive")
            if not n:
                continue
            who = _ep(c.orig_h, c.orig_p) if side == 0 else _ep(c.resp_h, c.resp_p)
            text = f"{who} sent {_s(n, 'TCP keep-alive probe')}"
            if n > 1:
                every = (d.keep_alive_last_ns - d.keep_alive_first_ns) / 1e9 / (n - 1)
                intervals["orig" if side == 0 else "resp"] = round(every, 3)
                if every >= 0.001:
                    text += f" every {_secs(every)}"
            sides.append(text)
        acks = st.count("keep_alive_ack")
        summary = (
            f"{' and '.join(sides)} ({_s(acks, 'answer')} seen): the connection sat idle, "
            f"held open by TCP keep-alive."
        )
        out.append(
            Anomaly(
                "keep_alive",
                "info",
                _when(ka_first, c),
                c.uid,
                summary,
                _sample(ka_frames, th.evidence_max),
                {
                    "keep_alives": {
                        "orig": st.orig.count("keep_alive"),
                        "resp": st.resp.count("keep_alive"),
                    },
                    "answers": acks,
                    "interval_s": intervals,
                },
            )
        )
    return out


RETRANS_EVIDENCE = ("retransmission", "fast_retransmission", "spurious_retransmission")


def _when(ts_ns: int | None, c: Connection) -> float:
    """A finding's `ts`: when its event happened (the first segment that shows it), in epoch
    seconds; the connection's start when the analysis kept no time for it."""
    return c.ts if ts_ns is None else ts_ns / 1e9
