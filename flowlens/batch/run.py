"""Many captures at once: find them, run one task per capture (or rotation set) on a local process
pool or a Dask cluster, and keep the results as Parquet datasets that a re-run resumes.

    >>> from flowlens.batch.run import run_batch
    >>> result = run_batch(["/archive"], "out", jobs=4)          # doctest: +SKIP
    >>> result = run_batch(["/archive"], "out", scheduler="tcp://sched:8786")   # doctest: +SKIP

The task function (`flowlens.batch.task.run_task`; for a task above `BatchOptions.shard_above`,
one `flowlens.batch.sharded.run_shard` per worker, merged here) is the same on both executors;
only how it is submitted differs. Workers read the captures by absolute path (on a cluster, every worker must
see the same paths) and send rows back; only this process writes to the output directory
(layout and atomicity: `flowlens.batch.store`).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import signal
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .. import __version__
from ..core.capture import open_capture
from ..core.connections import Config
from ..errors import (
    CaptureError,
    EmptyCaptureError,
    NotACaptureError,
    TruncatedHeaderError,
    UsageError,
)
from .sharded import ShardResult, ShardTask, failed_shard, merge_shards, run_shard
from .store import Store
from .task import Member, Probe, Task, TaskResult, capture_id, probe_file, run_task

__all__ = [
    "BatchOptions",
    "BatchResult",
    "BatchProgress",
    "Discovery",
    "discover",
    "missing_paths",
    "is_capture",
    "rotation_sets",
    "run_batch",
    "default_jobs",
]

# ------------------------------------------------------------------ discovery

#: names that say "capture" even when the bytes do not (such a file is a failed capture, not skipped)
_CAPTURE_NAME_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap0", ".ntar")
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
_CAPTURE_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
)
_GLOB_CHARS = set("*?[")


def _capture_name(path: str) -> bool:
    name = os.path.basename(path).lower()
    for suffix in _COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.endswith(_CAPTURE_NAME_SUFFIXES)


def is_capture(path: str) -> bool:
    """Should a file found in a directory be processed? Decided by its bytes:

    a readable pcap or pcapng (compressed or not) is a capture; so is a file that starts like one
    or is named like one (`.pcap`, `.pcapng`, `.cap`, `.dmp`, optionally `.gz` ...) but is
    damaged, and a file that cannot be read at all: those are processed and reported as failed.
    Anything else (logs, notes, checksums next to the captures) is skipped.
    """
    try:
        open_capture(path).close()
        return True
    except (NotACaptureError, EmptyCaptureError, TruncatedHeaderError):
        if _capture_name(path):
            return True
        try:
            with open(path, "rb") as f:
                return f.read(4) in _CAPTURE_MAGICS
        except OSError:
            return True
    except CaptureError:
        return True  # unreadable, or a compressed stream that is corrupt: report it


@dataclass(slots=True)
class Discovery:
    """What the command-line paths expanded to."""

    #: absolute paths of the captures, sorted, each once
    captures: list[str] = field(default_factory=list)
    #: files in the directories walked that are not captures
    skipped: list[str] = field(default_factory=list)
    #: arguments that name nothing (no such file, directory or glob match)
    missing: list[str] = field(default_factory=list)


def _expand(arg: str) -> list[str]:
    if os.path.lexists(arg):
        return [arg]
    if _GLOB_CHARS & set(arg):
        return sorted(glob.glob(arg, recursive=True))
    return []


def missing_paths(paths: Iterable[str]) -> list[str]:
    """The arguments that name nothing: no such file or directory, or a glob with no match."""
    return [arg for arg in paths if not _expand(arg)]


def discover(paths: Iterable[str], exclude: Iterable[str] = ()) -> Discovery:
    """Expand files, directories (recursively) and glob patterns (`**` recurses) into captures.

    A file named directly, or matched by a glob, is always a capture (if it is not one, its task
    fails and says why); files found by walking a directory are sniffed with `is_capture`.
    Directories in `exclude` (the output directory) are not walked.
    """
    found = Discovery()
    seen: set[str] = set()
    excluded = {os.path.realpath(p) for p in exclude}

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            found.captures.append(os.path.abspath(path))

    def walk(top: str) -> None:
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(
                d for d in dirs if os.path.realpath(os.path.join(folder, d)) not in excluded
            )
            for name in sorted(files):
                path = os.path.join(folder, name)
                if os.path.realpath(path) in seen:
                    continue
                if is_capture(path):
                    add(path)
                else:
                    found.skipped.append(os.path.abspath(path))

    for arg in paths:
        matches = _expand(arg)
        if not matches:
            found.missing.append(arg)
        for path in matches:
            if os.path.isdir(path):
                if os.path.realpath(path) not in excluded:
                    walk(path)
            else:
                add(path)
    found.captures.sort()
    return found


# ------------------------------------------------------------------ rotation sets


def rotation_sets(probes: list[Probe], max_gap_s: float) -> list[list[Probe]]:
    """Group `tcpdump -G/-C` rotation files into sets read as one capture.

    Within one directory and one set of link types, files sorted by first timestamp chain when
    each starts no earlier than the previous one's last packet and at most `max_gap_s` after it.
    A file that cannot be read, or holds no packets, is a set of its own. Sets keep time order.
    """
    limit = int(max_gap_s * 1e9)
    by_source: dict[tuple, list[Probe]] = defaultdict(list)
    alone: list[list[Probe]] = []
    for p in probes:
        if p.error is not None or p.first_ts_ns is None:
            alone.append([p])
        else:
            by_source[(os.path.dirname(p.path), p.linktypes)].append(p)
    sets = list(alone)
    for members in by_source.values():
        members.sort(key=lambda p: (p.first_ts_ns, p.path))
        current = [members[0]]
        for p in members[1:]:
            prev = current[-1]
            # only probes with packets were grouped here: both ends of their span are known
            assert p.first_ts_ns is not None and prev.last_ts_ns is not None
            gap = p.first_ts_ns - prev.last_ts_ns
            if 0 <= gap <= limit:
                current.append(p)
            else:
                sets.append(current)
                current = [p]
        sets.append(current)
    sets.sort(key=lambda s: s[0].path)
    return sets


# ------------------------------------------------------------------ options, progress, result

#: `BatchOptions.shard_above`'s default, bytes (docs/batch.md, "Large tasks as shards")
DEFAULT_SHARD_ABOVE = 256 * 2**20


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """What every task is run with, and how the batch is planned."""

    config: Config = field(default_factory=Config)
    #: handed to `AnomalyDetector(thresholds)` as is (must pickle)
    thresholds: object = None
    #: resume by content hash instead of size and mtime
    verify: bool = False
    #: read each rotation set (see `rotation_sets`) as one continuous capture
    merge_consecutive: bool = False
    #: with merge_consecutive: checkpoint a set after each file, so that a re-run after new
    #: files arrive reads only those (docs/batch.md: Incremental rotation sets; the snapshot
    #: costs about 50 µs and 1.5 KB per open connection, so it is asked for)
    incremental: bool = False
    #: largest gap, in seconds, between one file's last packet and the next one's first
    merge_gap_s: float = 300.0
    #: write report.html (the aggregate report)
    report: bool = True
    #: a task whose files hold more bytes than this (as stored) runs as hash shards of its
    #: connections, one per worker (flowlens.batch.sharded); None: never
    shard_above: int | None = DEFAULT_SHARD_ABOVE


class BatchProgress(Protocol):
    """What `run_batch` reports as it goes (the CLI draws a tqdm bar from it)."""

    def start(self, phase: str, total: int, done: int) -> None:
        """A phase begins ("probing" or "analysing"): `total` captures, `done` already done."""

    def advance(self, captures: int, packets: int) -> None:
        """`captures` more are finished, having read `packets` frames."""

    def close(self) -> None:
        """The batch ended (normally or not)."""


@dataclass(slots=True)
class BatchResult:
    """What a run did. Failures of this run are (path, error) pairs, also in summary.json."""

    outdir: str
    captures: int = 0
    analysed: int = 0
    already_done: int = 0
    #: members of rotation sets that were not read again: their sets went on from the
    #: checkpoint saved after them (see `Store.resume`)
    resumed: int = 0
    #: tasks of this run that ran as hash shards on several workers (`BatchOptions.shard_above`)
    sharded: int = 0
    skipped_files: int = 0
    removed_orphans: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: captures read with warnings (damage, skipped frames): how many, and each one's lines
    #: (Pipeline.summary_lines, the lines every other command prints)
    warnings: int = 0
    warned: list[tuple[str, list[str]]] = field(default_factory=list)
    packets: int = 0
    connections: int = 0
    anomalies: int = 0
    elapsed_s: float = 0.0
    report: str | None = None


def default_jobs() -> int:
    """Cores this process may run on (respects taskset and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------ executors


def _worker_init() -> None:
    # Ctrl-C on a terminal reaches every process of the group: the driver alone handles it
    # (and ends the workers), so workers print no tracebacks of their own
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _LocalPool:
    """A process pool; forkserver so that workers never inherit the driver's threads."""

    def __init__(self, jobs: int) -> None:
        self.parallelism = jobs
        self._make()

    def _make(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(
            [
                "flowlens.batch.task",
                "flowlens.batch.sharded",
                "flowlens.analyzers.anomalies.detector",
            ]
        )
        self._pool = ProcessPoolExecutor(self.parallelism, mp_context=ctx, initializer=_worker_init)

    def submit(self, fn, arg):
        return self._pool.submit(fn, arg)

    def wait(self, futures):
        from concurrent.futures import FIRST_COMPLETED, wait

        return wait(futures, return_when=FIRST_COMPLETED)[0]

    def is_broken(self, exc: BaseException) -> bool:
        from concurrent.futures.process import BrokenProcessPool

        return isinstance(exc, BrokenProcessPool)

    def restart(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._make()

    def close(self, abort: bool) -> None:
        if abort:
            # a task may run for minutes: do not wait for it on Ctrl-C
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


class _DaskPool:
    """A dask.distributed cluster; the same task function as the local pool."""

    def __init__(self, address: str) -> None:
        from dask.distributed import as_completed

        from ..core.cluster import connect

        self._client = connect(address)  # (FlowlensError: cannot reach the Dask scheduler)
        self._finished = as_completed(loop=self._client.loop)
        self.parallelism = max(1, sum(self._client.nthreads().values()))

    def submit(self, fn, arg):
        future = self._client.submit(fn, arg, pure=False)
        self._finished.add(future)
        return future

    def wait(self, futures):
        return set(self._finished.next_batch(block=True))

    def is_broken(self, exc: BaseException) -> bool:
        return False  # the scheduler retries a task whose worker died, then raises KilledWorker

    def restart(self) -> None:  # pragma: no cover - never broken
        pass

    def close(self, abort: bool) -> None:
        self._client.close()


def _map_unordered(
    pool, fn: Callable, items: list, on_done: Callable, prepare: Callable | None = None
) -> None:
    """Run `fn(item)` (`fn(prepare(item))` with `prepare`, called as it is submitted) for every
    item, at most ~2 per worker in flight (bounded memory, prompt Ctrl-C); call
    `on_done(item, result, exc)` as each finishes.

    When a local worker process dies (killed, out of memory) every task in flight dies with the
    pool: those are run again one at a time in a fresh pool, so that only the task that kills
    its worker on its own is reported as failed.
    """
    pending = list(reversed(items))
    suspects: list = []
    window = max(2, 2 * pool.parallelism)
    running: dict = {}

    def submit(item):
        return pool.submit(fn, prepare(item) if prepare is not None else item)

    while pending or suspects or running:
        if suspects:
            if not running:
                item = suspects.pop()
                running[submit(item)] = item
        else:
            while pending and len(running) < window:
                item = pending.pop()
                running[submit(item)] = item
        in_flight = len(running)
        broken = []
        for fut in pool.wait(running):
            item = running.pop(fut)
            try:
                result, exc = fut.result(), None
            except Exception as e:  # noqa: BLE001 - reported per task
                result, exc = None, e
            if exc is not None and pool.is_broken(exc):
                broken.append(item)
            else:
                on_done(item, result, exc)
        if broken:
            lost = broken + list(running.values())
            running.clear()
            pool.restart()
            if in_flight == 1:
                on_done(
                    lost[0],
                    None,
                    RuntimeError("the worker process died (killed, or out of memory)"),
                )
            else:
                suspects.extend(reversed(lost))


# ------------------------------------------------------------------ the run


def _options_key(options: BatchOptions) -> str:
    """What results depend on besides the capture: a change redoes the captures."""
    return f"flowlens {__version__}; {options.config!r}; thresholds={options.thresholds!r}"


def _stat_key(path: str) -> tuple[int | None, int | None]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        return None, None
    return st.st_size, st.st_mtime_ns


def _task_for(paths: list[str], options: BatchOptions) -> Task:
    members = tuple(Member(p, capture_id(p)) for p in paths)
    if len(members) == 1:
        task_id = members[0].capture_id
    else:
        digest = hashlib.blake2b(
            "\n".join(m.path for m in members).encode(), digest_size=8
        ).hexdigest()
        task_id = f"set-{members[0].capture_id}-{len(members)}-{digest}"
    return Task(task_id, members, options.config, options.thresholds)


def _is_done(task: Task, entry: dict | None, options_key: str, keys: dict[str, tuple]) -> bool:
    """Has this exact task already succeeded on these exact files with these options?"""
    if entry is None or entry.get("status") != "ok" or entry.get("options") != options_key:
        return False
    recorded = {c["capture_path"]: c for c in entry.get("captures", ())}
    if set(recorded) != {m.path for m in task.members}:
        return False
    for m in task.members:
        rec, key = recorded[m.path], keys[m.path]
        if key[0] == "blake2b":
            if rec.get("blake2b") is None or rec.get("blake2b") != key[1]:
                return False
        elif key[0] is None or (rec.get("size"), rec.get("mtime_ns")) != key:
            return False
    return True


def run_batch(
    paths: Iterable[str],
    outdir: str,
    options: BatchOptions | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    progress: BatchProgress | None = None,
    report_writer: Callable[[str, list[dict]], str] | None = None,
) -> BatchResult:
    """Process every capture under `paths` into `outdir`; see the module docstring.

    `report_writer(outdir, summary_rows)` renders report.html when `options.report` is set
    (the CLI passes `flowlens.reports.archive.archive_report`: rendering lives in reports/,
    which batch does not import).

    Captures already done (same path, size and mtime, or same content hash with
    `options.verify`, and the same options) are skipped. A capture that fails is recorded in the
    summary and the batch goes on; the result lists this run's failures. Raises `UsageError`
    when a path names nothing, `FlowlensError` when `outdir` cannot be used.
    """
    options = options or BatchOptions()
    started = time.perf_counter()
    found = discover(paths, exclude=[outdir])
    if found.missing:
        raise UsageError(f"{found.missing[0]}: no such file, directory or glob match")
    result = BatchResult(
        outdir=os.path.abspath(outdir),
        captures=len(found.captures),
        skipped_files=len(found.skipped),
    )
    options_key = _options_key(options)
    with Store(outdir) as store:
        entries = store.entries()
        result.removed_orphans = store.clean(entries)
        pool = None
        aborted = True
        probes: dict[str, Probe] = {}
        try:
            need_probe = options.verify or options.merge_consecutive
            stats = {p: _stat_key(p) for p in found.captures}
            if need_probe:
                todo_probes = _uncached_probes(store, found.captures, stats, options, probes)
                if todo_probes:
                    pool = _make_pool(jobs, scheduler, len(todo_probes))
                    _probe_all(
                        pool, store, todo_probes, len(found.captures), probes, options, progress
                    )
            keys = (
                {p: ("blake2b", probes[p].blake2b) for p in found.captures}
                if options.verify
                else stats
            )
            if options.merge_consecutive:
                groups = [
                    [p.path for p in s]
                    for s in rotation_sets([probes[p] for p in found.captures], options.merge_gap_s)
                ]
            else:
                groups = [[p] for p in found.captures]
            tasks = [_task_for(g, options) for g in groups]
            todo = [t for t in tasks if not _is_done(t, entries.get(t.task_id), options_key, keys)]
            result.already_done = result.captures - sum(len(t.members) for t in todo)
            if options.verify:  # same bytes, new mtime: remember it, so a plain re-run agrees
                redo = {t.task_id for t in todo}
                _refresh_stat_keys(
                    store, entries, [t for t in tasks if t.task_id not in redo], stats
                )
            # a capture about to be redone (changed, regrouped, failed before) loses its old rows
            redo_paths = {m.path for t in todo for m in t.members}
            for task_id, entry in list(entries.items()):
                if redo_paths & {c["capture_path"] for c in entry.get("captures", ())}:
                    store.drop(entry)
                    del entries[task_id]
            if todo:
                large = _large_tasks(todo, stats, options)
                if large and pool is not None and not scheduler:
                    if pool.parallelism < (jobs or default_jobs()):  # (a probing pool)
                        pool.close(abort=False)
                        pool = None
                pool = pool or _make_pool(
                    jobs, scheduler, max(len(todo), jobs or default_jobs()) if large else len(todo)
                )
                if options.shard_above:  # (0: every task, whatever its share)
                    large = _critical(large, todo, stats, pool.parallelism)
                shards = pool.parallelism if large else 1
                if progress is not None:
                    progress.start("analysing", result.captures, result.already_done)

                def on_done(
                    unit: Task | ShardTask, res: TaskResult | None, exc: BaseException | None
                ) -> None:
                    if isinstance(unit, ShardTask):  # committed when its task's last one is in
                        res, exc = _gather_shard(gathered, unit, res, exc), None
                        if res is None:
                            return
                        task = unit.task
                        result.sharded += 1
                    else:
                        task = unit
                    if exc is not None:  # the task itself could not run (cluster trouble)
                        res = _failed_result(task, exc)
                        if len(task.members) > 1:  # (if restoring killed it, never again)
                            store.drop_checkpoints(task.members[0].capture_id)
                    assert res is not None  # _map_unordered hands a result or its exception
                    if len(task.members) > 1 and (res.checkpoints or res.resumed):
                        store.save_checkpoints(task.members[0].capture_id, res)
                    entries[task.task_id] = store.commit(res, options_key)
                    result.resumed += res.resumed
                    _tally(result, res)
                    if progress is not None:
                        progress.advance(len(task.members), res.packets)

                # a rotation set's checkpoints hold for the same options (and, checked by the
                # worker that restores one, the same code: task.build_stamp)
                stamp = options_key
                incremental = (
                    options.incremental
                    and options.merge_consecutive
                    and options.config.read_filter is None
                )

                def prepare(task: Task | ShardTask) -> Task | ShardTask:
                    if isinstance(task, ShardTask):  # (a sharded set takes no checkpoint)
                        return task
                    if not incremental or len(task.members) < 2:
                        return task
                    members = [m.path for m in task.members]
                    resume = store.resume(task.members[0].capture_id, stamp, members, keys)
                    return dataclasses.replace(task, stamp=stamp, resume=resume)

                gathered: dict[str, dict[int, ShardResult]] = {}
                units: list = []
                for t in todo:
                    if t.task_id in large and shards > 1:
                        units.extend(ShardTask(t, k, shards) for k in range(shards))
                    else:
                        units.append(t)
                _map_unordered(pool, _run_unit, units, on_done, prepare)
            aborted = False
        finally:
            if pool is not None:
                pool.close(abort=aborted)
            if progress is not None:
                progress.close()
            result.elapsed_s = time.perf_counter() - started
            extra = {"skipped_files": len(found.skipped), "outdir": result.outdir}
            rows = store.write_summary(entries, extra)
        if options.report and report_writer is not None and not aborted:
            result.report = store.write_text("report.html", report_writer(store.outdir, rows))
    return result


def _run_unit(item: Task | ShardTask):
    """The pool's function: a whole task, or one shard of a large one."""
    return run_shard(item) if isinstance(item, ShardTask) else run_task(item)


def _large_tasks(tasks: list[Task], stats: dict, options: BatchOptions) -> set[str]:
    """The tasks run as shards: their files hold more than `options.shard_above` bytes."""
    if options.shard_above is None:
        return set()
    return {
        t.task_id
        for t in tasks
        if sum(stats.get(m.path, (None,))[0] or 0 for m in t.members) > options.shard_above
    }


def _critical(large: set[str], tasks: list[Task], stats: dict, workers: int) -> set[str]:
    """Of the `large` tasks, those worth sharding: more than a fair share of the run's bytes
    (its total over the workers), so that whole tasks could not keep every worker busy
    while it runs. Sharding costs CPU (each shard reads every frame), so an archive of many
    large captures keeps every worker on whole ones."""
    if not large or workers < 2:
        return set()
    size = {t.task_id: sum(stats.get(m.path, (None,))[0] or 0 for m in t.members) for t in tasks}
    share = sum(size.values()) / workers
    return {t for t in large if size[t] > share}


def _gather_shard(
    gathered: dict, shard: ShardTask, res, exc: BaseException | None
) -> TaskResult | None:
    """Keep one shard's result; the task's merged result once all `shard.n` are in."""
    got = gathered.setdefault(shard.task.task_id, {})
    got[shard.k] = failed_shard(shard, exc) if exc is not None else res
    if len(got) < shard.n:
        return None
    del gathered[shard.task.task_id]
    try:
        return merge_shards(shard.task, list(got.values()))
    except Exception as err:  # noqa: BLE001 - a bug in the merge fails this task, not the batch
        return _failed_result(shard.task, err)


def _refresh_stat_keys(store: Store, entries: dict, done: list[Task], stats: dict) -> None:
    for task in done:
        entry = entries[task.task_id]
        changed = False
        for c in entry["captures"]:
            size, mtime_ns = stats.get(c["capture_path"], (None, None))
            if size is not None and (c.get("size"), c.get("mtime_ns")) != (size, mtime_ns):
                c["size"], c["mtime_ns"] = size, mtime_ns
                changed = True
        if changed:
            store.save_entry(entry)


def _make_pool(jobs: int | None, scheduler: str | None, tasks: int):
    if scheduler:
        return _DaskPool(scheduler)
    return _LocalPool(max(1, min(jobs or default_jobs(), tasks)))


def _uncached_probes(
    store: Store, paths: list[str], stats, options: BatchOptions, probes: dict
) -> list[str]:
    """Fill `probes` from the cache (time spans for the same size and mtime; never with
    --verify, which must read every file); return the paths still to probe."""
    todo = []
    for p in paths:
        cached = None if options.verify else store.cached_probe(capture_id(p), *stats[p])
        if cached is not None and cached.path == p:
            probes[p] = cached
        else:
            todo.append(p)
    return todo


def _probe_all(
    pool, store: Store, paths: list[str], total: int, probes: dict, options: BatchOptions, progress
) -> None:
    """Hash each capture (and, for --merge-consecutive, find its time span) on the pool."""
    if progress is not None:
        progress.start("probing", total, total - len(paths))

    def on_done(path: str, probe: Probe | None, exc: BaseException | None) -> None:
        if exc is not None:  # the task itself could not run (cluster trouble)
            probe = Probe(path, None, None, None, error=f"{path}: {type(exc).__name__}: {exc}")
        assert probe is not None  # _map_unordered hands a result or its exception
        probes[path] = probe
        if options.merge_consecutive:  # only time spans are worth keeping (--verify always reads)
            store.save_probe(capture_id(path), probe)
        if progress is not None:
            progress.advance(1, 0)

    _map_unordered(pool, _probe_scan if options.merge_consecutive else _probe_hash, paths, on_done)


def _probe_scan(path: str) -> Probe:
    return probe_file(path, scan=True)


def _probe_hash(path: str) -> Probe:
    return probe_file(path, scan=False)


def _failed_result(task: Task, exc: BaseException) -> TaskResult:
    from .task import _summary_row

    error = f"{task.members[0].path}: the task could not run: {type(exc).__name__}: {exc}"
    rows = [
        _summary_row(m, status="failed", error=error, warnings=[], elapsed_s=0.0, cpu_s=0.0)
        for m in task.members
    ]
    return TaskResult(task.task_id, rows, {}, {})


def _tally(result: BatchResult, res: TaskResult) -> None:
    for c in res.captures:
        if c["status"] == "ok":
            result.analysed += 1
            result.packets += c["packets"] or 0
            result.connections += c["connections"] or 0
            result.anomalies += c["anomalies"] or 0
            result.warnings += bool(c["warnings"])
            if c["warnings"]:
                result.warned.append((c["capture_path"], list(c["warnings"])))
        else:
            result.failed.append((c["capture_path"], c["error"] or "failed"))
