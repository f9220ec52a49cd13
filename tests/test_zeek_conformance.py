"""conn_state and history against the conn.log Zeek's own test suite expects for its traces.

Every remaining difference must be listed, with its reason, in docs/zeek-conformance.md; the
test fails on an undocumented difference and on a documented one that no longer happens.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import zeekcorpus

from flowlens import Config, analyze

pytestmark = pytest.mark.corpus

DOC = Path(__file__).resolve().parents[1] / "docs" / "zeek-conformance.md"


def _run_all():
    agree, total, diffs = Counter(), Counter(), []
    for baseline in zeekcorpus.baselines():
        checksums = not re.search(r"(^|\s)-[A-Za-z]*C", baseline.invocation)  # zeek -C / -bC
        analysis = analyze(
            str(zeekcorpus.ZEEK / "traces" / baseline.trace),
            config=Config(verify_checksums=checksums),
        )
        records = [c.to_record() for c in analysis.connections]
        a, t, d = zeekcorpus.compare(baseline, records)
        agree += a
        total += t
        diffs += d
    return agree, total, diffs


@pytest.fixture(scope="module")
def results():
    if not zeekcorpus.ZEEK.exists():
        pytest.fail(f"Zeek corpus not found at {zeekcorpus.ZEEK}")
    return _run_all()


def test_agreement_is_at_least_95_percent_per_field(results):
    agree, total, _ = results
    assert set(total) == {"history", "conn_state"}
    for field in total:
        rate = agree[field] / total[field]
        print(f"{field}: {agree[field]}/{total[field]} = {rate:.1%}")
        assert rate >= 0.95, field


def _documented() -> set[tuple]:
    rows = set()
    for line in DOC.read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].endswith((".pcap", ".pcapng")):
            rows.add(tuple(cells[:5]))
    return rows


def test_every_difference_is_documented_with_its_reason(results):
    _, _, diffs = results
    found = {(d.trace, d.conn, d.field, d.zeek, d.ours) for d in diffs}
    documented = _documented()
    assert found - documented == set(), (
        "undocumented differences: add them to docs/zeek-conformance.md"
    )
    assert documented - found == set(), "documented differences that no longer happen: remove them"
