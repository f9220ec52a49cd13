"""The work of `flowlens batch` on one capture (or one rotation set): analyze, find anomalies, and
return the rows as Arrow tables. The functions here run in worker processes (a local pool or Dask
workers), so they take and return only picklable values and never touch the output directory.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import stat
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import pyarrow as pa

from ..analyzers.anomalies.detector import ANOMALY_FIELDS, Anomaly
from ..core.arrow import CONNECTION_SCHEMA, arrow_table, schema
from ..core.capture import open_capture
from ..core.connections import Config
from ..core.decode import LINKTYPE_NAMES
from ..core.pipeline import FileRun, Pipeline
from ..errors import FlowlensError

__all__ = [
    "Member",
    "Task",
    "TaskResult",
    "Probe",
    "run_task",
    "probe_file",
    "capture_id",
    "file_digest",
    "CONNECTION_SCHEMA",
    "ANOMALY_SCHEMA",
    "SUMMARY_SCHEMA",
]

# ------------------------------------------------------------------ schemas

#: the connections dataset (`flowlens flows`'s record, then the capture columns) and the
#: anomalies dataset (`flowlens anomalies`'s record): core/arrow.py types both, the same schema
#: `--format parquet` writes
ANOMALY_SCHEMA = schema(ANOMALY_FIELDS)

#: summary.parquet: one row per capture (see docs/batch.md for each field)
SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("capture", pa.string()),
        pa.field("capture_path", pa.string()),
        pa.field("capture_id", pa.string()),
        pa.field("status", pa.string()),  # "ok" or "failed"
        pa.field("error", pa.string()),
        pa.field("warnings", pa.list_(pa.string())),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("blake2b", pa.string()),
        pa.field("container", pa.string()),
        pa.field("linktypes", pa.list_(pa.string())),
        pa.field("date", pa.string()),
        pa.field("first_ts", pa.float64()),
        pa.field("last_ts", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("packets", pa.int64()),
        pa.field("bytes", pa.int64()),
        pa.field("undecodable", pa.int64()),
        pa.field("connections", pa.int64()),
        pa.field("anomalies", pa.int64()),
        pa.field("anomalies_by_kind", pa.map_(pa.string(), pa.int64())),
        pa.field("rotation_set", pa.string()),
        pa.field("frame_offset", pa.int64()),
        pa.field("elapsed_s", pa.float64()),
        pa.field("cpu_s", pa.float64()),
    ]
)

# ------------------------------------------------------------------ tasks

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def capture_id(path: str) -> str:
    """A file-name-safe id, unique per absolute path: `<name>-<10 hex digits of its hash>`.

    The name part keeps the output files recognisable; the hash keeps two `trace.pcap` in
    different directories apart.
    """
    name = _UNSAFE.sub("_", os.path.basename(path)).strip("._") or "capture"
    digest = hashlib.blake2b(os.fsencode(os.path.abspath(path)), digest_size=5).hexdigest()
    return f"{name[:80]}-{digest}"


@dataclass(frozen=True, slots=True)
class Member:
    """One capture file of a task."""

    #: absolute path, as every worker must see it
    path: str
    capture_id: str


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: a capture, or a rotation set read as one continuous capture."""

    task_id: str
    members: tuple[Member, ...]
    config: Config = field(default_factory=Config)
    #: handed to `AnomalyDetector(thresholds)` as is
    thresholds: object = None


@dataclass(slots=True)
class TaskResult:
    """What a worker sends back: summary rows and Arrow tables per member (by capture_id).

    A member without connections (or anomalies) has no table.
    """

    task_id: str
    captures: list[dict]
    connections: dict[str, pa.Table]
    anomalies: dict[str, pa.Table]

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.captures if c["status"] != "ok"]

    @property
    def packets(self) -> int:
        return sum(c["packets"] or 0 for c in self.captures)


