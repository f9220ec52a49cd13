"""The work of `flowlens batch` on one capture (or one rotation set): analyze, find anomalies, and
return the rows as Arrow tables. The functions here run in worker processes (a local pool or Dask
workers), so they take and return only picklable values and never touch the output directory.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import pickle
import re
import stat
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    "Checkpoint",
    "Resume",
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


#: a member's resume keys as it was read: (path, size, mtime_ns, blake2b)
MemberKey = tuple[str, "int | None", "int | None", "str | None"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A rotation set's open state after member `index` (0-based), made by `run_task` and kept
    by the store (`_state/rotation/`), so that a run over the same first `index + 1` members
    and more can go on from there instead of reading them again.

    Made only while every member up to `index` was read whole and cleanly (no failure, no
    damage that stopped reading): anything else is read again in full.
    """

    index: int
    #: what every result depends on besides the captures (`Task.stamp`: flowlens version,
    #: config, thresholds): the store offers a checkpoint only to a task with the same stamp
    stamp: str
    #: the code that pickled `state` (`build_stamp()` of the worker): a worker restores only
    #: its own build's state
    build: str
    #: the keys of members 0..index as they were read
    keys: tuple[MemberKey, ...]
    #: the records that ended while member `index` was read (the ones before are in the earlier
    #: checkpoints), as an Arrow IPC stream of `_records_table`
    records: bytes
    #: pickled `Pipeline.snapshot()` after member `index`; only kept for the last two members
    #: of a set (None otherwise): what a set that grows, or whose last file grows, needs
    state: bytes | None
    #: wall-clock and CPU seconds spent on member `index` (the summary's elapsed_s and cpu_s
    #: of a member not read again)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a task starts instead of its first member: the checkpoints of members
    0..k-1 (k = len(checkpoints)), the last with its state. See `run_task`."""

    checkpoints: tuple[Checkpoint, ...]


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: a capture, or a rotation set read as one continuous capture."""

    task_id: str
    members: tuple[Member, ...]
    config: Config = field(default_factory=Config)
    #: handed to `AnomalyDetector(thresholds)` as is
    thresholds: object = None
    #: a rotation set: make a `Checkpoint` after each member, stamped with this (None: none)
    stamp: str | None = None
    #: go on from these checkpoints (a set whose first members are unchanged), or None
    resume: Resume | None = None


@dataclass(slots=True)
class TaskResult:
    """What a worker sends back: summary rows and Arrow tables per member (by capture_id).

    A member without connections (or anomalies) has no table.
    """

    task_id: str
    captures: list[dict]
    connections: dict[str, pa.Table]
    anomalies: dict[str, pa.Table]
    #: a rotation set's new checkpoints (Task.stamp), by member index
    checkpoints: list[Checkpoint] = field(default_factory=list)
    #: members not read again: the task went on from the checkpoint after member resumed - 1
    resumed: int = 0

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


_BUILD: list[str] = []


def build_stamp() -> str:
    """The code a pickled pipeline state belongs to: the Python version and a digest of every
    module file of the flowlens package (.py, .pxd and compiled extensions), so that a state is
    never restored by a build whose classes differ, compiled or plain, even at the same
    version number. Computed once per process."""
    if not _BUILD:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        digest = hashlib.blake2b(digest_size=16)
        for folder, dirs, files in sorted(os.walk(root)):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".py", ".pxd", ".so", ".pyd")):
                    path = os.path.join(folder, name)
                    digest.update(os.path.relpath(path, root).encode() + b"\0")
                    with open(path, "rb") as f:
                        digest.update(hashlib.blake2b(f.read()).digest())
        _BUILD.append(f"python {sys.version.split()[0]}; code {digest.hexdigest()}")
    return _BUILD[0]


def _keys(members) -> list[tuple]:
    keys = []
    for m in members:
        size, mtime_ns = _stat(m.path)  # before reading: a file that grows later is redone
        try:
            digest = file_digest(m.path)
        except OSError:
            digest = None  # reading it below says why it cannot be read
        keys.append((size, mtime_ns, digest))
    return keys


