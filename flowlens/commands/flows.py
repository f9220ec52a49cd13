"""`flowlens flows`: one row per connection or flow, Zeek conn.log fields plus flowlens's own."""

from __future__ import annotations

import sys
from collections import Counter

import click

from ..analyzers.tcpanalysis import TcpAnalyzer
from ..core.connections import PROTO_NAMES, RECORD_FIELDS
from ..reports.formats import human_time, write_records
from ._common import (
    capture_argument,
    config_from,
    filter_options,
    format_option,
    nothing_line,
    open_pipeline,
    report_damage,
    selection_from,
    table_options,
    warn,
)

TABLE_COLUMNS = (
    "uid", "ts", "duration", "proto", "orig", "resp", "conn_state", "history",
    "orig_state", "resp_state", "pkts", "irtt_ms",
)  # fmt: skip
TABLE_HEADERS = (
    "uid", "start (UTC)", "dur_s", "proto", "orig", "resp", "conn_state", "history",
    "orig_state", "resp_state", "pkts o/r", "irtt_ms",
)  # fmt: skip


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def table_row(r: dict) -> dict:
    """The narrower, human-oriented view of a record used by the terminal table."""
    row = dict(r)
    row["ts"] = human_time(r["ts"])[:-3]
    row["orig"] = _endpoint(r["id.orig_h"], r["id.orig_p"])
    row["resp"] = _endpoint(r["id.resp_h"], r["id.resp_p"])
    row["pkts"] = f"{r['orig_pkts']}/{r['resp_pkts']}"
    return row


@click.command()
@capture_argument
@format_option
@filter_options
@table_options
@click.option(
    "--services",
    "detect_services",
    is_flag=True,
    help="Name each connection's protocol from its first payload bytes (`service`, `app`; "
    "without it they are null and `port_service` names the port). About twice as slow on "
    "captures of short connections (docs/services.md).",
)
def flows(capture: str, fmt: str, detect_services: bool = False, **kwargs) -> None:
    """One row per TCP connection and UDP/ICMP flow in CAPTURE (pcap or pcapng, optionally
    gzip/bzip2/xz/zstd compressed; `-` reads stdin).

    Fields follow Zeek's conn.log (uid, conn_state, history, orig_bytes ...) with flowlens's
    own beside them: each endpoint's TCP state at the end (orig_state, resp_state), handshake
    and teardown kinds, who closed first, handshake RTT legs, retransmitted and out-of-order
    segments (Wireshark's rules). `service` is the protocol the first payload bytes speak
    (Zeek's names), `port_service` the port's registered name, `app` the parsed facts (TLS
    SNI, HTTP host ...). A 5-tuple
    reused after a close is a new row. json and csv stream rows as connections end; the table
    waits for the capture's end and sorts by start time.

    \b
    Example:
      flowlens flows capture.pcap --state time-wait --port 5432
      tcpdump -i eth0 -w - | flowlens flows - --format json
    """
    selection = selection_from(kwargs)
    config = config_from(kwargs)
    # the TCP analysis counts retransmissions and out-of-order segments into the records; the
    # service analyzer writes service and app from the first payload bytes
    analyzers: list = [TcpAnalyzer()]
    if detect_services:
        from ..analyzers.service_id import ServiceAnalyzer  # (its import costs every run)

        analyzers.append(ServiceAnalyzer())
    pipe, progress = open_pipeline(capture, config, analyzers)
    per_proto = [0] * 256  # connections by IP protocol number (cheaper than a Counter)

    def rows():
        for conn in selection.filter(pipe):
            per_proto[conn.proto] += 1
            yield conn.to_record()

    try:
        if fmt == "table":
            records = sorted(rows(), key=lambda r: (r["ts"], r["uid"]))
            if progress is not None:
                progress.close()
            records = [table_row(r) for r in records]
            write_records(
                records,
                fmt,
                sys.stdout,
                RECORD_FIELDS,
                TABLE_COLUMNS,
                TABLE_HEADERS,
                log_path="conn",
            )
        else:
            write_records(rows(), fmt, sys.stdout, RECORD_FIELDS, log_path="conn")
    finally:
        if progress is not None:
            progress.close()
    report_damage(pipe.summary_lines())
    kinds: Counter = Counter()
    for proto, n in enumerate(per_proto):
        if n:
            kinds[PROTO_NAMES.get(proto, str(proto))] += n
    total = sum(kinds.values())
    if not total:
        warn(nothing_line(capture, pipe.stats.frames, selection))
    by_proto = ", ".join(f"{n} {p}" for p, n in sorted(kinds.items()))
    warn(
        f"{total} connection{'' if total == 1 else 's'}{f' ({by_proto})' if by_proto else ''}"
        f"{' matching the filters' if selection else ''} in {pipe.stats.frames} frames"
    )
