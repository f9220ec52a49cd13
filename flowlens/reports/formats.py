"""Write records as an aligned text table, JSON lines, CSV or a Zeek log (the output contract's --format)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

import orjson

__all__ = [
    "FORMATS",
    "TABLE_WIDTH",
    "write_records",
    "json_line",
    "write_json_lines",
    "render_table",
    "table_lines",
    "TableLayout",
    "human_time",
    "utc_cells",
    "plural",
    "column_decimals",
]

#: table for people; json = one JSON object per line; csv; zeek = a Zeek ASCII log (TSV with
#: its header); zeek-json = Zeek's JSON log lines (reports/zeeklog.py)
FORMATS = ("table", "json", "csv", "zeek", "zeek-json")

#: the widest line a default table prints (a terminal split in two, an issue comment, a
#: postmortem); `--wide` lifts it and shows every column
TABLE_WIDTH = 120


def human_time(epoch_s: float | None) -> str | None:
    """Epoch seconds -> `2023-11-14 22:13:20.000123` (UTC), for tables read by people."""
    if epoch_s is None:
        return None
    import datetime as _dt

    return _dt.datetime.fromtimestamp(epoch_s, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def utc_cells(epochs: Sequence[float | None], full: bool = False) -> list[str | None]:
    """Epoch seconds -> UTC text for a table column, to the millisecond: the time of day
    (`22:13:20.000`, as tcpdump prints it) when every value falls on one UTC date, else (or
    with `full`, as --wide asks) with the date (`2023-11-14 22:13:20.000`, tcpdump -tttt)."""
    texts = [None if t is None else human_time(t)[:-3] for t in epochs]  # type: ignore[index]
    if full or len({t[:10] for t in texts if t is not None}) > 1:
        return texts
    return [None if t is None else t[11:] for t in texts]


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 host`, `3 hosts`, `0 findings` (`many` for irregular nouns: plural(2, "process", "processes"))."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def column_decimals(name: str) -> int | None:
    """Decimals a table shows for a float column, by the unit its name ends in: microseconds
    either way, what a pcap's timestamps resolve (`_ms` 3, `_s` 6); None: as the column needs."""
    if name.endswith("_ms"):
        return 3
    if name.endswith("_s") or name == "duration":
        return 6
    return None


