"""Service identification wired into the pipeline: the ServiceAnalyzer's first bytes in
sequence order, the `service`/`port_service`/`app` fields of `flows`, and the
`service_port_mismatch` finding (issue 20)."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter, defaultdict
from pathlib import Path

import pcapgen
import pytest
from click.testing import CliRunner
from corpus import CORPUS, available, skip_or_fail
from pcapgen import ACK, PSH, RST, SYN, Conversation
from test_service_id import client_hello, server_hello

from flowlens import Config, analyze
from flowlens.analyzers.anomalies.detector import AnomalyDetector
from flowlens.analyzers.service_id import MAX_BYTES, ServiceAnalyzer
from flowlens.cli import cli
from flowlens.core.connections import format_addr

SSH_C = b"SSH-2.0-OpenSSH_9.2p1\r\n"
SSH_S = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
GET = b"GET /index.html HTTP/1.1\r\nHost: db.example.test\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def conversation(port: int, client_first: bytes, server_reply: bytes, cport: int = 40000):
    conv = Conversation(sport=port, cport=cport)
    conv.handshake()
    conv.exchange(client_first, server_reply)
    conv.close()
    return conv.frames


def ssh_on(port: int, cport: int = 40001):
    """The server speaks first (RFC 4253 §4.2), then the client."""
    conv = Conversation(sport=port, cport=cport)
    conv.handshake()
    conv.s(PSH | ACK, SSH_S)
    conv.c(PSH | ACK, SSH_C)
    conv.s(ACK)
    conv.close()
    return conv.frames


def silent_on(port: int, cport: int = 40003):
    conv = Conversation(sport=port, cport=cport)
    conv.handshake()
    conv.close()
    return conv.frames


def lab():
    """HTTP on 5432, SSH on 443, TLS with SNI on 443, nothing said on 443: one capture."""
    frames = (
        conversation(5432, GET, OK, cport=40000)
        + ssh_on(443, cport=40001)
        + conversation(443, client_hello("www.example.test"), server_hello(), cport=40002)
        + silent_on(443, cport=40003)
    )
    return sorted(frames, key=lambda f: f[0])


def flows_json(path) -> dict:
    result = CliRunner().invoke(cli, ["flows", str(path), "--format", "json", "--services"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {r["id.orig_p"]: r for r in rows}


def test_flows_names_services_by_their_bytes_not_their_port(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "lab.pcap", lab())
    rows = flows_json(path)
    http, ssh, tls, silent = rows[40000], rows[40001], rows[40002], rows[40003]
    assert (http["service"], http["port_service"]) == ("http", "postgresql")
    assert http["app"] == {"http_method": "GET", "http_host": "db.example.test", "http_status": 200}
    assert (ssh["service"], ssh["port_service"]) == ("ssh", "ssl")
    assert ssh["app"] == {
        "ssh_client": SSH_C.decode().strip(),
        "ssh_server": SSH_S.decode().strip(),
    }
    assert (tls["service"], tls["port_service"]) == ("ssl", "ssl")
    assert tls["app"]["tls_sni"] == "www.example.test"
    assert tls["app"]["tls_version"] == "TLSv13"
    # no payload at all: nothing identified, whatever the port says
    assert (silent["service"], silent["port_service"], silent["app"]) == (None, "ssl", None)


def test_without_services_service_and_app_are_null(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "lab.pcap", lab())
    result = CliRunner().invoke(cli, ["flows", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {(r["service"], r["app"]) for r in rows} == {(None, None)}
    assert sorted(r["port_service"] for r in rows) == ["postgresql", "ssl", "ssl", "ssl"]


def test_payload_that_matches_nothing_is_unset_as_zeek_leaves_it(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "x.pcap", conversation(443, b"\x00hello", b"\x01bye"))
    (r,) = flows_json(path).values()
    assert (r["service"], r["app"]) == (None, {"unidentified": True})


def test_service_port_mismatch_is_grouped_per_server_port_with_first_data_frames(tmp_path):
    frames = sorted(
        lab() + ssh_on(443, cport=40005) + conversation(80, GET, OK, cport=40006),
        key=lambda f: f[0],
    )
    path = pcapgen.write_pcap(tmp_path / "lab.pcap", frames)
    detector = AnomalyDetector()
    result = analyze(str(path), analyzers=[ServiceAnalyzer(), detector])
    found = [a for a in result.results[detector] if a.kind == "service_port_mismatch"]
    by_server = {a.details["server"]: a for a in found}
    # HTTP on 5432 and SSH on 443 (twice, one finding); TLS on 443 and HTTP on 80 are fine
    assert sorted(by_server) == ["198.51.100.20:443", "198.51.100.20:5432"]
    ssh = by_server["198.51.100.20:443"]
    assert ssh.severity == "info" and ssh.uid is None
    assert (ssh.details["service"], ssh.details["port_service"]) == ("ssh", "ssl")
    assert ssh.details["connections"] == 2
    http = by_server["198.51.100.20:5432"]
    conn = next(c for c in result.connections if c.resp_p == 5432)
    assert http.uid == conn.uid and http.details["service"] == "http"
    # evidence: the frames of the first data each way (request, response)
    assert http.evidence == conn.service_frames and len(http.evidence) == 2
    assert "speaks http" in http.summary and "registered to postgresql" in http.summary


def test_first_bytes_are_in_sequence_order_retransmissions_taken_once(tmp_path):
    """Out of order, retransmitted and overlapping segments: the bytes as the stream has them."""
    conv = Conversation(sport=80)
    conv.handshake()
    start = conv.c_next
    head, tail = GET[:10], GET[10:]
    conv.c(PSH | ACK, tail, seq=start + 10)  # arrives before the hole fills
    conv.c(PSH | ACK, head, seq=start)
    conv.c(PSH | ACK, GET[:20], seq=start)  # a retransmission overlapping both
    conv.s(PSH | ACK, OK)
    conv.close()
    path = pcapgen.write_pcap(tmp_path / "o.pcap", conv.frames)
    (c,) = analyze(str(path), analyzers=[ServiceAnalyzer()]).connections
    assert c.service == "http" and c.app["http_host"] == "db.example.test"


def test_at_most_max_bytes_per_direction_and_released_once_both_are_done(tmp_path):
    conv = Conversation(sport=80)
    conv.handshake()
    conv.c(PSH | ACK, GET)
    for _ in range(5):
        conv.s(PSH | ACK, OK + b"x" * 400)
    conv.close()
    path = pcapgen.write_pcap(tmp_path / "big.pcap", conv.frames)
    service = ServiceAnalyzer()
    seen = []

    class Spy(ServiceAnalyzer):
        def _decide(self, conn, st):
            seen.append([len(d) for d in st.data])
            super()._decide(conn, st)

    spy = Spy()
    (c,) = analyze(str(path), analyzers=[spy]).connections
    assert seen == [[len(GET), MAX_BYTES]]
    # decided after the second response segment: the state was let go
    assert spy.state_of(c) is None and c.service == "http"
    assert service.needs  # Needs.PAYLOAD


def test_a_turn_of_a_side_that_stopped_ends_the_peers_first_message(tmp_path):
    """FTP: the greeting stops at USER (the client's turn); the server's 331 then ends the
    client's first message, though the server's side had stopped: decided there, with the
    commands after it never taken."""
    greeting = b"220-Welcome\r\n220 ready\r\n"
    conv = Conversation(sport=21)
    conv.handshake()
    conv.s(PSH | ACK, greeting)
    conv.c(PSH | ACK, b"USER ftp\r\n")
    conv.s(PSH | ACK, b"331 Any password will work\r\n")
    conv.c(PSH | ACK, b"PASS x\r\n")
    conv.s(PSH | ACK, b"230 Anonymous user logged in\r\n")
    conv.close()
    path = pcapgen.write_pcap(tmp_path / "ftp.pcap", conv.frames)
    seen = []

    class Spy(ServiceAnalyzer):
        def _decide(self, conn, st):
            seen.append((bytes(st.data[0]), bytes(st.data[1])))
            super()._decide(conn, st)

    (c,) = analyze(str(path), analyzers=[Spy()]).connections
    assert seen == [(b"USER ftp\r\n", greeting)] and c.service == "ftp"


def test_udp_first_datagram_each_way(tmp_path):
    frames = pcapgen.udp_exchange(dport=5353)
    path = pcapgen.write_pcap(tmp_path / "u.pcap", frames)
    (c,) = analyze(str(path), analyzers=[ServiceAnalyzer()]).connections
    assert c.proto_name == "udp" and c.service_frames == (1, 2)


def test_a_syn_without_data_is_not_data(tmp_path):
    conv = Conversation(sport=22)
    conv.c(SYN, dt=0.0)
    path = pcapgen.write_pcap(tmp_path / "s.pcap", conv.frames)
    (c,) = analyze(str(path), analyzers=[ServiceAnalyzer()]).connections
    assert (c.service, c.app, c.service_frames) == (None, None, None)


# ---------------------------------------------------------------- what answered a port scan
SCAN_PORTS = [*range(20, 39), 80]  # 20 ports; 22, 25 and 80 open, the rest closed (RST/ACK)


def _come_back(port: int, cport: int, t: float, banner: bytes, probe: bytes, reply: bytes):
    """One of nmap -sV's connections to an open port: the handshake, a wait for a banner (its
    NULL probe, 5 s), then `probe` if nothing came, a wait for `reply`, and the scanner's close."""
    conv = Conversation(client=pcapgen.SCANNER4, cport=cport, sport=port, t=t, isn_c=90_000)
    conv.handshake()
    if banner:
        conv.s(PSH | ACK, banner, dt=0.002)
        conv.c(ACK)
    else:
        conv.c(PSH | ACK, probe, dt=5.0)
        if reply:
            conv.s(PSH | ACK, reply)
            conv.c(ACK)
        else:
            conv.s(ACK)
    conv.close("client", combined=True)
    return conv.frames