def run_task(task: Task) -> TaskResult:
    """Analyze the task's captures and find their anomalies; never raises for a bad capture.

    Connections stream through one `Pipeline` (a rotation set is its sequence of paths): each
    becomes its record as it ends, and the anomaly detector among the pipeline's analyzers takes
    it then (`on_end`, its findings at `finish`), so a task holds records, not connection
    objects. A capture that cannot be read is a summary row with status "failed" and its error;
    in a rotation set the other members are still read, in order.

    A rotation set with `task.stamp` makes a `Checkpoint` after each member it reads whole and
    cleanly (the pipeline's `checkpoint` hook: the records that ended in that member and, for
    the last two members, `Pipeline.snapshot()` pickled). With `task.resume` the task restores
    the last checkpoint's state and records, reads only the members after it, and returns the
    rows a run over every member would (the records before are the ones that run made, the
    state is the one it had there, and the rest follows from them); a checkpoint that cannot
    be restored (unpickling fails) makes it read every member instead.
    """
    started, cpu_started = time.perf_counter(), time.thread_time()
    members = task.members
    resume = task.resume if task.stamp is not None and len(members) > 1 else None
    if resume is not None and not (
        0 < len(resume.checkpoints) <= len(members)
        and resume.checkpoints[-1].build == build_stamp()
        and all(c.stamp == task.stamp for c in resume.checkpoints)
    ):
        resume = None  # another build's objects may unpickle into wrong ones: read everything
    if resume is not None:
        # a member not read again: its size and mtime now (with --verify they may differ from
        # the checkpoint's), and the digest of the bytes the checkpoint was made from
        keys = [(*_stat(c.keys[-1][0]), c.keys[-1][3]) for c in resume.checkpoints]
        keys += _keys(members[len(resume.checkpoints) :])
    else:
        keys = _keys(members)
    pipe = None
    checkpoints: list[Checkpoint] = []
    resumed = 0
    try:
        detector = _detector(task.thresholds, task.config)
        # (first_ts_ns, first_frame, record) of the connections ended since the last
        # checkpoint; `tables` holds the ones before it as Arrow tables (`_records_table`)
        records: list = []
        tables: list[pa.Table] = []
        hook: _checkpointer | None = None
        if task.stamp is not None and len(members) > 1:
            hook = _checkpointer(task, keys, records, tables, checkpoints, started, cpu_started)
        # one file is read exactly as `flowlens flows` reads it; a set as one stream
        source = members[0].path if len(members) == 1 else [m.path for m in members]
        pipe = Pipeline(source, task.config, analyzers=[detector], checkpoint=hook)
        if resume is not None:
            try:
                state = pickle.loads(cast(bytes, resume.checkpoints[-1].state))
                before = [_from_ipc(c.records) for c in resume.checkpoints]
                pipe.restore(state)
            except Exception:  # noqa: BLE001 - an unusable checkpoint: read every member
                pipe = Pipeline(source, task.config, analyzers=[detector], checkpoint=hook)
                keys[:] = _keys(members)
            else:
                resumed = len(resume.checkpoints)
                tables.extend(before)
                detector = next(a for a in pipe.analyzers if type(a) is type(detector))
        for c in pipe:
            records.append((c.first_ts_ns, c.first_frame, c.to_record()))
        # results[detector] is what AnomalyDetector.finish returned
        findings = [a.to_record() for a in cast("list[Anomaly]", pipe.results[detector])]
        tables.append(_records_table(records))
        connections = _sorted(tables)
    except Exception as exc:  # noqa: BLE001 - one bad capture must not stop the batch
        error = _error_text(exc)
        rows = [
            _summary_row(
                m, status="failed", error=error, size=k[0], mtime_ns=k[1], blake2b=k[2], warnings=[]
            )
            for m, k in zip(members, keys)
        ]
        _apportion(rows, time.perf_counter() - started, time.thread_time() - cpu_started)
        return TaskResult(task.task_id, rows, {}, {})
    result = _result(task, pipe.files, connections, findings, keys)
    fixed = {}
    if resume is not None and resumed:
        fixed = {i: (c.elapsed_s, c.cpu_s) for i, c in enumerate(resume.checkpoints)}
    _apportion(
        result.captures, time.perf_counter() - started, time.thread_time() - cpu_started, fixed
    )
    result.checkpoints = checkpoints
    result.resumed = resumed
    return result


class _checkpointer:
    """The pipeline's `checkpoint` hook for a rotation set: one `Checkpoint` per member read
    whole and cleanly, until the first that was not (every later one is read again)."""

    def __init__(
        self, task: Task, keys, records: list, tables: list, out: list, wall: float, cpu: float
    ):
        self.task, self.keys, self.records, self.tables, self.out = task, keys, records, tables, out
        self.broken = False
        self.clock = (wall, cpu)

    def __call__(self, pipe: Pipeline, index: int) -> None:
        run = pipe.files[index]
        if run.error is not None or run.stats is None or run.stats.stopped is not None:
            self.broken = True  # failed, or cut short: this member decides nothing for later
        if self.broken:
            return
        members = self.task.members
        delta = _records_table(self.records)  # each record becomes Arrow once, here or at the end
        self.records.clear()
        self.tables.append(delta)
        # the state only where a later run can start: after the last member (the set grows)
        # or the one before it (tcpdump was still writing the last one)
        state = pipe.snapshot() if index >= len(members) - 2 else None
        wall, cpu = time.perf_counter(), time.thread_time()
        self.out.append(
            Checkpoint(
                index,
                cast(str, self.task.stamp),
                build_stamp(),
                tuple((m.path, *k) for m, k in zip(members[: index + 1], self.keys)),
                _to_ipc(delta),
                None if state is None else pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL),
                round(wall - self.clock[0], 6),
                round(cpu - self.clock[1], 6),
            )
        )
        self.clock = (time.perf_counter(), time.thread_time())


