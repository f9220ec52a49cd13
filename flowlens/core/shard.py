"""One capture on several cores: hash shards of the connection table, merged into one stream.

Each of N worker processes reads and decodes the whole capture (decoding is a small part of a
run) and owns the connections whose *unordered 5-tuple* hashes to its shard (`route`; the
address pair alone for ICMP, whose request and reply differ in type): both directions of a
connection, and its IP fragments, which the decoder has reassembled into one packet with its
ports by then. A packet out of a tunnel is routed by its own headers (one connection's two
directions may come through different outer flows: Teredo's relays, VXLAN's per-direction
source ports, GTP's uplink and downlink ports), and every shard keeps every UDP flow and every
IP tunnel, so that a tunnel is whole, and its uid (in `tunnel_parents`) the same, in every
shard; only a connection's owner yields it (`owner`). An ICMP error also reaches the shard of
the flow it quotes (`quote_route`), which attaches it there. A frame another shard owns still
moves the table's clock (`ConnectionTable.advance`), so every connection ends at the same
packet as in one table, and within one packet the pipeline orders what ended canonically
(`pipeline._batch_key`): the shards' streams, each tagged with (the frame that ended it, that
key), merge into the very stream `--jobs 1` gives, record for record (`_merged`: a batch at a
time, by one sort of the pieces every shard has sent up to the same key).

Known limits: the table bounds two small per-flow memories (SYN retries across Zeek's attempt
timer, Teredo's confirmation) by clearing them at 65,536 entries, which a shard reaches later
than one table; a capture with that many attempts within their retry schedule may differ
there.

Shard 0 runs in the merging process itself, on a cloudpickled copy of `setup` and `finish`
(what a Dask worker gets), so that what it touches is its own as in a forked worker; the
forked shards write to raw pipes with 1 MiB buffers, which shard 0's pipeline drains at each
batch and progress step (`_Inbox`), so that they do not wait while this process reads. On
sequential-1M (README: Speed), against three processes (two forked shards and a merger that
only merged), ten alternating runs of `--jobs 2` each: the CPU time of the run fell by 2-3 %
(medians: flows 2.66 -> 2.61 s, anomalies 2.94 -> 2.85 s), the wall time within the noise
(flows 1.49 s both, anomalies 1.67 -> 1.58 s).

What crosses the process boundary is whatever the caller's `work(conn)` returns (a record, a
JSON line already made, a report's per-connection part), in batches, and each worker's `finish(pipeline)` at the
end (the pipeline's facts, `Pipeline.shard_facts`). A command that aggregates over
connections does so in the parent from those parts, in the one-process order, so its result
is the one process's too. The workers are forked, so `setup` and `finish` may be closures.

On a Dask cluster (`DaskShardedRun`, `--scheduler ADDRESS`) the same shards run on the
cluster's workers, each opening the capture by its absolute path, and the parent merges them
the same way (same merge key, same batches' contents). Each shard is a Dask Actor
(`_ShardActor`) that holds the shard's generator on its worker; each `next_batch()` call
returns its next message pickled, and the parent keeps one call outstanding per shard, made
as soon as the previous reply arrives, so the worker computes a batch while the parent merges
the one before. The parent thus holds at most two batches per shard, whatever the capture's
length: its memory stays bounded by the open connections, as with forked workers. The
alternatives were worse: a task per shard returning its whole result holds every
connection's result in the parent at once (and again in the scheduler's memory), and a
`distributed.Queue` sends every batch through the scheduler. The one cost of an Actor is that
its worker waits a round trip (about 1.2 ms on a loaded 2-core machine) between two batches,
so a Dask shard's batch is larger (`_DASK_BATCH`, 2,048 items): on 1M packets of short
connections (90,909 records, a 2-worker LocalCluster, 4 alternating rounds) 512 items took
4.07 s (median), 2,048 3.87 s and 8,192 3.69 s, the parent's peak RSS 68, 77 and 115 MB.
`setup` and `finish` reach the workers with cloudpickle (closures pickle by value); what a
worker raises comes back as its text (a FlowlensError, then one `Error:` line) or as its
traceback (anything else). Actor calls run on one thread per worker, and threads of one
worker share its interpreter, so a cluster for this runs one thread per worker process
(`dask worker --nthreads 1 --nworkers N`); the shards are placed on the workers' threads in
turn (`placement`).
"""

from __future__ import annotations

import bisect
import multiprocessing
import operator
import os
import pickle
import select
import traceback
from collections.abc import Callable, Generator, Iterator
from typing import Any

