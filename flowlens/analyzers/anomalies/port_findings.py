# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""TIME_WAIT accumulation and ephemeral port exhaustion: the findings about one client's
connections to one server port, made at the end of a run from what HostFacts
(host_findings.py) summed up of their holds (holds.py's HoldGroup: `port_group`): how many ports were held at once, for how long,
in TIME_WAIT, reused in it, and which ephemeral range the client's ports show (a narrowed one,
or another OS's).
"""

from __future__ import annotations

import math

from ...core.connections import format_addr
from ...core.services import EPHEMERAL_RANGES, LINUX_EPHEMERAL, fits_ranges
from .detector import Anomaly, _ep, _s, _sample, _secs

__all__ = ["port_group"]

#: the smallest block of ports inferred as a narrowed ephemeral range
_NARROWED_MIN = 8


def _random_block_log10(k: int, size: int) -> float:
    """log10 of the chance that k distinct ports drawn at random from `size` (RFC 6056
    Algorithm 1, the BSDs' and macOS's picker) form one contiguous block: (size - k + 1) of the
    C(size, k) equally likely sets are blocks."""
    if k >= size:
        return 0.0
    comb = math.lgamma(size + 1) - math.lgamma(k + 1) - math.lgamma(size - k + 1)
    return (math.log(size - k + 1) - comb) / math.log(10)


def _range_for(ports, order, th, peak: int, reused: int, n: int):
    """((lo, hi), source, guess, reason) of the ephemeral range the ports of one client were
    taken from; `ports` sorted and distinct, `order` the same ports in order of first use,
    `peak` how many were held at once.

    source: "configured" (`Thresholds.ephemeral_range`, always used when given, even when some
    ports lie outside it: the finding says how many), "inferred" (a narrowed range, below),
    "default" (Linux's 32768-60999), "os" (another OS's range the ports fit; `guess` names it)
    or "none" (Linux's, though the ports fit no common range; guess "").

    A narrowed net.ipv4.ip_local_port_range is inferred from a contiguous block of ports used
    completely, both parities, all held at once, and either taken the way Linux takes them when
    its range runs out (every port of the block's low parity before any of the other: below),
    or recycled (new SYNs on ports still in TIME_WAIT) over >= exhaustion_min_connections
    connections. Pickers do not make such a block by chance:
    - random (RFC 6056 Algorithm 1: FreeBSD, OpenBSD, macOS): probability (N-k+1)/C(N,k);
    - Linux (net/ipv4/inet_hashtables.c __inet_hash_connect, since 6.1): a hashed offset made
      even (`offset &= ~1`) and a scan with step 2, so connect() takes ports of the range's low
      parity and goes to the other parity only when every port of that parity is taken; the
      per-destination perturbation moves on by 2 to 16 ports after each connect. Both
      parities in use means the range's low-parity ports ran out: the range is the block;
    - Windows (sequential from a start point) does make contiguous blocks, in port order, and
      goes on past the block's end when its range allows: so a sequential block is inferred
      as a range only when the same ports were recycled (a capture that ends after the block
      cannot tell a client that stopped from one that ran out; give --ephemeral-range).
    """
    if th.ephemeral_range is not None:
        lo, hi = th.ephemeral_range
        outside = sum(1 for p in ports if not lo <= p <= hi)
        reason = "configured"
        if outside:
            reason += f"; {_s(outside, 'client port')} outside it"
        return (lo, hi), "configured", None, reason
    k = len(ports)
    block = ports[-1] - ports[0] + 1
    both = any(p & 1 for p in ports) and any(not p & 1 for p in ports)
    low = ports[0] & 1
    switch = next((i for i, p in enumerate(order) if p & 1 != low), k)
    # Linux's two passes: the low parity's (block + 1) // 2 ports first, then the others
    linux = switch == (block + 1) // 2 and all(p & 1 != low for p in order[switch:])
    if (
        block == k
        and both
        and peak >= block
        and block >= _NARROWED_MIN
        and (linux or reused and n >= th.exhaustion_min_connections)
    ):
        fits = fits_ranges(ports)
        base = EPHEMERAL_RANGES[fits[0]] if fits else LINUX_EPHEMERAL
        size = base[1] - base[0] + 1
        chance = _random_block_log10(k, size)
        reason = (
            f"inferred: a contiguous block of {k} ports, every one used, all held at once, "
            + (
                "its even ports all taken before any odd one, as Linux does when its range runs out"
                if linux and not low
                else "its odd ports all taken before any even one, as Linux does when its range runs out"
                if linux
                else "recycled in TIME_WAIT"
            )
            + f"; a random picker over the {size:,}-port {fits[0] if fits else 'Linux'} range "
            f"makes such a block with probability 1e{chance:.0f}"
        )
        return (ports[0], ports[-1]), "inferred", "narrowed", reason
    lo, hi = LINUX_EPHEMERAL
    if lo <= ports[0] and ports[-1] <= hi:
        return (lo, hi), "default", None, "Linux's default (no range given)"
    fits = fits_ranges(ports)
    if fits:
        return (
            EPHEMERAL_RANGES[fits[0]],
            "os",
            fits[0],
            f"the {fits[0]} range its ports fit (no range given)",
        )
    return (lo, hi), "none", "", "Linux's default (no range given; its ports fit no common range)"


def port_group(client, server, sport, group, th, time_wait_s):
    """time_wait_accumulation and port_exhaustion_risk for one (client, server, server port);
    `group` is its finished holds.HoldGroup (HostFacts.holds): the connections' counts, sums
    and ports, and the peaks of ports in use at once (a port is in use while any of its holds
    is: holds that overlap or touch are one) and of TIME_WAIT spells at once, each side's."""
    n = group.n
    first_start, last_start = group.first_start, group.last_start
    peak, peak_at = group.in_use.result()
    ports, order = group.ports()
    reused = group.reused
    (lo, hi), source, guess, reason = _range_for(ports, order, th, peak, reused, n)
    size = hi - lo + 1
    span_s = (last_start - first_start) / 1e9
    rate = (n - 1) / span_s if span_s > 0 else 0.0
    hold_s = group.held / n / 1e9
    steady = rate * hold_s
    first_ts = first_start / 1e9
    cli, srv = format_addr(client), _ep(server, sport)
    range_text = f"{lo}-{hi} ({reason})"
    out = []
    details_common = {
        "client": cli,
        "server": srv,
        "connections": n,
        "client_ports": len(ports),
        "ephemeral_range": [lo, hi],
        "range_size": size,
        "range_guess": guess,
        "range_source": source,
        "range_reason": reason,
        "os_ranges": fits_ranges(ports),
        "rate_per_s": round(rate, 3),
        "mean_hold_s": round(hold_s, 3),
        "time_wait_s": time_wait_s,
        "steady_state_ports": round(steady, 1),
        "peak_in_use": peak,
    }
    if group.late:
        # timestamps that went backwards: holds that came after the sweep had passed their
        # start (holds.HoldGroup), so the peaks may be off
        details_common["late_holds"] = group.late

    side = 0 if group.spells[0].n >= group.spells[1].n else 1
    tw_peak, tw_at = group.spells[side].peak.result()
    # the pile-up counts against the range in use: from time_wait_min, or from the warning
    # fraction of a range that was given or inferred (a narrowed range fills long before 100)
    if tw_peak >= th.time_wait_min or (
        source in ("configured", "inferred")
        and tw_peak >= 2
        and tw_peak >= th.time_wait_warn_fraction * size
    ):
        severity = "warning" if tw_peak >= th.time_wait_warn_fraction * size else "info"
        share = tw_peak / size
        if side == 0:
            who = f"{cli} held up to {tw_peak:,} connections to {srv} in TIME_WAIT at once (it closes first)"
        else:
            who = f"{srv} held up to {tw_peak:,} connections from {cli} in TIME_WAIT at once (the server closes first)"
        summary = (
            f"{who}; each lasts {_secs(time_wait_s)}: {share:.1%} of the {size:,}-port "
            f"ephemeral range {range_text}."
        )
        out.append(
            Anomaly(
                "time_wait_accumulation",
                severity,
                first_ts,
                None,
                summary,
                _sample(group.frames_lo, th.evidence_max),
                {
                    **details_common,
                    "time_wait_peak": tw_peak,
                    "time_wait_side": "orig" if side == 0 else "resp",
                    "peak_ts": round(tw_at / 1e9, 6),
                },
            )
        )

    # ports ran out: every port of the range in use (configured, inferred or default) held at
    # at once, TIME_WAIT included; for an inferred range the attempts must also have stopped
    # (no new connection began once all were held: connect() failing with EADDRNOTAVAIL sends
    # no SYN) or gone on by reusing ports still in TIME_WAIT (tcp_tw_reuse)
    stopped = last_start <= peak_at
    ran_out = peak >= size and (source != "inferred" or reused > 0 or stopped)
    # a projection from a burst would be noise: the rate must have lasted a while
    sustained = span_s >= th.exhaustion_min_span_s
    risk = n >= th.exhaustion_min_connections and (
        peak >= th.exhaustion_fraction * size or (steady >= size and sustained)
    )
    if not ran_out and not risk:
        return out
    exhaust_s = size / rate if rate > 0 and steady >= size else None
    details = {
        **details_common,
        "time_wait_reuses": reused,
        "time_to_exhaustion_s": round(exhaust_s, 3) if exhaust_s is not None else None,
        "peak_ts": round(peak_at / 1e9, 6),
    }
    # the first connections that reused a port in TIME_WAIT, else the last connections
    frames = group.reused_frames or group.frames_hi
    if ran_out:
        details["ports_exhausted"] = [lo, hi]
        reuse_text = (
            f" and {_s(reused, 'new SYN')} reused ports still in TIME_WAIT" if reused else ""
        )
        which = f"all {size:,} ports of the range {range_text}"
        if stopped and not reused:
            reuse_text += " and no new connection began after that"
        summary = (
            f"{cli} ran out of ephemeral ports toward {srv}: {which} were held at once "
            f"(open or in TIME_WAIT){reuse_text}; at {rate:,.1f} connections/s it needs {steady:,.0f} ports."
        )
        out.append(
            Anomaly(
                "port_exhaustion_risk",
                "critical",
                first_ts,
                None,
                summary,
                _sample(frames, th.evidence_max),
                details,
            )
        )
        return out
    when = (
        f"it runs out after about {_secs(exhaust_s)} at this rate"
        if exhaust_s is not None
        else "it fits at this rate, with little headroom"
    )
    summary = (
        f"{cli} opens {rate:,.1f} connections/s to {srv}, each holding its port {_secs(hold_s)} "
        f"(TIME_WAIT included): {steady:,.0f} ports at steady state against the {size:,}-port range "
        f"{range_text}; up to {peak:,} were in use at once ({peak / size:.0%}), {when}."
    )
    out.append(
        Anomaly(
            "port_exhaustion_risk",
            "warning",
            first_ts,
            None,
            summary,
            _sample(frames, th.evidence_max),
            details,
        )
    )
    return out
