"""A large batch task (a big capture, a long rotation set) as hash shards on several workers,
merged by the driver into the rows the one-task run (`flowlens.batch.task.run_task`) makes.

Each shard `run_shard(ShardTask(task, k, n))` is one pool task, like any other: it reads the
task's whole source through a `Pipeline(source, shard=(k, n))` (flowlens.core.shard's module
docstring: every frame read, the connections whose unordered 5-tuple hashes to k owned) and
sends back, for each connection it owns, its record (an Arrow table, as `run_task` makes),
the key that merges the shards into the one pipeline's order (the frame that ended it and
`pipeline._batch_key`) and the anomaly detector's part (`AnomalyDetector.parts`); then its
pipeline's per-file facts (`Pipeline.files`) and `shard_facts()`. `merge_shards`, in the
driver, adds the parts in the merged order (`add_parts`), finds the anomalies
(`finish(end_ns)`), adds up the per-file counts that shards split (undecodable frames, the
damage lines) and makes the `TaskResult` with `task._result`, as `run_task` does.

A shard's result is held whole until its task's last shard arrives (a task's rows are held
whole anyway, as `TaskResult`); the shards of a task read the same files, so `n` shards cost
`n` reads and decodes of them (a small part of a run) for `1/n` of the connection work each.
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import pickle
import time
from dataclasses import dataclass, field

import pyarrow as pa

from ..core.pipeline import FileRun, Pipeline, _batch_key, member_warnings, merge_shard_facts, owner
from .task import (
    Task,
    TaskResult,
    _apportion,
    _detector,
    _error_text,
    _keys,
    _records_table,
    _result,
    _sorted,
    _summary_row,
)

__all__ = ["ShardTask", "ShardResult", "run_shard", "failed_shard", "merge_shards"]


@dataclass(frozen=True, slots=True)
class ShardTask:
    """Shard `k` of `n` of `task` (no checkpoints: a sharded rotation set is read whole)."""

    task: Task
    k: int
    n: int


@dataclass(slots=True)
class ShardResult:
    """What shard k of a task sends back (see the module docstring)."""

    task_id: str
    k: int
    #: (size, mtime_ns, blake2b) of the members this shard hashed (member i: shard i % n),
    #: by member index, taken before reading them (as `run_task` does)
    keys: dict[int, tuple] = field(default_factory=dict)
    #: why the shard could not run its pipeline (one line), or None
    error: str | None = None
    #: the records of the connections it owns, in the order it yielded them (`_records_table`)
    records: pa.Table | None = None
    #: pickled (per record: (the frame that ended it, its `_batch_key`), the shards' merge
    #: key; per record: `AnomalyDetector.parts(conn)`, None when nothing for the findings):
    #: bytes, so that the driver unpickles these many small tuples with the collector paused
    #: (0.05 s instead of 0.33 s for 50,000 connections)
    ordered: bytes = b""
    files: list[FileRun] = field(default_factory=list)
    #: `Pipeline.shard_facts()`
    facts: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0


def run_shard(shard: ShardTask) -> ShardResult:
    """Shard k of n of the task's connections; never raises for a bad capture (its `error`)."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    task, k, n = shard.task, shard.k, shard.n
    members = task.members
    mine = list(range(k, len(members), n))
    out = ShardResult(task.task_id, k)
    out.keys = dict(zip(mine, _keys([members[i] for i in mine])))
    try:
        from ..analyzers.anomalies.holds import OpenStarts
        from ..analyzers.tcpanalysis import TcpAnalyzer

        tcp, open_starts = TcpAnalyzer(), OpenStarts()
        detector = _detector(task.thresholds, task.config)
        # the detector's parts are made here, at each yield (the order the shards merge in);
        # it is no analyzer of this pipeline, so nothing is added up in a shard
        detector.bind((tcp, open_starts))
        source = members[0].path if len(members) == 1 else [m.path for m in members]
        pipe = Pipeline(source, task.config, analyzers=[tcp, open_starts], shard=(k, n))
        records: list = []
        merge: list = []
        parts: list = []
        for c in pipe:
            if owner(c, n) != k:
                continue  # a tunnel another shard owns (kept here for its uid)
            records.append((c.first_ts_ns, c.first_frame, c.to_record()))
            merge.append((pipe.emit_frame, _batch_key(c)))
            parts.append(detector.parts(c))
        out.records = _records_table(records)
        out.ordered = pickle.dumps((merge, parts), pickle.HIGHEST_PROTOCOL)
        out.files = pipe.files
        out.facts = pipe.shard_facts()
    except Exception as exc:  # noqa: BLE001 - one bad capture must not stop the batch
        out.error = _error_text(exc)
    out.elapsed_s = time.perf_counter() - started
    out.cpu_s = time.thread_time() - cpu_started
    return out


