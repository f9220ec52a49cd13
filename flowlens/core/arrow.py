"""Arrow types of every column flowlens writes, the schemas built from them, and records -> Arrow
tables: the one owner behind batch's Parquet datasets, `--format parquet` and
`Analysis.to_arrow()`.

A schema is a record's field tuple (owned by the record's module: `RECORD_FIELDS` here in core,
`ANOMALY_FIELDS` in the anomaly detector, the rtt and states rows in reports/) typed column by
column from `COLUMN_TYPES`, so two writers of the same record cannot disagree about a type.
This is the one module of core that imports pyarrow (tests/test_layers.py allows it by name):
both reports/ and batch/ write Arrow, and core is what both may import. Nothing on the
per-packet path imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa

from .connections import RECORD_FIELDS
from .tcpstate import TcpState

__all__ = [
    "COLUMN_TYPES",
    "CAPTURE_COLUMNS",
    "schema",
    "CONNECTION_SCHEMA",
    "arrow_table",
    "capture_values",
]

_S, _F, _I, _I32 = pa.string(), pa.float64(), pa.int64(), pa.int32()

#: column name -> Arrow type, for every column of every record and row flowlens writes. The
#: same name has the same type wherever it appears (`ts` is epoch seconds, float64, in
#: connections, findings, rtt and states rows). A name missing here is stored as text, so a new
#: field never breaks a batch (tests/test_parquet.py asks for a type for each known field).
#: Nested values (a connection's `app`, a finding's `details`) are JSON text, so that every
#: file of a dataset has the same schema whatever the objects hold.
COLUMN_TYPES: dict[str, pa.DataType] = {
    # the connection record (core/record.py documents each field)
    "uid": _S, "ts": _F, "duration": _F, "proto": _S,
    "id.orig_h": _S, "id.orig_p": _I32, "id.resp_h": _S, "id.resp_p": _I32,
    "community_id": _S, "service": _S, "port_service": _S, "app": _S,
    "orig_pkts": _I, "resp_pkts": _I, "orig_bytes": _I, "resp_bytes": _I,
    "orig_ip_bytes": _I, "resp_ip_bytes": _I, "missed_bytes": _I,
    "conn_state": _S, "history": _S, "orig_state": _S, "resp_state": _S,
    "handshake": _S, "teardown": _S, "close_initiator": _S, "originator_inferred": pa.bool_(),
    "synack_ms": _F, "ackdat_ms": _F, "irtt_ms": _F,
    "retransmissions": _I, "out_of_order": _I, "syn_retries": _I,
    "tunnel_parents": pa.list_(_S), "vlan": _I32, "inner_vlan": _I32,
    # the anomaly record (analyzers/anomalies/detector.py): evidence = frame numbers from 1
    "kind": _S, "severity": _S, "conn_ts": _F, "summary": _S, "evidence": pa.list_(_I),
    "details": _S,
    # rtt rows (reports/rtt.py): per connection and leg, per sample, per server/client/pair
    "leg": _S, "path": _S, "handshake_ms": _F, "count": _I, "min_ms": _F, "p50_ms": _F,
    "p90_ms": _F, "p99_ms": _F, "max_ms": _F, "mean_ms": _F, "stdev_ms": _F, "kept": _I,
    "sources": pa.map_(_S, _I), "karn_skipped": _I, "source": _S, "rtt_ms": _F,
    "frame": _I, "answer_frame": _I, "orig_h": _S, "resp_h": _S, "host": _S, "conns": _I,
    "handshakes": _I, "handshake_p50_ms": _F,
    # states rows (reports/states.py): seconds from the first packet, sockets per state, and
    # the listening ports
    "time_s": _F, "total": _I,
    **{state.name: _I for state in TcpState},
    "port": _I32, "state": _S, "connections": _I, "clients": _I, "refused": _I,
    "first_ts": _F, "last_ts": _F,
    # which file a row came from (batch's datasets; `--format parquet`)
    "capture": _S, "capture_path": _S,
}  # fmt: skip

#: the columns after a record's own in batch's datasets and `--format parquet` files: the
#: capture's file name and its absolute path (both null for standard input)
CAPTURE_COLUMNS = ("capture", "capture_path")


def schema(fields: Sequence[str], *, capture_columns: bool = True) -> pa.Schema:
    """The Arrow schema of a record with `fields` (in that order), typed from `COLUMN_TYPES`,
    then `CAPTURE_COLUMNS` unless `capture_columns` is false."""
    names = [*fields, *CAPTURE_COLUMNS] if capture_columns else list(fields)
    return pa.schema([pa.field(name, COLUMN_TYPES.get(name, _S)) for name in names])


#: batch's connections dataset and `flowlens flows --format parquet`: the connection record,
#: then the capture columns
CONNECTION_SCHEMA = schema(RECORD_FIELDS)


def capture_values(path: str | None) -> dict[str, str | None]:
    """The capture columns' values for rows read from `path` (None or `-`: standard input)."""
    import os

    if path is None or path == "-":
        return {"capture": None, "capture_path": None}
    return {"capture": os.path.basename(path), "capture_path": os.path.abspath(path)}


def arrow_table(
    records: Iterable[Mapping], schema: pa.Schema, extra: Mapping | None = None
) -> pa.Table:
    """Records (dicts as the commands print them) -> an Arrow table of exactly `schema`.

    Column by column, which is much faster than `Table.from_pylist`, and a column that is null
    in every row still has its type. `extra` gives columns one value for every row (the
    capture columns); a column neither in `extra` nor in a record is null. Dicts and lists in a
    text column become JSON text (keys sorted); a dict in a map column becomes its items."""
    rows = records if isinstance(records, list) else list(records)
    n = len(rows)
    extra = extra or {}
    columns = []
    for f in schema:
        if f.name in extra:
            columns.append(pa.array([extra[f.name]] * n, f.type))
        elif pa.types.is_string(f.type):
            columns.append(pa.array([_text(r.get(f.name)) for r in rows], f.type))
        elif pa.types.is_map(f.type):
            values = [r.get(f.name) for r in rows]
            columns.append(
                pa.array([None if v is None else list(v.items()) for v in values], f.type)
            )
        else:
            columns.append(pa.array([r.get(f.name) for r in rows], f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
