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
key), merge into the very stream `--jobs 1` gives, record for record.

Known limits: the table bounds two small per-flow memories (SYN retries across Zeek's attempt
timer, Teredo's confirmation) by clearing them at 65,536 entries, which a shard reaches later
than one table; a capture with that many attempts within their retry schedule may differ
there.

What crosses the process boundary is whatever the caller's `work(conn)` returns (a record, a
row, a report's per-connection part), in batches, and each worker's `finish(pipeline)` at the
end (the pipeline's facts, `Pipeline.shard_facts`). A command that aggregates over
connections does so in the parent from those parts, in the one-process order, so its result
is the one process's too. The workers are forked, so `setup` and `finish` may be closures.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import pickle
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import FlowlensError
from .pipeline import _batch_key, owner, quote_route, route

__all__ = ["route", "quote_route", "owner", "usable_cores", "ShardedRun"]

#: items per message from a worker (a pipe write per batch, not per connection)
_BATCH = 512


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (not Linux)
        return os.cpu_count() or 1


class ShardedRun:
    """Run `setup((k, jobs))` in each of `jobs` forked workers: it returns (a Pipeline made with
    `shard=(k, jobs)`, and `work(conn)`, bound to that pipeline's analyzers). Iterating gives
    `work(conn)` of every connection the shards own, in the order one pipeline would yield
    them (`work` returning None drops a connection). After iteration, `finished[k]` is what
    `finish(pipeline)` returned in worker k."""

    def __init__(
        self,
        setup: Callable[[tuple[int, int]], tuple[Any, Callable[[Any], Any]]],
        finish: Callable[[Any], Any],
        jobs: int,
    ) -> None:
        if jobs < 2:
            raise ValueError("a sharded run needs at least 2 jobs")
        self.setup = setup
        self.finish = finish
        self.jobs = jobs
        self.finished: list[Any] = [None] * jobs

    def _worker(self, k: int, conn) -> None:
        out = []
        send = conn.send_bytes
        try:
            n = self.jobs
            pipe, work = self.setup((k, n))
            for c in pipe:
                if owner(c, n) != k:
                    continue  # a tunnel another shard owns (kept here for its uid)
                item = work(c)
                if item is not None:
                    out.append((pipe.emit_frame, _batch_key(c), item))
                    if len(out) >= _BATCH:
                        send(pickle.dumps(("items", out), pickle.HIGHEST_PROTOCOL))
                        out = []
            if out:
                send(pickle.dumps(("items", out), pickle.HIGHEST_PROTOCOL))
            send(pickle.dumps(("done", self.finish(pipe)), pickle.HIGHEST_PROTOCOL))
        except FlowlensError as exc:
            send(pickle.dumps(("error", exc), pickle.HIGHEST_PROTOCOL))
        except BaseException:  # (reported by the parent as an internal error)
            send(pickle.dumps(("crash", traceback.format_exc()), pickle.HIGHEST_PROTOCOL))
        finally:
            conn.close()

    def _stream(self, k: int, conn) -> Iterator[tuple]:
        while True:
            kind, payload = pickle.loads(conn.recv_bytes())
            if kind == "items":
                yield from payload
            elif kind == "done":
                self.finished[k] = payload
                return
            elif kind == "error":
                raise payload
            else:
                raise RuntimeError(f"shard {k} of {self.jobs} failed:\n{payload}")

    def __iter__(self) -> Iterator[Any]:
        ctx = multiprocessing.get_context("fork")
        procs, streams = [], []
        try:
            for k in range(self.jobs):
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=self._worker, args=(k, send), daemon=True)
                proc.start()
                send.close()  # (the child holds its own end)
                procs.append(proc)
                streams.append(self._stream(k, recv))
            for _frame, _k, item in heapq.merge(*streams, key=_merge_key):
                yield item
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join()


def _merge_key(entry: tuple) -> tuple:
    return entry[0], entry[1]