def failed_shard(shard: ShardTask, exc: BaseException) -> ShardResult:
    """A shard whose pool task could not run (its worker died, cluster trouble)."""
    path = shard.task.members[0].path
    error = f"{path}: the task could not run: {type(exc).__name__}: {exc}"
    return ShardResult(shard.task.task_id, shard.k, error=error)


def merge_shards(task: Task, shards: list[ShardResult]) -> TaskResult:
    """The `TaskResult` `run_task(task)` makes, from every shard of it (see the module
    docstring). Timings: the slowest shard's wall-clock time and every shard's CPU time,
    plus this merge's, shared among the members by packets as `run_task` shares them."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    shards = sorted(shards, key=lambda s: s.k)
    members = task.members
    keys: list[tuple] = [(None, None, None)] * len(members)
    for s in shards:
        for i, key in s.keys.items():
            keys[i] = key
    wall = max(s.elapsed_s for s in shards)
    cpu = sum(s.cpu_s for s in shards)
    error = next((s.error for s in shards if s.error is not None), None)
    if error is not None:
        rows = [
            _summary_row(
                m, status="failed", error=error, size=k[0], mtime_ns=k[1], blake2b=k[2], warnings=[]
            )
            for m, k in zip(members, keys)
        ]
        _apportion(rows, wall, cpu)
        return TaskResult(task.task_id, rows, {}, {})
    # as in Pipeline: these small tuples make no reference cycles, and the collector's passes
    # over them would cost more than the merge
    enabled = gc.isenabled()
    gc.disable()
    try:
        ordered = [pickle.loads(s.ordered) for s in shards]
        # the one pipeline's order: each shard's stream is in it already (core/shard.py)
        streams = [[(key, k, i) for i, key in enumerate(o[0])] for k, o in enumerate(ordered)]
        offsets, total = [], 0
        for s in shards:
            offsets.append(total)
            total += s.records.num_rows if s.records is not None else 0
        detector = _detector(task.thresholds, task.config)
        detector.from_shards(len(shards))  # (the parts' watermarks: each its shard's)
        take = []
        for _key, k, i in heapq.merge(*streams):
            take.append(offsets[k] + i)
            part = ordered[k][1][i]
            if part is not None:
                detector.add_parts(part)
        del streams, ordered
    finally:
        if enabled:
            gc.enable()
    table = pa.concat_tables([s.records for s in shards if s.records is not None])
    connections = _sorted([table.take(pa.array(take, pa.int64()))])
    facts = merge_shard_facts(shards[0].files[0].path, [s.facts for s in shards])
    findings = [a.to_record() for a in detector.finish(facts["last_ts_ns"])]
    files = _merged_files(shards, facts, rotation=len(members) > 1)
    result = _result(task, files, connections, findings, keys)
    _apportion(
        result.captures,
        wall + time.perf_counter() - started,
        cpu + time.thread_time() - cpu_started,
    )
    return result


def _merged_files(shards: list[ShardResult], facts: dict, rotation: bool) -> list[FileRun]:
    """The one pipeline's `files`: what every shard saw alike (every frame is read by each:
    stats, errors, offsets) from shard 0; what they split (undecodable frames) added up, and
    the warnings made again from the sums (a single capture's: `merge_shard_facts`' damage)."""
    files = []
    for i, first in enumerate(shards[0].files):
        run = dataclasses.replace(first, warnings=list(first.warnings))
        run.undecodable = sum(s.files[i].undecodable for s in shards)
        if run.stats is not None:
            if rotation:
                run.warnings = member_warnings(run.path, run.stats, run.undecodable)
            else:
                run.warnings = list(facts["damage"])
        files.append(run)
    return files
