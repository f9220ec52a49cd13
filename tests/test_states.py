"""`flowlens states`: socket counts per host and state at a moment, over time, listeners, the plot."""

from __future__ import annotations

import json
from collections import Counter

import pcapgen
import pytest
from click.testing import CliRunner

from flowlens.cli import cli
from flowlens.core.connections import format_addr
from flowlens.core.pipeline import analyze
from flowlens.core.tcpstate import TIMER_REASONS, TcpState
from flowlens.reports.states import (
    BRIEF_CLOSE_WAIT,
    DRAIN_SHARE,
    STATES,
    SocketStates,
    states_figure,
    tick_times,
)

CLIENT, SERVER = pcapgen.CLIENT4, pcapgen.SERVER4
N = 20  # connections in the TIME_WAIT pile-up


def capture(tmp_path, name: str, frames=None) -> str:
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(
        pcapgen.pcap_bytes(frames if frames is not None else pcapgen.SCENARIOS[name]())
    )
    return str(path)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def at(path, when, *args) -> dict[str, dict]:
    result = invoke("states", path, "--at", when, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return {r["host"]: r for r in map(json.loads, result.stdout.splitlines())}


@pytest.fixture()
def pileup(tmp_path):
    path = capture(tmp_path, "pileup", pcapgen.time_wait_pileup(count=N))
    a = analyze(path)
    starts = sorted(c.tcp.tw_start[0] for c in a.connections)
    return path, starts


def test_time_wait_counts_until_2msl_after_each_close(pileup):
    path, starts = pileup
    assert len(starts) == N
    two_msl = 60_000_000_000
    assert at(path, "end")[CLIENT]["TIME_WAIT"] == N
    # still N one microsecond before the first TIME_WAIT runs out, long after the last packet
    just_before = (starts[0] + two_msl - 1000) / 1e9
    assert at(path, f"{just_before:.6f}")[CLIENT]["TIME_WAIT"] == N
    # each one leaves exactly 2 x MSL after it started
    middle = (starts[N // 2] + two_msl) / 1e9
    assert at(path, f"{middle:.6f}")[CLIENT]["TIME_WAIT"] == N - N // 2 - 1
    after = (starts[-1] + two_msl) / 1e9
    rec = at(path, f"{after:.6f}")[CLIENT]
    assert rec["TIME_WAIT"] == 0 and rec["total"] == 0
    # the server closed passively: nothing of it lingers
    assert at(path, "end")[SERVER]["total"] == 0


def test_msl_option_moves_the_horizon(pileup):
    path, _ = pileup
    assert at(path, "+25s", "--msl", "10")[CLIENT]["TIME_WAIT"] == 0
    assert at(path, "+25s")[CLIENT]["TIME_WAIT"] == N


def test_json_is_one_object_per_host_with_counts_by_state(pileup):
    path, _ = pileup
    recs = at(path, "end")
    assert list(recs) == [CLIENT, SERVER]
    assert list(recs[CLIENT]) == ["host", "ts", "total", *STATES]


def test_close_wait_leak_shows_on_the_server(tmp_path):
    path = capture(tmp_path, "close-wait")
    end = at(path, "end")
    assert end[SERVER]["CLOSE_WAIT"] == 1 and end[SERVER]["total"] == 1
    assert end[CLIENT]["FIN_WAIT_2"] == 1
    assert at(path, "+60s")[SERVER]["CLOSE_WAIT"] == 1  # two quiet minutes, still leaking


def test_at_accepts_iso_and_offsets(pileup):
    path, _ = pileup
    assert (
        at(path, "2023-11-14T22:13:20.2Z")[CLIENT]["TIME_WAIT"]
        == at(path, "+0.2s")[CLIENT]["TIME_WAIT"]
        == 19
    )
    assert at(path, "+200ms")[CLIENT]["TIME_WAIT"] == 19


def test_counts_agree_with_state_at_everywhere(tmp_path):
    """SocketStates is Connection.state_at summed per host, at every instant sampled."""
    path = capture(tmp_path, "incident")
    a = analyze(path)
    index = SocketStates()
    for c in a.connections:
        index.add(c)
    first, last = a.stats.first_ts_ns, a.stats.last_ts_ns
    times = tick_times(first, last + 70_000_000_000, 0.7)
    for t, counts in zip(times, index.series(times)):
        want: dict[str, Counter] = {}
        for c in a.connections:
            if c.tcp is None:
                continue
            for side, host in ((0, c.orig_h), (1, c.resp_h)):
                state = c.state_at(side, t).value
                if state != "CLOSED":
                    want.setdefault(format_addr(host), Counter())[state] += 1
        assert {h: c for h, c in counts.items() if c} == want, t
        assert index.counts_at(t) == {h: counts.get(h, Counter()) for h in index.host_list()}


def test_table_over_time(pileup):
    path, _ = pileup
    result = invoke("states", path, "--interval", "50ms")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "TCP sockets per host every 0.05 s from 2023-11-14 22:13:20.000000 UTC"
    assert lines[1].split() == [
        "time_s",
        "host",
        "total",
        "SYN_SENT",
        "SYN_RECEIVED",
        "ESTABLISHED",
        "TIME_WAIT",
    ]  # the states' one spelling, as in flows (ss's spellings are input only)
    assert lines[-2].split() == ["0.208", CLIENT, "20", "0", "0", "0", "20"]
    rows = [
        json.loads(x)
        for x in invoke("states", path, "--interval", "0.1", "--format", "json").stdout.splitlines()
    ]
    assert [(r["time_s"], r["host"], r["TIME_WAIT"]) for r in rows if r["host"] == CLIENT] == [
        (0.0, CLIENT, 0), (0.1, CLIENT, 9), (0.2, CLIENT, 19), (0.208499, CLIENT, 20)
    ]  # fmt: skip


def test_filters(pileup, tmp_path):
    path, _ = pileup
    assert list(at(path, "end", "--host", SERVER)) == [SERVER]
    assert at(path, "+0.1s", "--state", "time-wait")[CLIENT]["total"] == 9
    assert at(path, "+0.1s", "--port", "9999") == {}
    leak = capture(tmp_path, "close-wait")
    assert at(leak, "end", "--state", "close-wait") == {
        SERVER: at(leak, "end", "--host", SERVER)[SERVER]
    }


def test_listening_services(tmp_path):
    path = capture(tmp_path, "incident")
    result = invoke("states", path, "--listening", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    got = [
        (r["host"], r["port"], r["state"], r["connections"], r["clients"], r["refused"])
        for r in rows
    ]
    assert got == [
        (SERVER, 8080, "LISTEN", 481, 1, 0),  # 480 API calls + the retransmission one
        (SERVER, 9000, "LISTEN", 1, 1, 0),
        ("198.51.100.30", 5432, "REFUSED", 0, 1, 3),
    ]
    assert rows[2]["service"] == "postgresql"


def test_plot_data(pileup, tmp_path):
    path, starts = pileup
    a = analyze(path)
    index = SocketStates()
    for c in a.connections:
        index.add(c)
    fig, left_out = states_figure(index, a.stats.first_ts_ns, a.stats.last_ts_ns)
    assert left_out == []
    ax, server = fig.axes  # the busiest host first
    assert ax.get_title(loc="left") == f"{CLIENT}: up to {N} sockets, up to {N} in TIME_WAIT"
    assert server.get_title(loc="left") == f"{SERVER}: up to 1 socket"
    areas = {c.get_label(): c for c in ax.collections}
    assert list(areas) == ["SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]
    # the top of the stack is the total: N sockets, all in TIME_WAIT, once every client closed
    tops = areas["TIME_WAIT"].get_paths()[0].vertices[:, 1]
    assert tops.max() == N
    # the x axis runs on after the capture while TIME_WAIT drains, for a quarter of the chart
    # at most: this 0.21 s capture is not a sliver of a 60 s chart; the drain's end is written
    span = (a.stats.last_ts_ns - a.stats.first_ts_ns) / 1e9
    assert ax.get_xlim()[1] == pytest.approx(span / (1 - DRAIN_SHARE), rel=1e-6)
    drained = (starts[-1] + 60e9 - a.stats.first_ts_ns) / 1e9
    assert any(f"TIME_WAIT until\n+{drained:.1f} s" in t.get_text() for t in ax.texts)
    assert not any("TIME_WAIT until" in t.get_text() for t in server.texts)  # none of its own
    png = tmp_path / "states.png"
    result = invoke("states", path, "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _figure_of(path):
    a = analyze(path)
    index = SocketStates()
    for c in a.connections:
        index.add(c)
    return a, states_figure(index, a.stats.first_ts_ns, a.stats.last_ts_ns)[0]


def test_plot_shows_a_short_drain_whole(tmp_path):
    """A capture much longer than 2 x MSL shows its TIME_WAIT drain to the end, uncut."""
    frames = pcapgen.clean_close() + pcapgen.icmp_echo(t=pcapgen.T0 + 400)
    a, fig = _figure_of(capture(tmp_path, "long", sorted(frames, key=lambda f: f[0])))
    [tw_start] = [c.tcp.tw_start[0] for c in a.connections if c.tcp is not None]
    span = (a.stats.last_ts_ns - a.stats.first_ts_ns) / 1e9  # the pings end it at 401 s
    assert fig.axes[0].get_xlim()[1] == pytest.approx(span, rel=1e-6)
    assert (tw_start + 60e9 - a.stats.first_ts_ns) / 1e9 < span


def test_brief_close_wait_is_not_drawn_as_a_leak(tmp_path):
    """Every passive close passes through CLOSE_WAIT for a moment: that is drawn muted, as
    `CLOSE_WAIT (brief)`; a CLOSE_WAIT that lingers is the red CLOSE_WAIT and titled."""
    _a, fig = _figure_of(capture(tmp_path, "clean-close"))
    labels = {c.get_label() for ax in fig.axes for c in ax.collections}
    assert BRIEF_CLOSE_WAIT in labels and "CLOSE_WAIT" not in labels
    assert not any("CLOSE_WAIT" in ax.get_title(loc="left") for ax in fig.axes)
    _a, fig = _figure_of(capture(tmp_path, "close-wait"))
    server = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith(SERVER))
    assert "CLOSE_WAIT" in {c.get_label() for c in server.collections}
    assert "up to 1 in CLOSE_WAIT" in server.get_title(loc="left")


@pytest.mark.parametrize(
    "args, error",
    [
        (
            ["--at", "yesterday"],
            "Error: Invalid value for '--at': 'yesterday' is not a time (use end, +12.5s, epoch seconds or ISO 8601 like 2023-11-14T22:13:20Z)",
        ),
        (
            ["--at", "end", "--interval", "1s"],
            "Error: --at and --interval exclude each other (one moment, or a table over time)",
        ),
        (
            ["--state", "SF"],
            "Error: Invalid value for '--state': 'SF' is a Zeek conn_state; sockets have TCP states (time-wait ...)",
        ),
        (["--host", "nohost"], "Error: Invalid value for '--host': 'nohost' is not an IP address"),
        (
            ["--interval", "0"],
            "Error: Invalid value for '--interval': '0' is not a positive duration",
        ),
    ],
)
def test_bad_arguments_exit_2(pileup, args, error):
    path, _ = pileup
    result = invoke("states", path, *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == error


def test_unreadable_capture_exits_1(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all, really")
    result = invoke("states", bad)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {bad}: ")


def test_auto_interval_stays_bounded_on_absurd_spans():
    """One damaged timestamp (year 2106) must not turn the table into millions of rows."""
    from flowlens.reports.states import auto_interval

    span_ns = (0xFFFFFFF0 - 1_700_000_000) * 1_000_000_000
    step = auto_interval(span_ns)
    assert span_ns / 1e9 / step <= 29
    assert auto_interval(10 * 1_000_000_000) <= 1.0


def test_series_records_are_the_counts_of_hosts_with_sockets_then_or_just_before(tmp_path):
    """The one-sweep rows over time equal what counts_at gives at each time, for the hosts
    with sockets at that time or the time before (a SYN flood: 300 sources come and go)."""
    frames = pcapgen.syn_flood(count=300, duration=3.0) + pcapgen.time_wait_pileup(count=N)
    frames.sort(key=lambda f: f[0])
    a = analyze(capture(tmp_path, "flood", frames))
    index = SocketStates()
    for c in a.connections:
        index.add(c)
    first, last = a.stats.first_ts_ns, a.stats.last_ts_ns
    times = tick_times(first, last + 70_000_000_000, 0.25)
    want, previous = [], {}
    for t in times:
        counts = {h: c for h, c in index.counts_at(t).items() if sum(c.values())}
        for host in index.host_list():
            if host in counts or host in previous:
                c = counts.get(host, Counter())
                want.append({"ts": round(t / 1e9, 6), "time_s": round((t - first) / 1e9, 6),
                             "host": host, "total": sum(c.values()),
                             **{s: c.get(s, 0) for s in STATES}})  # fmt: skip
        previous = counts
    got = index.iter_series_records(times, first)
    assert not isinstance(got, list)  # streamed
    assert list(got) == want == index.series_records(times, first)
    assert len({r["host"] for r in want}) > 300  # the flood's sources are in it


# ---------------------------------------------------------------------- the idle rule (TcpTracker)
def _quiet_captures(tmp_path):
    """An unanswered SYN (retried once), a half-open connection (established, then silent) and,
    to make the capture last, a UDP packet every 50 s for 10 minutes on another host."""
    syn = pcapgen.Conversation(cport=41000)
    syn.c(pcapgen.SYN, dt=0.0)
    syn.c(pcapgen.SYN, seq=syn.isn_c, dt=1.0)
    quiet = pcapgen.Conversation(cport=42000)
    quiet.handshake()
    quiet.exchange()
    ticks = []
    for i in range(13):
        ticks += pcapgen.udp_exchange(src="192.0.2.99", sport=50000 + i, t=pcapgen.T0 + 50.0 * i)
    frames = sorted(syn.frames + quiet.frames + ticks, key=lambda f: f[0])
    return capture(tmp_path, "quiet", frames)


def test_quiet_connections_states_and_flows_agree(tmp_path):
    """An unanswered SYN retried once and then never again while the capture runs on ends
    when its next retransmission was due, 1 s after the retry (Linux 6.5+'s linear SYN
    timeouts, Config.syn_linear_timeouts: the application closed it, tests/test_syn_timers.py
    has the rule's cases); an ESTABLISHED connection with no traffic stays ESTABLISHED to the
    end (Linux keeps it: no keep-alive by default), past the table's 5 min idle timeout. flows
    and states --at end say the same."""
    path = _quiet_captures(tmp_path)
    flows = [json.loads(x) for x in invoke("flows", path, "--format", "json").stdout.splitlines()]
    tcp = {r["id.orig_p"]: (r["orig_state"], r["resp_state"]) for r in flows if r["proto"] == "tcp"}
    assert tcp == {41000: ("CLOSED", "CLOSED"), 42000: ("ESTABLISHED", "ESTABLISHED")}
    at_end = {
        r["host"]: r
        for r in map(
            json.loads,
            invoke("states", path, "--at", "end", "--format", "json").stdout.splitlines(),
        )
    }
    assert at_end[CLIENT]["ESTABLISHED"] == 1 and at_end[CLIENT]["SYN_SENT"] == 0
    assert at_end[CLIENT]["total"] == 1
    # until its next SYN was due (2 s) it is in SYN_SENT, after it no longer
    for at, syn_sent in (("+1.9s", 1), ("+2.1s", 0), ("+100s", 0)):
        counts = {
            r["host"]: r
            for r in map(
                json.loads,
                invoke("states", path, "--at", at, "--format", "json").stdout.splitlines(),
            )
        }
        assert counts[CLIENT]["SYN_SENT"] == syn_sent, (at, counts[CLIENT])
    # the timeline shows the attempt giving up, with no frame
    rows = [
        json.loads(x)
        for x in invoke("timeline", path, "--port", "41000", "--format", "json").stdout.splitlines()
    ]
    assert rows[-1]["frame"] is None and rows[-1]["orig_state"] == "CLOSED"
    assert rows[-1]["time_s"] == 2.0
    assert rows[-1]["notes"] == [TIMER_REASONS[TcpState.SYN_SENT]]
    assert "inferred" in rows[-1]["notes"][0]


def test_tracker_time_wait_end_and_spans(tmp_path):
    """The tracker's accessors: TIME_WAIT ends after 2 x MSL, or where a reuse cut it."""
    a = analyze(capture(tmp_path, "port-reuse", pcapgen.port_reuse(gap=2.0)))
    first, second = [c for c in a.connections if c.tcp is not None]
    t = first.tcp
    side = 0 if t.tw_start[0] is not None else 1
    start = t.tw_start[side]
    assert t.time_wait_ns == 60_000_000_000
    assert t.tw_cut_short and second.reused_in_time_wait
    assert t.time_wait_end_ns(side) == second.first_ts_ns  # cut by the new SYN
    assert t.state_at(side, start).value == "TIME_WAIT"
    assert t.state_at(side, second.first_ts_ns).value == "CLOSED"
    assert t.time_wait_end_ns(1 - side) is None
    tw = [s for s in t.spans() if s[1].value == "TIME_WAIT"]
    assert tw == [(side, tw[0][1], start, second.first_ts_ns, tw[0][4], False)]
    assert t.settled_ns() is None  # nothing left to time out: it is CLOSED
    # the second connection closes normally: its TIME_WAIT runs the full 2 x MSL
    t2 = second.tcp
    side2 = 0 if t2.tw_start[0] is not None else 1
    assert t2.time_wait_end_ns(side2) == t2.tw_start[side2] + 60_000_000_000
    assert t2.state_at(side2, t2.tw_start[side2] + 59_999_999_999).value == "TIME_WAIT"
    assert t2.state_at(side2, t2.tw_start[side2] + 60_000_000_000).value == "CLOSED"
    assert [s[5] for s in t2.spans() if s[1].value == "TIME_WAIT"] == [True]


# ---------------------------------------------------------------- --at outside the capture
# clean-close: first packet at pcapgen.T0 (2023-11-14 22:13:20 UTC), last 18.499 ms later


@pytest.mark.parametrize(
    "at, before",
    [
        ("-5s", "5.000000"),
        ("-250ms", "0.250000"),
        (str(int(pcapgen.T0) - 8000), "8000.000000"),
        ("2023-11-14T22:13:19Z", "1.000000"),
    ],
)
def test_at_before_the_first_packet_is_one_error_line(tmp_path, at, before):
    """However the time is written, before the first packet no socket's state is known."""
    path = capture(tmp_path, "clean-close")
    result = invoke("states", path, "--at", at)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {path}: --at {at} is {before} s before the first packet (2023-11-14 "
        f"22:13:20.000000 UTC); the capture runs to 2023-11-14 22:13:20.018499 UTC\n"
    )


def test_at_long_after_the_last_packet_is_labelled(tmp_path):
    path = capture(tmp_path, "clean-close")
    result = invoke("states", path, "--at", "+1h")
    assert result.exit_code == 0, result.stderr
    title = result.stdout.splitlines()[0]
    assert title == (
        "TCP sockets per host at 2023-11-14 23:13:20.000000 UTC (+3600.000000 s from the first "
        "packet, 3599.981501 s after the last packet)"
    )
    assert (
        f"{path}: --at +1h is 3599.981501 s after the last packet (2023-11-14 22:13:20.018499 "
        "UTC): the end states, with TIME_WAIT and unanswered SYNs running out as their timers say"
    ) in result.stderr.splitlines()
    # the client's TIME_WAIT (2 x 30 s) is over an hour later: nothing is left
    out = invoke("states", path, "--at", "+1h", "--format", "json").stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all(r["total"] == 0 for r in rows)


def test_at_inside_the_capture_is_not_labelled(tmp_path):
    path = capture(tmp_path, "clean-close")
    result = invoke("states", path, "--at", "end")
    assert result.exit_code == 0
    assert "after the last packet" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[0].endswith("(+0.018499 s from the first packet)")


def test_note_before_its_connection_is_a_bad_argument(tmp_path):
    result = invoke("ladder", capture(tmp_path, "clean-close"), "--note", "-1s=early")
    assert result.exit_code == 2
    assert "a note cannot fall before its first packet" in result.stderr


def test_at_before_the_first_packet_is_an_error_even_without_sockets(tmp_path):
    path = capture(tmp_path, "udp-dns")
    result = invoke("states", path, "--at", "-5s")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {path}: --at -5s is 5.000000 s before the first packet"
    )


def test_an_interval_over_a_capture_stretched_by_a_damaged_clock_is_one_error(tmp_path):
    """One frame stamped 30 years late: --interval 1s would be a billion rows, a run that never
    ends; it is one Error line instead (the automatic interval keeps ~30 rows)."""
    frames = pcapgen.clean_close()
    frames[-1] = (frames[-1][0] + 1e9, frames[-1][1])
    path = capture(tmp_path, "clean-close", frames)
    result = invoke("states", path, "--interval", "1s", "--format", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"Error: {path}: --interval 1s makes 1,000,000,000 rows over the capture's "
        "1,000,000,000 s, more than 100,000 (give a longer --interval, or --at)"
    )
    auto = invoke("states", path, "--format", "json")
    assert auto.exit_code == 0 and 0 < len(auto.stdout.splitlines()) <= 3 * 30
