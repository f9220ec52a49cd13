"""TIME_WAIT holds summed up as they come (analyzers/anomalies/holds.py): the sweep behind
`time_wait_peak`, `peak_in_use` and their `peak_ts` gives what one sort of every hold at the
end gives, whenever the watermarks let it sweep, and says so when timestamps went backwards."""

from __future__ import annotations

import pickle
import random
from array import array

import pcapgen
import pytest
from click.testing import CliRunner
from pcapgen import ACK, FIN, PSH, SYN

from flowlens import analyze
from flowlens.analyzers.anomalies import holds
from flowlens.analyzers.anomalies.detector import AnomalyDetector, Thresholds
from flowlens.analyzers.anomalies.holds import HOLD, HoldGroup
from flowlens.cli import cli

Q = 1 / 64  # a step that float seconds and the pcap's microseconds both hold exactly
TIME_WAIT = 60.0  # 2 x MSL of the default Config
CLOSE = 8 * Q  # from a conversation's SYN to its last ACK
DEFAULT_FLUSH_MIN = holds.FLUSH_MIN


def conversation(frames, cport, t, closer="client", lasts=0.0, sport=80, isn=1000):
    """One connection from `cport` at `t` (s): handshake, a request every 8 s for `lasts` s,
    a 4-way close begun by `closer`; appends its frames, returns the time of its last one
    (the closer's final ACK, from which its TIME_WAIT runs)."""
    conv = pcapgen.Conversation(cport=cport, sport=sport, t=t, isn_c=isn, isn_s=isn + 77)
    conv.c(SYN, dt=0.0)
    conv.s(SYN | ACK, dt=Q)
    conv.c(ACK, dt=Q)
    while True:
        conv.c(PSH | ACK, b"GET", dt=Q)
        conv.s(ACK, dt=Q)
        if conv.t - t >= lasts:
            break
        conv.t += 8.0 - 2 * Q
    a, b = (conv.c, conv.s) if closer == "client" else (conv.s, conv.c)
    a(FIN | ACK, dt=Q)
    b(ACK, dt=Q)
    b(FIN | ACK, dt=Q)
    a(ACK, dt=Q)
    frames.extend(conv.frames)
    return conv.t


def peak(intervals):
    """Most intervals [a, b) open at once, an end before a start at the same time."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, 0) for _, b in intervals])
    cur = best = 0
    for _, up in events:
        cur += 1 if up else -1
        best = max(best, cur)
    return best


def run(tmp_path, monkeypatch, frames, flush_min, sort=True, **th):
    """The findings about the capture of `frames`, the holds swept every `flush_min` of them,
    and how many sweeps came before the capture's end."""
    path = tmp_path / "holds.pcap"
    if sort:
        frames = sorted(frames, key=lambda f: f[0])
    pcapgen.write_pcap(path, frames)
    monkeypatch.setattr(holds, "FLUSH_MIN", flush_min)
    early = []
    sweep = HoldGroup._sweep

    def counted(self, w, end):
        if w != holds._NEVER:
            early.append(w)
        return sweep(self, w, end)

    monkeypatch.setattr(HoldGroup, "_sweep", counted)
    detector = AnomalyDetector(Thresholds(time_wait_min=2, **th))
    found = analyze(str(path), analyzers=[detector]).results[detector]
    return [a.to_record() for a in found], len(early)


def port_findings(records):
    kinds = ("time_wait_accumulation", "port_exhaustion_risk")
    return [r for r in records if r["kind"] in kinds]


def same_as_one_sort(tmp_path, monkeypatch, frames, **th):
    """The findings with a sweep at every hold that can be swept, and with one at the end;
    asserts they are the same and that the first did sweep early; returns them."""
    streamed, sweeps = run(tmp_path, monkeypatch, frames, 1, **th)
    at_end, none = run(tmp_path, monkeypatch, frames, 10**9, **th)
    assert none == 0 and sweeps > 0
    assert streamed == at_end
    found = port_findings(streamed)
    assert found and all("late_holds" not in r["details"] for r in found)
    return found


def test_holds_arriving_out_of_start_order(tmp_path, monkeypatch):
    # connections that last longer finish (and their holds arrive) after ones that began
    # later; ports reused while still in TIME_WAIT merge into one run of the port in use
    frames, tw = [], []
    for i in range(40):
        lasts = 24.0 if i in (1, 6, 21, 26) else 0.0
        port = 41000 + (i if i < 30 else i - 20)  # the last ten take 41010.. in TIME_WAIT
        end = conversation(frames, port, pcapgen.T0 + i * 0.5, lasts=lasts, isn=1000 + i * 5000)
        tw.append((end, end + TIME_WAIT))
    found = same_as_one_sort(tmp_path, monkeypatch, frames, ephemeral_range=(41000, 41039))
    pile = next(r for r in found if r["kind"] == "time_wait_accumulation")
    # (a reused port's TIME_WAIT ends when the new connection takes it)
    assert pile["details"]["time_wait_peak"] <= peak(tw)
    assert pile["details"]["client_ports"] == 30 and pile["details"]["connections"] == 40