from ..errors import FlowlensError
from .pipeline import _batch_key, _shard_spec, owner, quote_route, route, shard_split

__all__ = ["route", "quote_route", "owner", "usable_cores", "ShardedRun", "DaskShardedRun"]

#: items per message from a worker (a pipe write per batch, not per connection)
_BATCH = 512
#: items per reply of a Dask shard: one round trip (about 1 ms) per batch, during which the
#: worker waits, so larger than a pipe's (module docstring: measured)
_DASK_BATCH = 2048


#: shard 0's share of the hash against an even share: it is read in the merging process, whose
#: merging costs too (unpickling the other shards' batches, writing). Measured on
#: bench-out/sequential-1M.pcap (90,909 connections) with 2 shards, flows --format json, as the
#: weight at which the two processes' CPU times (os.times) came out even: at 0.84 the merging
#: process took 0.92-1.10 s against 1.01-1.04 s, at 0.92 1.00-1.05 s against 0.91-1.01 s. A
#: command whose merge costs more gives its own (ConnectionStream's `first_weight`: anomalies,
#: rtt, states, report); which shard owns a connection changes nothing in the output
FIRST_WEIGHT = 0.88


def first_slots(jobs: int, weight: float | None = None) -> int:
    """The slots of the hash (pipeline.SLOTS) shard 0 of a forked `jobs`-shard run owns, at
    `weight` times an even share (FIRST_WEIGHT without one)."""
    return shard_split(jobs, (FIRST_WEIGHT if weight is None else weight) / jobs)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (not Linux)
        return os.cpu_count() or 1


