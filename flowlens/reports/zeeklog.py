"""Write records as a Zeek log: Zeek's ASCII (TSV) format, or Zeek's JSON lines.

The TSV form is what Zeek's ASCII writer makes (src/logging/writers/ascii/Ascii.cc and
src/threading/formatters/Ascii.cc): a header of `#separator`, `#set_separator`,
`#empty_field`, `#unset_field`, `#path`, `#open`, `#fields` and `#types` lines, one line per
record, and `#close`. Values are escaped as Zeek escapes them: the separator and non-printable
bytes as `\\xHH`; a string that equals the unset (`-`) or empty (`(empty)`) marker gets its first
character escaped; an empty string is `(empty)`; a missing value is `-`; a data line that would
start with `#` gets that `#` escaped. So `zeek-cut` and Zeek's own readers take the output.

For conn-like records (`flowlens flows`), Zeek's conn.log columns come first, with Zeek's types
and Zeek's rule for unset values (scripts/base/protocols/conn/main.zeek `set_conn`: `duration`,
`orig_bytes` and `resp_bytes` are logged only when the duration is above 0), then flowlens's
own fields. The JSON form is Zeek's `LogAscii::use_json` (epoch-float `ts`, flat dotted keys,
unset fields left out).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import IO, Any

import orjson

__all__ = ["CONN_TYPES", "write_zeek", "write_zeek_json", "zeek_columns"]

SEPARATOR = "\t"
#: records read ahead to tell the type of a column that has no declared type
_TYPE_PROBE = 256
SET_SEPARATOR = ","
EMPTY = "(empty)"
UNSET = "-"

#: Zeek's conn.log columns (scripts/base/protocols/conn/main.zeek, Conn::Info) with their log
#: types; `local_orig`/`local_resp` are unset (flowlens knows no Site::local_nets);
#: `tunnel_parents` is the record's (a set, unset when the connection was not tunnelled)
CONN_TYPES: dict[str, str] = {
    "ts": "time",
    "uid": "string",
    "id.orig_h": "addr",
    "id.orig_p": "port",
    "id.resp_h": "addr",
    "id.resp_p": "port",
    "proto": "enum",
    "service": "string",
    "duration": "interval",
    "orig_bytes": "count",
    "resp_bytes": "count",
    "conn_state": "string",
    "local_orig": "bool",
    "local_resp": "bool",
    "missed_bytes": "count",
    "history": "string",
    "orig_pkts": "count",
    "orig_ip_bytes": "count",
    "resp_pkts": "count",
    "resp_ip_bytes": "count",
    "tunnel_parents": "set[string]",
    "ip_proto": "count",
    "community_id": "string",
    # policy/protocols/conn/vlan-logging.zeek
    "vlan": "int",
    "inner_vlan": "int",
}
_IP_PROTO = {"tcp": 6, "udp": 17, "icmp": None}  # icmp: 1 or 58, told by the address family


def zeek_columns(fields: Sequence[str], conn: bool) -> list[str]:
    """The columns of the log: for conn records Zeek's conn.log columns first, then the rest."""
    if not conn:
        return list(fields)
    zeek = [
        c
        for c in CONN_TYPES
        if c in fields or c in ("local_orig", "local_resp", "tunnel_parents", "ip_proto")
    ]
    return zeek + [f for f in fields if f not in CONN_TYPES]


def _zeek_conn_values(rec: dict) -> dict:
    """A conn record with Zeek's own rules for what is logged (set_conn)."""
    out = dict(rec)
    if not rec.get("duration"):
        out["duration"] = out["orig_bytes"] = out["resp_bytes"] = None
    proto = rec.get("proto")
    ip_proto = _IP_PROTO.get(proto) if isinstance(proto, str) else None
    if proto == "icmp":
        ip_proto = 58 if ":" in str(rec.get("id.orig_h", "")) else 1
    elif proto not in _IP_PROTO and isinstance(proto, str) and proto.isdigit():
        ip_proto = int(proto)
    out["ip_proto"] = ip_proto
    out.setdefault("local_orig", None)
    out.setdefault("local_resp", None)
    out.setdefault("tunnel_parents", None)
    return out


def _record_types() -> dict[str, str]:
    """Zeek types of flowlens's own connection fields, from ConnectionRecord's annotations."""
    from dataclasses import fields

    from ..core.record import ConnectionRecord

    by_annotation = {"str": "string", "int": "count", "float": "double", "bool": "bool"}
    out = {}
    for f in fields(ConnectionRecord):
        base = str(f.type).split("|")[0].strip()
        out[f.metadata.get("name", f.name)] = by_annotation.get(base, "string")
    return out