def _cell(value, decimals: int | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if decimals is not None:
            return f"{value:.{decimals}f}"
        return (
            f"{value:.6f}".rstrip("0").rstrip(".")
            if value != int(value) or abs(value) < 1e15
            else str(value)
        )
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        import json  # (here: json and csv cost startup time that `--format json` need not pay)

        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _needed_decimals(values: Sequence) -> int:
    """The most decimals (up to 6) any float of `values` needs in its shortest form."""
    most = 0
    for v in values:
        if isinstance(v, float) and not math.isnan(v) and v != int(v):
            text = f"{v:.6f}".rstrip("0")
            most = max(most, len(text) - text.index(".") - 1)
    return most


def render_table(
    rows: Sequence[dict],
    columns: Sequence[str],
    headers: Sequence[str] | None = None,
    *,
    max_width: int | None = None,
    shrink: Sequence[str] = (),
    wrap: str | None = None,
) -> str:
    """The lines of `table_lines`, joined."""
    return "\n".join(
        table_lines(rows, columns, headers, max_width=max_width, shrink=shrink, wrap=wrap)
    )


def table_lines(
    rows: Sequence[dict],
    columns: Sequence[str],
    headers: Sequence[str] | None = None,
    *,
    max_width: int | None = None,
    shrink: Sequence[str] = (),
    wrap: str | None = None,
) -> Iterator[str]:
    """Left-aligned text, numbers right-aligned, columns two spaces apart, line by line (a
    table of a million rows is written as it is made, not joined into one string first).

    A column of floats shows one number of decimals (`column_decimals` of its header, else
    the most its values need), so its points line up. With `max_width`, the `wrap` column (a
    sentence, the last) is folded onto continuation lines within the width left to it (at
    least 30 characters), then the `shrink` columns (text) are cut, the first one first,
    with a trailing `…`, until a line fits. (TableLayout gathers these facts row by row, for
    a table whose rows are not all in memory: reports/sorted_table.py.)"""
    layout = TableLayout(columns, headers)
    cells = [[r.get(c) for c in columns] for r in rows]
    for values in cells:
        layout.add(values)
    return layout.lines(cells, max_width=max_width, shrink=shrink, wrap=wrap)


class TableLayout:
    """The whole-table facts of `table_lines`, gathered one row at a time: which columns are
    numbers (right-aligned), each float column's decimals, each column's width. A row is its
    values in the columns' order. What a number's cell is depends on its column's decimals,
    known only once every row is in; the width of a column's numbers is that of its largest
    or its most negative one (a cell's length grows with the magnitude it prints), so the
    layout keeps those two, not the cells."""

    def __init__(self, columns: Sequence[str], headers: Sequence[str] | None = None) -> None:
        self.columns = list(columns)
        self.headers = list(headers or columns)
        n = len(self.columns)
        self._fixed = [column_decimals(h) for h in self.headers]
        self._filled = [False] * n  # a value that is not None
        self._numeric = [True] * n  # every value a number or None
        self._floats = [False] * n
        self._needed = [0] * n  # decimals the floats need (columns without fixed ones)
        self._text = [0] * n  # the widest cell whose text does not depend on the decimals
        self._high: list = [None] * n  # largest finite number
        self._low: list = [None] * n  # smallest finite number
        self._negative_zero = [False] * n  # a -0.0 ("-0.000" is wider than "0.000")

    def add(self, values: Sequence) -> None:
        """Count one row (its values in the columns' order) into the layout."""
        text = self._text
        for i, v in enumerate(values):
            if v is None:
                if text[i] < 1:
                    text[i] = 1  # "-"
                continue
            self._filled[i] = True
            if v.__class__ is str:
                if len(v) > text[i]:
                    text[i] = len(v)
                self._numeric[i] = False
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self._numeric[i] = False
                n = len(_cell(v))
                if n > text[i]:
                    text[i] = n
                continue
            if isinstance(v, float):
                self._floats[i] = True
                if self._fixed[i] is None:
                    need = _needed_decimals((v,))
                    if need > self._needed[i]:
                        self._needed[i] = need
                if math.isnan(v) or math.isinf(v):
                    n = len(_cell(v, 0))  # "-", "inf", "-inf" with any decimals
                    if n > text[i]:
                        text[i] = n
                    continue
                if v == 0 and math.copysign(1.0, v) < 0:
                    self._negative_zero[i] = True
            high = self._high[i]
            if high is None:
                self._high[i] = self._low[i] = v
            elif v > high:
                self._high[i] = v
            elif v < self._low[i]:
                self._low[i] = v

    def set_text_width(self, column: str, width: int) -> None:
        """The widest cell of `column` is `width` characters: for a column of text whose
        cells are rewritten after their rows were added (the time column of
        sorted_table.SortedTable, cut to the time of day once every row is in)."""
        self._text[self.columns.index(column)] = width

    def places(self) -> list[int | None]:
        """Each column's decimals: None for a column without floats."""
        return [
            None if not floats else fixed if fixed is not None else needed
            for floats, fixed, needed in zip(self._floats, self._fixed, self._needed)
        ]

    def lines(
        self,
        rows: Iterable[Sequence],
        *,
        max_width: int | None = None,
        shrink: Sequence[str] = (),
        wrap: str | None = None,
    ) -> Iterator[str]:
        """The table's lines for `rows` (the rows added, in the order to print them), laid
        out as `table_lines` says."""
        columns, headers = self.columns, self.headers
        numeric = [f and n for f, n in zip(self._filled, self._numeric)]
        places = self.places()
        widths = [len(h) for h in headers]
        for i, p in enumerate(places):
            widths[i] = max(widths[i], self._text[i])
            extremes = [x for x in (self._high[i], self._low[i]) if x is not None]
            if self._negative_zero[i]:
                extremes.append(-0.0)
            for x in extremes:
                if p is not None and not isinstance(x, float):
                    x = float(x)
                widths[i] = max(widths[i], len(_cell(x, p)))
        wrap_i = -1
        wrap_at = 0
        if max_width is not None and wrap is not None and wrap in columns:
            i = columns.index(wrap)
            room = max(30, max_width - (sum(widths) - widths[i]) - 2 * (len(widths) - 1))
            if widths[i] > room:
                widths[i] = max(room, len(headers[i]))
                wrap_i = i
                wrap_at = sum(widths[:i]) + 2 * i
        cuts: list[int] = []  # columns cut to their width, in the order of `shrink`
        if max_width is not None:
            over = sum(widths) + 2 * (len(widths) - 1) - max_width
            for name in shrink:
                if over <= 0 or name not in columns:
                    continue
                i = columns.index(name)
                floor = max(len(headers[i]), 8)
                cut = min(over, widths[i] - floor)
                if cut <= 0:
                    continue
                widths[i] -= cut
                over -= cut
                cuts.append(i)
        if wrap_i >= 0:
            import textwrap

        def fmt(row):
            parts = [
                t.rjust(w) if numeric[i] else t.ljust(w)
                for i, (t, w) in enumerate(zip(row, widths))
            ]
            return "  ".join(parts).rstrip()

        yield fmt(headers)
        for values in rows:
            row = [
                v  # (most cells: text, as _cell would give it)
                if v.__class__ is str
                else _cell(
                    float(v)
                    if p is not None and isinstance(v, int) and not isinstance(v, bool)
                    else v,
                    p,
                )
                for v, p in zip(values, places)
            ]
            more: list[str] = []
            if wrap_i >= 0:
                folded = textwrap.wrap(row[wrap_i], widths[wrap_i], break_on_hyphens=False)
                row[wrap_i] = folded[0] if folded else ""
                more = folded[1:]
            for i in cuts:
                if len(row[i]) > widths[i]:
                    row[i] = row[i][: widths[i] - 1] + "…"
            yield fmt(row)
            for line in more:
                yield " " * wrap_at + line


def _json_default(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _dumps_any_keys(rec) -> bytes:
    """A JSON line for a record with keys that are not strings (ints as "80"...)."""
    option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(rec, default=_json_default, option=option)


def json_line(rec: dict) -> bytes:
    """One record as a compact JSON line, as Zeek writes them (LogAscii::use_json), newline
    included. orjson is ~10x faster than the json module here, which matters when a capture
    has a million connections; keys that are not strings (rare) take orjson's slower option,
    only where they occur. Commands that read with `--jobs` make the lines where each
    connection was read (commands/flows.py), so this is the one place they are made."""
    try:
        return orjson.dumps(rec, default=_json_default, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return _dumps_any_keys(rec)


def write_json_lines(lines: Iterable[bytes], out: IO[str]) -> int:
    """Write JSON lines made by `json_line` (or several joined); returns how many bytes
    objects it wrote. The bytes go straight into
    `out`'s binary buffer (no decoding and encoding again), or through its text layer for a
    StringIO or a terminal (flushed line by line)."""
    n = 0
    raw = getattr(out, "buffer", None)
    if raw is None or getattr(out, "line_buffering", False):
        for line in lines:
            out.write(line.decode())
            n += 1
        return n
    out.flush()
    write = raw.write
    for line in lines:
        write(line)
        n += 1
    return n


def write_records(
    records: Iterable[dict],
    fmt: str,
    out: IO[str],
    columns: Sequence[str] | None = None,
    table_columns: Sequence[str] | None = None,
    table_headers: Sequence[str] | None = None,
    *,
    log_path: str = "flowlens",
    max_width: int | None = None,
    shrink: Sequence[str] = (),
    wrap: str | None = None,
) -> int:
    """Write records in `fmt`; json and csv stream, a table is aligned once all rows are in.

    `columns` fixes the field order for csv (default: the first record's keys); `table_columns`
    picks the narrower set shown in a terminal table (`max_width`, `shrink` and `wrap` as in
    render_table); `log_path` names a Zeek log (`conn` for
    connection records: Zeek's conn.log columns first). Returns the number of records written.
    """
    if fmt in ("zeek", "zeek-json"):
        from .zeeklog import write_zeek, write_zeek_json

        records = iter(records)
        if columns is None:
            first = next(records, None)
            columns = list(first) if first is not None else []
            records = iter(() if first is None else [first, *records])
        if fmt == "zeek":
            return write_zeek(records, out, log_path, columns)
        return write_zeek_json(records, out, columns, conn=log_path == "conn")
    if fmt == "json":
        return write_json_lines(map(json_line, records), out)
    n = 0
    if fmt == "csv":
        import csv

        writer = None
        for rec in records:
            if writer is None:
                writer = csv.DictWriter(
                    out,
                    fieldnames=list(columns or rec.keys()),
                    extrasaction="ignore",
                    lineterminator="\n",
                )
                writer.writeheader()
            writer.writerow(
                {
                    k: (
                        ""
                        if v is None
                        else _cell(v)
                        if isinstance(v, (list, tuple, dict, bool))
                        else v
                    )
                    for k, v in rec.items()
                }
            )
            n += 1
        if writer is None and columns:
            csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n").writeheader()
        return n
    rows = list(records)
    cols = list(table_columns or columns or (rows[0].keys() if rows else []))
    if cols:
        write = out.write
        for text in table_lines(
            rows, cols, table_headers, max_width=max_width, shrink=shrink, wrap=wrap
        ):
            write(text + "\n")
    return len(rows)
