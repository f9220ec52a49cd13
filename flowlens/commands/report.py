"""`flowlens report`: the postmortem page of a capture, as one self-contained HTML file and/or Markdown."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import TextIO

import click

from ..reports.formats import plural
from ..reports.ladder import Note
from ..reports.postmortem import ReportOptions, build_report
from ._common import (
    capture_argument,
    check_output,
    config_from,
    nothing_line,
    report_damage,
    table_options,
    warn,
)
from ._stream import ConnectionStream, one_jobs_option, scheduler_option
from ._timearg import NOTE


def _write_text(path: str, write: Callable[[TextIO], None]) -> None:
    """Write atomically (a half-written report must not look finished); `write` writes the
    text to the file it is given."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from exc


def _write_pages(result, html_path: str | None, md_path: str | None) -> None:
    if html_path:
        from ..reports.html import write_html

        _write_text(html_path, lambda f: write_html(result, f))
        warn(f"Wrote {html_path} ({os.path.getsize(html_path) / 1e6:.1f} MB)")
    if md_path:
        from ..reports.markdown import write_markdown

        try:
            files = write_markdown(result, md_path)
        except OSError as exc:
            raise click.ClickException(f"{md_path}: {exc.strerror or exc}") from exc
        extra = f" and {plural(len(files) - 1, 'picture')}" if len(files) > 1 else ""
        warn(f"Wrote {md_path}{extra}")


_DEFAULTS = ReportOptions()
#: shard 0's share of the hash against an even share with forked --jobs shards (core/shard.py's
#: FIRST_WEIGHT): this process also unpickles and adds every connection's part of the page
#: (ReportGather.add), which costs more than the part itself; measured on
#: bench-out/sequential-1M.pcap with 2 shards (os.times of the two processes): at 0.84 the
#: merging process took 6.0-6.2 s of CPU against 4.3-4.5 s, at 0 (it reads none) 2.9 s against 5.4
SHARD_WEIGHT = 0.30


@click.command()
@capture_argument
@click.option(
    "-o",
    "--output",
    "html_path",
    type=click.Path(),  # checked by check_output: one `Error:` line, exit 1
    help="Write the HTML page here (one file: pictures, styles and script inline).",
)
@click.option(
    "--markdown",
    "md_path",
    type=click.Path(),  # checked by check_output: one `Error:` line, exit 1
    help="Write a Markdown report here, its pictures into <name>_files/ beside it.",
)
@click.option(
    "--note",
    "notes",
    type=NOTE,
    multiple=True,
    help="A note for the ladders and the timeline: FRAME=text, +SECONDS=text (from the "
    "capture's first packet), or an epoch / ISO time. Repeatable.",
)
@click.option(
    "--max-ladders",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_ladders,
    show_default=True,
    help="Ladder diagrams drawn: the connections the findings (and frame notes) point at, most "
    "severe first.",
)
@click.option(
    "--stream-graphs",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_stream_graphs,
    show_default=True,
    help="Time-sequence graphs drawn beside the ladders of connections with retransmissions or "
    "a zero window, in the same pass (it then follows every TCP segment: slower). Without, "
    "each such ladder names its `flowlens plot --kind tseq` command.",
)
@click.option("--title", help="Page title (default: flowlens report: CAPTURE's file name).")
@one_jobs_option
@scheduler_option
@table_options
def report(
    capture: str,
    html_path,
    md_path,
    notes: tuple[Note, ...],
    max_ladders: int,
    stream_graphs: int,
    title,
    jobs: int | None = 1,
    scheduler: str | None = None,
    **kwargs,
) -> None:
    """Write the postmortem report of CAPTURE: what to attach to an incident.

    In one pass over the capture: the capture's facts (container, packets, duration, link
    types, hosts, skipped frames and damage), the findings of `flowlens anomalies` by severity
    with their evidence frames, a timeline of findings and notes, TCP socket states per busy
    host over time, round-trip times per server, the connection table (sortable and
    filterable in the page), and the ladder diagrams of the connections that matter, each
    finding linking to its ladder. The HTML page needs no network to be read and prints
    cleanly; the Markdown renders on GitHub.

    \b
    Example:
      flowlens report capture.pcap -o report.html
      flowlens report capture.pcap -o report.html --markdown report.md \\
          --note '343=db restarted' --note '+45s=cache failover' --stream-graphs 4
      flowlens report big.pcap -o report.html --jobs 2
    """
    if not html_path and not md_path:
        raise click.UsageError("nothing to write: give -o report.html and/or --markdown report.md")
    check_output(html_path)
    check_output(md_path)
    config = config_from(kwargs)
    # The report's numpy (its socket-state counts: no matrix algebra) starts OpenBLAS, whose
    # worker threads busy-wait for work after it loads (OpenBLAS's driver/others/blas_server.c,
    # THREAD_TIMEOUT) and took a tenth of the report's CPU on two cores; one thread starts none
    # (OpenBLAS README, "Setting the number of threads using environment variables"). A user's
    # own setting stands.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    options = ReportOptions(
        notes=notes, max_ladders=max_ladders, max_stream_graphs=stream_graphs, title=title
    )

    def run(make_analyzers, work, **how):
        # one process, --jobs shards or a Dask cluster's: the same report, byte for byte
        return ConnectionStream(capture, config, make_analyzers, work, jobs, scheduler,
                                first_weight=SHARD_WEIGHT, **how)  # fmt: skip

    result = build_report(capture, config, options, run=run)
    report_damage(result.warnings)
    if not result.connections_total:
        warn(nothing_line(capture, 0 if result.first_ts_ns is None else 1))
    for text in result.unplaced_notes:
        warn(f"Warning: note {text!r} falls on no drawn ladder (it is in the timeline)")
    # (as build_report: the pages' text makes no reference cycles, and the collector's passes
    # over the report's rows would cost more than writing them)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _write_pages(result, html_path, md_path)
    finally:
        if gc_was_enabled:
            gc.enable()
    counts = result.severity_counts()
    parts = ", ".join(
        plural(counts[s], s) if s == "warning" else f"{counts[s]} {s}"
        for s in ("critical", "warning", "info")
        if counts[s]
    )
    warn(
        f"{plural(len(result.findings), 'finding')}{f' ({parts})' if parts else ''}, "
        f"{plural(len(result.ladders), 'ladder')}, {plural(result.connections_total, 'connection')}, "
        f"{result.passes} pass{'es' if result.passes > 1 else ''} over the capture"
    )
