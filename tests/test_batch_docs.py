"""docs/batch.md's pandas and DuckDB examples run as written on a batch of sample captures,
and the queries that should find something do (issue 18: `json_extract(details,'$.count')`
was always NULL)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from flowlens.batch.run import BatchOptions, run_batch

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "batch.md"


def _blocks(lang: str) -> list[str]:
    section = DOC.read_text().split("## Reading the datasets")[1].split("\n## ")[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def batch_out(tmp_path_factory):
    """`out/` of a batch over three sample captures, in the folder the examples run from."""
    here = tmp_path_factory.mktemp("batchdocs")
    captures = here / "captures"
    captures.mkdir()
    for name in ("incident.pcap", "close-wait.pcap", "refused.pcap"):
        shutil.copy(ROOT / "sample_pcaps" / name, captures / name)
    (captures / "broken.pcap").write_bytes(b"\xd4\xc3\xb2\xa1 not a capture")
    run_batch([str(captures)], str(here / "out"), BatchOptions(report=False), jobs=1)
    return here


def test_the_pandas_example_runs(batch_out, monkeypatch):
    [code] = _blocks("python")
    monkeypatch.chdir(batch_out)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102 (the document's own example)
    assert scope["leaks"].to_dict() == {"198.51.100.20": 2}  # incident's and close-wait's
    assert list(scope["failed"]["capture_path"]) == [str(batch_out / "captures" / "broken.pcap")]
    assert scope["attempts"] == 3 + 1  # incident's three refused attempts, refused.pcap's one


def test_the_duckdb_examples_run_and_find_what_they_ask_for(batch_out, monkeypatch):
    duckdb = pytest.importorskip("duckdb")
    [sql] = _blocks("sql")
    monkeypatch.chdir(batch_out)
    results = {}
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    con = duckdb.connect()
    for statement in statements:
        comment = statement.splitlines()[0] if statement.startswith("--") else ""
        rows = con.sql(statement).fetchall()
        results[comment or statement.splitlines()[0]] = rows
    assert len(results) == len(statements) >= 6
    leaks = next(v for k, v in results.items() if "CLOSE_WAIT" in k)
    assert leaks == [("198.51.100.20", 2)]
    refused = next(v for k, v in results.items() if "refused attempts" in k)
    assert sorted(refused) == [("198.51.100.20:80", 1), ("198.51.100.30:5432", 3)]
    behind = next(v for k, v in results.items() if "behind a finding" in k)
    assert len(behind) == 2  # the two CLOSE_WAIT connections
    failed = next(v for k, v in results.items() if k.startswith("SELECT capture_path"))
    assert failed and os.path.basename(failed[0][0]) == "broken.pcap"
