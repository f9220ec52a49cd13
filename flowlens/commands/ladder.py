"""`flowlens ladder`: the whiteboard sequence diagram of selected connections, as text or a picture."""

from __future__ import annotations

import sys

import click

from ..analyzers.packetlog import (
    PacketCollector,
    first_packet_filter,
    select_logs,
)
from ..analyzers.tcpanalysis import TcpAnalyzer
from ..reports.hints import MAX_HINTS, extract_hints
from ..reports.ladder import build_ladder, render_text
from ..reports.ladder_plot import save_figure
from ._common import (
    capture_argument,
    check_output,
    config_from,
    filter_options,
    nothing_line,
    open_pipeline,
    report_damage,
    selection_from,
    table_options,
    warn,
)
from ._timearg import NOTE

#: a picture with more ladders than this is unreadable; the rest are left out with a warning
MAX_FIGURE_LADDERS = 20


@click.command()
@capture_argument
@filter_options
@click.option(
    "--absolute",
    is_flag=True,
    help="Raw sequence and acknowledgment numbers instead of relative ones.",
)
@click.option("--full", is_flag=True, help="One arrow per packet, even in long data phases.")
@click.option(
    "--unicode", "use_unicode", is_flag=True, help="Box-drawing characters instead of pure ASCII."
)
@click.option(
    "--svg",
    "svg_path",
    type=click.Path(),  # checked by check_output: one `Error:` line, exit 1
    help="Also draw the diagram as SVG into this file (named .svg).",
)
@click.option(
    "--png",
    "png_path",
    type=click.Path(),  # checked by check_output: one `Error:` line, exit 1
    help="Also draw the diagram as PNG into this file (named .png).",
)
@click.option(
    "--note",
    "notes",
    type=NOTE,
    multiple=True,
    help="Annotate the diagram: FRAME=text, or +SECONDS=text (the ladder's time column), or an "
    "epoch / ISO time. Repeatable.",
)
@table_options
def ladder(
    capture: str, absolute: bool, full: bool, use_unicode: bool, svg_path, png_path, notes, **kwargs
) -> None:
    """Draw each selected connection of CAPTURE as a ladder: originator on the left, responder
    on the right, one arrow per packet with its time, tcpdump flags ([S], [S.], [P.], [F.],
    [R.]), relative seq/ack, length and window when it matters; the state each endpoint enters
    beside its line; findings (retransmission, zero window, RST, handshake RTT legs) under
    their arrow. Handshake and teardown are always shown packet by packet; long runs of plain
    data collapse into one summary unless --full. Fits 100 columns.

    Select connections with --uid (from `flowlens flows`), --port, --host ...

    \b
    Example:
      flowlens ladder capture.pcap --uid CMayhZrxGd --note '1=client opens' --png ladder.png
      flowlens ladder capture.pcap --port 5432 --state time-wait
    """
    check_output(svg_path, formats=("svg",))
    check_output(png_path, formats=("png",))
    selection = selection_from(kwargs)
    config = config_from(kwargs)
    frame_pins = [n.frame for n in notes if n.frame is not None]
    time_notes = [n for n in notes if n.frame is None]
    wants = first_packet_filter(selection)
    collector = PacketCollector(
        wants,
        full=full,
        pinned=frame_pins,
        breaks=(lambda conn: [n.when(conn) for n in time_notes]) if time_notes else None,
        # Wireshark's analysis notes, the analyzer running on the kept connections only
        tcp=TcpAnalyzer(keep_frames=True, wants=wants),
    )
    pipe, progress = open_pipeline(capture, config, [collector])
    figure: list = []
    drawn = 0
    unused: set | None = None
    shown: list[str] = []
    try:
        # ladders are printed as their connections end, so memory holds only the open ones
        for i, (conn, log) in enumerate(select_logs(pipe, selection, collector, capture)):
            lad = build_ladder(conn, log, notes, absolute)
            if i:
                sys.stdout.write("\n")
            sys.stdout.write(render_text(lad, unicode=use_unicode))
            if len(shown) < MAX_HINTS:
                shown.append(conn.uid)
            unused = set(lad.unused_notes) if unused is None else unused & set(lad.unused_notes)
            drawn += 1
            if (svg_path or png_path) and len(figure) < MAX_FIGURE_LADDERS:
                figure.append(lad)
    finally:
        if progress is not None:
            progress.close()
    report_damage(pipe.summary_lines())
    if not drawn:
        warn(nothing_line(capture, pipe.stats.frames, selection))
    for line in extract_hints(capture, shown, drawn, pipe.stats.container):
        warn(line)
    for note in notes:
        if unused and note in unused:
            where = f"frame {note.frame}" if note.frame is not None else "its time"
            warn(f"Warning: note {note.text!r}: {where} falls on no shown connection")
    for path, fmt in ((svg_path, "svg"), (png_path, "png")):
        if path and not drawn:
            warn(f"{path}: not written (no connection to draw)")
        elif path:
            if drawn > len(figure):
                warn(
                    f"Warning: {path}: drew the first {len(figure)} of {drawn} connections (narrow the filters)"
                )
            try:
                save_figure(figure, path, fmt)
            except OSError as exc:  # the disk filled, the folder went away after the check
                raise click.ClickException(f"{path}: {exc.strerror or exc}") from exc
