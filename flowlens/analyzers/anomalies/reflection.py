"""synack_reflection: SYN/ACKs that no SYN in the capture asked for, in bursts.

A host that receives SYN/ACKs it never asked for is either the victim of a SYN/ACK reflection
(an attacker sends SYNs with the victim's address as their source to many servers, the
"reflectors", whose SYN/ACKs all land on the victim) or the spoofed source of someone else's
SYN flood (the flooded server's SYN/ACKs go to the addresses the flood forged: backscatter, as
network telescopes see it). RFC 9293 §3.10.7.1: a CLOSED port answers such a SYN/ACK with a
RST (or a firewall drops it), which is all the victim's own traffic shows. Many senders toward
one receiver is a reflection; one sender toward many receivers is backscatter. A SYN/ACK the
receiver goes on to acknowledge or send data after is not counted (the SYN was only missing
from the capture: asymmetric routing, a capture that began late).
"""

from __future__ import annotations

from collections import defaultdict

from ...core.connections import format_addr
from .detector import Anomaly, Thresholds, _s, _sample

__all__ = ["reflection_findings"]


def reflection_findings(items: list[tuple], th: Thresholds) -> list[Anomaly]:
    """`items`: (ts_ns, uid, sender_h, sender_p, receiver_h, receiver_p, answered, frame) per
    connection whose only opening was an unsolicited SYN/ACK (detector.py collects them)."""
    out = []
    used: set[str] = set()
    by_receiver = defaultdict(list)
    for x in items:
        by_receiver[x[4]].append(x)
    for group in by_receiver.values():
        senders = {x[2] for x in group}
        if len(group) >= th.reflection_min and len(senders) > 1:
            out.append(_finding(group, th, "reflection"))
            used.update(x[1] for x in group)
    by_sender = defaultdict(list)
    for x in items:
        if x[1] not in used:
            by_sender[x[2]].append(x)
    for group in by_sender.values():
        if len(group) >= th.reflection_min:
            out.append(_finding(group, th, "backscatter"))
    return out


def _peak(times: list[int], window_ns: int) -> int:
    """Most SYN/ACKs within any `window_ns` (times sorted)."""
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] > window_ns:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _finding(group: list[tuple], th: Thresholds, pattern: str) -> Anomaly:
    group.sort(key=lambda x: x[0])
    n = len(group)
    senders = sorted({format_addr(x[2]) for x in group})
    receivers = sorted({format_addr(x[4]) for x in group})
    ports: defaultdict[int, int] = defaultdict(int)  # port -> SYN/ACKs from it
    for x in group:
        ports[x[3]] += 1
    top_ports = sorted(ports.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    answered = sum(1 for x in group if x[6])
    times = [x[0] for x in group]
    window_ns = int(th.syn_flood_window_s * 1e9)
    peak = _peak(times, window_ns)
    span_s = (times[-1] - times[0]) / 1e9
    from_ports = ("port " if len(top_ports) == 1 else "ports ") + ", ".join(
        str(p) for p, _n in top_ports
    )
    if pattern == "reflection":
        who = (
            f"{receivers[0]} received {_s(n, 'SYN/ACK')} that it never asked for from "
            f"{_s(len(senders), 'host')} (source {from_ports})"
        )
        meaning = (
            "a SYN/ACK reflection: SYNs spoofed with its address were sent to those hosts, "
            "whose answers all land on it"
        )
    else:
        who = (
            f"{senders[0]} sent {_s(n, 'SYN/ACK')} that no SYN in the capture asked for to "
            f"{_s(len(receivers), 'host')} (from {from_ports})"
        )
        meaning = (
            "backscatter: it is answering a SYN flood whose sources were forged, and the "
            "forged addresses get its SYN/ACKs"
        )
    answers = (
        f"{answered} answered with RST, as a closed port does (RFC 9293 §3.10.7.1)"
        if answered
        else "none answered (a firewall dropped them, or the capture sees one direction only)"
    )
    summary = (
        f"{who} over {span_s:.1f} s (peak {peak} in {th.syn_flood_window_s:g} s); {answers}: "
        f"{meaning}."
    )
    severity = "critical" if peak >= th.syn_flood_min else "warning"
    return Anomaly(
        "synack_reflection", severity, times[0] / 1e9, group[0][1] if n == 1 else None,
        summary, _sample((x[7] for x in group), th.evidence_max),
        {
            "pattern": pattern,
            "synacks": n,
            "senders": senders[:20],
            "sender_count": len(senders),
            "receivers": receivers[:20],
            "receiver_count": len(receivers),
            "sender_ports": {str(p): c for p, c in top_ports},
            "answered_with_rst": answered,
            "peak": peak,
            "span_s": round(span_s, 6),
            "uids": [x[1] for x in group[:20]],
        },
    )  # fmt: skip
