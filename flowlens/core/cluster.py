"""A Dask distributed scheduler, reached by its address: the one place flowlens connects to one
(batch's tasks, flowlens.batch.run; the shards of one capture, flowlens.core.shard).

dask is imported here only when a connection is asked for: a run without `--scheduler` never
loads it.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import FlowlensError

__all__ = ["CONNECT_TIMEOUT_S", "connect", "worker_threads", "one_line"]

#: seconds to wait for a scheduler to answer (distributed retries a refused connection until
#: then, as a scheduler still starting refuses it)
CONNECT_TIMEOUT_S = 20.0


def one_line(exc: BaseException) -> str:
    """What `exc` says, on one line (a distributed error's text may span several)."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text or type(exc).__name__


def _unreachable(address: str, exc: BaseException) -> FlowlensError:
    return FlowlensError(f"{address}: cannot reach the Dask scheduler ({one_line(exc)})")


def _probe(address: str, timeout_s: float) -> None:
    """Open one comm to `address` and close it. A `Client` that fails to connect leaves an
    object whose `__del__` times out again and prints a traceback at exit, so flowlens asks
    first, on a loop of its own (in a thread: the caller may be running one, as Jupyter does)."""
    import asyncio

    from distributed.comm import connect as comm_connect

    async def knock() -> None:
        comm = await comm_connect(address, timeout=timeout_s)
        await comm.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, knock()).result()


def connect(address: str, timeout_s: float | None = None) -> Any:
    """A `distributed.Client` of the scheduler at `address` (`tcp://host:8786`, `host:8786`),
    not made the default client. Raises FlowlensError `ADDRESS: cannot reach the Dask
    scheduler (why)` when nothing answers there within `timeout_s` (default
    CONNECT_TIMEOUT_S) or the address is not one. Close the client when done."""
    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        _probe(address, timeout_s)
    except Exception as exc:  # (OSError, a malformed address, a peer that is no scheduler)
        raise _unreachable(address, exc) from exc
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except Exception as exc:  # (the scheduler went away between the probe and here)
        raise _unreachable(address, exc) from exc


def worker_threads(client: Any) -> dict[str, int]:
    """Each worker's address and its thread count, sorted by address (a stable placement)."""
    return dict(sorted(client.nthreads().items()))
