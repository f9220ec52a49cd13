"""Options, output, progress display and diagnostics shared by every command (how a command
reads a capture's connections, in one process or in shards: _stream.py)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import click

from ..core.analyzer import Analyzer
from ..core.connections import Config
from ..core.filters import Selection
from ..core.pipeline import Pipeline
from ..errors import UsageError
from ..reports.formats import FORMATS, write_json_lines, write_records

__all__ = [
    "capture_argument",
    "format_option",
    "wide_option",
    "records_format_option",
    "output_option",
    "community_id_option",
    "Output",
    "Progress",
    "table_options",
    "filter_options",
    "selection_from",
    "config_from",
    "open_pipeline",
    "progress_callback",
    "warn",
    "report_damage",
    "nothing_line",
    "check_output",
    "check_outdir",
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


wide_option = click.option(
    "--wide",
    is_flag=True,
    help="Table: every column, however wide (default: the main ones, within 120 columns).",
)

#: the formats of the commands whose rows are tables of data (flows, anomalies, rtt, states)
RECORD_FORMATS = (*FORMATS, "parquet")

records_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(RECORD_FORMATS),
    default="table",
    show_default=True,
    help="table for a terminal; json = one JSON object per line; csv with a header; zeek = a "
    "Zeek ASCII log (zeek-cut reads it); zeek-json = Zeek's JSON log lines; parquet = one "
    "Parquet file of typed columns (needs -o FILE) for pandas and DuckDB, flows and anomalies "
    "with the schema of batch's datasets.",
)

output_option = click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    type=click.Path(allow_dash=True),  # (check_output names a folder given here, exit 1)
    help="Write the records to FILE instead of stdout, whole or not at all (a failed run "
    "leaves FILE as it was); --format parquet needs it. Example: --format parquet -o "
    "flows.parquet.",
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
        "--fin-timeout",
        type=click.FloatRange(min=0),
        default=_CONFIG.fin_wait_2_timeout_s,
        show_default=True,
        help="Seconds an orphaned FIN_WAIT_2 socket lives (Linux net.ipv4.tcp_fin_timeout); "
        "0: FIN_WAIT_2 lasts until a packet ends it (docs/endpoint-states.md).",
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


community_id_option = click.option(
    "--community-id-seed",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Seed of the community_id hash (Community ID v1), as Zeek's CommunityID::seed and "
    "Suricata's community-id-seed: use the one your other tools log with. Example: "
    "--community-id-seed 1.",
)


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
                "--uid",
                "uids",
                multiple=True,
                help="Connection uid, or a prefix of it (every connection whose uid starts with it).",
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
        fin_wait_2_timeout_s=kwargs.pop("fin_timeout", d.fin_wait_2_timeout_s),
        verify_checksums=not kwargs.pop("no_checksums", not d.verify_checksums),
        tcp_idle_s=kwargs.pop("idle_timeout", d.tcp_idle_s),
        udp_idle_s=kwargs.get("udp_timeout", d.udp_idle_s),
        icmp_idle_s=kwargs.pop("udp_timeout", d.icmp_idle_s),
        read_filter=kwargs.pop("read_filter", d.read_filter) or None,
        community_id_seed=kwargs.pop("community_id_seed", d.community_id_seed),
        vlan_key=kwargs.pop("vlan_key", d.vlan_key),
    )


#: picture formats matplotlib writes (Figure.savefig), by file extension
PICTURE_FORMATS = ("png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def _may(path: str, mode: int) -> bool:
    """access(2) for the effective user, who is the one that will write (sudo -u, setuid)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


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
    if not _may(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not _may(path, os.W_OK)):
        raise UsageError(f"{path}: permission denied")
    if formats is not None:
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        if ext not in formats:
            shown = f"'.{ext}'" if ext else "no extension"
            if ext in PICTURE_FORMATS:  # a picture, but not of the kind this option draws
                raise UsageError(f"{path}: this option writes {', '.join(formats)}, not {shown}")
            raise UsageError(f"{path}: unknown picture format ({shown}; use {', '.join(formats)})")


