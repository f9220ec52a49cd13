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


def render() -> str:
    rows = [
        f"| `{name}` | {kind.replace(' | None', ' or null')} | {doc.replace('|', '/')} |"
        for name, kind, doc in field_docs()
    ]
    return HEAD + "\n".join(rows) + "\n" + TAIL


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
