"""`flowlens batch`: many captures into Parquet datasets, a summary and an aggregate report."""

from __future__ import annotations

import os
import sys
import time

import click

from ..reports.formats import plural
from ._common import (
    check_outdir,
    community_id_option,
    config_from,
    report_damage,
    table_options,
    warn,
)

#: failures listed one per line on stderr; the rest are in summary.json
MAX_LISTED_FAILURES = 20


class TqdmProgress:
    """captures done / total, packets per second and ETA, as a tqdm bar on stderr."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._bar = None
        self._packets = 0
        self._t0 = 0.0

    def start(self, phase: str, total: int, done: int) -> None:
        from tqdm import tqdm

        self.close()
        self._packets, self._t0 = 0, time.perf_counter()
        width, height = _screen(self._stream)
        self._bar = tqdm(
            total=total,
            initial=done,
            desc=phase,
            unit=" captures",
            file=self._stream,
            ncols=width,
            nrows=height,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} captures "
            "[{elapsed}<{remaining}{postfix}]",
        )

    def advance(self, captures: int, packets: int) -> None:
        if self._bar is None:
            return
        self._packets += packets
        elapsed = time.perf_counter() - self._t0
        if self._packets and elapsed > 0:
            self._bar.set_postfix_str(f"{self._packets / elapsed:,.0f} pkt/s", refresh=False)
        self._bar.update(captures)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _screen(stream) -> tuple[int, int]:
    """The terminal's (columns, lines). A pseudo-terminal nobody sized says 0 x 0, on which
    tqdm would draw nothing, so fall back to $COLUMNS or 100 x 24."""
    try:
        size = os.get_terminal_size(stream.fileno())
        width, height = size.columns, size.lines
    except (AttributeError, ValueError, OSError):
        width = height = 0
    return width or int(os.environ.get("COLUMNS", "0") or 0) or 100, height or 24


def progress_for(stream) -> TqdmProgress | None:
    """A progress bar on `stream` when it is a terminal; None when piped or redirected."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return TqdmProgress(stream) if tty else None


class ByteSize(click.ParamType):
    """A size in bytes: a number with an optional K, M, G or T (powers of 1024), or `off`."""

    name = "size"
    _UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        if text == "OFF":
            return None
        number, unit = text.rstrip("KMGT"), text[len(text.rstrip("KMGT")) :]
        try:
            size = float(number) * self._UNITS[unit]
        except (ValueError, KeyError):
            self.fail(f"{value!r} is not a size (e.g. 512M, 2G, 0, off)", param, ctx)
        if size < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return int(size)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("-o", "--outdir", required=True, type=click.Path(),  # check_outdir checks it
              help="Output directory; re-running with the same one resumes.")  # fmt: skip
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes on this machine [default: all cores].")  # fmt: skip
@click.option("--scheduler", metavar="ADDRESS",
              help="Run the tasks on this Dask distributed scheduler (e.g. tcp://10.0.0.5:8786) "
              "instead of local processes; every worker must see the captures at the same paths.")  # fmt: skip
@click.option("--verify", is_flag=True,
              help="Decide what is already done by content hash instead of size and mtime.")  # fmt: skip
@click.option("--merge-consecutive", is_flag=True,
              help="Read each rotation set (tcpdump -G/-C files in one directory, same link type, "
              "each starting within --merge-gap of the previous one's end) as one capture, so "
              "connections crossing a file boundary are not split.")  # fmt: skip
@click.option("--incremental", is_flag=True,
              help="With --merge-consecutive: checkpoint each rotation set after each file, so "
              "that a re-run after new files arrive reads only those and writes the same rows.")  # fmt: skip
@click.option("--merge-gap", type=click.FloatRange(min=0), default=300.0, show_default=True,
              help="Largest gap in seconds between one file's last packet and the next one's first.")  # fmt: skip