def check_outdir(path: str) -> None:
    """`check_output` for an output folder: it may exist (a folder, writable) or not yet (then
    flowlens creates it, but never its missing parents). Raises UsageError, exit 1."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"{path}: not a directory")
        if not _may(path, os.W_OK | os.X_OK):
            raise UsageError(f"{path}: permission denied")
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: no such directory {parent}")
    if not _may(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: permission denied")


class Output:
    """Where a command's records go: stdout, or `-o FILE` (written to a temporary beside it and
    renamed over it when the command succeeds, so a failed run leaves FILE as it was).

    Built before any work starts: it refuses `--format parquet` without a file and checks that
    FILE can be written (`check_output`). Then, as a context manager, `records(...)` writes
    records in the format and `text` is the stream a command writes its own text to.
    """

    def __init__(self, path: str | None, fmt: str, capture: str | None) -> None:
        if path == "-":
            path = None
        if fmt == "parquet" and path is None:
            raise UsageError("--format parquet needs -o FILE")
        check_output(path)
        self.path = path
        self.fmt = fmt
        self.capture = capture
        self.text: IO[str] = sys.stdout
        self._file: IO | None = None
        self._tmp: str | None = None

    def __enter__(self) -> Output:
        if self.path is not None:
            folder, name = os.path.split(os.path.abspath(self.path))
            self._tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
            try:
                if self.fmt == "parquet":
                    self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in __exit__
                else:
                    self._file = self.text = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise UsageError(f"{self.path}: {exc.strerror or exc}") from exc
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._file is None or self._tmp is None:
            return
        try:
            self._file.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)  # type: ignore[arg-type]
        except OSError as error:
            raise UsageError(f"{self.path}: {error.strerror or error}") from error
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)  # (gone after the rename)

    def records(
        self,
        records: Iterable[dict],
        columns: Sequence[str],
        table_columns: Sequence[str] | None = None,
        table_headers: Sequence[str] | None = None,
        *,
        log_path: str,
        **table,
    ) -> int:
        """Write `records` (dicts with `columns`, in that order) in the format; returns how
        many. Parquet streams them in bounded batches (reports/parquet.py); `table` is
        write_records' table layout (max_width, shrink, wrap)."""
        if self.fmt == "parquet":
            from ..reports.parquet import write_parquet

            assert self._file is not None, "Output.records outside its with block"
            return write_parquet(records, self._file, columns, self.capture)
        return write_records(
            records,
            self.fmt,
            self.text,
            columns,
            table_columns,
            table_headers,
            log_path=log_path,
            **table,
        )

    def json_lines(self, lines: Iterable[bytes]) -> None:
        """Write JSON lines already made (reports/formats.py's `json_line`, where each
        connection was read: ConnectionStream's `work`), each bytes one or more lines."""
        assert self.fmt == "json", "json_lines for --format json only"
        write_json_lines(lines, self.text)

    def lines(self, lines: Iterable[str]) -> None:
        """Write a table's lines (`--format table`), each with its newline, as they come."""
        write = self.text.write
        for line in lines:
            write(line + "\n")


class Progress:
    """A tqdm bar on stderr, shown only when stderr is a terminal: the progress callback of a
    Pipeline (`progress_callback`), called with (frames, bytes done, capture size); `close()`
    when the run ends. Public for commands/_stream.py's ConnectionStream."""

    def __init__(self, path: str) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        #: the bar, made on the first call (tqdm ships no type information: Any)
        self._bar: Any = None
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


def progress_callback(path: str) -> Progress | None:
    """A progress callback for `path`, or None when stderr is not a terminal (piped, CI)."""
    if not sys.stderr.isatty():
        return None
    return Progress(path)


def report_damage(lines: Iterable[str]) -> None:
    """The damage lines of a run (`Pipeline.summary_lines()`, `Analysis.warnings`), each as
    `Warning: LINE` on stderr. Every command prints them through here, after its data and
    before anything else it says, so one damaged file reads the same whatever the command."""
    for line in lines:
        warn(f"Warning: {line}")


def nothing_line(
    path: str, frames: int, selection: object = None, *, noun: str = "connection"
) -> str:
    """What a command says on stderr (and then exits 0, its output empty but well formed:
    a table's header, no JSON lines, a CSV header) when it has nothing to show: the capture
    held no packets that could be read, no connections, or none the filters kept."""
    if not frames:
        return f"{path}: no packets"
    if selection:
        return f"{path}: no {noun} matches the filters"
    return f"{path}: no {noun}s"


def open_pipeline(
    path: str, config: Config, analyzers: Iterable[Analyzer] = ()
) -> tuple[Pipeline, Progress | None]:
    """A streaming pipeline and its progress bar (close it when done), for commands that stream."""
    progress = progress_callback(path)
    return Pipeline(path, config, analyzers=analyzers, progress=progress), progress
