"""A real TIME_WAIT pile-up: a client in a network namespace with a narrowed ephemeral port range
opens short client-closes-first connections until its ports run out; flowlens must say so.

Two ways of running out, both captured by tcpdump on the namespace's loopback:
- tcp_tw_reuse=0: the eleventh connect() fails with EADDRNOTAVAIL and the client stops while
  all ten ports sit in TIME_WAIT. The capture alone cannot tell a client that stopped from one
  that ran out, so the operator names the range (--ephemeral-range 40000-40009), as they would.
- tcp_tw_reuse=1: the kernel hands out ports still in TIME_WAIT again (after
  tcp_tw_reuse_delay); the capture shows the ten ports recycled while all were held, which
  flowlens recognises without being told the range.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from netlab import Lab

from flowlens import analyze
from flowlens.analyzers.anomalies.detector import AnomalyDetector, Thresholds
from flowlens.cli import cli

pytestmark = pytest.mark.netlab

_ok, _why = Lab.available()
if not _ok:
    if os.environ.get("CI"):
        raise RuntimeError(f"the network lab is required in CI: {_why}")
    pytest.skip(f"network lab unavailable: {_why}", allow_module_level=True)

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
    # without the range the ten ports are a tiny part of Linux's default: no alarm
    assert [a for a in detect(path) if a.severity == "critical"] == []


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
