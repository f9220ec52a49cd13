"""Write docs/fields.md, the field reference of `flowlens flows`, from the docstrings of
flowlens/core/record.py (the one place each field is documented).

    python scripts/make_field_reference.py          # rewrite docs/fields.md
    python scripts/make_field_reference.py --check  # exit 1 if docs/fields.md is out of date
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "flowlens" / "core" / "record.py"
DOC = ROOT / "docs" / "fields.md"

HEAD = """# Connection record fields

What each field of `flowlens flows` (and of batch's `connections` dataset and of
`flows --format parquet`, typed by `flowlens/core/arrow.py`) means, its unit and its caveats.
Field names follow Zeek's conn.log where Zeek has the concept. Written by
`python scripts/make_field_reference.py` from `flowlens/core/record.py`, where each field is
declared and documented; edit it there.

| field | type | meaning |
|---|---|---|
"""


def field_docs() -> list[tuple[str, str, str]]:
    """(printed name, type, docstring) of every field of ConnectionRecord, in order."""
    tree = ast.parse(SOURCE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ConnectionRecord")
    out = []
    body = cls.body
    for i, node in enumerate(body):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        value = node.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field":
            for kw in value.keywords:  # field(metadata={"name": "id.orig_h"})
                if kw.arg == "metadata" and isinstance(kw.value, ast.Dict):
                    for k, v in zip(kw.value.keys, kw.value.values):
                        if isinstance(k, ast.Constant) and k.value == "name":
                            name = v.value  # type: ignore[attr-defined]
        doc = ""
        nxt = body[i + 1] if i + 1 < len(body) else None
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            doc = " ".join(str(nxt.value.value).split())
        out.append((name, ast.unparse(node.annotation), doc))
    return out


def vocabulary() -> str:
    """The words every command prints, from the modules that own them (the state names and
    ss's spellings in flowlens/core/filters.py, the RTT paths in flowlens/analyzers/rtt.py,
    the table rules in flowlens/reports/formats.py)."""
    from flowlens.analyzers.rtt import LEGS, PATHS
    from flowlens.core.filters import SS_STATE_NAMES, STATE_GROUPS, TCP_STATE_NAMES
    from flowlens.reports.formats import TABLE_WIDTH

    states = "\n".join(
        f"| `{name}` | `{SS_STATE_NAMES[name][0]}` | `{SS_STATE_NAMES[name][1]}` |"
        for name in TCP_STATE_NAMES
    )
    groups = ", ".join(
        f"`{g}` ({', '.join(sorted(members, key=TCP_STATE_NAMES.index))})"
        for g, members in STATE_GROUPS.items()
        if g != "all"
    )
    owner = {"orig": "the originator", "resp": "the responder"}
    paths = "\n".join(
        f"| `{PATHS[i]}` | `{LEGS[i]}` | capture point -> {owner[LEGS[i]]} -> capture point |"
        for i in (1, 0)
    )
    return f"""
## One vocabulary

Every command spells a TCP state the same way: `orig_state` and `resp_state` in `flows`, the
columns and JSON keys of `states`, ladders, timelines and the findings' summaries use RFC 9293's
names with underscores (Linux's spelling, except that the kernel shortens `SYN_RECEIVED` to
`TCP_SYN_RECV`). ss(8)'s spellings are read wherever a state is asked for (`--state estab`,
`--state fin-wait-2`, case and `-`/`_` do not matter) and never printed. `--state` also takes
ss's groups: `all`, {groups}; and, in `flows`, Zeek's conn_state codes (`SF`, `REJ` ...).

| state | ss prints | ss filter |
|---|---|---|
{states}

RTT rows say where their time was measured in `path`, with the same two labels in every view
(`rtt`, `--by server`/`client`/`pair`, `--samples`, the plots and the report):

| path | leg | round trip |
|---|---|---|
{paths}

A server's RTT (`--by server`) is its responder leg, `cap>resp>cap`; a client's is
`cap>orig>cap`. A table's columns carry the names of the JSON/CSV fields they show
(`handshake_ms`, `count`, `p50_ms`), the time of a row excepted (`start (UTC)`).

Tables for people: times are UTC, to the millisecond, as the time of day when every row falls
on one date (as tcpdump prints them) and with the date otherwise or with `--wide`; a column in
seconds (`dur_s`) has 6 decimals and one in milliseconds (`*_ms`) 3, so both read
to the microsecond a capture resolves; a column of other fractions has as many decimals as its
values need, the same on every row. A default table fits {TABLE_WIDTH} columns (the main
columns, an anomaly's summary folded onto continuation lines, the first evidence frames:
`4,7,9 +7`); `--wide` shows every column on one line. JSON and CSV carry full values
(epoch seconds, every frame) whatever the table shows.
"""


def render() -> str:
    rows = [
        f"| `{name}` | {kind.replace(' | None', ' or null')} | {doc.replace('|', '/')} |"
        for name, kind, doc in field_docs()
    ]
    return HEAD + "\n".join(rows) + "\n" + TAIL + vocabulary()


TAIL = """
## Three views of a retransmission

- `retransmissions`: segments that Wireshark's TCP analysis rules call a retransmission, a
  fast retransmission or a spurious retransmission (flowlens's TCP analysis, the same
  classification that `flowlens anomalies` reports); `out_of_order` beside it.
- `history`'s `T`/`t` letters: Zeek's rule (a segment whose sequence space was already seen),
  logged once, then again at 10, 100 ... retransmissions, as Zeek scales its `C`, `T` and `W`
  letters. It can differ from `retransmissions`: the two rules are not the same.
- `flowlens anomalies`' `retransmissions` finding: the same per-segment classes as the record,
  with out-of-order and lost segments beside them and a rate per direction.
"""


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not DOC.exists() or DOC.read_text() != text:
            print(
                f"{DOC}: out of date; run python scripts/make_field_reference.py", file=sys.stderr
            )
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
