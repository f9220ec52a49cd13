"""A table sorted by a key with bounded memory: rows past a threshold go to sorted runs in a temporary file, merged back in order."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import IO, Any

from ..errors import FlowlensError
from .formats import TableLayout, human_time

__all__ = ["SPILL_ROWS", "SortedTable", "by_time"]

#: rows kept in memory; past them, each full batch is sorted and written to the temporary file
#: as a run (a table of this many rows or fewer is never written)
SPILL_ROWS = 50_000
#: rows per pickled block of a run: the merge holds one block of every run
BLOCK_ROWS = 256
#: runs at most: with this many, they are merged into one (in a new temporary file), so the
#: final merge holds at most MERGE_RUNS blocks however long the table
MERGE_RUNS = 64

_first = itemgetter(0)


def by_time(row: dict) -> tuple:
    """The connection tables' order (flows, rtt): by time (a connection's start, an RTT
    sample's answer), then uid."""
    return row["ts"], row["uid"]


class SortedTable:
    """A table's rows in the order of `key` (ties in the order they were added, as `sorted`
    keeps them), laid out as formats.table_lines lays them out, with at most about
    SPILL_ROWS rows in memory.

    `add` takes each row (a dict; a missing column is None). Up to SPILL_ROWS rows are
    kept; then they are sorted and written as a run, in blocks of BLOCK_ROWS, to an
    anonymous temporary file (tempfile.TemporaryFile in the system's temporary folder:
    unlinked at once, so nothing is left behind, even after a kill) and `lines` merges the
    runs (heapq.merge, stable across runs taken in order); MERGE_RUNS runs are merged into
    one as they come, so at most about SPILL_ROWS + MERGE_RUNS * BLOCK_ROWS rows are in
    memory at any time, whatever the table's length. The layout's facts (numbers,
    decimals, widths) are gathered as rows are added (formats.TableLayout), so a spilled
    table prints the same bytes as one sorted in memory.

    `utc_column` holds epoch seconds, shown as formats.utc_cells shows them: the time of
    day to the millisecond when every value falls on one UTC date, else (or with
    `full_dates`) with the date. Use it as a context manager, or call `close`.
    """

    def __init__(
        self,
        columns: Sequence[str],
        headers: Sequence[str] | None = None,
        *,
        key: Callable[[dict], Any],
        utc_column: str | None = None,
        full_dates: bool = False,
    ) -> None:
        self.columns = list(columns)
        self.layout = TableLayout(columns, headers)
        self._key = key
        self._utc = self.columns.index(utc_column) if utc_column in self.columns else -1
        self._full_dates = full_dates
        self._dates: set[str] = set()  # (up to two: one date, or more than one)
        self._day_width = 0  # the widest time cell without its date
        self._rows: list[tuple[Any, list]] = []  # (key, values), not yet in a run
        self._file: IO[bytes] | None = None
        self._runs: list[tuple[int, int]] = []  # (offset of its first block, blocks)

    def add(self, row: dict) -> None:
        """Add one row; past SPILL_ROWS held rows, they are written as a sorted run."""
        values = [row.get(c) for c in self.columns]
        if self._utc >= 0:
            t = values[self._utc]
            if t is None:
                self._day_width = max(self._day_width, 1)
            else:
                text = human_time(t)[:-3]  # type: ignore[index]
                values[self._utc] = text
                if len(self._dates) < 2:
                    self._dates.add(text[:10])
                if len(text) - 11 > self._day_width:
                    self._day_width = len(text) - 11
        self.layout.add(values)
        self._rows.append((self._key(row), values))
        if len(self._rows) >= SPILL_ROWS:
            self._spill()

    def _spill(self) -> None:
        try:
            self._write()
        except OSError as exc:  # (a full disk: one `Error:` line, not a traceback)
            import tempfile

            raise FlowlensError(
                f"{tempfile.gettempdir()}: {exc.strerror or exc} (writing a table's rows to a "
                "temporary file there; TMPDIR names another folder)"
            ) from exc

    def _write(self) -> None:
        self._rows.sort(key=_first)
        if self._file is None:
            self._file = _temporary()
        if len(self._runs) + 1 >= MERGE_RUNS:  # (one run with this batch: MERGE_RUNS blocks)
            merged = heapq.merge(*self._open_runs(), self._rows, key=_first)
            self._rows = []
            f = _temporary()
            try:
                blocks = _write_run(merged, f)
            except BaseException:
                f.close()
                raise
            self._file.close()
            self._file = f
            self._runs = [(0, blocks)]
            return
        start = self._file.seek(0, 2)
        self._runs.append((start, _write_run(self._rows, self._file)))
        self._rows = []

    def _open_runs(self) -> list[Iterator[tuple[Any, list]]]:
        f = self._file
        assert f is not None
        return [_read_run(f, start, blocks) for start, blocks in self._runs]

    def rows(self) -> Iterator[list]:
        """Every row's values in the columns' order, sorted, the time cells as printed."""
        self._rows.sort(key=_first)
        if self._runs:
            merged: Iterable[tuple[Any, list]] = heapq.merge(
                *self._open_runs(), self._rows, key=_first
            )
        else:
            merged = self._rows
        i = self._utc
        day_only = i >= 0 and not self._full_dates and len(self._dates) <= 1
        for _, values in merged:
            if day_only and values[i] is not None:
                values[i] = values[i][11:]
            yield values

    def lines(
        self, *, max_width: int | None = None, shrink: Sequence[str] = (), wrap: str | None = None
    ) -> Iterator[str]:
        """The table's lines, header first (formats.table_lines' layout)."""
        if self._utc >= 0 and not self._full_dates and len(self._dates) <= 1:
            self.layout.set_text_width(self.columns[self._utc], self._day_width)
        return self.layout.lines(self.rows(), max_width=max_width, shrink=shrink, wrap=wrap)

    def close(self) -> None:
        """Drop the rows and the temporary file."""
        self._rows = []
        self._runs = []
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> SortedTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _temporary() -> IO[bytes]:
    # (unlinked at once on POSIX: nothing is left behind, even after a kill; tempfile and
    # pickle are imported only by a table that spills: ~7 ms at every start otherwise)
    import tempfile

    return tempfile.TemporaryFile(prefix="flowlens-table-")


def _write_run(rows: Iterable[tuple[Any, list]], f: IO[bytes]) -> int:
    """Write sorted rows at the end of `f` in pickled blocks of BLOCK_ROWS; returns how many."""
    import pickle

    blocks = 0
    block: list = []
    for row in rows:
        block.append(row)
        if len(block) >= BLOCK_ROWS:
            pickle.dump(block, f, protocol=pickle.HIGHEST_PROTOCOL)
            blocks += 1
            block = []
    if block:
        pickle.dump(block, f, protocol=pickle.HIGHEST_PROTOCOL)
        blocks += 1
    return blocks


def _read_run(f: IO[bytes], start: int, blocks: int) -> Iterator[tuple[Any, list]]:
    """The rows of the run of `blocks` blocks at `start` in `f`, a block at a time."""
    import pickle

    at = start
    for _ in range(blocks):
        f.seek(at)
        block = pickle.load(f)
        at = f.tell()
        yield from block
