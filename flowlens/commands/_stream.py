"""How a command reads a capture's connections: in one process, in `--jobs N` hash shards
(forked workers, core/shard.py's ShardedRun), or in shards on a Dask cluster's workers
(`--scheduler ADDRESS`, DaskShardedRun), each connection's result merged into the order one
pipeline yields them (`ConnectionStream`); the `--jobs` and `--scheduler` options."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from typing import Any

import click

from ..core.connections import Config
from ..core.pipeline import Pipeline
from ..errors import UsageError
from ._common import Progress, progress_callback, warn

__all__ = ["jobs_option", "one_jobs_option", "jobs_for", "scheduler_option", "ConnectionStream"]


#: `--jobs` left out: a capture file this large is read by one process per usable core ...
AUTO_JOBS_BYTES = 256 * 1024 * 1024
#: ... up to this many (each shard reads every frame, so past a few the reading dominates)
AUTO_JOBS_MAX = 8


def jobs_for(jobs: int | None, path: str) -> int:
    """The worker processes a command uses on `path` for `--jobs N`: N for a capture file
    (0 means one per usable core), 1 for stdin, which only one reader can read. Without
    `--jobs` (None): one per usable core (at most AUTO_JOBS_MAX) for a capture file of
    AUTO_JOBS_BYTES or more, where sharding gains (README: One capture on several cores),
    else 1."""
    if jobs is None:
        try:
            big = os.path.isfile(path) and os.path.getsize(path) >= AUTO_JOBS_BYTES
        except OSError:
            big = False
        if not big:
            return 1
        from ..core.shard import usable_cores

        return max(1, min(usable_cores(), AUTO_JOBS_MAX))
    if jobs < 0:
        raise UsageError(f"--jobs {jobs}: expected a count of processes, or 0 for every core")
    if jobs == 0:
        from ..core.shard import usable_cores

        jobs = usable_cores()
    if jobs > 1 and (path == "-" or not os.path.isfile(path)):
        if path == "-" or os.path.exists(path) and not os.path.isdir(path):  # stdin, a FIFO
            warn(f"Note: {path}: --jobs needs a capture file; read by one process")
        return 1  # (a folder or a missing path: the capture's own error says what is wrong)
    return jobs


jobs_option = click.option(
    "--jobs",
    "-j",
    type=int,
    default=None,
    help="Worker processes, each owning a hash shard of the connections (0: one per usable "
    "core; default: one per usable core, at most 8, for a capture file of 256 MB or more, "
    "else 1). The output is the same, byte for byte, as with one.",
)


#: --jobs of a command whose merging costs about what a shard saves (the report adds every
#: connection's part of the page, `states` every socket span, in the merging process): one
#: process unless asked (README, Speed: on sequential-5M, report 21.5 s with one process
#: against 25.5 s with two, states 9.9 s against 11.7 s)
one_jobs_option = click.option(
    "--jobs",
    "-j",
    type=int,
    default=1,
    help="Worker processes, each owning a hash shard of the connections (0: one per usable "
    "core; default 1: what this command adds up from every connection costs about what "
    "more processes save). The output is the same, byte for byte, as with one.",
)

scheduler_option = click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run the shards on this Dask distributed scheduler's workers (e.g. tcp://10.0.0.5:8786): "
    "--jobs of them if more than 1, else one per worker thread. The capture must be on storage "
    "every worker reads at the same absolute path. The output is the same, byte for byte.",
)


class _ShardSetup:
    """A shard's pipeline and `work(conn)` (ShardedRun's `setup`), as an object that pickles
    (it goes to Dask workers with cloudpickle: the command's `make_analyzers` and `work`
    closures pickle by value)."""

    def __init__(self, path: str, config: Config, make_analyzers: Callable, work: Callable,
                 progress: Callable | None = None,
                 answer: Callable | None = None) -> None:  # fmt: skip
        self.path, self.config = path, config
        self.make_analyzers, self.work = make_analyzers, work
        #: shard 0's progress callback (a forked run; a Dask shard reports its own)
        self.progress = progress
        self.answer = answer

    def __call__(self, shard: tuple[int, int]) -> tuple:
        analyzers = self.make_analyzers()
        pipe = Pipeline(
            self.path, self.config, analyzers=analyzers,
            progress=self.progress if shard[0] == 0 else None, shard=shard,
        )  # fmt: skip
        work, answer = self.work, self.answer
        if answer is None:
            return pipe, lambda conn: work(conn, analyzers)
        return pipe, lambda conn: work(conn, analyzers), lambda q: answer(q, analyzers)


def _cluster_path(path: str, config: Config) -> str:
    """The absolute path the Dask workers open for `path` (relative to this directory). stdin
    or a FIFO is refused (UsageError): only this process could read it. A capture that is
    here is checked here (a damaged file fails before any work); one that is not may be on
    the workers' storage only, which they will say."""
    if path == "-" or (os.path.exists(path) and not os.path.isfile(path)
                       and not os.path.isdir(path)):  # fmt: skip
        shown = "stdin" if path == "-" else "a FIFO or device"
        raise UsageError(f"{path}: --scheduler needs a capture file every worker can read, "
                         f"not {shown}")  # fmt: skip
    if os.path.exists(path):
        Pipeline(path, config).close()
    elif config.read_filter:
        from ..core.bpf import check_filter

        check_filter(config.read_filter)
    return os.path.abspath(path)


