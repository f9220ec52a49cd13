"""`flowlens extract`: write the packets of selected connections to a new capture, byte for byte."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import BinaryIO

import click

from ..analyzers.anomalies.detector import KINDS
from ..analyzers.frames import select_frames
from ..core.capture_writer import copy_frames
from ..errors import UsageError
from ._common import (
    capture_argument,
    check_output,
    config_from,
    filter_options,
    nothing_line,
    progress_callback,
    report_damage,
    selection_from,
    table_options,
    warn,
)

_SPOOL_CHUNK = 1 << 20


def _spool_stdin() -> BinaryIO:
    """Standard input copied to an anonymous temporary file (in $TMPDIR, removed on close):
    extract reads its input twice, and a pipe can be read once."""
    spool = tempfile.TemporaryFile(prefix="flowlens-extract-")  # noqa: SIM115 (the caller closes it)
    shutil.copyfileobj(sys.stdin.buffer, spool, _SPOOL_CHUNK)
    spool.seek(0)
    raw = getattr(spool, "raw", None)
    if raw is not None:
        raw.name = "-"  # messages name the input as the user gave it
    return spool


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@click.command()
@capture_argument
@click.option(
    "-w",
    "--write",
    "out_path",
    required=True,
    metavar="FILE",
    help="Write the selected packets to FILE (`-`: standard output), in the input's container: "
    "pcap in, pcap out; pcapng in, pcapng out. Never compressed.",
)
@filter_options
@click.option(
    "--finding",
    "findings",
    multiple=True,
    type=click.Choice(KINDS),
    metavar="KIND",
    help="Connections a finding of this kind names (as `flowlens anomalies` reports it: its "
    "uid, the uids in its details, the connections of its evidence frames); repeatable. "
    f"Kinds: {', '.join(KINDS)}.",
)
@table_options
def extract(capture: str, out_path: str, findings: tuple[str, ...], **kwargs) -> None:
    """Write the packets of the selected connections of CAPTURE to a new capture, byte for
    byte with their original timestamps, plus the ICMP errors that quote them. The output keeps
    the input's container and its headers: a pcap's link type, snaplen and timestamp
    resolution (a nanosecond pcap stays nanosecond); a pcapng's interfaces, each packet on its
    own interface. Compressed input is read; the output is not compressed.

    Select connections with --uid (from `flowlens flows`), --port, --host, --net, --proto,
    --state (the state when the connection ended) and --finding (a kind of `flowlens
    anomalies`). The capture is read twice: once to decide which frames belong to the selected
    connections, once to copy them (three times with --finding: the findings come first);
    standard input (`-`) is first copied to a temporary file. Frames of no
    connection (not IP, undecodable: bad checksums without -C; turned away by -f) are not
    written.
    When nothing matches, an empty capture is written and the command says so.

    \b
    Example:
      flowlens extract capture.pcap --uid CMayhZrxGd -w CMayhZrxGd.pcap
      flowlens extract capture.pcapng.gz --finding close_wait --port 5432 -w leak.pcapng
      flowlens extract capture.pcap --state time-wait -w - | tcpdump -nr -
    """
    if out_path == "-":
        if sys.stdout.isatty():
            raise UsageError("-w -: standard output is a terminal; redirect it or give a file")
    else:
        check_output(out_path)
        if capture != "-" and _same_file(capture, out_path):
            raise UsageError(f"{out_path}: is the input capture; write to another file")
    selection = selection_from(kwargs)
    config = config_from(kwargs)
    source: str | BinaryIO = _spool_stdin() if capture == "-" else capture
    progress = progress_callback(capture)
    try:
        found = select_frames(source, config, selection, finding_kinds=findings, progress=progress)
        if not isinstance(source, str):
            source.seek(0)
        written = _write(source, found.frames, out_path)
    finally:
        if progress is not None:
            progress.close()
        if not isinstance(source, str):
            source.close()
    report_damage(found.warnings)
    where = "standard output" if out_path == "-" else out_path
    kind = written.container.split("+")[0]
    if not written.frames:
        warn(nothing_line(capture, found.capture_frames, selection or findings))
        warn(f"Wrote an empty {kind} capture to {where}")
        return
    icmp = f" and {found.icmp_errors} ICMP errors quoting them" if found.icmp_errors else ""
    n = len(found.uids)
    warn(
        f"Wrote {written.frames} of {found.capture_frames} frames ({n} connection"
        f"{'' if n == 1 else 's'}{icmp}) to {where} ({kind})"
    )


def _write(source, frames, out_path: str):
    """Copy the frames to `out_path`: through a temporary file beside it, renamed when
    complete (a half-written capture must not look finished), or to standard output."""
    if out_path == "-":
        out = sys.stdout.buffer
        result = copy_frames(source, frames, out)
        out.flush()
        return result
    folder = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".flowlens-extract-", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # (mkstemp's file is private) as open() would make it
        with os.fdopen(fd, "wb") as out:
            result = copy_frames(source, frames, out)
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return result