@click.option("--shard-above", type=ByteSize(), default="256M", show_default=True, metavar="SIZE",
              help="Run a capture (or rotation set) whose files hold more bytes than this as hash "
              "shards of its connections, one per worker, instead of one task on one worker "
              "(K, M, G: powers of 1024; off: never).")  # fmt: skip
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@table_options
@community_id_option
def batch(
    paths,
    outdir,
    jobs,
    scheduler,
    verify,
    merge_consecutive,
    incremental,
    merge_gap,
    shard_above,
    no_report,
    **kwargs,
) -> None:
    """Analyze every capture under PATH... (files, directories searched recursively, or quoted
    glob patterns; `**` recurses) and write, into OUTDIR, Parquet datasets of connections and
    anomalies (one file per capture, partitioned by capture date), summary.parquet and
    summary.json (per capture: packets, connections, anomalies by kind, errors), and report.html.

    Files in directories are recognised by their bytes; other files are skipped. A capture that
    cannot be read is recorded with its error and the batch goes on; the exit code is 1 if any
    failed. Re-running with the same OUTDIR skips captures already done. See docs/batch.md for
    the layout and DuckDB/pandas queries.

    \b
    Example:
      flowlens batch /var/captures -o out/
      flowlens batch 'archive/**/*.pcap.gz' -o out/ --merge-consecutive --scheduler tcp://sched:8786
      flowlens batch /var/captures -o out/ --community-id-seed 1
      flowlens batch big.pcap -o out/ --shard-above 1G
      flowlens batch '/var/captures/eth0-*.pcap' -o out/ --merge-consecutive --incremental
    """
    check_outdir(outdir)  # before any work, and before the imports below cost their time
    # imported here: pyarrow and the pool machinery would slow every other command's start
    from ..batch.run import BatchOptions, default_jobs, missing_paths, run_batch

    if scheduler and jobs is not None:
        raise click.BadParameter(
            "--jobs sets local processes; with --scheduler the cluster's workers run the tasks",
            param_hint="--jobs",
        )
    missing = missing_paths(paths)
    if missing:
        raise click.BadParameter(
            f"{', '.join(missing)}: no such file, directory or glob match", param_hint="PATH..."
        )
    options = BatchOptions(
        config=config_from(kwargs),
        verify=verify,
        merge_consecutive=merge_consecutive,
        incremental=incremental,
        merge_gap_s=merge_gap,
        report=not no_report,
        shard_above=shard_above,
    )
    progress = progress_for(sys.stderr)
    from ..reports.archive import archive_report

    result = run_batch(
        paths,
        outdir,
        options,
        jobs=jobs or default_jobs(),
        scheduler=scheduler,
        progress=progress,
        report_writer=archive_report,
    )
    lines = [line for _path, lines in result.warned for line in lines]
    report_damage(lines[:MAX_LISTED_FAILURES])
    if len(lines) > MAX_LISTED_FAILURES:
        warn(f"... and {len(lines) - MAX_LISTED_FAILURES} more warnings (see summary.json)")
    for path, error in result.failed[:MAX_LISTED_FAILURES]:
        warn(f"Error: {error if error.startswith(path) else f'{path}: {error}'}")
    if len(result.failed) > MAX_LISTED_FAILURES:
        more = len(result.failed) - MAX_LISTED_FAILURES
        warn(f"... and {plural(more, 'more failure')} (see summary.json)")
    skipped = (
        f"; {plural(result.skipped_files, 'other file')} skipped" if result.skipped_files else ""
    )
    warned = f"; {result.warnings} with warnings (see summary.json)" if result.warnings else ""
    # members of rotation sets that went on from a checkpoint (docs/batch.md, "incremental")
    resumed = f" ({result.resumed} of them not read again)" if result.resumed else ""
    warn(
        f"{plural(result.captures, 'capture')}: {result.analysed} analysed{resumed}, "
        f"{result.already_done} already done, {len(result.failed)} failed{skipped}{warned}; "
        f"{result.connections:,} connection{'' if result.connections == 1 else 's'}, "
        f"{result.anomalies:,} anomal{'y' if result.anomalies == 1 else 'ies'} in "
        f"{result.elapsed_s:.1f} s -> {result.outdir}"
    )
    if result.failed:
        raise SystemExit(1)