class ShardedRun:
    """Run `setup((k, jobs, first))` for each of `jobs` shards: it returns (a Pipeline made
    with that `shard=`, and `work(conn)`, bound to that pipeline's analyzers), or those and
    `answer(question)`. Shards 1 .. jobs-1 run in forked workers; shard 0 runs in this process,
    between the merge's steps (`_local`), so that `--jobs 2` is two busy processes on two
    cores, not three, and shard 0's results cross no pipe. Shard 0's share of the hash is
    `first_weight` times an even share (FIRST_WEIGHT), so that this process, which also
    merges, ends about when the workers do. Iterating gives `work(conn)` of
    every connection the shards own, in the order one pipeline would yield them (`work`
    returning None drops a connection), or, with `frames=True`, (the frame that ended it,
    `work(conn)`). After iteration, `finished[k]` is what `finish(pipeline)` returned in
    shard k; when setup gave `answer`, the shards then wait for questions (`ask`) until `close`."""

    def __init__(
        self,
        setup: Callable[[tuple[int, int]], tuple[Any, Callable[[Any], Any]]],
        finish: Callable[[Any], Any],
        jobs: int,
        frames: bool = False,
        progress: Callable[[int, int, int | None], None] | None = None,
        first_weight: float | None = None,
    ) -> None:
        if jobs < 2:
            raise ValueError("a sharded run needs at least 2 jobs")
        self.setup = setup
        self.finish = finish
        self.jobs = jobs
        self.frames = frames
        #: the slots of the hash shard 0 owns (pipeline.shard_split; `first_slots`)
        self.first = first_slots(jobs, first_weight)
        #: shard 0's progress(frames, bytes read, file size), called here as it reads
        self.progress = progress
        self.finished: list[Any] = [None] * jobs
        self._procs: list = []
        self._pipes: list = []  # (the questions' Connection of each forked shard, 1 .. n-1)
        self._here: list = []  # [shard 0's answer function], once its run is complete

    def _worker(self, k: int, out: int, conn) -> None:
        """Shard k in a forked process: its messages written to the raw pipe `out`, then
        answers to the questions that come on the Connection `conn`."""
        answer: list = []
        try:
            shard = (k, self.jobs, self.first)
            for message in _shard_batches(self.setup, self.finish, shard, answer=answer):
                _write_message(out, pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
                if message[0] != "items" and message[0] != "done":
                    return  # (an error: no questions follow)
            os.close(out)
            out = -1
            while answer:  # the questions, until the parent says stop (None) or goes
                try:
                    question = pickle.loads(conn.recv_bytes())
                except EOFError:
                    return
                if question is None:
                    return
                conn.send_bytes(
                    pickle.dumps(_answered(answer[0], question), pickle.HIGHEST_PROTOCOL)
                )
        except BaseException:  # (an item that does not pickle: an internal error too)
            crash = pickle.dumps(("crash", traceback.format_exc()), pickle.HIGHEST_PROTOCOL)
            try:
                if out >= 0:
                    _write_message(out, crash)
                else:
                    conn.send_bytes(crash)
            except OSError:  # (the parent stopped reading: it has stopped the run)
                pass
        finally:
            if out >= 0:
                os.close(out)
            conn.close()

    def _stream(self, k: int, inbox: _Inbox) -> Generator[list, None, None]:
        while True:
            kind, payload = inbox.message()
            if kind == "items":
                yield payload
            elif kind == "done":
                self.finished[k] = payload
                return
            elif kind == "error":
                raise payload
            else:
                raise RuntimeError(f"shard {k} of {self.jobs} failed:\n{payload}")

    def _local(self, inboxes: list[_Inbox]) -> Generator[list, None, None]:
        """Shard 0, read in this process (the merge's own share of the work, which would
        otherwise wait on the pipes): on a copy of `setup` and `finish` made as a Dask worker
        gets them (cloudpickle), so that what shard 0 touches is its own, as in a forked
        process. Each batch it makes, and each progress step of its pipeline (every
        8,192 frames), first drains what the forked shards have written so far, so that
        they do not wait on a full pipe while this process reads."""
        import cloudpickle  # type: ignore[import-untyped]

        setup, finish = pickle.loads(cloudpickle.dumps((self.setup, self.finish)))
        user = self.progress

        def progress(frames: int, done: int, size: int | None) -> None:
            for inbox in inboxes:
                inbox.drain()
            if user is not None:
                user(frames, done, size)

        answer: list = []
        shard = (0, self.jobs, self.first)
        for kind, payload in _shard_batches(setup, finish, shard, progress, answer=answer):
            for inbox in inboxes:
                inbox.drain()
            if kind == "items":
                yield payload
            elif kind == "done":
                self.finished[0] = payload
                self._here = answer
                return
            elif kind == "error":
                raise payload
            else:
                raise RuntimeError(f"shard 0 of {self.jobs} failed:\n{payload}")

    def __iter__(self) -> Iterator[Any]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list]:
        """The same items as iterating, in lists (whatever the shards had sent that could be
        merged: a command that writes them one list at a time saves a Python step per item)."""
        ctx = multiprocessing.get_context("fork")
        procs, inboxes = self._procs, []
        streams: list[Generator[list, None, None]] = []
        done = False
        try:
            # shards 1 .. n-1 forked before shard 0's pipeline exists here (they copy none of it)
            for k in range(1, self.jobs):
                mine, theirs = ctx.Pipe(duplex=True)  # (the questions after the run)
                read, write = os.pipe()  # (the batches: raw, drained without waiting)
                _widen(write)
                proc = ctx.Process(target=self._worker, args=(k, write, theirs), daemon=True)
                proc.start()
                theirs.close()  # (the child holds its own ends)
                os.close(write)
                procs.append(proc)
                self._pipes.append(mine)
                inboxes.append(_Inbox(k, read))
            streams.append(self._local(inboxes))
            streams += [self._stream(k, box) for k, box in enumerate(inboxes, 1)]
            yield from _merged(streams, self.frames)
            done = True
        finally:
            for stream in streams:
                stream.close()  # (shard 0's pipeline closes its file)
            for box in inboxes:
                box.close()
            if not done:
                self.close()

    def ask(self, question: Any) -> list[Any]:
        """Every shard's `answer(question)`, in shard order (after a complete iteration)."""
        for pipe in self._pipes:  # (asked first: the forked shards answer while shard 0 does)
            pipe.send_bytes(pickle.dumps(question, pickle.HIGHEST_PROTOCOL))
        if not self._here:
            here = _reply(0, ("crash", "shard 0 has no answer function"))
        else:
            here = _reply(0, _answered(self._here[0], question))
        return [here] + [
            _reply(k, pickle.loads(pipe.recv_bytes())) for k, pipe in enumerate(self._pipes, 1)
        ]

    def close(self) -> None:
        """Stop the workers: each waiting for a question is told to stop (a forked sibling
        holds a copy of its pipe, so it would not see this end close); one still busy is
        terminated."""
        for pipe in self._pipes:
            try:
                pipe.send_bytes(pickle.dumps(None))
            except OSError:  # (it has gone already)
                pass
            pipe.close()
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        self._pipes, self._procs, self._here = [], [], []


