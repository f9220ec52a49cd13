"""BPF read filters run by libpcap: the frames flowlens keeps are the frames tcpdump keeps."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from corpus import captures

from flowlens.core.bpf import BpfFilter, check_filter
from flowlens.core.capture import open_capture
from flowlens.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_pcaps").glob("*.pcap*"))
FILTERS = ["tcp port 9000", "udp", "host 192.0.2.10", "tcp[tcpflags] & tcp-syn != 0", "icmp or icmp6",
           "ip6", "not tcp", "vlan and tcp", "net 198.51.100.0/24 and tcp dst portrange 5000-9000"]  # fmt: skip
TCPDUMP = shutil.which("tcpdump")


def kept_by_flowlens(path: Path, expression: str) -> list[int]:
    f = BpfFilter(expression)
    with open_capture(str(path)) as cap:
        return [n for n, _ts, lt, data, wirelen in cap if f.matches(lt, bytes(data), wirelen)]


def kept_by_tcpdump(path: Path, expression: str) -> int:
    """How many frames `tcpdump -r X 'filter'` keeps (its -# count of printed lines)."""
    done = subprocess.run(
        [TCPDUMP, "-n", "-r", str(path), expression], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return len(done.stdout.splitlines())


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed (apt-get install tcpdump)")
@pytest.mark.parametrize(
    "path", [p for p in SAMPLES if not p.name.endswith(".gz")], ids=lambda p: p.name
)
def test_the_frames_kept_are_tcpdumps(path):
    for expression in FILTERS:
        try:
            expected = kept_by_tcpdump(path, expression)
        except AssertionError:
            # tcpdump refuses an expression its link type cannot take (vlan on Linux cooked
            # capture): so does flowlens, with libpcap's reason
            with pytest.raises(UsageError, match="-f/--filter"):
                kept_by_flowlens(path, expression)
            continue
        assert len(kept_by_flowlens(path, expression)) == expected, expression


@pytest.mark.corpus
@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed (apt-get install tcpdump)")
@pytest.mark.parametrize("path", captures(pattern="*.pcap"), ids=lambda p: p.name)
def test_the_frames_kept_are_tcpdumps_on_the_corpus(path):
    for expression in ("tcp", "udp port 53", "tcp[tcpflags] & (tcp-syn|tcp-rst) != 0"):
        try:
            expected = kept_by_tcpdump(path, expression)
        except AssertionError:
            continue  # tcpdump cannot read or filter this one (damaged file, odd link type)
        assert len(kept_by_flowlens(path, expression)) == expected, expression


def test_a_bad_expression_is_a_usage_error():
    with pytest.raises(UsageError, match="-f/--filter 'tcp prot 80'"):
        check_filter("tcp prot 80")
