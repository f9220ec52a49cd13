"""`flowlens plot`: a connection's stream graph (time-sequence, throughput, RTT, window) as a picture."""

from __future__ import annotations

import click

from ..analyzers.rtt import RttCollector
from ..analyzers.streamlog import StreamCollector
from ..core.connections import Connection
from ..core.decode import IPPROTO_TCP
from ..errors import UsageError
from ..reports.streamgraph import (
    DIRECTIONS,
    KINDS,
    RttGraph,
    ThroughputGraph,
    TseqGraph,
    WindowGraph,
    rtt_graph,
    throughput_graph,
    tseq_graph,
    window_graph,
)
from ..reports.streamgraph_plot import save_figure
from ._common import (
    PICTURE_FORMATS,
    capture_argument,
    check_output,
    config_from,
    nothing_line,
    open_pipeline,
    report_damage,
    table_options,
    warn,
)


@click.command()
@capture_argument
@click.option(
    "--uid",
    required=True,
    help="The connection to draw (from `flowlens flows`; a unique prefix is enough).",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="tseq",
    show_default=True,
    help="tseq: the Stevens time-sequence graph (segments, ACK line, receive window, SACK blocks, "
    "retransmissions in red); throughput: bits/s over a moving average, and each segment's "
    "length; rtt: RTT samples over time by source; window: advertised windows and bytes in flight.",
)
@click.option(
    "--direction",
    type=click.Choice(DIRECTIONS),
    help="The sender whose segments are drawn: orig (originator -> responder) or resp "
    "(default: the direction that carried more bytes; throughput draws both unless given).",
)
@click.option(
    "--ma-window",
    type=click.FloatRange(min=0.000001),
    default=1.0,
    show_default=True,
    help="Throughput's moving-average window in seconds (Wireshark's \"MA Window\").",
)
@click.option(
    "-o",
    "--output",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="The picture to write; its extension picks the format (.png, .svg, .pdf ...).",
)
@table_options
def plot(
    capture: str,
    uid: str,
    kind: str,
    direction: str | None,
    ma_window: float,
    out_path: str,
    **kwargs,
) -> None:
    """Draw one TCP connection of CAPTURE as tcptrace and Wireshark's stream graphs do.

    tseq is the Stevens time-sequence graph of one direction: each segment a vertical bar from
    its relative sequence number to seq + len at its capture time (retransmissions in red, as
    the TCP analysis classes them), the peer's cumulative ACK (green) and receive window
    (ACK + window scaled by the negotiated window scale, yellow) as step lines, and SACK blocks
    (purple). Nothing goes to stdout: the picture is written to -o, in the format its extension
    names (PNG, SVG, PDF ...).

    \b
    Example:
      flowlens plot capture.pcap --uid CMayhZrxGd --kind tseq -o tseq.png
      flowlens plot capture.pcap --uid CMayhZrxGd --kind throughput --ma-window 0.5 -o tput.svg
    """
    check_output(out_path, formats=PICTURE_FORMATS)
    config = config_from(kwargs)

    def wants(conn: Connection) -> bool:
        return conn.uid.startswith(uid)

    streams = StreamCollector(wants, sack=kind == "tseq")
    analyzers: list = [streams]
    rtt = RttCollector() if kind == "rtt" else None
    if rtt is not None:
        analyzers.append(rtt)
    pipe, progress = open_pipeline(capture, config, analyzers)
    found: list[Connection] = []
    try:
        for conn in pipe:
            if wants(conn):
                found.append(conn)
                if len(found) > 1 and uid not in (c.uid for c in found):
                    break  # ambiguous: no need to read on
    finally:
        if progress is not None:
            progress.close()
    exact = [c for c in found if c.uid == uid]
    if exact:
        found = exact
    report_damage(pipe.summary_lines())  # (as every command: before anything else it says)
    if not found:
        # nothing to draw: said on stderr, exit 0 and no picture, as every command treats
        # "nothing matched" (commands/_common.nothing_line)
        warn(nothing_line(capture, pipe.stats.frames, True))
        return
    if len(found) > 1:
        raise UsageError(f"{capture}: uid prefix {uid} matches {len(found)} connections")
    conn = found[0]
    if conn.proto != IPPROTO_TCP:
        raise UsageError(
            f"{capture}: {conn.uid} is a {conn.proto_name.upper()} flow; stream graphs draw TCP "
            "connections (`flowlens rtt` shows its round trips)"
        )
    log = streams.log_of(conn)
    # the collector keeps every TCP connection `wants` picks, and this one was picked
    assert log is not None
    graph: TseqGraph | ThroughputGraph | RttGraph | WindowGraph
    if kind == "tseq":
        graph = tseq_graph(log, direction)
        if not graph.segments:
            warn(f"Warning: {conn.uid}: no segments from {graph.direction} to draw")
    elif kind == "throughput":
        graph = throughput_graph(log, ma_window, direction)
    elif kind == "rtt":
        graph = rtt_graph(log, rtt.state_of(conn) if rtt is not None else None)
    else:
        graph = window_graph(log, direction)
    dropped = getattr(graph, "dropped", (0, 0, 0))
    if any(dropped):
        warn(f"Warning: {conn.uid}: the graph is bounded; {sum(dropped)} rows left out")
    save_figure(graph, out_path)
    warn(f"Wrote {out_path}")