def _renamed(facts: dict, path: str, shown: str) -> dict:
    """A shard's facts with its lines naming the capture as the user did (`shown`), not by
    the absolute `path` the workers opened."""
    if path == shown:
        return facts
    prefix = f"{path}: "

    def rename(lines: list[str]) -> list[str]:
        return [f"{shown}: {line[len(prefix):]}" if line.startswith(prefix) else line
                for line in lines]  # fmt: skip

    return {**facts, "warnings": rename(facts["warnings"]), "notes": rename(facts["notes"])}


class ConnectionStream:
    """`work(conn, analyzers)` of every connection of `path` that is not None, in the order
    one pipeline yields them: read by one Pipeline, or, with `jobs` > 1 (see `jobs_for`), by
    hash shards in as many processes (flowlens.core.shard), whose `work` results are merged
    into the same order; with `scheduler` (a Dask scheduler's address), by shards on that
    cluster's workers (`jobs` of them if more than 1, else one per worker thread, at least 2:
    core/shard.py's DaskShardedRun). `make_analyzers()` gives a fresh list for each pipeline;
    `work` receives that list (for a cluster both must pickle). A progress bar shows on a
    terminal (`close_progress`). After iteration, `facts` holds the run's `damage` lines,
    `notes`, `frames`, `first_ts_ns` and `last_ts_ns`. An unreadable capture, filter or
    scheduler raises here, before any work starts.

    Options for a command that needs more than a stream of results (the report):
    `frames=True` yields (the frame that ended the connection, `work(...)`); `finish(pipeline)`
    runs at the end of each pipeline, its results in `finished` (one per shard); and
    `answer(question, analyzers)` answers `ask(question)` after the run, in each pipeline's
    process (a list of the answers, one per shard), until `close`. `first_weight` is shard 0's
    share of the hash against an even share when the shards are forked (shard 0 is read in
    this process, beside the merge: core/shard.py's FIRST_WEIGHT by default; a command whose
    merge costs more gives its own, measured as that module says)."""

    def __init__(
        self,
        path: str,
        config: Config,
        make_analyzers: Callable[[], list],
        work: Callable,
        jobs: int | None = 1,
        scheduler: str | None = None,
        *,
        frames: bool = False,
        finish: Callable[[Pipeline], Any] | None = None,
        answer: Callable[[Any, list], Any] | None = None,
        first_weight: float | None = None,
    ) -> None:
        self.path = path
        #: shard 0's share of the hash against an even one, with forked shards (core/shard.py's
        #: FIRST_WEIGHT unless the command measured its own: what its merging costs)
        self.first_weight = first_weight
        self.config = config
        self.make_analyzers = make_analyzers
        self.work = work
        self.frames = frames
        self.finish = finish
        self.answer = answer
        self.client: Any = None
        self.progress: Progress | None = None
        self.facts: dict = {}
        #: what `finish(pipeline)` returned, per shard (one entry for one process)
        self.finished: list = []
        self._run: Any = None
        if scheduler:
            if jobs is not None and jobs < 0:
                jobs_for(jobs, path)  # (raises its UsageError)
            self._cluster_path = _cluster_path(path, config)
            from ..core.cluster import connect

            self.client = connect(scheduler)
            try:
                threads = sum(self.client.nthreads().values())
                if not threads:
                    raise UsageError(f"{scheduler}: the Dask scheduler has no workers")
            except BaseException:
                self.close()
                raise
            self.jobs = jobs if jobs is not None and jobs > 1 else max(2, threads)
            self.progress = progress_callback(path)
            return
        self.jobs = jobs_for(jobs, path)
        self.progress = progress_callback(path)
        # an unreadable capture (or filter) fails here, before any work or fork
        try:
            if self.jobs == 1:
                self._analyzers = make_analyzers()
                self._pipe = Pipeline(
                    path, config, analyzers=self._analyzers, progress=self.progress
                )
            else:
                Pipeline(path, config).close()
        except BaseException:
            self.close_progress()
            raise

    def close_progress(self) -> None:
        if self.progress is not None:
            self.progress.close()

    @property
    def sharded(self) -> bool:
        """Whether shards read the capture (`--jobs` > 1 or a cluster), not this process."""
        return self.client is not None or self.jobs > 1

    @property
    def split(self) -> tuple[int, int]:
        """(shards, the hash slots shard 0 owns) of this run (core/pipeline.py's shard_split):
        what a merge that knows which shard made a part needs (AnomalyDetector.from_shards)."""
        from ..core.pipeline import shard_split

        if self.client is not None or self.jobs == 1:
            return self.jobs, shard_split(self.jobs)
        from ..core.shard import first_slots

        return self.jobs, first_slots(self.jobs, self.first_weight)  # (forked: shard 0 here)

    @property
    def stats(self):
        """The one pipeline's CaptureStats (its times are known from its first frame on);
        None for a sharded run."""
        return self._pipe.stats if self.jobs == 1 and self.client is None else None

    def ask(self, question: Any) -> list:
        """`answer(question, analyzers)` of every pipeline, in shard order (after the run)."""
        assert self.answer is not None, "ask needs an answer function"
        if self._run is None:
            return [self.answer(question, self._analyzers)]
        return self._run.ask(question)

    def close(self) -> None:
        """Close the progress bar, the shards' workers and the cluster's client (when there
        is one)."""
        self.close_progress()
        if self._run is not None:
            run, self._run = self._run, None
            run.close()
        if self.client is not None:
            client, self.client = self.client, None
            client.close()

    def __iter__(self):
        if not self.sharded:
            yield from self._guarded(self._one())
        else:
            for chunk in self._guarded(self._chunks()):
                yield from chunk

    def chunks(self) -> Iterator[list]:
        """The same items as iterating, in lists: as the shards' merge gives them, or one
        item a list from one process (a command that writes a list at a time, as `flows`
        does its JSON lines, saves a Python step per item of a sharded run)."""
        if not self.sharded:
            return self._guarded([item] for item in self._one())
        return self._guarded(self._chunks())

    def _chunks(self) -> Iterator[list]:
        return self._on_cluster() if self.client is not None else self._sharded()

    def _guarded(self, items: Iterator) -> Iterator:
        """`items`, then the workers closed, unless they wait for `ask` (after a complete
        run with an `answer`); closed at once when the caller stops early or fails."""
        complete = False
        try:
            yield from items
            complete = True
        finally:
            if not complete or self.answer is None:
                self.close()
            else:
                self.close_progress()  # (the workers wait for `ask` until `close`)

    def _one(self):
        pipe, analyzers, work = self._pipe, self._analyzers, self.work
        if self.frames:
            for conn in pipe:
                item = work(conn, analyzers)
                if item is not None:
                    yield pipe.emit_frame, item
        else:
            for conn in pipe:
                item = work(conn, analyzers)
                if item is not None:
                    yield item
        if self.finish is not None:
            self.finished = [self.finish(pipe)]
        self.facts = pipe.run_facts()

    def _merged(self, run, facts: Callable[[dict], dict] | None = None) -> Iterator:
        """`run`'s items in lists (its chunks), with gc paused; then `facts` from its shards'
        (each through `facts` first, when given)."""
        from ..core.pipeline import merge_shard_facts

        # as in Pipeline: what the shards send makes no reference cycles, and the collector's
        # passes over the parts a command keeps would cost as much as adding them
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield from run.chunks()
        finally:
            if gc_was_enabled:
                gc.enable()
        finished = run.finished if facts is None else [facts(f) for f in run.finished]
        if self.finish is not None:  # (each is (the pipeline's facts, the command's finish))
            self.finished = [f[1] for f in finished]
            finished = [f[0] for f in finished]
        self.facts = merge_shard_facts(self.path, finished)

    def _shard_finish(self) -> Callable[[Pipeline], Any]:
        finish = self.finish
        if finish is None:
            return Pipeline.shard_facts
        return lambda pipe: (pipe.shard_facts(), finish(pipe))

    def _setup(self, path: str, progress: Callable | None = None) -> _ShardSetup:
        return _ShardSetup(path, self.config, self.make_analyzers, self.work, progress, self.answer)

    def _sharded(self):
        from ..core.shard import ShardedRun

        self._run = ShardedRun(self._setup(self.path), self._shard_finish(), self.jobs,
                               frames=self.frames, progress=self.progress,
                               first_weight=self.first_weight)  # fmt: skip
        yield from self._merged(self._run)

    def _on_cluster(self):
        from ..core.shard import DaskShardedRun

        where = self._cluster_path
        self._run = DaskShardedRun(self._setup(where), self._shard_finish(), self.jobs,
                                   self.client, self.progress, frames=self.frames)  # fmt: skip
        rename = (
            (lambda f: _renamed(f, where, self.path))
            if self.finish is None
            else (lambda f: (_renamed(f[0], where, self.path), f[1]))
        )
        yield from self._merged(self._run, rename)
