"""`flowlens states`: what `ss -s` and `ss -tan state X` would have shown on each host of a capture."""

from __future__ import annotations

import ipaddress

import click

from ..core.filters import normalize_state
from ..errors import UsageError
from ..reports.ladder import utc_text
from ..reports.states import (
    LISTENING_FIELDS,
    SS_NAMES,
    STATES,
    SocketStates,
    auto_interval,
    save_states_figure,
    tick_times,
)
from ._common import (
    PICTURE_FORMATS,
    Output,
    capture_argument,
    check_output,
    config_from,
    open_pipeline,
    output_option,
    records_format_option,
    table_options,
    warn,
)
from ._timearg import DURATION, TIME


def _hosts(ctx, param, values):
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(v)))
        except ValueError:
            raise click.BadParameter(f"{v!r} is not an IP address", ctx, param) from None
    return tuple(out)


def _states(ctx, param, values):
    out: set[str] = set()
    for v in values:
        try:
            names = normalize_state(v)
        except UsageError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        if any(n.startswith("conn_state:") for n in names):
            raise click.BadParameter(
                f"{v!r} is a Zeek conn_state; sockets have TCP states (time-wait ...)", ctx, param
            )
        out |= names & set(STATES)
        if not names & set(STATES):
            raise click.BadParameter(f"{v!r}: no socket is ever counted in that state", ctx, param)
    return out


@click.command()
@capture_argument
@records_format_option
@output_option
@click.option(
    "--at",
    "at",
    type=TIME,
    help="One moment: end, +12.5s (from the first packet), epoch seconds or ISO 8601 (UTC).",
)
@click.option(
    "--interval",
    type=DURATION,
    help="Step of the table over time (10s, 250ms, 2m); default: about 30 rows.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Draw a stacked area chart per host into this file (.png, .svg, .pdf).",
)
@click.option(
    "--listening",
    is_flag=True,
    help="List the ports that accepted (SYN/ACK seen) or refused (RST to SYN) connections instead.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    callback=_hosts,
    help="Only the sockets of this host (repeatable).",
)
@click.option(
    "--port",
    "ports",
    multiple=True,
    type=click.IntRange(0, 65535),
    help="Only sockets with this local or remote port (repeatable).",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    callback=_states,
    help="Only these states: time-wait, close-wait ... or ss groups like connected (repeatable).",
)
@table_options
def states(
    capture: str,
    fmt: str,
    output: str | None,
    at,
    interval,
    plot_path,
    listening: bool,
    hosts,
    ports,
    states,
    **kwargs,
) -> None:
    """Rebuild, for every host seen in CAPTURE, how many TCP sockets it had in each state (ss -s),
    from each endpoint's state timeline. TIME_WAIT counts for 2 x MSL after it starts (--msl),
    even past the connection's last packet; an unanswered SYN (SYN-SENT) for 127 s and a
    SYN-RECV for 63 s, as Linux retries them; any other state, however quiet, until the end
    (a CLOSE_WAIT nobody closes stays). At the end the counts are the end states of `flows`.

    Default: counts per host and state over time, every --interval. --at gives one moment
    (json: one object per host with its counts by state name). --plot draws the stacked area
    chart where a TIME_WAIT pile-up or a CLOSE_WAIT leak shows at a glance. --listening lists
    the services seen from outside: host:port that accepted connections, with their clients,
    and ports that refused them.

    \b
    Example:
      flowlens states capture.pcap --at end --host 192.0.2.10
      flowlens states capture.pcap --at +60s --state time-wait --format json
      flowlens states capture.pcap --interval 10s --plot states.png
      flowlens states capture.pcap --listening
      flowlens states capture.pcap --interval 1s --format parquet -o states.parquet
    """
    if at is not None and interval is not None:
        raise click.UsageError(
            "--at and --interval exclude each other (one moment, or a table over time)"
        )
    if listening and (at is not None or interval is not None or states):
        raise click.UsageError("--listening takes no --at, --interval or --state")
    check_output(plot_path, formats=PICTURE_FORMATS)
    sink = Output(output, fmt, capture)
    config = config_from(kwargs)
    pipe, progress = open_pipeline(capture, config)
    index = SocketStates(hosts, ports, states)
    try:
        for conn in pipe:
            index.add(conn)
    finally:
        if progress is not None:
            progress.close()
    for line in pipe.summary_lines():
        warn(f"Warning: {line}")
    first, last = pipe.stats.first_ts_ns, pipe.stats.last_ts_ns
    if first is None or last is None:
        raise UsageError(f"{capture}: no packets")
    with sink:
        if not _write(sink, index, listening, at, interval, first, last):
            return
    if plot_path:
        left_out = save_states_figure(
            index, first, last, plot_path, title=f"TCP sockets per host: {capture}"
        )
        if left_out:
            warn(f"Warning: {plot_path}: {len(left_out)} quieter hosts left out (use --host)")
    warn(f"{index.connections} TCP connections, {len(index.host_list())} hosts with sockets")


def _write(
    sink: Output, index: SocketStates, listening: bool, at, interval, first: int, last: int
) -> bool:
    """The records: listening ports, one moment, or the series; False when done (--listening)."""
    fmt, out = sink.fmt, sink.text
    if listening:
        rows = index.listening_records()
        sink.records(rows, LISTENING_FIELDS, log_path="flowlens_states")
        warn(
            f"{sum(r['state'] == 'LISTEN' for r in rows)} listening, {sum(r['state'] == 'REFUSED' for r in rows)} refusing host:port"
        )
        return False

    if at is not None:
        ts = at.resolve(first, last)
        records = index.at_records(ts)
        fields = ("host", "ts", "total", *STATES)
        if fmt == "table":
            out.write(
                f"TCP sockets per host at {utc_text(ts)} ({(ts - first) / 1e9:+.6f} s from the first packet)\n"
            )
            _table(records, ("host", "total"), out)
        else:
            sink.records(records, fields, log_path="flowlens_states")
    else:
        step = interval or auto_interval(last - first)
        times = tick_times(first, last, step)
        fields = ("ts", "time_s", "host", "total", *STATES)
        if fmt == "table":
            records = index.series_records(times, first)
            out.write(f"TCP sockets per host every {step:g} s from {utc_text(first)}\n")
            for rec in records:
                rec["time_s"] = f"{rec['time_s']:.3f}" if step < 1 else f"{rec['time_s']:.1f}"
            _table(records, ("time_s", "host", "total"), out)
        else:
            sink.records(
                index.iter_series_records(times, first), fields, log_path="flowlens_states"
            )
    return True


def _table(records: list[dict], lead: tuple[str, ...], out) -> None:
    """An aligned table with the lead columns and the states that are non-zero somewhere."""
    from ..reports.formats import render_table

    present = [s for s in STATES if any(r[s] for r in records)]
    columns = (*lead, *present)
    headers = (*lead, *(SS_NAMES[s] for s in present))
    if records:
        if "time_s" in lead:  # strings of fixed decimals: right-align them by hand
            width = max(len(r["time_s"]) for r in records)
            for r in records:
                r["time_s"] = r["time_s"].rjust(width)
        out.write(render_table(records, columns, headers) + "\n")
