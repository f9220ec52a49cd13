"""Real connections: a real server and clients in a network namespace, captured by tcpdump.

The lab (tests/netlab.py) runs scripts/traffic.py inside a throwaway namespace on its own
loopback; flowlens must reconstruct what the programs did: who closed first and who holds
TIME_WAIT, a client port reused for a second connection, a refused connection, a RST abort, a
half-close, a UDP exchange and an ICMP port unreachable.
"""

from __future__ import annotations

import pytest
from netlab import Lab

from flowlens import analyze

pytestmark = pytest.mark.netlab

Lab.require_module()

HTTP, CLOSED_PORT, UDP = 8080, 9, 5353


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("real") / "real.pcap"
    with Lab() as lab:
        lab.start_traffic("http-server", HTTP)
        lab.start_traffic("udp-echo", UDP)
        with lab.capture(path):
            client_first = lab.traffic(
                "http-clients", HTTP, "--count", "3", "--close-first", "client"
            )
            server_first = lab.traffic(
                "http-clients", HTTP, "--count", "2", "--close-first", "server"
            )
            reuse = lab.traffic("port-reuse", HTTP, "--bind-port", "45000", "--count", "2")
            refused = lab.traffic("refused", CLOSED_PORT)
            lab.traffic("abort", HTTP)
            lab.traffic("half-close", HTTP)
            lab.traffic("udp-client", UDP, "--count", "2")
            lab.traffic("udp-closed", 9999)
    assert client_first["connections_ok"] == 3 and server_first["connections_ok"] == 2
    assert reuse["outcomes"] == ["ok", "ok"] and refused["refused"] == 1
    return analyze(str(path))


def tcp_to(analysis, port):
    return [c for c in analysis.connections if c.proto_name == "tcp" and c.resp_p == port]


def test_checksums_on_loopback_are_recognised_as_offloaded(capture):
    assert all(c.bad_checksums == 0 for c in capture.connections)
    assert not any(
        "C" in (c.history or "") or "c" in (c.history or "") for c in capture.connections
    )


def test_who_closed_first_holds_time_wait(capture):
    http = [c for c in tcp_to(capture, HTTP) if c.teardown in ("4way", "3way")]
    by_closer = {"orig": 0, "resp": 0}
    for c in http:
        # (ShAD, or ShAF when the request and the FIN share a segment: the half-close client)
        assert c.handshake == "3way" and c.conn_state == "SF" and c.history[:4] in ("ShAD", "ShAF")
        assert c.irtt_ms is not None and c.irtt_ms < 50
        holder = c.orig_state if c.close_initiator == "orig" else c.resp_state
        other = c.resp_state if c.close_initiator == "orig" else c.orig_state
        # the active closer sits in TIME_WAIT (unless a reuse of its port cut it short)
        assert holder in ("TIME_WAIT", "CLOSED") and other == "CLOSED"
        by_closer[c.close_initiator] += 1
    assert by_closer["orig"] >= 3 and by_closer["resp"] >= 4  # 2 server-first + 2 reuse


def test_reused_client_port_is_two_connections(capture):
    reused = [c for c in tcp_to(capture, HTTP) if c.orig_p == 45000]
    assert len(reused) == 2
    first, second = sorted(reused, key=lambda c: c.first_ts_ns)
    assert second.prev_uid == first.uid
    # the server closed first, so the server held TIME_WAIT when the port came back
    assert second.reused_in_time_wait and first.resp_state == "CLOSED"


def test_refused_connection(capture):
    [c] = tcp_to(capture, CLOSED_PORT)
    assert (c.conn_state, c.history, c.handshake, c.orig_state) == (
        "REJ",
        "Sr",
        "rejected",
        "CLOSED",
    )


def test_abort(capture):
    aborted = [c for c in tcp_to(capture, HTTP) if c.teardown == "reset_orig"]
    assert len(aborted) == 1
    [c] = aborted
    assert (
        c.conn_state == "RSTO"
        and c.history.endswith("R")
        and (c.orig_state, c.resp_state) == ("CLOSED", "CLOSED")
    )


def test_udp_and_icmp_unreachable(capture):
    [echo] = [c for c in capture.connections if c.proto_name == "udp" and c.resp_p == UDP]
    assert echo.conn_state == "SF" and echo.pkts == [2, 2]
    [closed] = [c for c in capture.connections if c.proto_name == "udp" and c.resp_p == 9999]
    assert closed.icmp_errors and closed.icmp_errors[0][2:4] == (3, 3)