def version_scan(http_reply: bytes = OK) -> list:
    """nmap -sS -sV on the wire: SYN probes to 20 ports (3 open), then a connection to each open
    one: 22 sends its SSH identification first, 80 answers the GET, 25 says nothing."""
    frames = pcapgen.port_scan("SYN", ports=SCAN_PORTS, open_ports=(22, 25, 80), filtered=())
    t = pcapgen.T0 + 1.0
    frames += _come_back(22, 46022, t, SSH_S, b"", b"")
    frames += _come_back(25, 46025, t + 0.1, b"", b"GET / HTTP/1.0\r\n\r\n", b"")
    frames += _come_back(80, 46080, t + 0.2, b"", b"GET / HTTP/1.0\r\n\r\n", http_reply)
    return sorted(frames, key=lambda f: f[0])


def scan_of(tmp_path, frames, services: bool = True):
    path = pcapgen.write_pcap(tmp_path / "scan.pcap", frames)
    detector = AnomalyDetector(services=ServiceAnalyzer() if services else None)
    result = analyze(str(path), analyzers=[detector])
    (scan,) = [a for a in result.results[detector] if a.kind == "port_scan"]
    return scan, {c.resp_p: c for c in result.connections if c.orig_p != 45000}


def test_port_scan_says_what_answered_each_open_port(tmp_path):
    scan, conns = scan_of(tmp_path, version_scan())
    d = scan.details
    assert (d["ports_probed"], d["open"], d["closed_count"]) == (20, [22, 25, 80], 17)
    host = "198.51.100.20"
    assert d["open_services"] == [
        {"host": host, "port": 22, "proto": "tcp", "state": "open", "spoken_to": True,
         "answered": True, "service": "ssh", "ssh_server": SSH_S.decode().strip(),
         "software": "OpenSSH_9.2p1", "uid": conns[22].uid},
        {"host": host, "port": 25, "proto": "tcp", "state": "open", "spoken_to": True,
         "answered": False, "service": None, "uid": conns[25].uid},
        {"host": host, "port": 80, "proto": "tcp", "state": "open", "spoken_to": True,
         "answered": True, "service": "http", "http_status": 200, "uid": conns[80].uid},
    ]  # fmt: skip
    assert scan.summary.endswith(
        "When it spoke to them: 22/tcp open ssh (OpenSSH_9.2p1); 25/tcp open, nothing answered; "
        "80/tcp open http."
    )


