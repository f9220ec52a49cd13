"""`flowlens timeline`: every packet of a connection with its flags, numbers and both endpoints' states."""

from __future__ import annotations

import sys

import click

from ..analyzers.packetlog import (
    PacketCollector,
    first_packet_filter,
    select_logs,
)
from ..analyzers.tcpanalysis import TcpAnalyzer
from ..reports.formats import TABLE_WIDTH, render_table, write_records
from ..reports.hints import MAX_HINTS, extract_hints
from ..reports.timeline import (
    TABLE_COLUMNS,
    TABLE_HEADERS,
    TIMELINE_FIELDS,
    caption,
    table_rows,
    timeline_records,
)
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
    wide_option,
)


@click.command()
@capture_argument
@format_option
@filter_options
@click.option(
    "--absolute",
    is_flag=True,
    help="Raw sequence and acknowledgment numbers instead of relative ones.",
)
@wide_option
@table_options
def timeline(capture: str, fmt: str, absolute: bool, wide: bool = False, **kwargs) -> None:
    """Every packet of the selected connection(s) of CAPTURE as a row: frame, time since the
    connection's first packet, direction, tcpdump flags, relative seq/ack, length, window, the
    TCP state of both endpoints after the packet, and analysis notes (handshake legs,
    retransmissions, dup ACKs, zero window, RST ...). A state change no packet caused (TIME_WAIT
    running out) is a row without a frame.

    Choose the connection with --uid (from `flowlens flows`); --port, --host ... also work;
    without a filter every connection is listed, each as it ends. The table fits 120 columns,
    long notes folded under their row; --wide keeps each row on one line.

    \b
    Example:
      flowlens timeline capture.pcap --uid CMayhZrxGd
      flowlens timeline capture.pcap --uid CMayhZrxGd --format csv > frames.csv
      flowlens timeline capture.pcap --port 5432 --wide
    """
    selection = selection_from(kwargs)
    config = config_from(kwargs)
    wants = first_packet_filter(selection)
    # Wireshark's analysis notes, the analyzer running on the kept connections only
    tcp = TcpAnalyzer(keep_frames=True, wants=wants)
    collector = PacketCollector(wants, full=True, tcp=tcp)
    pipe, progress = open_pipeline(capture, config, [collector])
    # rows are written as each connection ends, so memory holds only the open connections
    shown = [0]

    def pairs():
        for pair in select_logs(pipe, selection, collector, capture):
            shown[0] += 1
            yield pair

    hint_uids: list[str] = []  # (table format: the hint lines name them)
    try:
        if fmt == "table":
            for i, (conn, log) in enumerate(pairs()):
                if i:
                    sys.stdout.write("\n")
                sys.stdout.write(caption(conn) + "\n")
                rows = table_rows(timeline_records(conn, log, absolute))
                width = None if wide else TABLE_WIDTH
                text = render_table(
                    rows, TABLE_COLUMNS, TABLE_HEADERS, max_width=width, wrap="notes"
                )
                sys.stdout.write(text + "\n")
                if len(hint_uids) < MAX_HINTS:
                    hint_uids.append(conn.uid)
            if not shown[0]:  # the table's header, as every command prints when nothing matched
                sys.stdout.write(render_table([], TABLE_COLUMNS, TABLE_HEADERS) + "\n")
        else:
            records = (
                rec for conn, log in pairs() for rec in timeline_records(conn, log, absolute)
            )
            if fmt == "csv":
                records = ({**rec, "notes": "; ".join(rec["notes"])} for rec in records)
            write_records(records, fmt, sys.stdout, TIMELINE_FIELDS, log_path="flowlens_timeline")
    finally:
        if progress is not None:
            progress.close()
    report_damage(pipe.summary_lines())
    if not shown[0]:
        warn(nothing_line(capture, pipe.stats.frames, selection))
    if fmt == "table":
        for line in extract_hints(capture, hint_uids, shown[0], pipe.stats.container):
            warn(line)