#: a forked shard's batches wait in this process's inbox up to this many bytes; past it the
#: shard waits on its full pipe (this process is behind, and its memory stays bounded). With
#: the pipe's 1 MiB, about a dozen batches of JSON lines ahead; 4 MiB took the merging process
#: of `flows -j 2` (table) from 86 MB at 1M packets to 96 MB at 5M (sequential captures: its
#: inbox full more often on the longer run), 1 MiB 82 and 82 MB, in the same time (6
#: alternating runs of flows --format json -j 2 on 1M packets: medians 1.30 and 1.34 s)
_INBOX_MAX = 1 << 20
#: the pipe's buffer asked for (Linux's default 64 KiB holds a tenth of one batch; 1 MiB is
#: /proc/sys/fs/pipe-max-size's default, what an unprivileged process may ask)
_PIPE_BYTES = 1 << 20
_HEADER = 8  # (a message's length, little-endian, before it)


def _widen(fd: int) -> None:
    """Ask for a larger pipe buffer (F_SETPIPE_SZ, Linux): a forked shard then writes a few
    batches ahead while this process reads its own shard. Elsewhere the default stays."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _write_message(fd: int, data: bytes) -> None:
    """`data` after its length, all of it (a pipe write may take part)."""
    header = len(data).to_bytes(_HEADER, "little")
    sent = os.writev(fd, [header, data])
    if sent < _HEADER:
        header = header[sent:]
        while header:
            header = header[os.write(fd, header) :]
        sent = _HEADER
    view = memoryview(data)[sent - _HEADER :]
    while view:
        view = view[os.write(fd, view) :]


class _Inbox:
    """The parent's end of a forked shard's pipe: `drain` takes what the pipe holds without
    waiting (while this process reads shard 0), `message` gives the next whole message,
    waiting for it when it has not all come."""

    def __init__(self, k: int, fd: int) -> None:
        self.k, self.fd = k, fd
        self.ready = select.poll()
        self.ready.register(fd, select.POLLIN)
        self.buf = bytearray()  # (a bytearray drops its head without moving the rest)
        self.eof = False

    def _read(self) -> None:
        data = os.read(self.fd, _PIPE_BYTES)  # (there is data, or the end: no wait)
        if data:
            self.buf += data
        else:
            self.eof = True

    def drain(self) -> None:
        while not self.eof and len(self.buf) < _INBOX_MAX and self.ready.poll(0):
            self._read()

    def message(self) -> tuple:
        buf = self.buf
        while True:
            if len(buf) >= _HEADER:
                end = _HEADER + int.from_bytes(buf[:_HEADER], "little")
                if len(buf) >= end:
                    message = pickle.loads(buf[_HEADER:end])
                    del buf[:end]
                    return message
            if self.eof:
                return "crash", "its process ended before it sent its result"
            self.ready.poll()  # (waits)
            self._read()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_merge_key = operator.itemgetter(0, 1)  # (the frame that ended it, pipeline._batch_key)


def _merged(streams: list, frames: bool) -> Iterator[list]:
    """The shards' streams of batches (lists of (frame, key, item), each stream in key order)
    merged into one, in lists: of items, or of (frame, item).

    Batch by batch rather than item by item (heapq.merge costs a Python step per item, a
    large share of the merging process's work): whatever every live shard has already sent
    up to the smallest of their last keys (the horizon) is final, since each shard's next
    batch starts above its last key; it is cut from each shard's batch (bisect), and the
    pieces, each sorted, are merged by one sort (Timsort merges sorted runs in C). The shard
    whose last key is the horizon is then empty and sends its next batch. Keys are unique
    (the uid ends them), so no two entries tie."""
    pending: list[list] = [[] for _ in streams]
    live: list[Iterator[list] | None] = list(streams)
    n = len(pending)
    while True:
        horizon = None
        for k in range(n):
            stream = live[k]
            if stream is not None and not pending[k]:
                pending[k] = next(stream, [])  # (a shard sends no empty batch)
                if not pending[k]:
                    live[k] = None
            if live[k] is not None:
                last = _merge_key(pending[k][-1])
                if horizon is None or last < horizon:
                    horizon = last
        out: list = []
        for k in range(n):
            batch = pending[k]
            if not batch:
                continue
            if horizon is None or live[k] is not None and _merge_key(batch[-1]) == horizon:
                out.extend(batch)  # (all of it: the horizon is its last key)
                pending[k] = []
            else:
                cut = bisect.bisect_right(batch, horizon, key=_merge_key)
                if cut:
                    out.extend(batch[:cut])
                    pending[k] = batch[cut:]
        if not out and horizon is None:
            return
        out.sort(key=_merge_key)
        if frames:
            yield [(frame, item) for frame, _k, item in out]
        else:
            yield [item for _frame, _k, item in out]


def _answered(answer: Callable[[Any], Any], question: Any) -> tuple[str, Any]:
    """("answer", what `answer` says), or ("error", ...) / ("crash", ...) as a batch would."""
    try:
        return "answer", answer(question)
    except FlowlensError as exc:
        return "error", _portable(exc)
    except Exception:  # noqa: BLE001 - reported by the parent as an internal error
        return "crash", traceback.format_exc()


def _reply(k: int, message: tuple[str, Any], where: str = "") -> Any:
    """A shard's answer, or its error raised here."""
    kind, payload = message[0], message[1]
    if kind == "answer":
        return payload
    if kind == "error":
        raise payload
    raise RuntimeError(f"shard {k} failed{where}:\n{payload}")


def _shard_batches(
    setup: Callable,
    finish: Callable,
    shard: tuple,
    progress: Callable | None = None,
    batch: int = _BATCH,
    answer: list | None = None,
) -> Iterator[tuple[str, Any]]:
    """What shard k of n sends, message by message: ("items", up to `batch` (frame, key,
    item) entries), then ("done", finish(pipeline)); ("error", a FlowlensError's text) or ("crash",
    a traceback) end it instead. `progress`, when given, becomes the pipeline's progress
    callback (a Dask shard reports it with its batches). When `setup` also gives an
    `answer` function, it is appended to the list `answer`."""
    try:
        made = setup(shard)
        k, n, first = _shard_spec(shard)
        pipe, work = made[0], made[1]
        if len(made) > 2 and answer is not None:
            answer.append(made[2])
        if progress is not None:
            pipe.progress = progress
        out = []
        for c in pipe:
            if owner(c, n, first) != k:
                continue  # a tunnel another shard owns (kept here for its uid)
            item = work(c)
            if item is not None:
                out.append((pipe.emit_frame, _batch_key(c), item))
                if len(out) >= batch:
                    yield "items", out
                    out = []
        if out:
            yield "items", out
        yield "done", finish(pipe)
    except GeneratorExit:  # (closed by its owner: nothing more to send)
        raise
    except FlowlensError as exc:
        yield "error", _portable(exc)
    except BaseException:  # (reported by the parent as an internal error)
        yield "crash", traceback.format_exc()


def _portable(exc: FlowlensError) -> FlowlensError:
    """`exc`, or a FlowlensError with its text where its class does not unpickle from its
    args (CaptureError takes two)."""
    try:
        pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - any failure: send the text
        return FlowlensError(str(exc))
    return exc


class _ShardActor:
    """Shard k of n of a DaskShardedRun, held on a Dask worker as an Actor: each call of
    `next_batch` advances its generator by one message (`_shard_batches`) and returns it
    pickled, with the latest (frames, bytes read, file size) of its progress, or None."""

    def __init__(
        self, setup: Callable, finish: Callable, k: int, n: int, progress: bool, batch: int
    ) -> None:
        self._progress: tuple | None = None
        record = self._record if progress else None
        self._answer: list = []
        self._messages = _shard_batches(setup, finish, (k, n), record, batch, self._answer)

    def _record(self, frames: int, done: int, size: int | None) -> None:
        self._progress = (frames, done, size)

    def next_batch(self) -> bytes:
        kind, payload = next(self._messages, ("crash", "the shard was asked past its end"))
        try:
            return pickle.dumps((kind, payload, self._progress), pickle.HIGHEST_PROTOCOL)
        except Exception:  # (an item that does not pickle: an internal error)
            return pickle.dumps(("crash", traceback.format_exc(), None), pickle.HIGHEST_PROTOCOL)

    def ask(self, question: bytes) -> bytes:
        """The shard's `answer` to a pickled question, pickled (after its last batch)."""
        if not self._answer:
            message: tuple = ("crash", "the shard has no answer function")
        else:
            message = _answered(self._answer[0], pickle.loads(question))
        try:
            return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        except Exception:  # (an answer that does not pickle: an internal error)
            return pickle.dumps(("crash", traceback.format_exc()), pickle.HIGHEST_PROTOCOL)


def placement(threads: dict[str, int], jobs: int) -> list[str]:
    """The worker of each of `jobs` shards: the workers' threads taken in turn (one thread of
    each worker, then a second of each that has two ...), round again when there are more
    shards than threads."""
    slots = [w for turn in range(max(threads.values(), default=0)) for w in threads
             if threads[w] > turn]  # fmt: skip
    if not slots:
        raise FlowlensError("the Dask cluster has no workers")
    return [slots[k % len(slots)] for k in range(jobs)]


class DaskShardedRun:
    """`ShardedRun` on a Dask cluster: the same `setup`, `finish`, order and `finished`, with
    each shard an Actor on a worker of `client` (a distributed.Client, core/cluster.py's
    `connect`). `setup` and `finish` go to the workers with cloudpickle (so they must pickle;
    closures do, by value) and the capture's path in them must be one every worker can open.

    The parent keeps one `next_batch` call outstanding per shard: the worker computes a
    shard's next batch while this process merges its last, so what this process holds is at
    most two batches per shard (as a forked run's pipes hold about that), never a shard's whole
    result. `progress(frames, done, size)` is called here with shard 0's progress as its
    batches arrive."""

    def __init__(
        self,
        setup: Callable[[tuple[int, int]], tuple[Any, Callable[[Any], Any]]],
        finish: Callable[[Any], Any],
        jobs: int,
        client: Any,
        progress: Callable[[int, int, int | None], None] | None = None,
        batch: int = _DASK_BATCH,
        frames: bool = False,
    ) -> None:
        if jobs < 2:
            raise ValueError("a sharded run needs at least 2 jobs")
        self.setup = setup
        self.finish = finish
        self.jobs = jobs
        self.client = client
        self.batch = batch
        self.progress = progress
        self.frames = frames
        self.finished: list[Any] = [None] * jobs
        #: the address of each shard's worker (set when the run starts)
        self.workers: list[str] = []
        self._futures: list = []
        self._actors: list = []

    def __iter__(self) -> Iterator[Any]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list]:
        """The same items as iterating, in lists (as ShardedRun.chunks)."""
        from .cluster import worker_threads

        n, client = self.jobs, self.client
        self.workers = placement(worker_threads(client), n)
        futures = self._futures = [
            client.submit(
                _ShardActor, self.setup, self.finish, k, n, k == 0 and self.progress is not None,
                self.batch,
                actor=True, workers=[w], allow_other_workers=True, pure=False,
            )
            for k, w in enumerate(self.workers)
        ]  # fmt: skip
        done = False
        try:
            with client.as_current():  # (an Actor's proxy binds to the current client)
                actors = self._actors = [self._call(k, f.result) for k, f in enumerate(futures)]
            # every shard's first batch is asked for before any is waited on
            firsts = [actor.next_batch() for actor in actors]
            streams = [self._stream(k, a, f) for k, (a, f) in enumerate(zip(actors, firsts))]
            yield from _merged(streams, self.frames)
            done = True
        finally:
            if not done:
                self.close()

    def ask(self, question: Any) -> list[Any]:
        """Every shard's `answer(question)`, in shard order (after a complete iteration)."""
        data = pickle.dumps(question, pickle.HIGHEST_PROTOCOL)
        pending = [actor.ask(data) for actor in self._actors]  # (all asked, then awaited)
        return [
            _reply(
                k, pickle.loads(self._call(k, p.result)), f" on the Dask worker {self.workers[k]}"
            )
            for k, p in enumerate(pending)
        ]

    def close(self) -> None:
        """Let the cluster drop the shards' actors and their pipelines."""
        if self._futures:
            self.client.cancel(self._futures)
        self._futures, self._actors = [], []

    def _call(self, k: int, result: Callable[[], Any]) -> Any:
        try:
            return result()
        except FlowlensError:
            raise
        except Exception as exc:  # a worker lost, the cluster closing
            from .cluster import one_line

            raise FlowlensError(
                f"{self.workers[k]}: the Dask worker of shard {k} of {self.jobs} failed "
                f"({one_line(exc)})"
            ) from exc

    def _stream(self, k: int, actor: Any, pending: Any) -> Iterator[list]:
        while True:
            kind, payload, progress = pickle.loads(self._call(k, pending.result))
            if kind == "items":
                pending = actor.next_batch()  # computed there while this one merges here
                if progress is not None and self.progress is not None:
                    self.progress(*progress)
                yield payload
            elif kind == "done":
                if progress is not None and self.progress is not None:
                    self.progress(*progress)
                self.finished[k] = payload
                return
            elif kind == "error":
                raise FlowlensError(
                    f"{payload} (on the Dask worker {self.workers[k]})"
                ) from payload
            else:
                raise RuntimeError(
                    f"shard {k} of {self.jobs} failed on the Dask worker {self.workers[k]}:\n"
                    f"{payload}"
                )
