"""Real servers and clients on their usual ports and on wrong ones: service_id names each one.

Each case runs in a lab namespace (tests/netlab.py): a real server (sshd, openssl s_server,
python -m http.server, redis-server, a tiny SMTP responder) listens on a port, tcpdump records a
real client (ssh, openssl s_client -servername, curl, redis-cli, smtplib) talking to it, and the
test reassembles the first bytes of each direction from the capture with dpkt, by itself (the
pipeline does not hand payload to analyzers yet), then checks the service, the parsed facts and
that ``mismatch`` is true exactly for the wrong-port cases. ``nmap -sS -sV`` against sshd,
http.server and a silent server checks that the port-scan finding says what answered each open
port. Needs root, ``ip``, ``tcpdump`` and the programs (.ci/run installs openssh-server, openssl,
curl, redis-server, nmap); skips where they are missing, fails under CI.
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest

from flowlens import analyze
from flowlens.analyzers.anomalies.detector import AnomalyDetector
from flowlens.analyzers.service_id import MAX_BYTES, UNKNOWN, ServiceAnalyzer, identify, mismatch

try:
    from netlab import Lab
    from test_netlab import ip_packets, require
except ModuleNotFoundError:
    from tests.netlab import Lab
    from tests.test_netlab import ip_packets, require

pytestmark = pytest.mark.netlab

HOST = "127.0.0.1"
SNI = "tls.lab.example"
SMTP_RESPONDER = textwrap.dedent(
    """
    import socket, sys
    srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
    print("READY", sys.argv[2], flush=True)
    while True:
        conn, _ = srv.accept()
        try:  # the readiness probe hangs up at once: a failed write must not end the server
            f = conn.makefile("rwb")
            f.write(b"220 mail.lab.example ESMTP flowlens-test\\r\\n"); f.flush()
            for line in f:
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    f.write(b"250-mail.lab.example\\r\\n250 8BITMIME\\r\\n")
                elif verb == b"QUIT":
                    f.write(b"221 2.0.0 Bye\\r\\n"); f.flush(); break
                else:
                    f.write(b"250 2.0.0 Ok\\r\\n")
                f.flush()
            f.close()
        except OSError:
            pass
        conn.close()
    """
)
SINK = textwrap.dedent(
    """
    import socket, sys
    srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
    print("READY", sys.argv[2], flush=True)
    while True:
        conn, _ = srv.accept()
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        conn.close()
    """
)
RANDOM_CLIENT = (
    "import os, socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
    "s.sendall(os.urandom(300)); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()\n"
)
WAIT_PORT = textwrap.dedent(
    """
    import socket, sys, time
    end = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    """
)


@dataclass(frozen=True)
class Case:
    kind: str  # which server/client pair
    port: int
    service: str | None
    wrong_port: bool


CASES = [
    Case("ssh", 22, "ssh", False),
    Case("ssh", 443, "ssh", True),
    Case("tls", 443, "ssl", False),
    Case("tls", 80, "ssl", True),
    Case("http", 80, "http", False),
    Case("http", 5432, "http", True),
    Case("redis", 6379, "redis", False),
    Case("redis", 80, "redis", True),
    Case("smtp", 25, "smtp", False),
    # The port-table mistakes: no payload on 443 is not ssl, random bytes on 22 not ssh.
    Case("silent", 443, None, False),
    Case("random", 22, "unknown", False),
]
PROGRAMS = {
    "ssh": [
        ("sshd", "openssh-server"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ],
    "tls": [("openssl", "openssl")],
    "http": [("curl", "curl")],
    "redis": [("redis-server", "redis-server"), ("redis-cli", "redis-tools")],
    "smtp": [],
    "silent": [],
    "random": [],
}


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def first_bytes(path: Path) -> dict[tuple[str, int, str, int], tuple[bytes, bytes]]:
    """(orig, resp) first payload bytes of each TCP connection opened by a SYN in the capture,
    in sequence order (offsets from each side's ISN; a retransmission writes the same bytes)."""
    isn: dict[tuple, int] = {}
    data: dict[tuple, bytearray] = {}
    filled: dict[tuple, bytearray] = {}
    conns: list[tuple] = []
    for _ts, ip in ip_packets(path)[1]:
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP):
            continue
        family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
        side = (
            socket.inet_ntop(family, ip.src),
            tcp.sport,
            socket.inet_ntop(family, ip.dst),
            tcp.dport,
        )
        if tcp.flags & dpkt.tcp.TH_SYN:
            isn[side] = tcp.seq
            data[side], filled[side] = bytearray(MAX_BYTES), bytearray(MAX_BYTES)
            if not tcp.flags & dpkt.tcp.TH_ACK:
                conns.append(side)
            continue
        if side not in isn or not tcp.data:
            continue
        offset = (tcp.seq - isn[side] - 1) % (1 << 32)
        for i, byte in enumerate(tcp.data[: max(0, MAX_BYTES - offset)]):
            data[side][offset + i] = byte
            filled[side][offset + i] = 1
    out = {}
    for orig in conns:
        resp = (orig[2], orig[3], orig[0], orig[1])
        pair = []
        for side in (orig, resp):
            have = filled.get(side, b"")
            end = have.find(0) if 0 in have else len(have)
            pair.append(bytes(data[side][:end]) if side in data else b"")
        out[orig] = (pair[0], pair[1])
    return out


