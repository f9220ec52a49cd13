"""`flowlens flows`: one row per connection or flow, Zeek conn.log fields plus flowlens's own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import click

from ..analyzers.tcpanalysis import TcpAnalyzer
from ..core.connections import RECORD_FIELDS
from ..reports.formats import TABLE_WIDTH, json_line, plural
from ..reports.sorted_table import SortedTable, by_time
from ._common import (
    Output,
    capture_argument,
    community_id_option,
    config_from,
    filter_options,
    nothing_line,
    output_option,
    records_format_option,
    report_damage,
    selection_from,
    table_options,
    warn,
    wide_option,
)
from ._stream import ConnectionStream, jobs_option, scheduler_option

#: --wide: every column of the table
TABLE_COLUMNS = (
    "uid", "ts", "duration", "proto", "orig", "resp", "service", "conn_state", "history",
    "orig_state", "resp_state", "handshake", "teardown", "pkts", "bytes", "retransmissions",
    "irtt_ms",
)  # fmt: skip
#: the default, within 120 columns (IPv4 and short IPv6 addresses): who, when, how long, how
#: each endpoint ended and how much each sent; Zeek's conn_state and history are in --wide
SHORT_COLUMNS = ("uid", "ts", "duration", "orig", "resp", "orig_state", "resp_state", "bytes")
#: a column's header, where it is not the field's name (units in the name: dur_s)
HEADERS = {
    "ts": "start (UTC)", "duration": "dur_s", "pkts": "pkts o/r", "bytes": "bytes o/r",
    "retransmissions": "retrans",
}  # fmt: skip


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def table_row(r: dict, columns: Sequence[str] | None = None) -> dict:
    """The narrower, human-oriented view of a record used by the terminal table: with
    `columns`, only those (a table of a million connections keeps its rows, not the records,
    until it is sorted and aligned)."""
    row = dict(r) if columns is None else {c: r[c] for c in columns if c in r}
    row["orig"] = _endpoint(r["id.orig_h"], r["id.orig_p"])
    row["resp"] = _endpoint(r["id.resp_h"], r["id.resp_p"])
    row["pkts"] = f"{r['orig_pkts']}/{r['resp_pkts']}"
    ob, rb = r["orig_bytes"], r["resp_bytes"]  # payload bytes, as Zeek counts them
    row["bytes"] = f"{'-' if ob is None else ob}/{'-' if rb is None else rb}"
    return row


@click.command()
@capture_argument
@records_format_option
@output_option
@filter_options
@table_options
@wide_option
@community_id_option
@jobs_option
@scheduler_option
@click.option(
    "--services",
    "detect_services",
    is_flag=True,
    help="Name each connection's protocol from its first payload bytes (`service`, `app`; "
    "without it they are null and `port_service` names the port). About twice as slow on "
    "captures of short connections (docs/services.md).",
)
def flows(
    capture: str,
    fmt: str,
    output: str | None,
    detect_services: bool = False,
    wide: bool = False,
    jobs: int | None = None,
    scheduler: str | None = None,
    **kwargs,
) -> None:
    """One row per TCP connection and UDP/ICMP flow in CAPTURE (pcap or pcapng, optionally
    gzip/bzip2/xz/zstd compressed; `-` reads stdin).

    Fields follow Zeek's conn.log (uid, conn_state, history, orig_bytes ...) with flowlens's
    own beside them: each endpoint's TCP state at the end (orig_state, resp_state), handshake
    and teardown kinds, who closed first, handshake RTT legs, retransmitted and out-of-order
    segments (Wireshark's rules). `service` is the protocol the first payload bytes speak
    (Zeek's names), `port_service` the port's registered name, `app` the parsed facts (TLS
    SNI, HTTP host ...). A 5-tuple
    reused after a close is a new row. json and csv stream rows as connections end; the table
    waits for the capture's end and sorts by start time: its default columns fit 120
    characters (bytes o/r are payload bytes, dur_s seconds); --wide adds proto, service,
    conn_state, history, handshake, teardown, packets, retransmissions and irtt_ms; `community_id` is the Community ID v1
    hash, seed 0 unless --community-id-seed says otherwise.

    \b
    Example:
      flowlens flows capture.pcap --state time-wait --port 5432
      tcpdump -i eth0 -w - | flowlens flows - --format json
      flowlens flows capture.pcap --wide
      flowlens flows capture.pcap --format parquet -o flows.parquet
      flowlens flows capture.pcap --community-id-seed 1 --format json
      flowlens flows big.pcap --jobs 0 --format json
      flowlens flows /shared/big.pcap --scheduler tcp://10.0.0.5:8786 --format json
    """
    sink = Output(output, fmt, capture)
    selection = selection_from(kwargs)
    config = config_from(kwargs)

    def analyzers() -> list:
        # the TCP analysis counts retransmissions and out-of-order segments into the records;
        # the service analyzer writes service and app from the first payload bytes
        out: list = [TcpAnalyzer()]
        if detect_services:
            from ..analyzers.service_id import ServiceAnalyzer  # (its import costs every run)

            out.append(ServiceAnalyzer())
        return out

    matches = selection.matches if selection else None

    def work(conn, _analyzers):
        return conn.to_record() if matches is None or matches(conn) else None

    def work_json(conn, _analyzers):
        # JSON lines are made where the connection was read: with --jobs, in its shard (the
        # merging process only writes them, in order)
        if matches is None or matches(conn):
            return conn.proto_name, json_line(conn.to_record())
        return None

    stream = ConnectionStream(
        capture, config, analyzers, work_json if fmt == "json" else work, jobs, scheduler
    )
    per_proto: Counter = Counter()  # connections by protocol name

    def rows():
        for r in stream:
            per_proto[r["proto"]] += 1
            yield r

    def lines():
        if not stream.sharded:
            for proto, line in stream:
                per_proto[proto] += 1
                yield line
            return
        # a list of lines at a time: one write for the shards' merged lists (commands/_stream)
        for chunk in stream.chunks():
            per_proto.update([proto for proto, _line in chunk])
            yield b"".join([line for _proto, line in chunk])

    try:
        with sink:
            if fmt == "table":
                columns = TABLE_COLUMNS if wide else SHORT_COLUMNS
                headers = [HEADERS.get(c, c) for c in columns]
                # sorted by start time (rows past SPILL_ROWS wait in a temporary file)
                with SortedTable(
                    columns, headers, key=by_time, utc_column="ts", full_dates=wide
                ) as table:
                    for r in rows():
                        table.add(table_row(r, columns))
                    stream.close_progress()
                    sink.lines(
                        table.lines(
                            max_width=None if wide else TABLE_WIDTH, shrink=("resp", "orig")
                        )
                    )
            elif fmt == "json":
                sink.json_lines(lines())
            else:
                sink.records(rows(), RECORD_FIELDS, log_path="conn")
    finally:
        stream.close()
    facts = stream.facts
    damage, notes, frames = facts["damage"], facts["notes"], facts["frames"]
    report_damage(damage)
    kinds = per_proto
    total = sum(kinds.values())
    if not total:
        warn(nothing_line(capture, frames, selection))
    by_proto = ", ".join(f"{n} {p}" for p, n in sorted(kinds.items()))
    warn(
        f"{plural(total, 'connection')}{f' ({by_proto})' if by_proto else ''}"
        f"{' matching the filters' if selection else ''} in {plural(frames, 'frame')}"
    )
    for line in notes:  # (once, here and in the report: no damage, so no Warning)
        warn(f"Note: {line}")
