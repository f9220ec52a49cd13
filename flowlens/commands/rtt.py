"""`flowlens rtt`: round-trip times per connection and direction, or per server, client, pair."""

from __future__ import annotations

import os
from collections.abc import Sequence

import click

from ..analyzers.rtt import RttCollector
from ..reports.formats import TABLE_WIDTH, json_line, plural
from ..reports.rtt import (
    AGGREGATE_FIELDS,
    BY_CHOICES,
    CONNECTION_FIELDS,
    SAMPLE_FIELDS,
    Aggregator,
    Series,
    connection_rows,
    sample_rows,
    series_for,
)
from ..reports.sorted_table import SortedTable, by_time
from ._common import (
    PICTURE_FORMATS,
    Output,
    capture_argument,
    check_output,
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

#: shard 0's share of the hash against an even share with forked --jobs shards (core/shard.py's
#: FIRST_WEIGHT) when this process turns the rows into CSV, Zeek or table lines or adds groups up
#: (its JSON lines are made in the shards: FIRST_WEIGHT, as flows); measured on
#: bench-out/sequential-1M.pcap with 2 shards as the weight where the two processes' CPU times
#: (os.times) came out even, with the JSON lines made here: 1.8-2.4 s against 1.4-1.9 s at 0.84
SHARD_WEIGHT = 0.70

# the table's columns carry the fields' own names (the json/csv keys), in every view
_STATS_WIDE = ("count", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "stdev_ms",
               "sources")  # fmt: skip
_STATS_SHORT = ("count", "min_ms", "p50_ms", "max_ms")
#: --wide: every statistic; by default the ones that fit 120 columns
TABLE_COLUMNS = ("uid", "ts", "proto", "orig", "resp", "path", "handshake_ms", *_STATS_WIDE)
SHORT_COLUMNS = ("uid", "orig", "resp", "path", "handshake_ms", *_STATS_SHORT)
AGG_COLUMNS = {
    "server": ("host", "path", "conns", "handshake_p50_ms", *_STATS_WIDE),
    "client": ("host", "path", "conns", "handshake_p50_ms", *_STATS_WIDE),
    "pair": ("orig_h", "resp_h", "path", "conns", "handshake_p50_ms", *_STATS_WIDE),
}
_AGG_STATS = ("count", "min_ms", "p50_ms", "p90_ms", "max_ms")
AGG_SHORT = {
    "server": ("host", "path", "conns", "handshake_p50_ms", *_AGG_STATS),
    "client": ("host", "path", "conns", "handshake_p50_ms", *_AGG_STATS),
    "pair": ("orig_h", "resp_h", "path", "conns", "handshake_p50_ms", *_AGG_STATS),
}
SAMPLE_COLUMNS = ("uid", "ts", "orig", "resp", "path", "source", "rtt_ms", "frame", "answer_frame")
SAMPLE_SHORT = ("uid", "ts", "resp", "path", "source", "rtt_ms", "frame", "answer_frame")

#: one line under a table (rtt --help says more)
WHERE = (
    "path: cap>resp>cap = capture point to responder and back, cap>orig>cap = to originator "
    "and back (their sum: end-to-end)"
)


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _table_row(r: dict, columns: Sequence[str] | None = None) -> dict:
    """A record as the terminal table shows it: with `columns`, only those and its ts and uid
    (a table of a million connections keeps its rows, not the records, until it is sorted)."""
    row = dict(r) if columns is None else {c: r[c] for c in (*columns, "ts", "uid") if c in r}
    if "uid" in r:
        row["orig"] = _endpoint(r["id.orig_h"], r["id.orig_p"])
        row["resp"] = _endpoint(r["id.resp_h"], r["id.resp_p"])
    if "sources" in row:
        row["sources"] = " ".join(f"{k}:{v}" for k, v in r["sources"].items()) or None
    return row


@click.command()
@capture_argument
@records_format_option
@output_option
@click.option(
    "--by",
    type=click.Choice(BY_CHOICES),
    default="connection",
    show_default=True,
    help="One row per connection and direction, or aggregated per server (responder address), "
    "client (originator address) or host pair.",
)
@click.option(
    "--samples",
    is_flag=True,
    help="One row per RTT sample (with its two frame numbers) instead of statistics.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(),  # checked by check_output: one `Error:` line, exit 1
    help="Also draw RTT over time (a line per connection, or per server/client with --by) and "
    "a histogram into this image (.png, .svg, .pdf ...).",
)
@wide_option
@jobs_option
@scheduler_option
@filter_options
@table_options
def rtt(
    capture: str,
    fmt: str,
    output: str | None,
    by: str,
    samples: bool,
    plot_path: str | None,
    wide: bool,
    jobs: int | None = None,
    scheduler: str | None = None,
    **kwargs,
) -> None:
    """Round-trip times in CAPTURE, measured at the capture point, per connection and
    direction: the handshake leg and data RTT statistics (count, min, p50, p90, p99, max,
    mean, stdev in ms).

    Samples: a data segment and the ACK ending exactly at it (Karn's rule: none when the ACK
    covers retransmitted data), the TCP timestamps echo where Karn's rule leaves none, DNS
    query and answer by id, other UDP and ICMP echo by reply-after-request. `path` says which
    round trip a row measured: cap>resp>cap is capture point -> responder -> capture point
    (the SYN -> SYN/ACK leg), cap>orig>cap the originator's side (SYN/ACK -> ACK). A capture
    taken on the client shows the whole network RTT in cap>resp>cap. --by server and --by
    client keep these labels: a server's leg is cap>resp>cap, a client's cap>orig>cap.

    The table shows the main columns within 120 characters; --wide adds start time, proto,
    p90/p99, mean, stdev and the samples' sources (with --samples: the originator). Times in ms with 3 decimals (microseconds).

    \b
    Example:
      flowlens rtt capture.pcap --port 443
      flowlens rtt capture.pcap --by server --plot rtt.png
      flowlens rtt capture.pcap --samples --uid CwV6 --format csv
      flowlens rtt capture.pcap --wide
      flowlens rtt /shared/big.pcap --by server --scheduler tcp://10.0.0.5:8786
      flowlens rtt capture.pcap --format parquet -o rtt.parquet
    """
    sink = Output(output, fmt, capture)
    selection = selection_from(kwargs)
    config = config_from(kwargs)
    check_output(plot_path, formats=PICTURE_FORMATS)
    series: dict[str, Series] = {}
    agg = Aggregator(by, None) if by != "connection" and not samples else None
    seen = [0, 0]  # connections, connections with rows
    make = sample_rows if samples else connection_rows
    matches = selection.matches if selection else None
    # JSON lines are made where the connection was read (its shard with --jobs, as in flows):
    # the merging process only writes them
    as_json = fmt == "json" and agg is None

    def work(conn, analyzers):
        # (where the connection was read: one process, or its shard with --jobs) what it
        # gives the plot, and its rows or its part of the groups
        if matches is not None and not matches(conn):
            return None
        rtt = analyzers[0]
        drawn = series_for(conn, by, rtt) if plot_path is not None else None
        if agg is not None:
            return drawn, Aggregator(by, rtt).parts(conn)
        if as_json:
            return drawn, b"".join([json_line(r) for r in make(conn, rtt)])
        return drawn, make(conn, rtt)

    def collector() -> list:
        return [RttCollector()]

    stream = ConnectionStream(
        capture,
        config,
        collector,
        work,
        jobs,
        scheduler,
        first_weight=None if as_json else SHARD_WEIGHT,
    )

    def taken():
        for drawn, out in stream:
            seen[0] += 1
            if drawn:
                for label, ts_s, rtt_ms in drawn:
                    s = series.get(label)
                    if s is None:
                        s = series[label] = Series(label)
                    s.ts_s.extend(ts_s)
                    s.rtt_ms.extend(rtt_ms)
            yield out

    def rows():
        for out in taken():
            if out:
                seen[1] += 1
                yield from out

    def lines():
        for out in taken():
            if out:  # (a connection's lines, joined)
                seen[1] += 1
                yield out

    fields = SAMPLE_FIELDS if samples else CONNECTION_FIELDS
    try:
        with sink:
            if agg is not None:
                for parts in taken():
                    agg.add_parts(parts)
                records = agg.rows()
                stream.close_progress()
                if fmt == "table":
                    records = [_table_row(r) for r in records]
                sink.records(
                    records,
                    AGGREGATE_FIELDS,
                    (AGG_COLUMNS if wide else AGG_SHORT)[by],
                    log_path="flowlens_rtt",
                    **_fit(wide),
                )
            elif fmt == "table":
                columns: tuple[str, ...]
                if samples:
                    columns = SAMPLE_COLUMNS if wide else SAMPLE_SHORT
                else:
                    columns = TABLE_COLUMNS if wide else SHORT_COLUMNS
                # a sample's ts is its answer's time; a connection's its first packet's
                ts_header = "time (UTC)" if samples else "start (UTC)"
                headers = [ts_header if c == "ts" else c for c in columns]
                # sorted by time (rows past SPILL_ROWS wait in a temporary file)
                with SortedTable(
                    columns, headers, key=by_time, utc_column="ts", full_dates=wide
                ) as table:
                    for r in rows():
                        table.add(_table_row(r, columns))
                    stream.close_progress()
                    sink.lines(table.lines(**_fit(wide)))
            elif as_json:
                sink.json_lines(lines())
            else:
                sink.records(rows(), fields, log_path="flowlens_rtt")
    finally:
        stream.close()
    if plot_path is not None:
        from ..reports.rtt import draw_figure

        title = f"RTT at the capture point: {os.path.basename(capture)}"
        fig = draw_figure(list(series.values()), title=title)
        try:
            fig.savefig(plot_path)
        except OSError as exc:
            raise click.ClickException(f"{plot_path}: {exc.strerror or exc}") from exc
        warn(f"Wrote {plot_path} ({len(series)} series)")
    facts = stream.facts
    report_damage(facts["damage"])
    if not seen[0]:
        warn(nothing_line(capture, facts["frames"], selection))
    if fmt == "table":
        warn(WHERE)
    if agg is not None:
        made = f"{plural(len(agg.groups), 'row')} by {by}"
    else:
        made = f"{plural(seen[1], 'connection')} with round trips"
    matching = " matching the filters" if selection else ""
    warn(
        f"{made}, from {plural(seen[0], 'connection')}{matching} in "
        f"{plural(facts['frames'], 'frame')}"
    )


def _fit(wide: bool) -> dict:
    """The table's width limit: none with --wide, else 120 columns, cutting the addresses."""
    return {} if wide else {"max_width": TABLE_WIDTH, "shrink": ("resp", "orig", "host")}