def _start_server(lab: Lab, case: Case, tmp: Path) -> None:
    port = str(case.port)
    if case.kind == "ssh":
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        key = tmp / "host_ed25519"
        lab.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
        config = tmp / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress {HOST}\nHostKey {key}\nPidFile {tmp / 'sshd.pid'}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        )
        lab.start([_which("sshd"), "-D", "-e", "-f", config], ready_prefix=None)
    elif case.kind == "tls":
        key, cert = tmp / "key.pem", tmp / "cert.pem"
        lab.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-subj", f"/CN={SNI}", "-days", "1"]
        )  # fmt: skip
        lab.start(
            ["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", cert, "-key", key,
             "-www", "-alpn", "http/1.1", "-quiet"],
            ready_prefix=None,
        )  # fmt: skip
    elif case.kind == "http":
        lab.start(
            [sys.executable, "-m", "http.server", port, "--bind", HOST, "-d", tmp],
            ready_prefix=None,
        )
    elif case.kind == "redis":
        lab.start(
            [_which("redis-server"), "--port", port, "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", tmp, "--daemonize", "no"],
            ready_prefix=None,
        )  # fmt: skip
    elif case.kind == "smtp":
        lab.start([sys.executable, "-c", SMTP_RESPONDER, HOST, port])
    elif case.kind in ("silent", "random"):
        lab.start([sys.executable, "-c", SINK, HOST, port])
    lab.run([sys.executable, "-c", WAIT_PORT, HOST, port], timeout_s=15)


def _run_client(lab: Lab, case: Case, tmp: Path) -> None:
    port = str(case.port)
    if case.kind == "ssh":
        # Authentication fails (no keys, no passwords): the identification strings are what counts.
        lab.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
             "UserKnownHostsFile=/dev/null", "-p", port, f"nobody@{HOST}", "true"],
            check=False,
        )  # fmt: skip
    elif case.kind == "tls":
        lab.run(
            ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", SNI,
             "-alpn", "h2,http/1.1", "-brief"],
            input="GET / HTTP/1.0\r\n\r\n",
        )  # fmt: skip
    elif case.kind == "http":
        lab.run(["curl", "-sS", "-o", "/dev/null", f"http://{HOST}:{port}/"])
    elif case.kind == "redis":
        done = lab.run([_which("redis-cli"), "-h", HOST, "-p", port, "PING"])
        assert done.stdout.strip() == "PONG"
    elif case.kind == "smtp":
        code = (
            "import smtplib, sys\n"
            "s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname='client.lab.example')\n"
            "s.ehlo(); s.noop(); s.quit()\n"
        )
        lab.run([sys.executable, "-c", code, HOST, port])
    elif case.kind == "silent":  # connects and closes without a byte either way
        lab.run([sys.executable, "-c", WAIT_PORT, HOST, port])
    elif case.kind == "random":
        lab.run([sys.executable, "-c", RANDOM_CLIENT, HOST, port])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}-on-{c.port}")
