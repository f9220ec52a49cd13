"""Write records as an aligned text table, JSON lines, CSV or a Zeek log (the output contract's --format)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import IO

import orjson

__all__ = ["FORMATS", "write_records", "render_table", "human_time"]

#: table for people; json = one JSON object per line; csv; zeek = a Zeek ASCII log (TSV with
#: its header); zeek-json = Zeek's JSON log lines (reports/zeeklog.py)
FORMATS = ("table", "json", "csv", "zeek", "zeek-json")


def human_time(epoch_s: float | None) -> str | None:
    """Epoch seconds -> `2023-11-14 22:13:20.000123` (UTC), for tables read by people."""
    if epoch_s is None:
        return None
    import datetime as _dt

    return _dt.datetime.fromtimestamp(epoch_s, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
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


def render_table(
    rows: Sequence[dict], columns: Sequence[str], headers: Sequence[str] | None = None
) -> str:
    """Left-aligned text, numbers right-aligned, columns two spaces apart."""
    headers = list(headers or columns)
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [len(h) for h in headers]
    numeric = [True] * len(columns)
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    for i, c in enumerate(columns):
        numeric[i] = all(
            isinstance(r.get(c), (int, float))
            and not isinstance(r.get(c), bool)
            or r.get(c) is None
            for r in rows
        ) and bool(rows)

    def fmt(row):
        parts = [
            t.rjust(w) if numeric[i] else t.ljust(w) for i, (t, w) in enumerate(zip(row, widths))
        ]
        return "  ".join(parts).rstrip()

    lines = [fmt(headers)]
    lines.extend(fmt(row) for row in cells)
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _dumps_any_keys(rec) -> bytes:
    """A JSON line for a record with keys that are not strings (ints as "80"...)."""
    option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
    return orjson.dumps(rec, default=_json_default, option=option)


def write_records(
    records: Iterable[dict],
    fmt: str,
    out: IO[str],
    columns: Sequence[str] | None = None,
    table_columns: Sequence[str] | None = None,
    table_headers: Sequence[str] | None = None,
    *,
    log_path: str = "flowlens",
) -> int:
    """Write records in `fmt`; json and csv stream, a table is aligned once all rows are in.

    `columns` fixes the field order for csv (default: the first record's keys); `table_columns`
    picks the narrower set shown in a terminal table; `log_path` names a Zeek log (`conn` for
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
    n = 0
    if fmt == "json":
        # compact JSON lines, as Zeek writes them (LogAscii::use_json); orjson is ~10x faster
        # than the json module here, which matters when a capture has a million connections
        # (keys that are not strings, rare, take orjson's slower option, only where they occur)
        dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        raw = getattr(out, "buffer", None)
        if raw is None or getattr(out, "line_buffering", False):
            # a StringIO, or a terminal (flushed line by line): through the text layer
            for rec in records:
                try:
                    line = dumps(rec, default=_json_default, option=option)
                except TypeError:
                    line = _dumps_any_keys(rec)
                out.write(line.decode())
                n += 1
            return n
        # orjson's bytes straight into the binary buffer (no decoding and encoding again)
        out.flush()
        write = raw.write
        for rec in records:
            try:
                write(dumps(rec, default=_json_default, option=option))
            except TypeError:
                write(_dumps_any_keys(rec))
            n += 1
        return n
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
        out.write(render_table(rows, cols, table_headers) + "\n")
    return len(rows)