def test_a_time_wait_that_ends_as_another_connection_begins(tmp_path, monkeypatch):
    # each connection's TIME_WAIT begins at the very ns the one of the connection two before
    # it ends: the end comes first, so two are in TIME_WAIT at once, never three
    frames, tw = [], []
    t = pcapgen.T0
    ends: list[float] = []
    for i in range(30):
        start = t if i < 2 else ends[i - 2] + TIME_WAIT - CLOSE
        end = conversation(frames, 42000 + i, start, isn=1000 + i * 5000)
        ends.append(end)
        tw.append((end, end + TIME_WAIT))
        t = start + Q
    found = same_as_one_sort(tmp_path, monkeypatch, frames, ephemeral_range=(42000, 42039))
    pile = next(r for r in found if r["kind"] == "time_wait_accumulation")
    assert pile["details"]["time_wait_peak"] == peak(tw) == 2


@pytest.mark.parametrize("closer", ["client", "server"])
def test_time_wait_on_either_side(tmp_path, monkeypatch, closer):
    frames, tw = [], []
    for i in range(30):
        end = conversation(frames, 43000 + i, pcapgen.T0 + i * 3.0, closer, isn=1000 + i * 5000)
        tw.append((end, end + TIME_WAIT))
    found = same_as_one_sort(tmp_path, monkeypatch, frames)
    pile = next(r for r in found if r["kind"] == "time_wait_accumulation")
    assert pile["details"]["time_wait_side"] == ("orig" if closer == "client" else "resp")
    assert pile["details"]["time_wait_peak"] == peak(tw) == 20


def test_a_long_connection_pins_the_watermark(tmp_path, monkeypatch):
    # one connection of the group stays open for 100 s: nothing that began after it can be
    # swept until it ends, then everything before the next open one
    frames = []
    end = conversation(frames, 44999, pcapgen.T0, lasts=100.0, isn=999)
    tw = [(end, end + TIME_WAIT)]
    for i in range(60):
        end = conversation(frames, 44000 + i, pcapgen.T0 + 1 + i * 4.0, isn=1000 + i * 5000)
        tw.append((end, end + TIME_WAIT))
    found = same_as_one_sort(tmp_path, monkeypatch, frames)
    pile = next(r for r in found if r["kind"] == "time_wait_accumulation")
    assert pile["details"]["time_wait_peak"] == peak(tw)


def test_held_to_the_capture_end(tmp_path, monkeypatch):
    # the last connections are still in TIME_WAIT when the capture ends: their spells and
    # holds are cut there, which is known only at the end
    frames = []
    for i in range(30):
        conversation(frames, 45000 + i, pcapgen.T0 + i * 2.0, isn=1000 + i * 5000)
    conversation(frames, 45100, pcapgen.T0 + 100.0, lasts=16.0)  # (the capture goes on a while)
    found = same_as_one_sort(tmp_path, monkeypatch, frames, ephemeral_range=(45000, 45039))
    assert {r["kind"] for r in found} == {"time_wait_accumulation", "port_exhaustion_risk"}


def test_timestamps_that_go_backwards_are_said(tmp_path, monkeypatch):
    # a second run of connections of the same pair, written after the first but stamped 200 s
    # before it: their holds come after the sweep passed their starts
    frames, early = [], []
    for i in range(60):  # (the first ones finish while the capture goes on: swept)
        conversation(frames, 46000 + i, pcapgen.T0 + 300 + i * 2.0, isn=1000 + i * 5000)
    for i in range(30):
        conversation(early, 46100 + i, pcapgen.T0 + 100 + i * 2.0, isn=9000 + i * 5000)
    frames = sorted(frames, key=lambda f: f[0]) + sorted(early, key=lambda f: f[0])
    streamed, sweeps = run(tmp_path, monkeypatch, frames, 1, sort=False)
    at_end, _ = run(tmp_path, monkeypatch, frames, 10**9, sort=False)
    assert sweeps > 0
    late = [r["details"].get("late_holds") for r in port_findings(streamed)]
    assert late and all(late)  # never a silent peak
    assert all("late_holds" not in r["details"] for r in port_findings(at_end))
    # and the default, which sweeps only groups of thousands, is the one sort
    default, _ = run(tmp_path, monkeypatch, frames, DEFAULT_FLUSH_MIN, sort=False)
    assert default == at_end