def file_digest(path: str) -> str | None:
    """BLAKE2b of the file's bytes as stored (compressed or not), hex; None for anything but a
    regular file (reading a FIFO would eat its data, a device may never end)."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # before open(): a FIFO would block it
        return None
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()


def _stat(path: str) -> tuple[int | None, int | None]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def _epoch(ts_ns: int | None) -> float | None:
    return None if ts_ns is None else ts_ns / 1e9


def _date(ts_ns: int | None) -> str | None:
    """UTC date of a timestamp, the dataset's partition value."""
    if ts_ns is None:
        return None
    return _dt.datetime.fromtimestamp(ts_ns / 1e9, _dt.UTC).strftime("%Y-%m-%d")


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, FlowlensError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc)
    # a bug, not a bad capture: keep where it happened, so the report can be acted on
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {os.path.basename(where[0].filename)}:{where[0].lineno}" if where else ""
    return f"internal error: {type(exc).__name__}: {exc}{at}"


def _summary_row(m: Member, **kw) -> dict:
    row: dict[str, object] = {f.name: None for f in SUMMARY_SCHEMA}
    row.update(capture=os.path.basename(m.path), capture_path=m.path, capture_id=m.capture_id)
    row.update(kw)
    return row


def run_task(task: Task) -> TaskResult:
    """Analyze the task's captures and find their anomalies; never raises for a bad capture.

    Connections stream through one `Pipeline` (a rotation set is its sequence of paths): each
    becomes its record as it ends, and the anomaly detector among the pipeline's analyzers takes
    it then (`on_end`, its findings at `finish`), so a task holds records, not connection
    objects. A capture that cannot be read is a summary row with status "failed" and its error;
    in a rotation set the other members are still read, in order.
    """
    started, cpu_started = time.perf_counter(), time.thread_time()
    keys = []
    for m in task.members:
        size, mtime_ns = _stat(m.path)  # before reading: a file that grows later is redone
        try:
            digest = file_digest(m.path)
        except OSError:
            digest = None  # reading it below says why it cannot be read
        keys.append((size, mtime_ns, digest))
    pipe = None
    try:
        detector = _detector(task.thresholds, task.config)
        # one file is read exactly as `flowlens flows` reads it; a set as one stream
        source = task.members[0].path if len(task.members) == 1 else [m.path for m in task.members]
        pipe = Pipeline(source, task.config, analyzers=[detector])  # CaptureError: no work done
        records = []  # (first_ts_ns, first_frame, record): the order of `analyze`
        for c in pipe:
            records.append((c.first_ts_ns, c.first_frame, c.to_record()))
        # results[detector] is what AnomalyDetector.finish returned
        findings = [a.to_record() for a in cast("list[Anomaly]", pipe.results[detector])]
    except Exception as exc:  # noqa: BLE001 - one bad capture must not stop the batch
        error = _error_text(exc)
        rows = [
            _summary_row(
                m, status="failed", error=error, size=k[0], mtime_ns=k[1], blake2b=k[2], warnings=[]
            )
            for m, k in zip(task.members, keys)
        ]
        _apportion(rows, time.perf_counter() - started, time.thread_time() - cpu_started)
        return TaskResult(task.task_id, rows, {}, {})
    records.sort(key=lambda r: (r[0], r[1]))
    result = _result(task, pipe.files, records, findings, keys)
    _apportion(result.captures, time.perf_counter() - started, time.thread_time() - cpu_started)
    return result


def _detector(thresholds, config: Config):
    from ..analyzers.anomalies.detector import AnomalyDetector

    return AnomalyDetector(thresholds)


def _member_of_frame(parts: list[FileRun], frame: int) -> int:
    """Index of the member whose frames include set-wide frame number `frame`."""
    idx = 0
    for i, p in enumerate(parts):
        if p.stats is not None and frame > p.frame_offset:
            idx = i
    return idx


def _member_of_ts(parts: list[FileRun], ts: float | None) -> int:
    idx = 0
    if ts is None:
        return idx
    for i, p in enumerate(parts):
        if (
            p.stats is not None
            and p.stats.first_ts_ns is not None
            and ts * 1e9 >= p.stats.first_ts_ns
        ):
            idx = i
    return idx