def test_a_silent_server_is_no_service_port_mismatch(tmp_path):
    """The scanner's GET to 25 makes the connection `http`, but the server never wrote: nothing
    says port 25 speaks HTTP. A one-sided capture (no packet of the server at all) still does."""
    path = pcapgen.write_pcap(tmp_path / "scan.pcap", version_scan())
    detector = AnomalyDetector(services=ServiceAnalyzer())
    result = analyze(str(path), analyzers=[detector])
    (conn,) = [c for c in result.connections if c.resp_p == 25 and c.orig_p != 45000]
    assert conn.service == "http" and not conn.payload_sent(1)
    assert "service_port_mismatch" not in [a.kind for a in result.results[detector]]
    client_only = [f for f in conversation(25, GET, OK) if pcapgen._from_client(f[1])]
    path = pcapgen.write_pcap(tmp_path / "one-sided.pcap", client_only)
    detector = AnomalyDetector(services=ServiceAnalyzer())
    found = analyze(str(path), analyzers=[detector]).results[detector]
    assert [a.details["service"] for a in found if a.kind == "service_port_mismatch"] == ["http"]


def test_what_answered_is_the_service_analyzers_name_of_the_responders_bytes(tmp_path):
    # the scanner's GET alone makes the connection `http` (either side enables Zeek's HTTP
    # signature); an answer that is not HTTP is no http server, whatever the request was
    scan, conns = scan_of(tmp_path, version_scan(http_reply=b"\x15\x03\x03\x00\x02\x02\x32"))
    assert conns[80].service == "http" and "http_status" not in conns[80].app
    (entry,) = [e for e in scan.details["open_services"] if e["port"] == 80]
    assert (entry["answered"], entry["service"]) == (True, "unknown")
    assert "80/tcp open, an answer no rule names." in scan.summary


