#!/usr/bin/env python3
"""Compare flowlens with the conn.log baselines of Zeek's own test suite.

Two sources of truth:

* ``--btest`` (default): every trace in a Zeek checkout's ``testing/btest/Traces`` that a btest
  reads with ``zeek -r $TRACES/...`` and whose conn.log (or a ``zeek-cut`` of it) the test
  compares against a file in ``testing/btest/Baseline``. The checkout is the bare git directory
  the search tool's ``fetch github:zeek/zeek`` leaves under /work/.mirror; the traces and
  baselines are extracted to ``--work`` (under /tmp), never into the repository.
* ``--corpus``: the copies in ../shared/corpus/zeek (what tests/test_zeek_conformance.py runs).

As in the corpus (its README and MANIFEST.tsv): ``-C`` means checksums are not verified, ``-f``
keeps only the packets of a BPF filter (the simple forms btests use: ``tcp``, ``udp``,
``[tcp|udp] port N``, ``not ...``); btest masks ``ts``, so connections are matched by 5-tuple
and, when a 5-tuple was reused, in order. A test that redefines a tunable that changes conn.log
(``tcp_*``, ``udp_inactivity_timeout``, ``likely_server_ports``, a conn key, ...) is reported
with it.

Prints agreement per field (all protocols and TCP alone) and, with ``-v``, every differing
connection.
"""

from __future__ import annotations

import argparse
import gzip
import re
import shlex
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
MIRROR = Path("/work/.mirror/zeek+zeek/repo")
WORK = Path("/tmp/zeek-btest")
BT = "testing/btest/"

#: conn.log fields compared, in the report's order (packets: orig_pkts and resp_pkts together)
GROUPS = {
    "orientation": ("id.orig_h", "id.orig_p"),
    "conn_state": ("conn_state",),
    "history": ("history",),
    "packets": ("orig_pkts", "resp_pkts"),
    "bytes": ("orig_bytes", "resp_bytes"),
    "ip_bytes": ("orig_ip_bytes", "resp_ip_bytes"),
    "duration": ("duration",),
}
#: redefs that change what conn.log says about the same packets
_TUNABLES = re.compile(
    r"redef\s+(tcp_\w+|udp_inactivity_timeout|icmp_inactivity_timeout|non_analyzed_lifetime|"
    r"likely_server_ports|ConnKey::\w+|report_gaps_for_partial|ignore_checksums\w*|"
    r"use_conn_size_analyzer|detect_filtered_trace|table_expire_interval|tunnel\w*|Tunnel::\w+)"
)


# ---------------------------------------------------------------------------------- extraction
def _git(*args: str, mirror: Path) -> bytes:
    return subprocess.run(
        ["git", f"--git-dir={mirror}", *args], check=True, capture_output=True
    ).stdout


