"""A real TIME_WAIT pile-up: a client in a network namespace with a narrowed ephemeral port range
opens short client-closes-first connections until its ports run out; flowlens must say so.

Two ways of running out, both captured by tcpdump on the namespace's loopback:
- tcp_tw_reuse=0: the eleventh connect() fails with EADDRNOTAVAIL and the client stops while
  all ten ports sit in TIME_WAIT. Given the range (--ephemeral-range 40000-40009) flowlens
  uses it; without it, flowlens infers it from the block of ports used the way Linux uses
  them when its range runs out (one parity, then the other); likewise with 64 ports.
- tcp_tw_reuse=1: the kernel hands out ports still in TIME_WAIT again (after
  tcp_tw_reuse_delay); the capture shows the ten ports recycled while all were held, which
  flowlens recognises without being told the range.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from netlab import CaptureError, Lab

from flowlens import analyze
from flowlens.analyzers.anomalies.detector import AnomalyDetector, Thresholds
from flowlens.cli import cli

pytestmark = pytest.mark.netlab

Lab.require_module()

HTTP = 8080
RANGE = (40000, 40009)


def detect(path, **thresholds):
    detector = AnomalyDetector(Thresholds(**thresholds))
    return analyze(str(path), analyzers=[detector]).results[detector]


def test_ports_run_out_without_reuse(tmp_path):
    path = tmp_path / "pileup.pcap"
    with Lab(port_range=RANGE, tw_reuse=0) as lab:
        lab.start_traffic("http-server", HTTP)
        with lab.capture(path):
            result = lab.traffic("timewait-pileup", HTTP, "--count", 50)
    assert result["connections_ok"] == 10 and result["EADDRNOTAVAIL"] == 1

    found = detect(path, ephemeral_range=RANGE)
    (risk,) = [a for a in found if a.kind == "port_exhaustion_risk"]
    assert risk.severity == "critical"
    assert risk.details["peak_in_use"] == 10 and risk.details["range_size"] == 10
    assert risk.details["client_ports"] == 10
    assert found[0] is risk

    # the same through the command line, as an operator would run it
    cmd = CliRunner().invoke(cli, ["anomalies", str(path), "--ephemeral-range", "40000-40009",
                                   "--min-severity", "critical"])  # fmt: skip
    assert cmd.exit_code == 0
    assert "ran out of ephemeral ports toward 127.0.0.1:8080" in cmd.stdout
    # without the range: the ten ports, even ones first, then odd (Linux's two passes of
    # __inet_hash_connect), all held at once, are the range
    (risk,) = [a for a in detect(path) if a.severity == "critical"]
    assert risk.details["range_source"] == "inferred"
    assert risk.details["ephemeral_range"] == list(RANGE)


def test_ports_run_out_through_a_64_port_range(tmp_path):
    """The issue's story: a Linux client held to a 64-port ip_local_port_range, 64 connections
    closed by the client, all 64 ports in TIME_WAIT, the 65th connect() failing with
    EADDRNOTAVAIL (no SYN). No range given: flowlens infers the narrowed range from the block
    of ports used (both parities: Linux takes one parity until its ports run out) and says
    so."""
    path = tmp_path / "pileup64.pcap"
    wide = (40000, 40063)
    for attempt in range(2):  # a loaded machine can make tcpdump drop packets: one more try
        try:
            with Lab(port_range=wide, tw_reuse=0) as lab:
                lab.start_traffic("http-server", HTTP)
                with lab.capture(path):
                    result = lab.traffic("timewait-pileup", HTTP, "--count", 100)
            break
        except CaptureError as exc:
            if "dropped" not in str(exc) or attempt:
                raise
    assert result["connections_ok"] == 64 and result["EADDRNOTAVAIL"] == 1
    assert result["distinct_local_ports"] == 64

    found = detect(path)
    (risk,) = [a for a in found if a.kind == "port_exhaustion_risk"]
    assert risk.severity == "critical" and found[0] is risk
    assert risk.details["range_source"] == "inferred"
    assert risk.details["ephemeral_range"] == list(wide) and risk.details["range_size"] == 64
    assert risk.details["peak_in_use"] == 64 and risk.details["ports_exhausted"] == list(wide)
    assert "all 64 ports of the range 40000-40063 (inferred: a contiguous block" in risk.summary
    (pile,) = [a for a in found if a.kind == "time_wait_accumulation"]
    assert pile.details["time_wait_peak"] == 64 and pile.severity == "warning"

    # a range given is the range used, never replaced by the inferred one
    given = detect(path, ephemeral_range=(40000, 40099))
    (risk,) = [a for a in given if a.kind == "port_exhaustion_risk"]
    assert risk.severity == "warning" and risk.details["range_source"] == "configured"
    assert risk.details["ephemeral_range"] == [40000, 40099] and "64%" in risk.summary


def test_ports_recycled_in_time_wait(tmp_path):
    path = tmp_path / "recycle.pcap"
    sysctls = {"net.ipv4.tcp_tw_reuse_delay": 100}  # ms before a TIME_WAIT port may be reused
    with Lab(port_range=RANGE, tw_reuse=1, sysctls=sysctls) as lab:
        lab.start_traffic("http-server", HTTP)
        with lab.capture(path):
            result = lab.traffic("http-clients", HTTP, "--count", 30, "--close-first", "client",
                                 "--retry-busy", timeout_s=60)  # fmt: skip
    assert result["connections_ok"] == 30 and result["distinct_local_ports"] == 10

    found = detect(path)  # no range given: the recycling gives it away
    (risk,) = [a for a in found if a.kind == "port_exhaustion_risk"]
    assert risk.severity == "critical"
    assert risk.details["ports_exhausted"] == list(RANGE)
    assert risk.details["time_wait_reuses"] >= 20
    (reuse,) = [a for a in found if a.kind == "port_reuse"]
    assert reuse.details["reuses"] == risk.details["time_wait_reuses"]
