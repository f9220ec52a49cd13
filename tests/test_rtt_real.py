"""RTT of real traffic over a path with a known delay: a lab namespace delays every packet by
20 ms on its way out (netem, or the lab's NFQUEUE delayer), tcpdump records lo, flowlens measures.

On lo each packet is delayed once before tcpdump sees it, so every round trip from the capture
point to an endpoint and back crosses one delay: synack_ms, ackdat_ms and each data-RTT leg are
20 ms, and the handshake RTT (their sum) 40 ms.

Tolerance: the delay is a floor (no packet leaves sooner), so the lower bound is exact. Above
it, the delayer adds its own scheduling latency: netem a few microseconds; the NFQUEUE delayer
(a Python process that sleeps until each packet's release time) 0.2-0.5 ms typically and up to
4 ms on this two-CPU machine with other work running, measured over many runs. 10 ms of slack
per leg keeps the test about the delay and not about the machine's load; the delayed ACK timer
(40 ms minimum on Linux) cannot hide inside it, so a wrongly paired sample would still fail.

Needs root, ip, tcpdump (and iptables without netem); skips without them, fails under CI.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess

import pytest

from flowlens import analyze
from flowlens.analyzers.rtt import RttCollector
from flowlens.reports.rtt import connection_rows

try:
    from netlab import Lab
except ModuleNotFoundError:  # tests/ as a package
    from tests.netlab import Lab

from test_rtt import ACK_RTT_DIFFERENCES, _ack_rtt_comparison

pytestmark = pytest.mark.netlab

DELAY_MS = 20.0
SLACK_MS = 10.0
HTTP, BULK, UDP = 8080, 9000, 7000


def _require(ok_reason: tuple[bool, str]) -> None:
    ok, reason = ok_reason
    if not ok:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"netlab unavailable under CI: {reason}", pytrace=False)
        pytest.skip(f"netlab unavailable: {reason}")


@pytest.fixture(scope="module")
def delayed_capture(tmp_path_factory):
    _require(Lab.available())
    _require(Lab.delay_available())
    path = tmp_path_factory.mktemp("rtt") / "delay20.pcap"
    with Lab(delay_ms=DELAY_MS) as lab:
        lab.start_traffic("http-server", HTTP)
        lab.start_traffic("bulk-server", BULK)
        lab.start_traffic("udp-echo", UDP)
        with lab.capture(path):
            lab.traffic("http-clients", HTTP, "--count", 5, "--keepalive", 3)
            lab.traffic("bulk", BULK, "--bytes", 200_000)
            lab.traffic("udp-client", UDP, "--count", 5)
    return path


def _within(value_ms: float, floor_ms: float) -> bool:
    return floor_ms <= value_ms < floor_ms + SLACK_MS


def test_handshake_legs_match_the_delay(delayed_capture):
    a = analyze(str(delayed_capture), analyzers=[RttCollector()])
    tcp = [c for c in a.connections if c.proto_name == "tcp"]
    assert len(tcp) == 6  # five HTTP connections and one bulk transfer
    for c in tcp:
        # no leg is faster than the delay line (physics); a loaded machine adds scheduling
        # latency to some legs, so the upper bound holds for the typical leg (the median)
        assert c.synack_ms >= DELAY_MS and c.ackdat_ms >= DELAY_MS, c.to_record()
        # the initial RTT is the two legs end to end
        assert abs(c.irtt_ms - (c.synack_ms + c.ackdat_ms)) < 0.01, c.to_record()
    assert _within(statistics.median(c.synack_ms for c in tcp), DELAY_MS)
    assert _within(statistics.median(c.ackdat_ms for c in tcp), DELAY_MS)
    assert 2 * DELAY_MS <= statistics.median(c.irtt_ms for c in tcp) < 2 * DELAY_MS + SLACK_MS


def test_data_rtt_matches_the_delay(delayed_capture):
    rtt = RttCollector()
    a = analyze(str(delayed_capture), analyzers=[rtt])
    legs = 0
    for c in a.connections:
        for row in connection_rows(c, rtt):
            if not row["count"]:
                continue
            legs += 1
            # the fastest answer of each leg is one delay; none is faster than the path allows
            assert _within(row["min_ms"], DELAY_MS), row
            assert row["karn_skipped"] == 0
    assert legs == 5 * 2 + 2 + 1  # HTTP: both legs; bulk: both; UDP echo: replies
    [udp] = [c for c in a.connections if c.proto_name == "udp"]
    st = rtt.state_of(udp).stats("resp")
    assert st.count == 5 and _within(st.p50_ms, DELAY_MS)


def test_real_capture_agrees_with_tshark(delayed_capture):
    if shutil.which("tshark") is None:
        _require((False, "tshark not installed"))
    result, cases = _ack_rtt_comparison(delayed_capture)
    assert result["match"] >= 30, result
    assert set(result) <= {"match", *ACK_RTT_DIFFERENCES}, result
    out = subprocess.run(
        ["tshark", "-r", str(delayed_capture), "-n", "-Y", "tcp.analysis.initial_rtt", "-T", "fields",
         "-e", "tcp.stream", "-e", "tcp.analysis.initial_rtt"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    theirs = sorted(
        {(int(s), float(v) * 1e3) for s, v in (line.split("\t") for line in out.splitlines())}
    )
    ours = [c.irtt_ms for c in analyze(str(delayed_capture)).connections if c.proto_name == "tcp"]
    assert len(theirs) == len(ours) == 6
    # tshark numbers streams in order of first packet, as analyze orders connections
    for (_stream, irtt), mine in zip(theirs, ours):
        assert abs(irtt - mine) <= 0.001  # 1 us
