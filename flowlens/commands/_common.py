"""Options, progress display and the capture run shared by every command."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from ..core.connections import Config
from ..core.filters import Selection
from ..core.pipeline import Analysis, Pipeline, analyze
from ..errors import UsageError
from ..reports.formats import FORMATS

__all__ = [
    "capture_argument",
    "format_option",
    "table_options",
    "filter_options",
    "selection_from",
    "config_from",
    "run_analysis",
    "open_pipeline",
    "progress_callback",
    "warn",
    "check_output",
    "PICTURE_FORMATS",
]


def warn(message: str) -> None:
    """A diagnostic line on stderr (never on stdout, which carries data)."""
    click.echo(message, err=True)


capture_argument = click.argument("capture", type=click.Path(dir_okay=True, allow_dash=True))

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for a terminal; json = one JSON object per line; csv with a header; zeek = a "
    "Zeek ASCII log (zeek-cut reads it); zeek-json = Zeek's JSON log lines.",
)


#: the connection table's defaults: every option below takes its default from here
_CONFIG = Config()


def table_options(func: Callable) -> Callable:
    """Timers and decoding switches that change what the connection table sees."""
    func = click.option(
        "--msl",
        type=click.FloatRange(min=0.001),
        default=_CONFIG.msl_s,
        show_default=True,
        help="Maximum segment lifetime in seconds; TIME_WAIT lasts 2 x MSL (Linux: 60 s).",
    )(func)
    func = click.option(
        "-C",
        "--no-checksums",
        is_flag=True,
        help="Do not verify checksums (as zeek -C); use it on captures taken on a host with "
        "checksum offload, where its own outgoing packets look corrupt.",
    )(func)
    func = click.option(
        "--idle-timeout",
        type=click.FloatRange(min=0.001),
        default=_CONFIG.tcp_idle_s,
        show_default=True,
        help="Seconds without a packet after which an established TCP connection ends (Zeek: 300).",
    )(func)
    func = click.option(
        "-f",
        "--filter",
        "read_filter",
        metavar="EXPR",
        default=_CONFIG.read_filter,
        help="Read filter in tcpdump's syntax ('tcp port 5432'), run by libpcap on each frame "
        "before it is decoded; frames it turns away are not analysed.",
    )(func)
    func = click.option(
        "--vlan-key",
        is_flag=True,
        help="Make the VLAN ids (802.1Q and QinQ's inner one) part of the connection key, as "
        "Zeek's conn_key/vlan_fivetuple.zeek does: the same 5-tuple on two VLANs is two "
        "connections (e.g. `flowlens flows --vlan-key trunk.pcap`).",
    )(func)
    func = click.option(
        "--udp-timeout",
        type=click.FloatRange(min=0.001),
        default=_CONFIG.udp_idle_s,
        show_default=True,
        help="Seconds without a packet after which a UDP or ICMP flow ends.",
    )(func)
    return func


def filter_options(func: Callable) -> Callable:
    """ss-style filters; repeat an option to accept any of its values."""
    for decorator in reversed(
        [
            click.option(
                "--state",
                "states",
                multiple=True,
                help="TCP state of either endpoint at the end (time-wait, close-wait, established, connected ...) or a Zeek conn_state (SF, REJ, S0 ...).",
            ),
            click.option(
                "--port", "ports", multiple=True, type=click.IntRange(0, 65535), help="Either port."
            ),
            click.option("--host", "hosts", multiple=True, help="Either address."),
            click.option(
                "--net", "nets", multiple=True, help="Either address inside this CIDR network."
            ),
            click.option(
                "--proto",
                "protos",
                multiple=True,
                type=click.Choice(["tcp", "udp", "icmp"]),
                help="Protocol.",
            ),
            click.option(
                "--uid", "uids", multiple=True, help="Connection uid (a unique prefix is enough)."
            ),
        ]
    ):
        func = decorator(func)
    return func


def selection_from(kwargs: dict) -> Selection:
    return Selection.build(
        states=kwargs.pop("states", ()),
        ports=kwargs.pop("ports", ()),
        hosts=kwargs.pop("hosts", ()),
        nets=kwargs.pop("nets", ()),
        protos=kwargs.pop("protos", ()),
        uids=kwargs.pop("uids", ()),
    )


def config_from(kwargs: dict) -> Config:
    d = _CONFIG
    return Config(
        msl_s=kwargs.pop("msl", d.msl_s),
        verify_checksums=not kwargs.pop("no_checksums", not d.verify_checksums),
        tcp_idle_s=kwargs.pop("idle_timeout", d.tcp_idle_s),
        udp_idle_s=kwargs.get("udp_timeout", d.udp_idle_s),
        icmp_idle_s=kwargs.pop("udp_timeout", d.icmp_idle_s),
        read_filter=kwargs.pop("read_filter", d.read_filter) or None,
        vlan_key=kwargs.pop("vlan_key", d.vlan_key),
    )


#: picture formats matplotlib writes (Figure.savefig), by file extension
PICTURE_FORMATS = ("png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def check_output(path: str | None, *, formats: tuple[str, ...] | None = None) -> None:
    """Fail before any work starts when `path` cannot be written: its folder is missing (never
    created for the user) or not writable, a folder has that name, or, with `formats`, its
    extension names no format the writer knows. Raises UsageError (`Error: PATH: problem`,
    exit 1)."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory")
    if not os.path.isdir(folder):
        raise UsageError(f"{path}: no such directory {folder}")
    if not os.access(folder, os.W_OK | os.X_OK) or (
        os.path.exists(path) and not os.access(path, os.W_OK)
    ):
        raise UsageError(f"{path}: permission denied")
    if formats is not None:
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        if ext not in formats:
            shown = f"'.{ext}'" if ext else "no extension"
            raise UsageError(f"{path}: unknown picture format ({shown}; use {', '.join(formats)})")


class _Progress:
    """A tqdm bar on stderr, shown only when stderr is a terminal."""

    def __init__(self, path: str) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bar = None
        self._path = path

    def __call__(self, frames: int, done: int, size: int | None) -> None:
        if self._bar is None:
            self._bar = self._tqdm(
                total=size, unit="B", unit_scale=True, desc=self._path, file=sys.stderr, leave=False
            )
        self._bar.n = done
        self._bar.set_postfix_str(f"{frames:,} frames", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_callback(path: str):
    """A progress callback for `path`, or None when stderr is not a terminal (piped, CI)."""
    if not sys.stderr.isatty():
        return None
    return _Progress(path)


def run_analysis(path: str, config: Config, analyzers=()) -> Analysis:
    """Analyze a capture with a progress bar on a terminal and its warnings on stderr."""
    progress = progress_callback(path)
    try:
        result = analyze(path, config, analyzers=analyzers, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    for line in result.warnings:
        warn(f"Warning: {line}")
    return result


def open_pipeline(path: str, config: Config, analyzers=()) -> tuple[Pipeline, object]:
    """A streaming pipeline and its progress bar (close it when done), for commands that stream."""
    progress = progress_callback(path)
    return Pipeline(path, config, analyzers=analyzers, progress=progress), progress
