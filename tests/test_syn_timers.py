"""SYN_SENT and SYN_RECEIVED end on the evidence (issue 16, TcpTracker "states over time").

A SYN_SENT socket sends its SYN again each time its retransmission timer fires, until it gives
up (tcp_retransmit_timer -> tcp_write_timeout, net/ipv4/tcp_timer.c); a listener's request
resends its SYN/ACK each time its timer fires until it is dropped (reqsk_timer_handler,
net/ipv4/inet_connection_sock.c). When a capture shows the retransmissions and runs on past
the moment the next one was due without it, the state ended then; when the capture ends
before, the model (Config's give-up after the first SYN or SYN/ACK) holds. Each case is a tiny
capture built here; `flowlens states --at` is asked just before and just after the moment.
"""

from __future__ import annotations

import json

import pcapgen
import pytest
from click.testing import CliRunner
from pcapgen import ACK, SYN, T0

from flowlens import Config, analyze
from flowlens.cli import cli
from flowlens.core.tcpstate import TIMER_REASONS, TcpState

CLIENT, SERVER = pcapgen.CLIENT4, pcapgen.SERVER4
OTHER = "192.0.2.99"  # the host whose traffic makes a capture run on

#: pcapgen.syn_schedule (net/ipv4/tcp_timer.c's rule) for Linux's default tcp_syn_retries = 6:
#: retransmissions (s after the first SYN) and give-up
LINUX_6_5 = ([1, 2, 3, 4, 5, 7, 11, 19, 35, 67], 131.0)  # tcp_syn_linear_timeouts = 4
BEFORE_6_5 = ([1, 3, 7, 15, 31, 63], 127.0)


def test_the_schedules_are_linux_s():
    assert pcapgen.syn_schedule(6, 4) == LINUX_6_5
    assert pcapgen.syn_schedule(6, 0) == BEFORE_6_5


def syns(times, *, isn=1000, cport=40000) -> list:
    """The client's SYN at 0 and again at each of `times` (s), the same ISN: nothing answers."""
    conv = pcapgen.Conversation(cport=cport, isn_c=isn)
    conv.c(SYN, dt=0.0)
    last = 0.0
    for t in times:
        conv.c(SYN, seq=isn, dt=t - last)
        last = t
    return conv.frames