def _result(
    task: Task, parts: list[FileRun], records: list, findings: list[dict], keys
) -> TaskResult:
    merged = len(parts) > 1
    rotation = task.members[0].capture_id if merged else None
    conn_rows: list[list[dict]] = [[] for _ in parts]
    for _ts, first_frame, record in records:
        conn_rows[_member_of_frame(parts, first_frame) if merged else 0].append(record)
    anomaly_rows: list[list[dict]] = [[] for _ in parts]
    for a in findings:
        if merged:
            evidence = a.get("evidence") or []
            i = (
                _member_of_frame(parts, evidence[0])
                if evidence
                else _member_of_ts(parts, a.get("ts"))
            )
        else:
            i = 0
        anomaly_rows[i].append(a)
    rows, conn_tables, anomaly_tables = [], {}, {}
    for i, (m, p, (size, mtime_ns, digest)) in enumerate(zip(task.members, parts, keys)):
        s = p.stats
        if p.error is not None or s is None:
            rows.append(_summary_row(m, status="failed", error=p.error, size=size, mtime_ns=mtime_ns,
                                     blake2b=digest, warnings=[], rotation_set=rotation,
                                     frame_offset=p.frame_offset))  # fmt: skip
            continue
        kinds = Counter(a["kind"] for a in anomaly_rows[i])
        rows.append(
            _summary_row(
                m,
                status="ok",
                warnings=list(p.warnings),
                size=size,
                mtime_ns=mtime_ns,
                blake2b=digest,
                container=s.container,
                linktypes=[LINKTYPE_NAMES.get(lt, str(lt)) for lt in sorted(s.linktypes)],
                date=_date(s.first_ts_ns),
                first_ts=_epoch(s.first_ts_ns),
                last_ts=_epoch(s.last_ts_ns),
                duration_s=s.duration_ns / 1e9,
                packets=s.frames,
                bytes=s.bytes,
                undecodable=p.undecodable,
                connections=len(conn_rows[i]),
                anomalies=len(anomaly_rows[i]),
                anomalies_by_kind=dict(sorted(kinds.items())),
                rotation_set=rotation,
                frame_offset=p.frame_offset,
            )
        )
        extra = {"capture": os.path.basename(m.path), "capture_path": m.path}
        if conn_rows[i]:
            conn_tables[m.capture_id] = arrow_table(conn_rows[i], CONNECTION_SCHEMA, extra)
        if anomaly_rows[i]:
            anomaly_tables[m.capture_id] = arrow_table(anomaly_rows[i], ANOMALY_SCHEMA, extra)
    return TaskResult(task.task_id, rows, conn_tables, anomaly_tables)


def _apportion(rows: list[dict], elapsed_s: float, cpu_s: float) -> None:
    """Share a task's wall and CPU time among its members by packets (evenly when none were
    read)."""
    total = sum(r["packets"] or 0 for r in rows)
    for r in rows:
        share = (r["packets"] or 0) / total if total else 1 / len(rows)
        r["elapsed_s"] = round(elapsed_s * share, 6)
        r["cpu_s"] = round(cpu_s * share, 6)


# ------------------------------------------------------------------ probes


@dataclass(frozen=True, slots=True)
class Probe:
    """A capture's identity and time span, read without decoding (for --verify and for
    grouping rotation sets)."""

    path: str
    size: int | None
    mtime_ns: int | None
    blake2b: str | None
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    #: LINKTYPE_ numbers seen, sorted
    linktypes: tuple[int, ...] = ()
    error: str | None = None


def probe_file(path: str, scan: bool = True) -> Probe:
    """Hash `path` and, when `scan`, read its frames for the first and last timestamp and link
    types. Never raises: a file that cannot be read has `error` set."""
    size, mtime_ns = _stat(path)
    try:
        digest = file_digest(path)
    except OSError as exc:
        return Probe(path, size, mtime_ns, None, error=_error_text(exc))
    if not scan:
        return Probe(path, size, mtime_ns, digest)
    try:
        with open_capture(path) as cap:
            for _ in cap:
                pass
    except FlowlensError as exc:
        return Probe(path, size, mtime_ns, digest, error=str(exc))
    s = cap.stats
    return Probe(
        path, size, mtime_ns, digest, s.first_ts_ns, s.last_ts_ns, tuple(sorted(s.linktypes))
    )