#: the columns `_records_table` adds to CONNECTION_SCHEMA: the order of `analyze` (each
#: connection's first packet), by which the rows are sorted and given to their members
_ORDER = [("_first_ts_ns", "ascending"), ("_first_frame", "ascending")]
_RECORDS_SCHEMA = CONNECTION_SCHEMA.append(pa.field("_first_ts_ns", pa.int64())).append(
    pa.field("_first_frame", pa.int64())
)


def _records_table(records: list) -> pa.Table:
    """(first_ts_ns, first_frame, record) -> CONNECTION_SCHEMA's columns (the capture columns
    null) and the two order columns."""
    table = arrow_table([r[2] for r in records], CONNECTION_SCHEMA)
    table = table.append_column(
        _RECORDS_SCHEMA.field("_first_ts_ns"), pa.array([r[0] for r in records], pa.int64())
    )
    return table.append_column(
        _RECORDS_SCHEMA.field("_first_frame"), pa.array([r[1] for r in records], pa.int64())
    )


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    # zstd: a fifth of the size, at a few ms per member (pyarrow builds have it)
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    table = pa.ipc.open_stream(data).read_all()
    if table.schema != _RECORDS_SCHEMA:
        raise ValueError("a checkpoint's records have another schema")
    return table


def _sorted(tables: list[pa.Table]) -> pa.Table:
    """The tables' rows in the order of `analyze` (first packet's time, then frame; a stable
    sort, so rows of one frame keep the order they ended in, as `list.sort` kept them)."""
    table = pa.concat_tables(tables) if tables else _records_table([])
    return table.take(pc.sort_indices(table, sort_keys=_ORDER))


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


def _members_of_frames(parts: list[FileRun], frames) -> np.ndarray:
    """`_member_of_frame` of every frame number in `frames` (vectorised)."""
    readable = [(p.frame_offset, i) for i, p in enumerate(parts) if p.stats is not None]
    frames = np.asarray(frames, dtype=np.int64)
    if not readable:
        return np.zeros(len(frames), dtype=np.int64)
    offsets = np.array([o for o, _ in readable], dtype=np.int64)
    index = np.array([i for _, i in readable], dtype=np.int64)
    # the last readable member whose offset is below the frame (member 0 when none is)
    pos = np.searchsorted(offsets, frames, side="left") - 1
    return np.where(pos >= 0, index[np.maximum(pos, 0)], 0)


def _result(
    task: Task, parts: list[FileRun], connections: pa.Table, findings: list[dict], keys
) -> TaskResult:
    merged = len(parts) > 1
    rotation = task.members[0].capture_id if merged else None
    if merged:
        owner = _members_of_frames(parts, connections.column("_first_frame").to_numpy())
    else:
        owner = np.zeros(connections.num_rows, dtype=np.int64)
    connections = connections.drop_columns([name for name, _ in _ORDER])
    capture_cols = [connections.schema.get_field_index(n) for n in ("capture", "capture_path")]
    conn_rows: list[pa.Table] = [connections.filter(owner == i) for i in range(len(parts))]
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
                connections=conn_rows[i].num_rows,
                anomalies=len(anomaly_rows[i]),
                anomalies_by_kind=dict(sorted(kinds.items())),
                rotation_set=rotation,
                frame_offset=p.frame_offset,
            )
        )
        extra = {"capture": os.path.basename(m.path), "capture_path": m.path}
        if conn_rows[i].num_rows:
            table = conn_rows[i].combine_chunks()
            for col, name in zip(capture_cols, ("capture", "capture_path")):
                field_ = table.schema.field(col)
                table = table.set_column(
                    col, field_, pa.array([extra[name]] * table.num_rows, field_.type)
                )
            conn_tables[m.capture_id] = table
        if anomaly_rows[i]:
            anomaly_tables[m.capture_id] = arrow_table(anomaly_rows[i], ANOMALY_SCHEMA, extra)
    return TaskResult(task.task_id, rows, conn_tables, anomaly_tables)


def _apportion(
    rows: list[dict], elapsed_s: float, cpu_s: float, fixed: dict[int, tuple] | None = None
) -> None:
    """Share a task's wall and CPU time among its members by packets (evenly when none were
    read); members in `fixed` (index -> (elapsed_s, cpu_s)) were not read by this run and keep
    the times of the run that read them."""
    fixed = fixed or {}
    for i, (e, c) in fixed.items():
        rows[i]["elapsed_s"], rows[i]["cpu_s"] = e, c
    rows = [r for i, r in enumerate(rows) if i not in fixed]
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