def test_sweeping_is_the_same_with_jobs(tmp_path, monkeypatch):
    frames = []
    conversation(frames, 47999, pcapgen.T0, lasts=50.0, isn=999)
    for i in range(40):
        conversation(frames, 47000 + i, pcapgen.T0 + i * 2.5, ("client", "server")[i % 4 == 0])
    path = tmp_path / "jobs.pcap"
    pcapgen.write_pcap(path, sorted(frames, key=lambda f: f[0]))
    monkeypatch.setattr(holds, "FLUSH_MIN", 1)
    out = {}
    for jobs in ("1", "2"):
        res = CliRunner().invoke(
            cli, ["anomalies", str(path), "--format", "json", "--time-wait-min", "2", "-j", jobs]
        )
        assert res.exit_code == 0, res.output
        out[jobs] = res.stdout
    assert out["1"] == out["2"] and "time_wait_accumulation" in out["1"]


# ------------------------------------------------------------------ the group, hold by hold
def reference(rows, end):
    """What the findings read of `rows` (HOLD integers each), by one sort of them all: the
    peaks of ports in use and of each side's TIME_WAIT spells, with their times, the ports in
    order of first use (the arithmetic port_findings.py did before holds.py)."""

    def sweep(starts, ends):
        starts, ends = sorted(starts), sorted(ends)
        cur = best = j = 0
        at = min(starts[0], ends[0]) if starts else 0
        for a in starts:
            while j < len(ends) and ends[j] <= a:
                cur, j = cur - 1, j + 1
            cur += 1
            if cur > best:
                best, at = cur, a
        return best, at

    def cut(b, a):
        return min(b, max(end, a))

    spells = []
    for side in range(2):
        pairs = [(r[3 + 2 * side], r[4 + 2 * side]) for r in rows if r[3 + 2 * side] >= 0]
        spells.append((len(pairs), sweep([a for a, _ in pairs], [cut(b, a) for a, b in pairs])))
    runs, firsts = [], {}
    for r in sorted(rows, key=lambda r: (r[2], r[0])):
        port, a, b = r[2], r[0], r[1]
        firsts.setdefault(port, a)
        if runs and runs[-1][0] == port and a <= runs[-1][2]:
            runs[-1][2] = max(runs[-1][2], b)
        else:
            runs.append([port, a, b])
    in_use = sweep([a for _, a, _ in runs], [cut(b, a) for _, a, b in runs])
    ports = sorted(firsts)
    return in_use, spells, ports, sorted(ports, key=firsts.__getitem__)


def summary(group, end):
    group.finish(end)
    spells = [(s.n, s.peak.result()) for s in group.spells]
    return group.in_use.result(), spells, *group.ports()


def random_holds(rng, n):
    """`n` holds on a coarse clock (ties), few ports (reuse), TIME_WAIT on either side, some
    held past the capture's end; with each one's arrival time (its end, or later)."""
    rows = []
    for _ in range(n):
        start = rng.randrange(0, 400)
        until = start + rng.choice((0, 1, 5, 20, 60, 200))
        tw = [-1, -1, -1, -1]
        side = rng.randrange(3)
        if side < 2:
            a = rng.randrange(start, until + 1)
            tw[2 * side], tw[2 * side + 1] = a, max(a, until)
        rows.append([start, until, rng.randrange(5), *tw, rng.randrange(2), rng.randrange(10**6)])
    return sorted(rows, key=lambda r: r[1] + rng.randrange(30))


def feed(group, rows, lo, hi):
    for i in range(lo, hi):
        group.pending.frombytes(array("q", rows[i]).tobytes())
        # the watermark: no hold yet to come starts before it (the guarantee OpenStarts gives)
        later = [s[0] for s in rows[i + 1 :]]
        group.arrived(rows[i][0], min(later) if later else rows[i][0])


@pytest.mark.parametrize("seed", range(40))
def test_the_sweep_is_the_one_sort(monkeypatch, seed):
    rng = random.Random(seed)
    rows = random_holds(rng, rng.randrange(1, 120))
    end = rng.choice((400, 450, 700))  # (after every start: the capture's last timestamp)
    monkeypatch.setattr(holds, "FLUSH_MIN", rng.choice((1, 2, 7)))
    group = HoldGroup(3)
    half = len(rows) // 2
    feed(group, rows, 0, half)
    group = pickle.loads(pickle.dumps(group))  # (a rotation set's checkpoint)
    feed(group, rows, half, len(rows))
    assert group.late == 0
    assert summary(group, end) == reference(rows, end)
    assert group.n == len(rows) and len(group.pending) == 0
    assert group.frames_lo == sorted(r[HOLD - 1] for r in rows)[:3]
    assert group.frames_hi == sorted((r[HOLD - 1] for r in rows), reverse=True)[:3]
