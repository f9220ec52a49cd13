"""Write records as one Parquet file as they stream in (`--format parquet -o FILE`), with the
schemas of core/arrow.py: a `flows` file has exactly the schema of batch's connections dataset,
an `anomalies` file that of its anomalies dataset."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.arrow import arrow_table, capture_values, schema

__all__ = ["write_parquet", "BATCH_ROWS", "ROW_GROUP_ROWS"]

#: records turned into Arrow at a time: at most this many record dicts are held (a connection
#: record is about 2 kB as a dict, some 200 bytes in Arrow)
BATCH_ROWS = 8192
#: rows per Parquet row group (the unit readers skip by: DuckDB's own default is 122,880 rows);
#: at most this many rows wait, in Arrow form, before they are written
ROW_GROUP_ROWS = 65536


def write_parquet(
    records: Iterable[dict], out: str | IO[bytes], fields: Sequence[str], capture: str | None
) -> int:
    """Write `records` (dicts with `fields`, e.g. RECORD_FIELDS) to `out` (a path or a binary
    file) with `core.arrow.schema(fields)`: the record's columns, then the capture columns
    (`capture` is the capture's path, None or `-` for standard input). Memory is bounded by
    `BATCH_ROWS` records and `ROW_GROUP_ROWS` rows in Arrow form, whatever the number of
    records; a file without records still has the schema. Returns the number of records."""
    table_schema = schema(fields)
    extra = capture_values(capture)
    n = 0
    pending: list[pa.Table] = []
    waiting = 0
    batch: list[dict] = []
    with pq.ParquetWriter(out, table_schema) as writer:

        def convert() -> None:
            nonlocal waiting
            pending.append(arrow_table(batch, table_schema, extra))
            waiting += len(batch)
            batch.clear()

        def flush() -> None:
            nonlocal waiting
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
            pending.clear()
            waiting = 0

        for rec in records:
            batch.append(rec)
            n += 1
            if len(batch) >= BATCH_ROWS:
                convert()
                if waiting >= ROW_GROUP_ROWS:
                    flush()
        if batch:
            convert()
        if pending:
            flush()
    return n