def test_real_service_is_named_by_its_bytes(case, tmp_path):
    require(Lab.available())
    missing = [f"{tool} ({pkg})" for tool, pkg in PROGRAMS[case.kind] if _which(tool) is None]
    require((not missing, "not installed: " + ", ".join(missing)))
    tmp_path.chmod(0o755)
    with Lab() as lab:
        _start_server(lab, case, tmp_path)
        with lab.capture(tmp_path / f"{case.kind}-{case.port}.pcap") as cap:
            _run_client(lab, case, tmp_path)
    conns = first_bytes(cap.path)
    assert len(conns) == 1, conns.keys()
    ((orig_side, (orig, resp)),) = conns.items()
    assert orig_side[3] == case.port
    found = identify(orig, resp)
    assert found.service == case.service, (orig[:80], resp[:80])
    assert mismatch(found.service, "tcp", case.port) is case.wrong_port
    # the pipeline (flows' ServiceAnalyzer) says the same of the capture, and the detector
    # raises service_port_mismatch for exactly the wrong-port cases
    detector = AnomalyDetector()
    result = analyze(cap.path, analyzers=[ServiceAnalyzer(), detector])
    # (the client's connection: the tail of the readiness probe's own connection, its last
    # FIN/ACK, can fall inside the capture on a busy machine)
    (conn,) = [
        c
        for c in result.connections
        if c.proto_name == "tcp" and c.resp_p == case.port and c.orig_p == orig_side[1]
    ]
    record = conn.to_record()
    assert record["service"] == (None if found.service == UNKNOWN else found.service)
    if found.service is None:  # no payload either way
        assert record["app"] is None
    else:
        assert record["app"] == ({"unidentified": True} if found.service == UNKNOWN else found.app)
    kinds = [a.kind for a in result.results[detector]]
    assert ("service_port_mismatch" in kinds) is case.wrong_port, kinds
    app = found.app
    if case.kind == "ssh":
        assert app["ssh_server"].startswith("SSH-2.0-OpenSSH_")
        assert app["ssh_client"].startswith("SSH-2.0-OpenSSH_")
    elif case.kind == "tls":
        assert app["tls_sni"] == SNI and app["tls_alpn"] == ["h2", "http/1.1"]
        assert app["tls_version"] == "TLSv13"
    elif case.kind == "http":
        host = HOST if case.port == 80 else f"{HOST}:{case.port}"  # curl leaves out port 80
        assert app == {"http_method": "GET", "http_host": host, "http_status": 200}


def test_nmap_version_scan_is_told_what_answered_each_open_port(tmp_path):
    """nmap's SYN scan then its version detection (-sV: it comes back to each open port, waits
    for a banner, sends probes) against sshd on 22, python -m http.server on 80 and a server
    that never says a word on 8000: the port_scan finding names what answered, as nmap does."""
    require(Lab.available())
    tools = [("nmap", "nmap"), *PROGRAMS["ssh"]]
    missing = [f"{tool} ({pkg})" for tool, pkg in tools if _which(tool) is None]
    require((not missing, "not installed: " + ", ".join(missing)))
    tmp_path.chmod(0o755)
    with Lab() as lab:
        for kind, port in (("ssh", 22), ("http", 80), ("silent", 8000)):
            _start_server(lab, Case(kind, port, None, False), tmp_path)
        with lab.capture(tmp_path / "nmap.pcap") as cap:
            done = lab.run(
                ["nmap", "-n", "-Pn", "-sS", "-sV", "--version-intensity", "0",
                 "-p", "20-36,80,8000", HOST],
                timeout_s=300,
            )  # fmt: skip
    # nmap's own table, for the record of what the servers were
    assert re.search(r"^22/tcp +open +ssh +OpenSSH", done.stdout, re.M), done.stdout
    assert re.search(r"^80/tcp +open +http", done.stdout, re.M), done.stdout
    detector = AnomalyDetector(services=ServiceAnalyzer())
    result = analyze(cap.path, analyzers=[detector])
    (scan,) = [a for a in result.results[detector] if a.kind == "port_scan"]
    assert scan.details["open"] == [22, 80, 8000] and scan.details["closed_count"] == 16
    by_port = {e["port"]: e for e in scan.details["open_services"]}
    assert sorted(by_port) == [22, 80, 8000]
    ssh, http, silent = by_port[22], by_port[80], by_port[8000]
    assert (ssh["answered"], ssh["service"]) == (True, "ssh")
    assert ssh["software"].startswith("OpenSSH_") and ssh["ssh_server"].startswith("SSH-2.0-")
    assert (http["answered"], http["service"]) == (True, "http") and "http_status" in http
    assert (silent["spoken_to"], silent["answered"], silent["service"]) == (True, False, None)
    assert f"22/tcp open ssh ({ssh['software']})" in scan.summary
    assert "80/tcp open http" in scan.summary
    assert "8000/tcp open, nothing answered" in scan.summary
