"""flowlens's socket states against the kernel's own socket table, sampled while real traffic ran.

In a lab namespace (tests/netlab.py) real clients and servers talk over loopback while tcpdump
captures them and a sampler runs `ss -tanH` every ~150 ms, each call bracketed by
CLOCK_REALTIME readings (the clock tcpdump stamps packets with). Then, for every sample, the
per-state socket counts that flowlens rebuilds from the capture (`Connection.state_at` of both
endpoints: on loopback both are in the one kernel) must equal the kernel's, except at samples
too close to a packet that changes a state: the kernel may have applied it a little before or
after the capture stamped it. That window is derived from the lab, not from flowlens's output:
the sampler's own bracket plus the kernel's timer granularity (one jiffy, 4 ms at HZ=250, and
the delayed-ACK timer, at most 40 ms on Linux: TCP_DELACK_MIN..), and the path delay (0 here).
LISTEN sockets are left out: a capture cannot see them.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections import Counter

import pytest

from flowlens import Config, analyze

try:
    from netlab import Lab
except ImportError:  # pragma: no cover - tests/ as a package
    from .netlab import Lab

pytestmark = pytest.mark.netlab

HTTP = 8080
#: around a state-changing packet, a sample may see the kernel before or after it (ns)
WINDOW_NS = 50_000_000
#: ss's state names -> RFC 9293's, as flowlens names them
SS_STATES = {
    "ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECEIVED",
    "FIN-WAIT-1": "FIN_WAIT_1", "FIN-WAIT-2": "FIN_WAIT_2", "TIME-WAIT": "TIME_WAIT",
    "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "CLOSING": "CLOSING",
}  # fmt: skip

SAMPLER = textwrap.dedent(
    """
    import json, subprocess, sys, time
    print("READY", flush=True)
    while True:
        t0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        out = subprocess.run(["ss", "-tanH"], capture_output=True, text=True).stdout
        t1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
        states = [ln.split()[0] for ln in out.splitlines() if ln.strip()]
        print(json.dumps({"t0": t0, "t1": t1, "states": states}), flush=True)
        time.sleep(0.15)
    """
)


@pytest.fixture(scope="module")
def lab_ok():
    ok, why = Lab.available()
    if not ok:
        pytest.skip(why)


def run_sampled(tmp_path, name, server, client_args, *, lab_kwargs=None, settle_s=0.6):
    """Run `server` and a traffic client in a lab with the sampler on; returns (pcap, samples)."""
    with Lab(**(lab_kwargs or {})) as lab:
        lab.start_traffic(*server)
        with lab.capture(tmp_path / f"{name}.pcap") as cap:
            sampler = lab.start([sys.executable, "-c", SAMPLER])
            lab.traffic(*client_args)
            lab.run([sys.executable, "-c", f"import time; time.sleep({settle_s})"])
            sampler.stop()
    samples = [json.loads(ln) for ln in sampler.stdout.splitlines() if ln.startswith("{")]
    return cap.path, samples


def compare(path, samples):
    """(samples compared, [(sample, kernel counts, flowlens counts)] that differ)."""
    analysis = analyze(str(path), config=Config(verify_checksums=False))
    tcp = [c for c in analysis.connections if c.tcp is not None]
    changes = sorted(
        ts for c in tcp for ts, _frame, _side, _state in c.timeline
    )  # every moment an endpoint changed state, as the capture shows it
    compared, bad = 0, []
    for s in samples:
        lo, hi = s["t0"] - WINDOW_NS, s["t1"] + WINDOW_NS
        if any(lo <= t <= hi for t in changes):
            continue
        kernel = Counter(SS_STATES[x] for x in s["states"] if x in SS_STATES)
        mid = (s["t0"] + s["t1"]) // 2
        ours = Counter()
        for c in tcp:
            for side in (0, 1):
                st = c.state_at(side, mid)
                if st is not None and st.value in SS_STATES.values():
                    ours[st.value] += 1
        compared += 1
        if kernel != ours:
            bad.append((mid, dict(kernel), dict(ours)))
    return compared, bad


def test_http_clients_closing_first_hold_time_wait(lab_ok, tmp_path):
    path, samples = run_sampled(
        tmp_path,
        "http",
        ("http-server", HTTP),
        ("http-clients", HTTP, "--count", 8, "--close-first", "client"),
    )
    compared, bad = compare(path, samples)
    assert compared >= 2, (compared, len(samples))
    assert not bad, bad


def test_close_wait_leak_and_fin_wait_2(lab_ok, tmp_path):
    path, samples = run_sampled(
        tmp_path,
        "leak",
        ("leak-server", HTTP),
        ("http-clients", HTTP, "--count", 3, "--close-first", "client"),
    )
    compared, bad = compare(path, samples)
    assert compared >= 2, (compared, len(samples))
    assert not bad, bad


def test_time_wait_pileup_through_a_narrow_port_range(lab_ok, tmp_path):
    path, samples = run_sampled(
        tmp_path,
        "pileup",
        ("http-server", HTTP),
        ("timewait-pileup", HTTP, "--count", 20),
        lab_kwargs={"port_range": (40000, 40015), "tw_reuse": 0},
    )
    compared, bad = compare(path, samples)
    assert compared >= 2, (compared, len(samples))
    assert not bad, bad


def test_abort_and_half_close(lab_ok, tmp_path):
    for mode in ("abort", "half-close"):
        path, samples = run_sampled(tmp_path, mode, ("http-server", HTTP), (mode, HTTP))
        compared, bad = compare(path, samples)
        assert compared >= 2, (mode, compared, len(samples))
        assert not bad, (mode, bad)
