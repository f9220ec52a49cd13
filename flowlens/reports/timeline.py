"""The flag timeline: every packet of a connection as a record, with both endpoints' states after it."""

from __future__ import annotations

from collections.abc import Iterator

from ..analyzers.packetlog import ConnLog, PacketRow, StateChange
from ..core.connections import Connection
from ..core.decode import IPPROTO_TCP, IPPROTO_UDP, TH_ACK, flags_text
from .ladder import endpoint_label

__all__ = [
    "TABLE_COLUMNS",
    "TABLE_HEADERS",
    "TIMELINE_FIELDS",
    "caption",
    "table_rows",
    "timeline_records",
]

#: record fields, in order (json and csv)
TIMELINE_FIELDS = (
    "uid",  # the connection
    "frame",  # 1-based frame number; null for a state change no packet caused (TIME_WAIT over)
    "ts",  # epoch seconds
    "time_s",  # seconds since the connection's first packet
    "sender",  # "orig" or "resp" (null for a state change)
    "flags",  # tcpdump letters without brackets: S, S., ., P., F., R.; UDP/ICMP for others
    "seq",  # relative to the sender's first sequence number (absolute with --absolute)
    "ack",  # relative to the receiver's first sequence number; null without the ACK flag
    "len",  # payload bytes
    "win",  # raw window field (unscaled)
    "orig_state",  # originator's TCP state after this packet
    "resp_state",  # responder's TCP state after this packet
    "notes",  # findings: handshake legs, retransmissions, zero window, RST ... (list)
)
TABLE_COLUMNS = (
    "frame",
    "time_s",
    "dir",
    "flags",
    "seq",
    "ack",
    "len",
    "win",
    "orig_state",
    "resp_state",
    "notes",
)
TABLE_HEADERS = TABLE_COLUMNS  # the table's headers are the field names themselves


def _flags(row: PacketRow) -> str:
    if row.proto == IPPROTO_TCP:
        return flags_text(row.flags)
    return "UDP" if row.proto == IPPROTO_UDP else "ICMP"


def timeline_records(conn: Connection, log: ConnLog, absolute: bool = False) -> Iterator[dict]:
    """One record per packet (and per state change without a packet), in capture order."""
    t0 = conn.first_ts_ns
    state: list[str | None] = ["CLOSED", "CLOSED"] if conn.tcp is not None else [None, None]
    for item in log.items:
        if isinstance(item, PacketRow):
            tcp = item.proto == IPPROTO_TCP
            if item.orig_state is not None:
                state = [item.orig_state, item.resp_state]
            yield {
                "uid": conn.uid,
                "frame": item.frame,
                "ts": round(item.ts_ns / 1e9, 6),
                "time_s": round((item.ts_ns - t0) / 1e9, 6),
                "sender": "orig" if item.from_orig else "resp",
                "flags": _flags(item),
                "seq": (item.seq if absolute else log.rel_seq(item)) if tcp else None,
                "ack": (item.ack if absolute else log.rel_ack(item))
                if tcp and item.flags & TH_ACK
                else None,
                "len": item.plen,
                "win": item.win if tcp else None,
                "orig_state": state[0],
                "resp_state": state[1],
                "notes": [f.text for f in item.findings],
            }
        elif isinstance(item, StateChange):
            state[item.side] = item.state
            yield {
                "uid": conn.uid,
                "frame": None,
                "ts": round(item.ts_ns / 1e9, 6),
                "time_s": round((item.ts_ns - t0) / 1e9, 6),
                "sender": None,
                "flags": None,
                "seq": None,
                "ack": None,
                "len": None,
                "win": None,
                "orig_state": state[0],
                "resp_state": state[1],
                "notes": [item.why],
            }


def table_rows(records) -> list[dict]:
    """Records shaped for the terminal: an arrow for the direction, flags in brackets, notes joined."""
    out = []
    for rec in records:
        row = dict(rec)
        row["dir"] = {"orig": "->", "resp": "<-"}.get(rec["sender"], "")
        row["flags"] = (
            f"[{rec['flags']}]"
            if rec["flags"] and rec["flags"] not in ("UDP", "ICMP")
            else rec["flags"]
        )
        row["time_s"] = f"{rec['time_s']:.6f}"
        row["notes"] = "; ".join(rec["notes"]) or None
        out.append(row)
    width = max((len(r["time_s"]) for r in out), default=0)
    for r in out:  # fixed decimals, right-aligned (the table aligns only numbers itself)
        r["time_s"] = r["time_s"].rjust(width)
    return out


def caption(conn: Connection) -> str:
    """The line above a connection's table: uid and endpoints, who is "orig" (->)."""
    return (
        f"{conn.uid}  {conn.proto_name}  {endpoint_label(conn.orig_h, conn.orig_p)} -> "
        f"{endpoint_label(conn.resp_h, conn.resp_p)}  ({conn.conn_state} {conn.history})"
    )