def runs_on(until_s: float) -> list:
    """Another host's UDP exchange every 10 s up to `until_s`: the capture goes on."""
    frames = []
    for i in range(int(until_s // 10) + 1):
        frames += pcapgen.udp_exchange(src=OTHER, sport=50000 + i, t=T0 + 10.0 * i)
    return frames


def capture(tmp_path, name: str, *parts: list) -> str:
    frames = sorted((f for part in parts for f in part), key=lambda f: f[0])
    return pcapgen.write_pcap(tmp_path / f"{name}.pcap", frames)


def states_at(path: str, at: str, *options: str) -> dict[str, dict]:
    """`flowlens states PATH --at AT --format json`: {host: its counts}."""
    out = CliRunner().invoke(cli, ["states", path, "--at", at, "--format", "json", *options])
    assert out.exit_code == 0, out.output
    return {r["host"]: r for r in map(json.loads, out.stdout.splitlines())}


def count(path: str, at_s: float, host: str, state: str, *options: str) -> int:
    return states_at(path, f"+{at_s}s", *options).get(host, {}).get(state, 0)


def syn_sent_spans(path: str, config: Config | None = None) -> list[tuple[float, float, bool]]:
    """The client's SYN_SENT spans over every record of the attempt: (start s, end s or None,
    timed out), from the first SYN."""
    a = analyze(path, config=config or Config())
    out = []
    for c in a.connections:
        if c.tcp is None:
            continue
        for _side, state, start, end, _frame, timed_out in c.tcp.spans():
            if state is TcpState.SYN_SENT:
                out.append(
                    (
                        round(start / 1e9 - T0, 6),
                        None if end is None else round(end / 1e9 - T0, 6),
                        timed_out,
                    )
                )
    return out


# ---------------------------------------------------------------------------------- SYN_SENT
def test_the_full_linux_6_5_schedule_gives_up_at_131_s(tmp_path):
    """SYNs at 0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s: the RTO armed after the last is 64 s, so
    the socket gave up at 131 s, where the model ends it too. Zeek's attempt timer splits the
    SYNs into six records; the last one still counts from the first SYN (not 67 + 131 s)."""
    retries, give_up = LINUX_6_5
    path = capture(tmp_path, "syn-6.5", syns(retries), runs_on(300))
    assert count(path, give_up - 0.5, CLIENT, "SYN_SENT") == 1
    assert count(path, give_up + 0.5, CLIENT, "SYN_SENT") == 0
    spans = syn_sent_spans(path)
    assert len(spans) == 6  # one per record (Zeek's tcp_attempt_delay, 5 s)
    assert spans[-1] == (67.0, give_up, True)
    # one SYN_SENT at a time over the whole attempt: each record hands it on to the next
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_the_full_pre_6_5_schedule_gives_up_at_127_s_from_the_evidence(tmp_path):
    """SYNs at 0, 1, 3, 7, 15, 31, 63 s (Linux before 6.5): the intervals double from the first
    retransmission on, so the RTO after the SYN at 63 s is 64 s and the socket was gone at 127 s,
    although the model (Config's 131 s, Linux 6.5+'s give-up) would hold it 4 s longer."""
    retries, give_up = BEFORE_6_5
    path = capture(tmp_path, "syn-pre-6.5", syns(retries), runs_on(300))
    assert count(path, give_up - 0.5, CLIENT, "SYN_SENT") == 1
    assert count(path, give_up + 0.5, CLIENT, "SYN_SENT") == 0
    assert syn_sent_spans(path)[-1] == (63.0, give_up, True)


def test_a_capture_cut_short_keeps_the_model(tmp_path):
    """The capture ends at 12 s, before the SYN due at 19 s: nothing shows when the socket gave
    up, so the model holds (131 s after the first SYN), for `--at` after the capture too."""
    path = capture(tmp_path, "syn-cut", syns([1, 2, 3, 4, 5, 7, 11]), runs_on(12))
    assert states_at(path, "end")[CLIENT]["SYN_SENT"] == 1
    assert count(path, 130.5, CLIENT, "SYN_SENT") == 1
    assert count(path, 131.5, CLIENT, "SYN_SENT") == 0
    assert syn_sent_spans(path)[-1] == (11.0, 131.0, True)
    out = CliRunner().invoke(cli, ["flows", path, "--state", "syn-sent", "--format", "json"])
    assert [json.loads(x)["orig_state"] for x in out.stdout.splitlines()] == ["SYN_SENT"]


def test_an_application_that_gave_up_after_two_syns(tmp_path):
    """SYNs at 0 and 1 s, then none while the capture runs on for a minute (a connect()
    timeout of about 2 s closed the socket). With one retransmission the intervals cannot tell
    Linux 6.5+ from older kernels: Config.syn_linear_timeouts = 4 says the RTO stayed 1 s, so
    the socket was gone by 2 s; with 0 (before 6.5) it had doubled, due at 3 s."""
    path = capture(tmp_path, "syn-app-closed", syns([1]), runs_on(60))
    assert count(path, 1.9, CLIENT, "SYN_SENT") == 1
    assert count(path, 2.1, CLIENT, "SYN_SENT") == 0
    assert count(path, 100, CLIENT, "SYN_SENT") == 0
    assert syn_sent_spans(path) == [(0.0, 2.0, True)]
    assert syn_sent_spans(path, Config(syn_linear_timeouts=0)) == [(0.0, 3.0, True)]
    # the timeline shows the inferred end, with no frame
    out = CliRunner().invoke(cli, ["timeline", path, "--port", "40000", "--format", "json"])
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert rows[-1]["frame"] is None and rows[-1]["orig_state"] == "CLOSED"
    assert rows[-1]["time_s"] == 2.0
    assert rows[-1]["notes"] == [TIMER_REASONS[TcpState.SYN_SENT]]
    assert "inferred" in rows[-1]["notes"][0] and "application" in rows[-1]["notes"][0]
    # the same with the connections in two shards (the capture's clock is the same in each)
    assert count(path, 2.1, CLIENT, "SYN_SENT", "--jobs", "2") == 0
    assert count(path, 1.9, CLIENT, "SYN_SENT", "--jobs", "2") == 1


def test_a_capture_ending_while_the_retransmission_may_be_late_keeps_the_model(tmp_path):
    """The SYN due at 2 s may come late by the timer wheel's granularity (8/63 of the 1 s RTO)
    and the path: a capture that ends at 2.15 s has not shown that it never came."""
    last = pcapgen.udp_exchange(src=OTHER, sport=51000, t=T0 + 2.15)[:1]
    path = capture(tmp_path, "syn-app-closed-cut", syns([1]), runs_on(0), last)
    assert count(path, 100, CLIENT, "SYN_SENT") == 1
    assert syn_sent_spans(path) == [(0.0, 131.0, True)]


def test_a_single_syn_is_due_again_after_the_initial_rto(tmp_path):
    """One SYN and nothing after it for a minute: the first RTO is 1 s (TCP_TIMEOUT_INIT,
    RFC 6298 §2.1), so the socket was gone at 1 s."""
    path = capture(tmp_path, "syn-once", syns([]), runs_on(60))
    assert count(path, 0.9, CLIENT, "SYN_SENT") == 1
    assert count(path, 1.1, CLIENT, "SYN_SENT") == 0


def test_no_timer_keeps_syn_sent_to_the_end(tmp_path):
    """Config.syn_sent_timeout_s = 0 turns the timer off, the evidence with it: the attempt
    stays SYN_SENT until a packet ends it, past the capture's end."""
    path = capture(tmp_path, "syn-no-timer", syns([1]), runs_on(200))
    assert syn_sent_spans(path, Config(syn_sent_timeout_s=0)) == [(0.0, None, False)]
    a = analyze(path, config=Config(syn_sent_timeout_s=0))
    (c,) = [c for c in a.connections if c.tcp is not None]
    assert c.orig_state == "SYN_SENT"


@pytest.mark.parametrize("linear", [0, 1, 2, 4])
@pytest.mark.parametrize("retries", [1, 2, 3, 4, 5, 6])
def test_every_kernel_schedule_ends_where_the_kernel_gave_up(tmp_path, retries, linear):
    """For any tcp_syn_retries and tcp_syn_linear_timeouts the kernel's own schedule
    (pcapgen.syn_schedule), with the capture running on: SYN_SENT ends exactly where the kernel
    gave up, from the SYNs alone (Config's 131 s model and 6 retries do not matter), given
    Config.syn_linear_timeouts = the kernel's for the schedules whose intervals cannot tell."""
    sent, give_up = pcapgen.syn_schedule(retries, linear)
    path = capture(tmp_path, f"syn-{retries}-{linear}", syns(sent), runs_on(give_up + 30))
    assert syn_sent_spans(path, Config(syn_linear_timeouts=linear))[-1][1:] == (give_up, True)


# ------------------------------------------------------------------------------ SYN_RECEIVED
def synacks(times, *, client_syns=()) -> list:
    """A SYN at 0 answered by a SYN/ACK 1 ms later, resent at each of `times` (s after the
    first SYN/ACK); the client never ACKs it (its SYN was spoofed, or the ACK lost). The client
    sends its SYN again at each of `client_syns` (s)."""
    conv = pcapgen.Conversation()
    conv.c(SYN, dt=0.0)
    conv.s(SYN | ACK, dt=0.001)
    first = conv.t
    events = [(first + t, "synack") for t in times] + [(T0 + t, "syn") for t in client_syns]
    for at, what in sorted(events):
        if what == "synack":
            conv.s(SYN | ACK, seq=conv.isn_s, dt=at - conv.t)
        else:
            conv.c(SYN, seq=conv.isn_c, dt=at - conv.t)
    return conv.frames


def test_syn_received_full_schedule_is_dropped_at_63_s(tmp_path):
    """SYN/ACKs at 0, 1, 3, 7, 15, 31 s (tcp_synack_retries = 5): the request's timer after
    the last is 32 s (`req->timeout << num_timeout`), so it was dropped at 63 s, as the model
    says."""
    path = capture(tmp_path, "synack-full", synacks([1, 3, 7, 15, 31]), runs_on(200))
    assert count(path, 62.5, SERVER, "SYN_RECEIVED") == 1
    assert count(path, 63.5, SERVER, "SYN_RECEIVED") == 0


def test_syn_received_stopping_early_is_dropped_when_the_next_was_due(tmp_path):
    """SYN/ACKs at 0, 1, 3 s and no more while the capture runs on (a listener whose SYN queue
    is more than half full cuts tcp_synack_retries down, reqsk_timer_handler): the next was due
    4 s after the last, and the request was dropped then, at 7 s, not at the model's 63 s."""
    path = capture(tmp_path, "synack-early", synacks([1, 3]), runs_on(200))
    assert count(path, 6.9, SERVER, "SYN_RECEIVED") == 1
    assert count(path, 7.1, SERVER, "SYN_RECEIVED") == 0
    a = analyze(path)
    (c,) = [c for c in a.connections if c.tcp is not None]
    ends = [
        (round(end / 1e9 - T0, 6), timed_out)
        for side, state, _s, end, _f, timed_out in c.tcp.spans()
        if state is TcpState.SYN_RECEIVED
    ]
    assert ends == [(7.001, True)]
    assert c.resp_state == "CLOSED"


def test_syn_received_answering_a_resent_syn_is_not_its_timer(tmp_path):
    """The client resends its SYN at 1 s: the server's SYN/ACK to it re-arms the request's
    timer without backing off (tcp_check_req), so its SYN/ACKs no longer tell when the timer
    was due, and the model holds (63 s after the first SYN/ACK)."""
    path = capture(tmp_path, "synack-resent-syn", synacks([1.0], client_syns=[1.0]), runs_on(200))
    assert count(path, 62.5, SERVER, "SYN_RECEIVED") == 1
    assert count(path, 63.5, SERVER, "SYN_RECEIVED") == 0


@pytest.mark.parametrize("retries", [1, 2, 3, 4, 5])
def test_every_synack_schedule_ends_where_the_request_was_dropped(tmp_path, retries):
    """tcp_synack_retries = 1 ... 5 (or a queue that cut it down to that): SYN/ACKs at 0 and
    at 2^k - 1 s for k = 1 ... retries, the request dropped at 2^(retries + 1) - 1 s after the
    first (reqsk_timer_handler: `req->timeout << num_timeout`, from 1 s)."""
    path = capture(
        tmp_path,
        f"synack-{retries}",
        synacks([2**k - 1 for k in range(1, retries + 1)]),
        runs_on(100),
    )
    dropped = 2 ** (retries + 1) - 1 + 0.001  # (the first SYN/ACK 1 ms after the SYN)
    assert count(path, dropped - 0.1, SERVER, "SYN_RECEIVED") == 1
    assert count(path, dropped + 0.1, SERVER, "SYN_RECEIVED") == 0


@pytest.mark.parametrize("timeout_s", [0.0, 63.0])
def test_no_syn_received_timer_keeps_it_to_the_end(tmp_path, timeout_s):
    """Config.syn_received_timeout_s = 0: no timer and no evidence; the default: the evidence."""
    path = capture(tmp_path, "synack-no-timer", synacks([1, 3]), runs_on(200))
    a = analyze(path, config=Config(syn_received_timeout_s=timeout_s))
    (c,) = [c for c in a.connections if c.tcp is not None]
    assert c.resp_state == ("SYN_RECEIVED" if timeout_s == 0 else "CLOSED")
