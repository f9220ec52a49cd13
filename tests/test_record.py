"""The documented connection record agrees with what `flows` prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowlens import analyze
from flowlens.core.connections import RECORD_FIELDS
from flowlens.core.record import ConnectionRecord, record_fields

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_pcaps").glob("*.pcap*"))


def test_record_fields_are_the_printed_fields_in_order():
    assert record_fields() == RECORD_FIELDS


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_record_round_trips_through_the_dataclass(path):
    for conn in analyze(str(path)).connections:
        d = conn.to_record()
        rec = ConnectionRecord.from_dict(d)
        assert rec.to_dict() == d
        assert list(rec.to_dict()) == list(d)


def test_the_record_is_frozen():
    conn = analyze(str(ROOT / "sample_pcaps" / "clean-close.pcap")).connections[0]
    rec = ConnectionRecord.from_dict(conn.to_record())
    with pytest.raises(AttributeError):
        rec.uid = "x"  # type: ignore[misc]


def test_field_reference_is_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_field_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
