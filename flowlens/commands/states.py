"""`flowlens states`: what `ss -s` and `ss -tan state X` would have shown on each host of a capture."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import click

from ..core.filters import normalize_state
from ..errors import UsageError
from ..reports.formats import plural, utc_cells
from ..reports.ladder import utc_text
from ..reports.states import (
    LISTENING_FIELDS,
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
    nothing_line,
    output_option,
    records_format_option,
    report_damage,
    table_options,
    warn,
    wide_option,
)
from ._stream import ConnectionStream, one_jobs_option, scheduler_option
from ._timearg import DURATION, TIME

#: rows of the table over time that --interval may ask for (one per tick)
MAX_TICKS = 100_000
#: shard 0's share of the hash against an even share with forked --jobs shards (core/shard.py's
#: FIRST_WEIGHT): this process also adds every connection's socket spans up
#: (SocketStates.add_parts), so it reads fewer connections; measured on
#: bench-out/sequential-1M.pcap with 2 shards as the weight where the two processes' CPU times
#: (os.times) came out even, parent 2.6-2.9 s against 2.0-2.2 s at 0.84
SHARD_WEIGHT = 0.60


def _hosts(ctx: click.Context, param: click.Parameter, values: Iterable[str]) -> tuple[str, ...]:
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(v)))
        except ValueError:
            raise click.BadParameter(f"{v!r} is not an IP address", ctx, param) from None
    return tuple(out)


def _states(ctx: click.Context, param: click.Parameter, values: Iterable[str]) -> set[str]:
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
    help="One moment: end, +12.5s (from the first packet), epoch seconds or ISO 8601 (UTC). "
    "A time before the first packet (-5s, or an earlier epoch) is an error; one after the last "
    "packet is labelled with how long after, and counts the end states with their timers "
    "running on (e.g. --at +1h: which TIME_WAITs are left).",
)
@click.option(
    "--interval",
    type=DURATION,
    help="Step of the table over time (10s, 250ms, 2m); default: about 30 rows.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(),  # checked by check_output: one `Error:` line, exit 1
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
    help="Only these states: time-wait, close-wait, estab ... (ss's spellings work) or ss groups "
    "like connected (repeatable).",
)
@wide_option
@one_jobs_option
@scheduler_option
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
    wide: bool = False,
    jobs: int | None = 1,
    scheduler: str | None = None,
    **kwargs,
) -> None:
    """Rebuild, for every host seen in CAPTURE, how many TCP sockets it had in each state (ss -s),
    from each endpoint's state timeline. TIME_WAIT counts for 2 x MSL after it starts (--msl),
    even past the connection's last packet; an unanswered SYN (SYN_SENT) until the SYN the
    kernel would have sent next did not come (else 131 s, Linux 6.5+'s give-up) and a
    SYN_RECEIVED likewise (else 63 s); any other state, however quiet, until the end (a
    CLOSE_WAIT nobody closes stays). At the end the counts are the end states of `flows`.

    Default: counts per host and state over time, every --interval. --at gives one moment
    (json: one object per host with its counts by state name). --plot draws the stacked area
    chart where a TIME_WAIT pile-up or a CLOSE_WAIT leak shows at a glance. --listening lists
    the services seen from outside: host:port that accepted connections, with their clients,
    and ports that refused them. States are spelt as in `flows` (TIME_WAIT); --state also takes
    ss's spellings (time-wait, estab, syn-recv). A table wider than 120 columns adds up the
    handshake and closing steps as `other` (--wide: every state).

    \b
    Example:
      flowlens states capture.pcap --at end --host 192.0.2.10
      flowlens states capture.pcap --at +60s --state time-wait --format json
      flowlens states capture.pcap --interval 10s --plot states.png
      flowlens states capture.pcap --listening
      flowlens states capture.pcap --state estab --wide
      flowlens states /shared/big.pcap --at end --scheduler tcp://10.0.0.5:8786
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
    index = SocketStates(hosts, ports, states)

    # each connection's spans are made where it was read (a shard, with --jobs) and added in
    # the one-process order
    def work(c, _analyzers):
        return index.parts(c)

    stream = ConnectionStream(
        capture, config, list, work, jobs, scheduler, first_weight=SHARD_WEIGHT
    )
    for parts in stream:
        index.add_parts(parts)
    facts = stream.facts
    report_damage(facts["damage"])
    first, last = facts["first_ts_ns"], facts["last_ts_ns"]
    filtered = bool(hosts or ports or states)
    ts = where = None
    if at is not None and first is not None and last is not None:
        ts = at.resolve(first, last)
        where = _moment(capture, at, ts, first, last)  # raises before the first packet
    if first is None or last is None or (not len(index) and not listening):
        # nothing to count: say so, and print the empty shape of what was asked for
        warn(nothing_line(capture, facts["frames"], filtered, noun="TCP connection"))
        with sink:
            if listening:
                sink.records([], LISTENING_FIELDS, log_path="flowlens_states")
            elif at is not None:
                _empty(sink, ("host", "total"), ("host", "ts", "total", *STATES))
            else:
                _empty(
                    sink, ("time_s", "host", "total"), ("ts", "time_s", "host", "total", *STATES)
                )
        if plot_path:
            warn(f"{plot_path}: not written (no sockets to draw)")
        warn(f"{index.connections} TCP connections, 0 hosts with sockets")
        return
    with sink:
        if not _write(sink, index, listening, at, ts, where, interval, first, last, capture, wide):
            return
    if plot_path:
        try:
            left_out = save_states_figure(
                index, first, last, plot_path, title=f"TCP sockets per host: {capture}"
            )
        except OSError as exc:  # the disk filled, the folder went away after the check
            raise click.ClickException(f"{plot_path}: {exc.strerror or exc}") from exc
        if left_out:
            warn(
                f"Warning: {plot_path}: {plural(len(left_out), 'quieter host')} left out "
                "(use --host)"
            )
    warn(
        f"{plural(index.connections, 'TCP connection')}, "
        f"{plural(len(index.host_list()), 'host')} with sockets"
    )


def _write(
    sink: Output, index: SocketStates, listening: bool, at, ts, where, interval,
    first: int, last: int, capture: str, wide: bool,
) -> bool:  # fmt: skip
    """The records: listening ports, one moment, or the series; False when done (--listening)."""
    fmt, out = sink.fmt, sink.text
    if listening:
        rows = index.listening_records()
        if fmt == "table":  # UTC for people, as every other table (json/csv keep epoch seconds)
            firsts = utc_cells([r["first_ts"] for r in rows] + [r["last_ts"] for r in rows])
            shown = [
                {**r, "first_ts": first, "last_ts": last}
                for r, first, last in zip(rows, firsts, firsts[len(rows) :])
            ]
            headers = [
                {"first_ts": "first (UTC)", "last_ts": "last (UTC)"}.get(f, f)
                for f in LISTENING_FIELDS
            ]
            sink.records(
                shown, LISTENING_FIELDS, LISTENING_FIELDS, headers, log_path="flowlens_states"
            )
        else:
            sink.records(rows, LISTENING_FIELDS, log_path="flowlens_states")
        warn(
            f"{sum(r['state'] == 'LISTEN' for r in rows)} listening, "
            f"{sum(r['state'] == 'REFUSED' for r in rows)} refusing host:port"
        )
        return False

    if at is not None:
        records = index.at_records(ts)
        fields: tuple[str, ...] = ("host", "ts", "total", *STATES)
        if fmt == "table":
            out.write(f"TCP sockets per host at {utc_text(ts)} ({where})\n")
            _table(records, ("host", "total"), out, wide)
        else:
            sink.records(records, fields, log_path="flowlens_states")
    else:
        step = interval or auto_interval(last - first)
        ticks = (last - first) / 1e9 / step
        if ticks > MAX_TICKS:
            # a damaged timestamp can stretch a capture over decades: --interval 1s would
            # then be a billion rows (a run that never ends), not a table
            raise UsageError(
                f"{capture}: --interval {step:g}s makes {ticks:,.0f} rows over the capture's "
                f"{(last - first) / 1e9:,.0f} s, more than {MAX_TICKS:,} (give a longer "
                f"--interval, or --at)"
            )
        times = tick_times(first, last, step)
        fields = ("ts", "time_s", "host", "total", *STATES)
        if fmt == "table":
            records = index.series_records(times, first)
            out.write(f"TCP sockets per host every {step:g} s from {utc_text(first)}\n")
            for rec in records:
                rec["time_s"] = f"{rec['time_s']:.3f}" if step < 1 else f"{rec['time_s']:.1f}"
            _table(records, ("time_s", "host", "total"), out, wide)
        else:
            sink.records(
                index.iter_series_records(times, first), fields, log_path="flowlens_states"
            )
    return True


def _moment(capture: str, at, ts: int, first: int, last: int) -> str:
    """Where `--at` falls: "+12.500000 s from the first packet", with ", 8.000000 s after the
    last packet" past the end (and that said on stderr too, whatever the format: the counts
    there are the end states with TIME_WAIT and the SYN timers running on, no packet seen).
    A time before the first packet, however written (`-5s`, an epoch or ISO time), raises
    UsageError: no socket's state is known there."""
    if ts < first:
        raise UsageError(
            f"{capture}: --at {at.text} is {(first - ts) / 1e9:.6f} s before the first packet "
            f"({utc_text(first)}); the capture runs to {utc_text(last)}"
        )
    where = f"{(ts - first) / 1e9:+.6f} s from the first packet"
    if ts > last:
        after = f"{(ts - last) / 1e9:.6f} s after the last packet"
        warn(
            f"{capture}: --at {at.text} is {after} ({utc_text(last)}): the end states, with "
            f"TIME_WAIT and unanswered SYNs running out as their timers say"
        )
        where += f", {after}"
    return where


def _empty(sink: Output, table_columns: tuple[str, ...], fields: tuple[str, ...]) -> None:
    """The output of a run with nothing to count: a table's header, a CSV header, no JSON."""
    if sink.fmt == "table":
        _table([], table_columns, sink.text)
    else:
        sink.records([], fields, log_path="flowlens_states")


#: the states a socket sits in for long (an open connection, a leak, a close waiting on the
#: peer, the 2 x MSL wait); the others are steps of a handshake or a close, which the default
#: table adds up as `other` when every state would not fit in 120 columns (--wide: all)
LASTING = ("ESTABLISHED", "FIN_WAIT_2", "CLOSE_WAIT", "TIME_WAIT")


def _table(records: list[dict], lead: tuple[str, ...], out, wide: bool = False) -> None:
    """An aligned table with the lead columns and the states that are non-zero somewhere."""
    from ..reports.formats import TABLE_WIDTH, render_table

    present = [s for s in STATES if any(r[s] for r in records)]
    if records and "time_s" in lead:  # strings of fixed decimals: right-align them by hand
        width = max(len(r["time_s"]) for r in records)
        for r in records:
            r["time_s"] = r["time_s"].rjust(width)
    # the states' one spelling (core/filters.TCP_STATE_NAMES) as headers; no records: the header
    text = render_table(records, (*lead, *present))
    if records and not wide and max(map(len, text.splitlines())) > TABLE_WIDTH:
        brief = [s for s in present if s not in LASTING]
        for r in records:
            r["other"] = sum(r[s] for s in brief)
        text = render_table(records, (*lead, *(s for s in present if s in LASTING), "other"))
    out.write(text + "\n")
