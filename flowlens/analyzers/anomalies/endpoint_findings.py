# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""The findings AnomalyDetector groups per endpoint, made at the end of a run from the groups its
`add_parts` kept: unanswered_syn and connection_refused per server port, close_wait and
fin_wait_2 per socket, rst_abort, port_reuse and service_port_mismatch per port. Each function
takes its group (key -> the parts of its connections, in the one-process order) and the
Thresholds, and returns its findings; those a scan or a flood explains (`claimed`) are left out.
Used by `flowlens.analyzers.anomalies.detector`.
"""

from __future__ import annotations

from ...core.connections import format_addr
from ...core.services import service_name
from .detector import Anomaly, Thresholds, _ep, _s, _sample, _secs

__all__ = [
    "close_wait_findings",
    "fin_wait_2_findings",
    "mismatch_findings",
    "refused_findings",
    "reuse_findings",
    "rst_findings",
    "unanswered_findings",
]


# ---------------------------------------------------------------------------- handshakes
def _clients_text(hosts: set) -> str:
    return format_addr(next(iter(hosts))) if len(hosts) == 1 else _s(len(hosts), "client")


def unanswered_findings(groups, th: Thresholds, claimed: set) -> list[Anomaly]:
    """unanswered_syn: SYNs without any answer, grouped per destination host:port."""
    out = []
    for (host, port), items in groups.items():
        items = sorted(x for x in items if x[1] not in claimed)
        if not items:
            continue
        # One connect() is one attempt: its SYN retries (the same ISN) go on in records of their
        # own once Zeek's attempt timer (tcp_attempt_delay, 5 s) ends the first, each naming the
        # one before as prev_uid (ConnectionTable._open_tcp). Linux retries at 1, 3, 7, 15, 31
        # and 63 s (tcp_syn_retries = 6, TCP_TIMEOUT_INIT = 1 s doubling: tcp_timer.c), and
        # since 6.5 at 1, 2, 3, 4, 5, 7, 11, 19, 35 and 67 s (tcp_syn_linear_timeouts = 4: the
        # RTO doubles only after the first 4 resends), so the schedule is read across the chain.
        attempt_of: dict = {}
        attempts: dict = {}
        for x in items:
            root = attempt_of.get(x[5], x[1]) if x[5] is not None else x[1]
            attempt_of[x[1]] = root
            attempts.setdefault(root, []).append(x)
        first_ts, first_uid = items[0][0], items[0][1]
        clients = {x[2] for x in items}
        syns = sum(x[3] for x in items)
        first_syns = [syn for x in attempts[first_uid] for syn in x[4]]
        retry_s = [round((ts - first_syns[0][0]) / 1e9, 3) for ts, _f in first_syns[1:]]
        frames = sorted(f for x in items for _t, f in x[4])
        retry_text = f", retried after {', '.join(f'{r:g} s' for r in retry_s)}" if retry_s else ""
        summary = (
            f"{_s(syns, 'SYN')} from {_clients_text(clients)} to {_ep(host, port)} got no answer"
            f" ({_s(len(attempts), 'connection attempt')}{retry_text}): a firewall dropping them or "
            f"the host is down."
        )
        out.append(
            Anomaly(
                "unanswered_syn", "warning", first_ts / 1e9, first_uid if len(attempts) == 1 else None,
                summary, _sample(frames, th.evidence_max),
                {
                    "destination": _ep(host, port),
                    "attempts": len(attempts),
                    "syns": syns,
                    "clients": sorted(format_addr(h) for h in clients)[:20],
                    "client_count": len(clients),
                    "retry_s": retry_s,
                    "uids": [x[1] for x in items[:20]],
                },
                # one attempt is about one connection: its first record's start
                conn_ts=first_ts / 1e9 if len(attempts) == 1 else None,
            )
        )  # fmt: skip
    return out


def refused_findings(groups, th: Thresholds, claimed: set) -> list[Anomaly]:
    """connection_refused: RST answering a SYN, grouped per destination host:port."""
    out = []
    for (host, port), items in groups.items():
        items = sorted(x for x in items if x[1] not in claimed)
        if not items:
            continue
        clients = {x[2] for x in items}
        summary = (
            f"{_ep(host, port)} refused {_s(len(items), 'connection')} from {_clients_text(clients)} "
            f"(RST answering the SYN): nothing is listening on port {port}."
        )
        out.append(
            Anomaly(
                "connection_refused", "warning", items[0][0] / 1e9,
                items[0][1] if len(items) == 1 else None, summary,
                _sample((f for x in items for f in x[3]), th.evidence_max),
                {
                    "destination": _ep(host, port),
                    "attempts": len(items),
                    "clients": sorted(format_addr(h) for h in clients)[:20],
                    "client_count": len(clients),
                    "uids": [x[1] for x in items[:20]],
                },
            )
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------------- closes
def close_wait_findings(groups, th: Thresholds, end_ns: int) -> list[Anomaly]:
    """close_wait, grouped per leaking endpoint (a server's service port, a client host)."""
    out = []
    for (host, port, peer_h, peer_p), spells in groups.items():
        leaks: list[tuple] = []
        half: list[tuple] = []
        for start, stop, still, frame, uid, sent, conn_ns in spells:
            length = ((end_ns if stop is None else stop) - start) / 1e9
            if length >= th.close_wait_s:
                # a side that went on sending after the peer's FIN is in a half-close (RFC 9293
                # §3.6: a FIN closes only its sender's direction): legitimate, not a leak
                (half if sent else leaks).append((start, length, still, frame, uid, sent, conn_ns))
        where = _ep(host, port) if port is not None else format_addr(host)
        toward = "" if peer_h is None else f" to {_ep(peer_h, peer_p)}"
        if leaks:
            out.append(_close_wait_leak(leaks, where, toward, th))
        if half:
            out.append(_half_close(half, where, toward, th))
    return out


def _close_wait_leak(items: list, where: str, toward: str, th: Thresholds) -> Anomaly:
    items.sort()
    n = len(items)
    open_ = sum(1 for x in items if x[2])
    longest = max(x[1] for x in items)
    # durations as observed: to the capture's end for a side still in CLOSE_WAIT then (it may
    # have stayed longer), to its close otherwise
    if n == 1:
        how = (
            f"in CLOSE_WAIT for at least {_secs(longest)}, still when the capture ended"
            if open_
            else f"in CLOSE_WAIT for {_secs(longest)} before it closed"
        )
    elif open_:
        how = (
            f"CLOSE_WAIT for up to {_secs(longest)}; {open_} of them still in CLOSE_WAIT when "
            f"the capture ended"
        )
    else:
        how = f"CLOSE_WAIT for up to {_secs(longest)}; all closed late"
    summary = (
        f"{where} did not close {_s(n, 'connection')}{toward} after the peer closed "
        f"({how}): the application on {where} is not closing its sockets."
    )
    return Anomaly(
        "close_wait", "warning" if open_ else "info", items[0][0] / 1e9,
        items[0][4] if n == 1 else None, summary,
        _sample((x[3] for x in items), th.evidence_max),
        {
            "endpoint": where,
            "connections": n,
            "still_open": open_,
            "max_duration_s": round(longest, 3),
            "half_close": False,
            "uids": [x[4] for x in items[:20]],
        },
        items[0][6] / 1e9 if n == 1 else None,
    )  # fmt: skip


def _half_close(items: list, where: str, toward: str, th: Thresholds) -> Anomaly:
    items.sort()
    n = len(items)
    open_ = sum(1 for x in items if x[2])
    sent = sum(x[5] for x in items)
    summary = (
        f"{where} kept sending after the peer closed its side on {_s(n, 'connection')}{toward} "
        f"({sent} bytes in CLOSE_WAIT): a half-close (RFC 9293 §3.6, shutdown(SHUT_WR) on the "
        f"peer), not a leak"
        + (
            f"; {'it was' if n == 1 else f'{open_} were'} still open when the capture ended."
            if open_
            else "."
        )
    )
    return Anomaly(
        "close_wait", "info", items[0][0] / 1e9, items[0][4] if n == 1 else None, summary,
        _sample((x[3] for x in items), th.evidence_max),
        {
            "endpoint": where,
            "connections": n,
            "still_open": open_,
            "max_duration_s": round(max(x[1] for x in items), 3),
            "half_close": True,
            "bytes_in_close_wait": sent,
            "uids": [x[4] for x in items[:20]],
        },
        items[0][6] / 1e9 if n == 1 else None,
    )  # fmt: skip


def fin_wait_2_findings(items, th: Thresholds, end_ns: int) -> list[Anomaly]:
    """fin_wait_2, one finding per connection that waited past the threshold."""
    out = []
    for uid, endpoint, peer, start, stop, still, frame, peer_packets, conn_ns, timed_out in items:
        waited = ((end_ns if stop is None else stop) - start) / 1e9
        if waited < th.fin_wait_2_s:
            continue
        # as observed: to the capture's end for a side still waiting then
        if still:
            how = f"for at least {_secs(waited)} after {peer} acknowledged its FIN, still when the capture ended"
        elif timed_out:
            # an orphan dropped by tcp_fin_timeout (TcpTracker._timer_end): no packet shows it
            how = (
                f"for {_secs(waited)} after {peer} acknowledged its FIN, until tcp_fin_timeout "
                f"dropped the orphaned socket (inferred, no packet shows it)"
            )
        else:
            how = f"for {_secs(waited)} after {peer} acknowledged its FIN, until it left FIN_WAIT_2"
        summary = (
            f"{endpoint} sat in FIN_WAIT_2 {how}: the peer kept its side open (see close_wait on "
            f"{peer})."
        )
        out.append(
            Anomaly(
                "fin_wait_2", "info", start / 1e9, uid, summary, _sample([frame], th.evidence_max),
                {"endpoint": endpoint, "peer": peer, "duration_s": round(waited, 3),
                 "still_waiting": still, "peer_packets": peer_packets,
                 # (only when it did: older outputs stay)
                 **({"timed_out": True} if timed_out else {})},
                conn_ns / 1e9,
            )
        )  # fmt: skip
    return out


def rst_findings(groups, th: Thresholds, claimed: set) -> list[Anomaly]:
    """rst_abort: a RST ending an established connection, grouped per (client, server port,
    who sent it)."""
    out = []
    for (client, server, port, by), items in groups.items():
        items = sorted((x for x in items if x[1] not in claimed), key=lambda x: x[0])
        if not items:
            continue
        with_data = [x for x in items if x[3] or x[4]]
        lost = sum(x[3] + x[4] for x in with_data)
        sender = format_addr(client) if by == 0 else _ep(server, port)
        other = _ep(server, port) if by == 0 else format_addr(client)
        n = len(items)
        closing = sum(1 for x in items if x[6])
        if n == 1:
            what = "a closing connection (after FIN)" if closing else "an established connection"
        else:
            what = f"{n} established connections"
            if closing:
                what += f" ({closing} of them after FIN, while closing)"
        if n == 1:
            inflight = (
                f" with {lost} bytes of unacknowledged data in flight"
                if with_data
                else " with no data in flight"
            )
        else:
            inflight = (
                f"; {len(with_data)} had unacknowledged data in flight ({lost} bytes)"
                if with_data
                else "; no data was in flight"
            )
        # a RST once the close began: Linux's close() with unread data sends one (RFC 2525
        # §2.17), as does SO_LINGER 0
        why = (
            "a RST after the close began: unread data at close(), an abort or SO_LINGER 0"
            if closing == n
            else "RST instead of FIN: an abort, a crash or SO_LINGER 0"
        )
        summary = f"{sender} reset {what} with {other}{inflight} ({why})."

        out.append(
            Anomaly(
                "rst_abort", "warning" if with_data else "info", items[0][0] / 1e9,
                items[0][1] if n == 1 else None, summary,
                _sample((x[2] for x in items), th.evidence_max),
                {
                    "sender": sender,
                    "peer": other,
                    "sent_by": "orig" if by == 0 else "resp",
                    "connections": n,
                    "with_data_in_flight": len(with_data),
                    "bytes_in_flight": lost,
                    "after_fin": closing,
                    "uids": [x[1] for x in items[:20]],
                },
                items[0][5] / 1e9 if n == 1 else None,
            )
        )  # fmt: skip
    return out


def reuse_findings(groups, th: Thresholds) -> list[Anomaly]:
    """port_reuse: a 5-tuple reused while its previous connection could still be in TIME_WAIT."""
    out = []
    for (client, server, port), items in groups.items():
        items.sort(key=lambda x: x[0])
        failed = sum(1 for x in items if x[5])
        n = len(items)
        ports = sorted({x[3] for x in items})
        port_text = f"port {ports[0]}" if len(ports) == 1 else f"{len(ports)} ports"
        trouble = (
            f"; {failed} of the new handshakes did not complete"
            if failed
            else "; the new handshakes completed"
        )
        summary = (
            f"{format_addr(client)} reused {port_text} toward {_ep(server, port)} for "
            f"{_s(n, 'new connection')} while the previous connection on the same 5-tuple "
            f"could still be in TIME_WAIT (2 x MSL){trouble}."
        )
        out.append(
            Anomaly(
                "port_reuse", "warning" if failed else "info", items[0][0] / 1e9,
                items[0][1] if n == 1 else None, summary,
                _sample((x[4] for x in items), th.evidence_max),
                {
                    "client": format_addr(client),
                    "server": _ep(server, port),
                    "reuses": n,
                    "client_ports": ports[:50],
                    "failed_handshakes": failed,
                    "uids": [x[1] for x in items[:20]],
                    "previous_uids": [x[2] for x in items[:20]],
                },
            )
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------------- services
def mismatch_findings(groups, th: Thresholds) -> list[Anomaly]:
    """service_port_mismatch: a protocol (told from the first payload bytes by the service
    analyzer) spoken on a port registered to another one, grouped per server:port and protocol.
    Info: nothing failed, and a service on another port is often deliberate (SSH on 443 through
    a firewall, a web server on a spare port); it is a fact for a person or a policy to judge,
    not a fault of the network."""
    out = []
    for (host, port, proto, service), items in groups.items():
        items.sort(key=lambda x: x[0])
        clients = {x[2] for x in items}
        registered = service_name(proto, port)
        summary = (
            f"{_ep(host, port)} speaks {service} ({_s(len(items), 'connection')} from "
            f"{_clients_text(clients)}), but {proto} port {port} is registered to {registered}: "
            f"the port does not say what the service is."
        )
        out.append(
            Anomaly(
                "service_port_mismatch", "info", items[0][0] / 1e9,
                items[0][1] if len(items) == 1 else None, summary,
                _sample((f for x in items for f in x[3]), th.evidence_max),
                {
                    "server": _ep(host, port),
                    "service": service,
                    "port_service": registered,
                    "connections": len(items),
                    "clients": sorted(format_addr(h) for h in clients)[:20],
                    "client_count": len(clients),
                    "uids": [x[1] for x in items[:20]],
                },
            )
        )  # fmt: skip
    return out