def test_an_open_port_never_spoken_to_says_so(tmp_path):
    frames = pcapgen.port_scan("SYN", ports=SCAN_PORTS, open_ports=(22, 25, 80), filtered=())
    scan, _conns = scan_of(tmp_path, frames)
    assert [(e["port"], e["spoken_to"], e["answered"], e["service"]) for e in
            scan.details["open_services"]] == [(22, False, None, None), (25, False, None, None),
                                                (80, False, None, None)]  # fmt: skip
    assert "When it spoke" not in scan.summary


def test_without_service_detection_a_port_scan_says_nothing_of_what_answered(tmp_path):
    scan, conns = scan_of(tmp_path, version_scan(), services=False)
    assert "open_services" not in scan.details and "When it spoke" not in scan.summary
    assert all(c.service is None and c.app is None for c in conns.values())
    assert scan.summary.endswith("20 TCP ports on 198.51.100.20: 3 open (22, 25, 80), 17 closed.")


def test_anomalies_services_json_names_what_answered(tmp_path):
    path = pcapgen.write_pcap(tmp_path / "scan.pcap", version_scan())
    out = {}
    for flag in ([], ["--services"]):
        result = CliRunner().invoke(cli, ["anomalies", str(path), "--format", "json", *flag])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        (out[bool(flag)],) = [r for r in rows if r["kind"] == "port_scan"]
    assert "open_services" not in out[False]["details"]
    services = {e["port"]: e["service"] for e in out[True]["details"]["open_services"]}
    assert services == {22: "ssh", 25: None, 80: "http"}


