"""The one pipeline: a file or a rotation set read as one stream, analyzers' results at the end."""

from __future__ import annotations

import pcapgen
import pytest

from flowlens import FlowlensError, Pipeline, analyze
from flowlens.analyzers.anomalies.detector import AnomalyDetector
from flowlens.analyzers.service_id import ServiceAnalyzer
from flowlens.analyzers.tcpanalysis import TcpAnalyzer


def _split(tmp_path, frames, at):
    """Write `frames` as two rotated files, the first holding frames[:at]."""
    a, b = tmp_path / "rot-0.pcap", tmp_path / "rot-1.pcap"
    a.write_bytes(pcapgen.pcap_bytes(frames[:at]))
    b.write_bytes(pcapgen.pcap_bytes(frames[at:]))
    return str(a), str(b)


def test_a_rotation_set_reads_as_one_capture(tmp_path):
    """A connection split across two files is one connection, frame numbers continue, and the
    records are those of the same packets in one file."""
    frames = pcapgen.clean_close()
    whole = tmp_path / "whole.pcap"
    whole.write_bytes(pcapgen.pcap_bytes(frames))
    # (the TCP analysis's counters and the service analyzer's first bytes cross the files too)
    one = [
        c.to_record()
        for c in analyze(str(whole), analyzers=[TcpAnalyzer(), ServiceAnalyzer()]).connections
    ]
    pipe = Pipeline(list(_split(tmp_path, frames, 4)), analyzers=[TcpAnalyzer(), ServiceAnalyzer()])
    rotated = [c.to_record() for c in pipe]
    assert rotated == one and len(one) == 1
    assert [(f.frame_offset, f.stats.frames) for f in pipe.files] == [
        (0, 4),
        (4, len(frames) - 4),
    ]
    assert pipe.stats.frames == len(frames)
    assert pipe.stats.first_ts_ns == pipe.files[0].stats.first_ts_ns
    assert pipe.stats.last_ts_ns == pipe.files[1].stats.last_ts_ns


def test_a_rotation_set_goes_on_without_an_unreadable_member(tmp_path):
    a, b = _split(tmp_path, pcapgen.clean_close(), 4)
    missing = str(tmp_path / "gone.pcap")
    pipe = Pipeline([a, missing, b])
    assert len(list(pipe)) == 1
    assert [f.error is not None for f in pipe.files] == [False, True, False]
    assert pipe.files[2].frame_offset == 4
    with pytest.raises(FlowlensError):
        list(Pipeline([missing]))


def test_analyzers_finish_with_the_capture_end(tmp_path):
    path = tmp_path / "r.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.refused()))
    detector = AnomalyDetector()
    pipe = Pipeline(str(path), analyzers=[detector])
    assert pipe.results == {}  # nothing before the pass
    list(pipe)
    assert [a.kind for a in pipe.results[detector]] == ["connection_refused"]
    assert set(pipe.results) == set(pipe.analyzers)  # the TcpAnalyzer it required too