def extract(mirror: Path, work: Path) -> None:
    """Copy the btest scripts, the conn baselines and the traces out of the bare mirror (once).
    Blobs the snapshot lacks (its files of 4 MiB and more) are skipped."""
    stamp = work / ".extracted"
    if stamp.exists():
        return
    listing = _git("ls-tree", "-r", "-z", "HEAD", "testing/btest", mirror=mirror).split(b"\0")
    wanted = []
    for entry in listing:
        if not entry:
            continue
        meta, path = entry.decode().split("\t", 1)
        sha = meta.split()[2]
        rel = path[len(BT) :]
        if rel.startswith("Baseline/"):
            if "conn" not in rel.rsplit("/", 1)[-1]:
                continue
        elif not (rel.startswith("Traces/") or rel.endswith((".zeek", ".test", ".sh", ".bro"))):
            continue
        wanted.append((sha, rel))
    proc = subprocess.Popen(
        ["git", f"--git-dir={mirror}", "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    for sha, rel in wanted:
        proc.stdin.write(sha.encode() + b"\n")
        proc.stdin.flush()
        head = proc.stdout.readline().split()
        if len(head) < 3 or head[1] == b"missing":
            continue
        data = proc.stdout.read(int(head[2]))
        proc.stdout.read(1)
        out = work / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("Traces/") and rel.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except OSError:
                continue
            out = out.with_suffix("")
        out.write_bytes(data)
    proc.stdin.close()
    proc.wait()
    stamp.write_text("ok\n")


# --------------------------------------------------------------------------- btest parsing
@dataclass
class Run:
    trace: str  # relative to Traces/
    checksums: bool
    bpf: str | None


@dataclass
class Case:
    test: str
    baseline: Path
    run: Run
    columns: list[str] | None  # zeek-cut columns when the baseline has no header
    tunables: list[str] = field(default_factory=list)
    #: the test's `redef Tunnel::max_depth = N`, run as Config.tunnel_max_depth (else None)
    max_depth: int | None = None

    @property
    def name(self) -> str:
        if self.test == "corpus":
            return self.run.trace
        return f"{self.run.trace} [{self.test}/{self.baseline.name}]"


def _zeek_run(tokens: list[str]) -> Run | None:
    trace = bpf = None
    checksums = True
    i = 1
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("--"):
            i += 1
            continue
        if t.startswith("-") and len(t) > 1:
            letters = t[1:]
            for j, ch in enumerate(letters):
                if ch == "C":
                    checksums = False
                elif ch in "rf":
                    arg = letters[j + 1 :] or (tokens[i + 1] if i + 1 < len(tokens) else "")
                    if not letters[j + 1 :]:
                        i += 1
                    if ch == "r":
                        trace = arg
                    else:
                        bpf = arg
                    break
                elif ch in "eipwGsWX":
                    if not letters[j + 1 :]:
                        i += 1
                    break
        i += 1
    if trace is None:
        return None
    m = re.match(r"\$\{?TRACES\}?/(.+)", trace)
    if not m:
        return None
    return Run(m.group(1), checksums, bpf)


def _commands(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"&&|;|\|\||(?<!\|)\|(?!\|)", line)]


def parse_tests(work: Path) -> list[Case]:
    cases = []
    for script in sorted(work.rglob("*")):
        if not script.is_file() or script.suffix not in (".zeek", ".test", ".sh", ".bro"):
            continue
        rel = script.relative_to(work)
        if rel.parts[0] in ("Traces", "Baseline") or rel.parts[0].startswith("Baseline"):
            continue
        text = script.read_text(errors="replace")
        if "@TEST-EXEC" not in text or "TRACES" not in text:
            continue
        test = str(rel.with_suffix("")).replace("/", ".")
        tunables = sorted(set(_TUNABLES.findall(text)))
        depth = re.search(r"redef\s+Tunnel::max_depth\s*=\s*(\d+)", text)
        max_depth = int(depth.group(1)) if depth else None
        if max_depth is not None:  # (applied, so no longer a tunable flowlens did not follow)
            tunables = [t for t in tunables if t != "Tunnel::max_depth"]
        logs: dict[str, tuple[Run, list[str] | None]] = {}
        for raw in re.findall(r"@TEST-EXEC(?:-FAIL)?:(.*)", text):
            pipeline = _commands(raw)
            source = None
            for idx, cmd in enumerate(pipeline):
                try:
                    tokens = shlex.split(cmd)
                except ValueError:
                    tokens = cmd.split()
                if not tokens:
                    continue
                # output redirection of this command
                target = None
                for k, t in enumerate(tokens):
                    if t in (">", ">>") and k + 1 < len(tokens):
                        target = tokens[k + 1]
                    elif t.startswith(">") and len(t) > 1 and not t.startswith(">&"):
                        target = t.lstrip(">")
                prog = tokens[0]
                if prog == "zeek" or prog.endswith("/zeek"):
                    run = _zeek_run(tokens)
                    if run is not None:
                        logs["conn.log"] = (run, None)
                elif prog == "mv" and len(tokens) == 3 and tokens[1] in logs:
                    logs[tokens[2]] = logs.pop(tokens[1])
                elif prog == "cp" and len(tokens) == 3 and tokens[1] in logs:
                    logs[tokens[2]] = logs[tokens[1]]
                elif prog == "cat" and len(tokens) >= 2 and tokens[1] in logs:
                    source = tokens[1]
                elif prog == "zeek-cut" or prog.endswith("/zeek-cut"):
                    src = source
                    if "<" in tokens:
                        src = tokens[tokens.index("<") + 1]
                    if src in logs and target:
                        args = [t for t in tokens[1:] if not t.startswith(("-", "<", ">"))]
                        args = [a for a in args if a != src and a != target]
                        header = any(t.startswith("-") and "m" in t for t in tokens[1:])
                        logs[target] = (logs[src][0], None if header else args)
                elif prog == "btest-diff" and len(tokens) >= 2 and tokens[1] in logs:
                    name = tokens[1]
                    base = work / "Baseline" / test / name
                    if base.exists():
                        run, cols = logs[name]
                        cases.append(Case(test, base, run, cols, tunables, max_depth))
                if idx == 0 and prog != "cat":
                    source = None
    return cases


# ------------------------------------------------------------------------- baseline reading
def read_baseline(path: Path, columns: list[str] | None) -> list[dict] | None:
    fields = None
    rows = []
    is_conn = True
    for ln in path.read_text(errors="replace").splitlines():
        if ln.startswith("### ") or not ln.strip():
            continue
        if ln.startswith("#path"):
            is_conn = ln.split("\t")[-1].strip() == "conn"
            continue
        if ln.startswith("#fields"):
            fields = ln.split("\t")[1:]
            continue
        if ln.startswith("#"):
            continue
        parts = ln.split("\t")
        if fields is None:
            if columns:
                fields = columns
            else:
                fields = parts  # zeek-cut -m: the first line names the columns
                continue
        rows.append(dict(zip(fields, parts)))
    if not is_conn or not rows:
        return None
    if not any(f in rows[0] for g in GROUPS.values() for f in g if g != GROUPS["orientation"]):
        return None
    return rows


# ------------------------------------------------------------------------------ flowlens side
_BPF = re.compile(r"^(?:(tcp|udp|icmp)\s*)?(?:(?:and\s+)?port\s+(\d+))?$")


def _bpf_keep(bpf: str | None):
    """A predicate over records for the simple BPF filters btests use (None: not understood)."""
    if not bpf:
        return lambda r: True
    text = bpf.strip()
    neg = False
    if text.startswith("not "):
        neg, text = True, text[4:].strip()
    m = _BPF.match(text)
    if not m or not (m.group(1) or m.group(2)):
        return None
    proto, port = m.group(1), m.group(2)

    def keep(r):
        ok = (proto is None or r["proto"] == proto) and (
            port is None or int(port) in (r["id.orig_p"], r["id.resp_p"])
        )
        return ok != neg

    return keep


_CACHE: dict = {}


def flowlens_records(trace: Path, checksums: bool, max_depth: int | None = None) -> list[dict]:
    from flowlens import Config, analyze

    key = (str(trace), checksums, max_depth)
    if key not in _CACHE:
        config = Config(verify_checksums=checksums)
        if max_depth is not None:
            config = Config(verify_checksums=checksums, tunnel_max_depth=max_depth)
        analysis = analyze(str(trace), config=config, analyzers=())
        _CACHE[key] = [_logged(c.to_record()) for c in analysis.connections]
    return _CACHE[key]


# --------------------------------------------------------------------------------- comparing
def _logged(record: dict) -> dict:
    """What Zeek's conn.log would print for a flowlens record: main.zeek set_conn logs
    duration, orig_bytes and resp_bytes only when the duration is > 0."""
    if record.get("duration"):
        return record
    out = dict(record)
    out["duration"] = out["orig_bytes"] = out["resp_bytes"] = None
    return out


def _text(field_name: str, value) -> str:
    if value is None or value == "":
        return "-"
    if field_name == "duration":
        return f"{float(value):.6f}"
    if isinstance(value, bool):
        return "T" if value else "F"
    return str(value)


def _key(proto, oh, op, rh, rp) -> tuple:
    a, b = (oh, str(op)), (rh, str(rp))
    return (proto,) + (a + b if a <= b else b + a)


@dataclass
class Diff:
    case: str
    conn: str
    group: str
    zeek: str
    ours: str


def compare(case_name: str, rows: list[dict], records: list[dict]):
    """(agree, total per (group, proto)), differences."""
    agree, total, diffs = Counter(), Counter(), []
    groups = {g: fs for g, fs in GROUPS.items() if all(f in rows[0] for f in fs)}
    if all(f in rows[0] for f in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")):
        by_key = defaultdict(list)
        for r in records:
            by_key[
                _key(r["proto"], r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"])
            ].append(r)
        for row in rows:
            proto = row.get("proto") or _guess_proto(row, by_key)
            k = _key(proto, row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"])
            label = (
                f"{proto} {row['id.orig_h']}:{row['id.orig_p']} > "
                f"{row['id.resp_h']}:{row['id.resp_p']}"
            )
            cands = by_key.get(k)
            ours = cands.pop(0) if cands else None
            for g, fs in groups.items():
                total[g, proto] += 1
                theirs = " ".join(row[f] for f in fs)
                mine = "(missing)" if ours is None else " ".join(_text(f, ours[f]) for f in fs)
                if g == "duration" and ours is not None and theirs != "-" and mine != "-":
                    same = abs(float(theirs) - float(mine)) < 2e-6
                else:
                    same = theirs == mine
                if same:
                    agree[g, proto] += 1
                else:
                    diffs.append(Diff(case_name, label, g, theirs, mine))
        return agree, total, diffs
    for g, fs in groups.items():
        if g == "orientation":
            continue
        theirs = Counter(" ".join(row[f] for f in fs) for row in rows)
        mine = Counter(" ".join(_text(f, r[f]) for f in fs) for r in records)
        proto = rows[0].get("proto", "tcp")
        total[g, proto] += sum(theirs.values())
        agree[g, proto] += sum((theirs & mine).values())
        extra = sorted((mine - theirs).elements())
        for value, n in (theirs - mine).items():
            for _ in range(n):
                diffs.append(
                    Diff(case_name, "(no ids)", g, value, extra.pop(0) if extra else "(missing)")
                )
    return agree, total, diffs


def _guess_proto(row, by_key) -> str:
    for proto in ("tcp", "udp", "icmp"):
        if by_key.get(
            _key(proto, row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"])
        ):
            return proto
    return "tcp"


# ------------------------------------------------------------------------------------- main
def btest_cases(mirror: Path, work: Path):
    extract(mirror, work)
    out, skipped = [], []
    seen = set()
    for case in parse_tests(work):
        trace = work / "Traces" / case.run.trace
        if not trace.exists() and trace.suffix == ".gz":
            trace = trace.with_suffix("")
        rows = read_baseline(case.baseline, case.columns)
        if rows is None:
            continue
        ident = (case.run.trace, case.run.checksums, case.run.bpf, case.baseline.read_bytes())
        if ident in seen:  # the same baseline content for the same run: count it once
            continue
        seen.add(ident)
        if not trace.exists():
            skipped.append((case.name, "trace not in the snapshot (>= 4 MiB or Git LFS)"))
            continue
        keep = _bpf_keep(case.run.bpf)
        if keep is None:
            skipped.append((case.name, f"BPF filter not understood: {case.run.bpf}"))
            continue
        out.append((case, trace, rows, keep))
    return out, skipped


def corpus_cases():
    import zeekcorpus

    out = []
    for b in zeekcorpus.baselines():
        checksums = not re.search(r"(^|\s)-[A-Za-z]*C", b.invocation)
        m = re.search(r"-f '([^']*)'", b.invocation)
        keep = _bpf_keep(m.group(1) if m else None)
        run = Run(b.trace, checksums, None)
        case = Case("corpus", Path(b.trace), run, None)
        out.append((case, zeekcorpus.ZEEK / "traces" / b.trace, b.rows, keep))
    return out, []


@dataclass
class Results:
    agree: Counter  # by (group, proto)
    total: Counter
    diffs: list
    skipped: list
    tuned: list

    def rate(self, group: str, proto: str | None = None) -> tuple[int, int]:
        a = sum(v for (g, p), v in self.agree.items() if g == group and proto in (None, p))
        t = sum(v for (g, p), v in self.total.items() if g == group and proto in (None, p))
        return a, t


def run(cases, skipped=()) -> Results:
    """flowlens over every case, compared with its baseline."""
    res = Results(Counter(), Counter(), [], list(skipped), [])
    for case, trace, rows, keep in cases:
        try:
            records = [
                r for r in flowlens_records(trace, case.run.checksums, case.max_depth) if keep(r)
            ]
        except Exception as exc:  # a capture flowlens cannot read is a finding too
            res.skipped.append((case.name, f"flowlens failed: {exc}"))
            continue
        a, t, d = compare(case.name, rows, records)
        res.agree.update(a)
        res.total.update(t)
        res.diffs += d
        if case.tunables and d:
            res.tuned.append((case.name, case.tunables))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", action="store_true", help="the copies in ../shared/corpus/zeek")
    ap.add_argument("--mirror", type=Path, default=MIRROR, help="bare git dir of zeek/zeek")
    ap.add_argument("--work", type=Path, default=WORK, help="where traces are extracted")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every difference")
    ap.add_argument("--group", action="append", help="only list differences of these groups")
    ap.add_argument("--tcp", action="store_true", help="only list TCP differences")
    args = ap.parse_args(argv)
    cases, skipped = corpus_cases() if args.corpus else btest_cases(args.mirror, args.work)
    res = run(cases, skipped)
    skipped, tuned, diffs = res.skipped, res.tuned, res.diffs
    print(f"{len(cases)} baselines, {len(skipped)} skipped")
    groups = sorted({g for g, _ in res.total}, key=list(GROUPS).index)
    for label, proto in [("all protocols", None), ("tcp", "tcp")]:
        print(f"-- {label}")
        for g in groups:
            a, t = res.rate(g, proto)
            if t:
                print(f"{g:12} {a:6}/{t:<6} {a / t:7.1%}")
    if args.verbose:
        shown = [
            d
            for d in diffs
            if (not args.group or d.group in args.group)
            and (not args.tcp or d.conn.startswith(("tcp", "(no ids)")))
        ]
        for d in shown:
            print(f"{d.case}\t{d.conn}\t{d.group}\t{d.zeek}\t{d.ours}")
        for name, why in skipped:
            print(f"skipped\t{name}\t{why}")
        for name, t in tuned:
            print(f"tunables\t{name}\t{', '.join(t)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