# ---------------------------------------------------------------- the pipeline vs Zeek, on the corpus
def _agreement_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "service_agreement.py"
    spec = importlib.util.spec_from_file_location("service_agreement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.corpus
def test_pipeline_services_agree_with_zeek_but_for_the_listed_differences():
    """docs/services.md's table, for the ServiceAnalyzer in the pipeline (the script checks the
    functions on bytes it reassembles itself): every TCP row of Zeek's default-script baselines
    agrees but the differences listed there."""
    if not available():
        skip_or_fail()
    script = _agreement_script()
    zeek = CORPUS / "zeek"
    with open(zeek / "MANIFEST.tsv", newline="") as fh:
        manifest = list(csv.DictReader(fh, delimiter="\t"))
    differ, compared = Counter(), 0
    for entry in manifest:
        baseline, invocation = entry["baseline_path"], entry["baseline_invocation"].split()
        if baseline in ("", "none") or "-b" in invocation or "-br" in invocation:
            continue
        rows = [r for r in script.parse_log(zeek / baseline) if r.get("proto") == "tcp"]
        if not rows or "service" not in rows[0]:
            continue
        config = Config(verify_checksums="-C" not in invocation)
        trace = zeek / "traces" / entry["trace_file"]
        ours = defaultdict(list)
        for c in analyze(str(trace), config=config, analyzers=[ServiceAnalyzer()]).connections:
            ours[(format_addr(c.orig_h), c.orig_p, format_addr(c.resp_h), c.resp_p)].append(c)
        for row in rows:
            key = (row["id.orig_h"], int(row["id.orig_p"]), row["id.resp_h"], int(row["id.resp_p"]))
            ts = script._number(row["ts"]) or 0.0
            conn = min(ours[key], key=lambda c: abs(c.first_ts_ns / 1e9 - ts))
            theirs = "" if row["service"] in ("-", "", "(empty)") else row["service"]
            compared += 1
            if set(filter(None, theirs.split(","))) != set(
                filter(None, (conn.service or "").split(","))
            ):
                differ[(entry["trace_file"], theirs, conn.service)] += 1
    assert compared == 61
    assert differ == {
        # one-sided: the server's identification string alone (Zeek wants the client's too)
        ("ssh__ssh.server-side-half-duplex.pcap", "", "ssh"): 20,
        # named from the control connection's PASV reply in Zeek, not from bytes
        ("ftp__bigtransfer.pcap", "ftp-data", None): 2,
        # no handshake in the trace: Zeek attached no analyzer
        ("wikipedia.pcap", "", "http"): 1,
    }


def test_horizontal_scan_names_what_answered_per_host(tmp_path):
    """Port 22 probed on 12 hosts, two open; the scanner comes back to one of them."""
    frames, t = [], pcapgen.T0
    for i in range(12):
        conv = Conversation(client=pcapgen.SCANNER4, server=f"198.51.100.{i + 1}", cport=45000,
                            sport=22, t=t + i * 0.002, isn_c=77_000 + i)  # fmt: skip
        conv.c(SYN, dt=0.0)
        if i in (2, 7):
            conv.s(SYN | ACK, dt=0.0002)
            conv.c(RST, dt=0.0001, ack=0)
        else:
            conv.s(RST | ACK, seq=0, dt=0.0002)
        frames += conv.frames
    back = Conversation(client=pcapgen.SCANNER4, server="198.51.100.3", cport=46022, sport=22,
                        t=t + 1.0)  # fmt: skip
    back.handshake()
    back.s(PSH | ACK, SSH_S, dt=0.002)
    back.close("client", combined=True)
    scan, _conns = scan_of(tmp_path, sorted(frames + back.frames, key=lambda f: f[0]))
    assert scan.details["direction"] == "horizontal"
    assert [(e["host"], e["spoken_to"], e["service"]) for e in scan.details["open_services"]] == [
        ("198.51.100.3", True, "ssh"),
        ("198.51.100.8", False, None),
    ]
    assert scan.summary.endswith(
        "When it spoke to them: 198.51.100.3:22/tcp open ssh (OpenSSH_9.2p1)."
    )