def _type_of(name: str, value: Any) -> str:
    if name == "ts" or name.endswith("_ts"):
        return "time"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "count" if value >= 0 else "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (list, tuple, set, frozenset)):
        inner = {_type_of("", v) for v in value}
        return f"vector[{inner.pop() if len(inner) == 1 else 'string'}]"
    return "string"


def _escape(text: str) -> str:
    """Zeek's escaping of a string value (ODesc::AddBytes with escaping on)."""
    if not text:
        return EMPTY
    out = []
    for ch in text:
        code = ord(ch)
        if ch in (SEPARATOR, "\\") or code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    s = "".join(out)
    if s in (UNSET, EMPTY):  # escapeReservedContent: the first character as \xHH
        s = f"\\x{ord(s[0]):02x}" + s[1:]
    return s


def _value(value: Any, kind: str) -> str:
    if value is None:
        return UNSET
    if kind == "bool" or isinstance(value, bool):
        return "T" if value else "F"
    if kind in ("time", "interval"):
        return f"{float(value):.6f}"  # Render(double): six places, trailing zeros kept
    if isinstance(value, float):
        if math.isnan(value):
            return UNSET
        text = f"{value:.6f}".rstrip("0").rstrip(".")  # Add(double, true): zeros dropped
        return text or "0"
    if isinstance(value, (list, tuple, set, frozenset)):
        if not value:
            return EMPTY
        return SET_SEPARATOR.join(_escape(str(v)).replace(",", "\\x2c") for v in value)
    if isinstance(value, dict):
        return _escape(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())
    if isinstance(value, int):
        return str(value)
    return _escape(str(value))


def _stamp(now: _dt.datetime | None = None) -> str:
    """Zeek's `#open`/`#close` time (Ascii::Timestamp: local time, %Y-%m-%d-%H-%M-%S)."""
    return (now or _dt.datetime.now()).strftime("%Y-%m-%d-%H-%M-%S")


def write_zeek(
    records: Iterable[dict],
    out: IO[str],
    path: str,
    fields: Sequence[str],
    types: dict[str, str] | None = None,
) -> int:
    """Write `records` as a Zeek ASCII log named `path` (conn, flowlens_anomalies ...), columns
    `fields` (for a conn log: Zeek's conn.log columns first, `zeek_columns`). `types` gives
    Zeek's type per column; the others are told from the first record's values. Returns the
    number of records written."""
    conn = path == "conn"
    columns = zeek_columns(fields, conn)
    known = dict(_record_types(), **CONN_TYPES) if conn else {}
    known.update(types or {})
    it = iter(records)
    # a column's type is told from its first value that is not null, within the first records
    head = [_zeek_conn_values(r) if conn else r for r in itertools.islice(it, _TYPE_PROBE)]
    kinds = []
    for c in columns:
        kind = known.get(c)
        if kind is None:
            value = next((r[c] for r in head if r.get(c) is not None), None)
            kind = _type_of(c, value) if value is not None else ("time" if c == "ts" else "string")
        kinds.append(kind)
    out.write(f"#separator \\x{ord(SEPARATOR):02x}\n")
    out.write(f"#set_separator{SEPARATOR}{SET_SEPARATOR}\n")
    out.write(f"#empty_field{SEPARATOR}{EMPTY}\n")
    out.write(f"#unset_field{SEPARATOR}{UNSET}\n")
    out.write(f"#path{SEPARATOR}{path}\n")
    out.write(f"#open{SEPARATOR}{_stamp()}\n")
    out.write("#fields" + SEPARATOR + SEPARATOR.join(columns) + "\n")
    out.write("#types" + SEPARATOR + SEPARATOR.join(kinds) + "\n")
    n = 0
    rest = (_zeek_conn_values(r) for r in it) if conn else it
    for rec in itertools.chain(head, rest):
        line = SEPARATOR.join(_value(rec.get(c), k) for c, k in zip(columns, kinds))
        if line.startswith("#"):
            line = "\\x23" + line[1:]
        out.write(line + "\n")
        n += 1
    out.write(f"#close{SEPARATOR}{_stamp()}\n")
    return n


def write_zeek_json(
    records: Iterable[dict], out: IO[str], fields: Sequence[str], conn: bool
) -> int:
    """Zeek's JSON log lines: the same columns and rules as `write_zeek`, unset fields left out
    (LogAscii::json_include_unset_fields is F by default), `ts` as epoch seconds."""
    columns = zeek_columns(fields, conn)
    n = 0
    for rec in records:
        if conn:
            rec = _zeek_conn_values(rec)
        obj = {c: rec[c] for c in columns if rec.get(c) is not None}
        out.write(orjson.dumps(obj, default=str).decode() + "\n")
        n += 1
    return n
