"""Download the public capture corpus that flowlens's corpus tests read, from the projects it
comes from, with their licences, into a folder outside the repository.

The corpus is real captures from the test suites of Zeek, nDPI, Arkime, Suricata-verify,
tcpdump, tcpreplay, PcapPlusPlus, StopDDoS, markofu/pcaps and chrissanders/packets, each pinned
to a commit and checked against its git blob id (scripts/corpus_manifest.tsv names every file).
None of it is part of flowlens: it keeps its projects' licences, which are downloaded beside it
(LICENSES/). The tests find the folder at ../shared/corpus beside the checkout, or wherever
FLOWLENS_CORPUS points:

    python scripts/fetch_corpus.py ~/flowlens-corpus
    FLOWLENS_CORPUS=~/flowlens-corpus python -m pytest -q

`--truth` then writes truth/ (what tshark and tcptrace say about each capture) with the tshark
and tcptrace on this machine; the tests were written against tshark 4.0.17 and tcptrace 6.6.7,
and another version may disagree in places.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

MANIFEST = Path(__file__).resolve().parent / "corpus_manifest.tsv"
RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
LICENCE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING", "COPYING.txt", "LICENCE")


def git_blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes (sha1 of "blob <size>\\0" + bytes)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def entries() -> list[dict]:
    with open(MANIFEST, newline="") as f:
        lines = [ln for ln in f if not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def fetch_file(entry: dict, out: Path) -> str:
    """Fetch one manifest entry into `out`; returns "ok", "kept" (already there) or a problem."""
    dest = out / entry["dest"]
    if (
        dest.exists()
        and entry["then"] != "gunzip"
        and git_blob_id(dest.read_bytes()) == entry["git_blob"]
    ):
        return "kept"
    url = RAW.format(repo=entry["repo"], commit=entry["commit"], path=entry["source_path"])
    try:
        data = download(url)
    except (urllib.error.URLError, OSError) as exc:
        return f"cannot download {url}: {exc}"
    if git_blob_id(data) != entry["git_blob"]:
        return f"{url}: content differs from git blob {entry['git_blob']}"
    if entry["then"] == "gunzip":
        data = gzip.decompress(data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return "ok"


def fetch_licences(rows: list[dict], out: Path) -> list[str]:
    problems = []
    for repo, commit in sorted({(e["repo"], e["commit"]) for e in rows}):
        target = out / "LICENSES" / (repo.replace("/", "__") + ".txt")
        if target.exists():
            continue
        for name in LICENCE_NAMES:
            try:
                text = download(RAW.format(repo=repo, commit=commit, path=name))
            except (urllib.error.URLError, OSError):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f"{repo} @ {commit}: {name}\n\n".encode() + text)
            break
        else:
            problems.append(f"{repo}: no licence file found at its root; see the project's page")
    return problems


def write_zeek_manifest(rows: list[dict], out: Path) -> None:
    """zeek/MANIFEST.tsv: the trace of each conn.log baseline and the command its btest ran."""
    traces = [e for e in rows if e["dest"].startswith("zeek/traces/")]
    baselines = {
        e["dest"][len("zeek/baselines/") : -len(".conn.log")]: e
        for e in rows
        if e["dest"].startswith("zeek/baselines/") and e["dest"].endswith(".conn.log")
    }
    path = out / "zeek" / "MANIFEST.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(
            ["trace_file", "source_repo_path", "commit", "baseline_path", "baseline_invocation"]
        )
        for e in traces:
            name = e["dest"][len("zeek/traces/") :]
            b = baselines.get(name)
            w.writerow([name, e["source_path"], e["commit"],
                        b["dest"][len("zeek/"):] if b else "none",
                        b["zeek_invocation"] if b else "none"])  # fmt: skip


def write_truth(out: Path) -> None:
    """truth/: tshark's conversations, expert flags and initial RTT, and tcptrace's long output,
    for every capture (the commands the corpus's truth was made with)."""
    truth = out / "truth"
    truth.mkdir(exist_ok=True)
    captures = sorted((out / "zeek" / "traces").iterdir()) + sorted(
        (out / "other" / "captures").iterdir()
    )
    for cap in captures:
        runs = {
            "conv.txt": ["tshark", "-n", "-r", str(cap), "-q", "-z", "conv,tcp", "-z", "conv,udp"],
            "expert.tsv": ["tshark", "-n", "-r", str(cap), "-Y", "tcp.analysis.flags", "-T", "fields",
                           "-e", "frame.number", "-e", "frame.time_epoch", "-e", "tcp.stream",
                           "-e", "tcp.flags.str", "-e", "_ws.expert.message", "-E", "occurrence=a",
                           "-E", "aggregator=|"],
            "irtt.tsv": ["tshark", "-n", "-r", str(cap), "-Y", "tcp.analysis.initial_rtt", "-T", "fields",
                         "-e", "tcp.stream", "-e", "tcp.analysis.initial_rtt"],
            "tcptrace.csv": ["tcptrace", "-l", "-n", "--csv", str(cap)],
        }  # fmt: skip
        for suffix, cmd in runs.items():
            try:
                done = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
            except FileNotFoundError:
                sys.exit(f"Error: {cmd[0]} is not installed (apt-get install {cmd[0]})")
            if done.returncode == 0:
                (truth / f"{cap.name}.{suffix}").write_bytes(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder", type=Path, help="where to put the corpus (outside the repository)"
    )
    parser.add_argument(
        "--truth", action="store_true", help="also write truth/ with tshark and tcptrace"
    )
    args = parser.parse_args()
    out = args.folder.expanduser().resolve()
    repo = Path(__file__).resolve().parents[1]
    if out == repo or repo in out.parents:
        print(f"Error: {out}: choose a folder outside the repository", file=sys.stderr)
        return 1
    rows = entries()
    problems = []
    for i, entry in enumerate(rows, 1):
        status = fetch_file(entry, out)
        print(f"[{i}/{len(rows)}] {entry['dest']}: {status}", file=sys.stderr)
        if status not in ("ok", "kept"):
            problems.append(status)
    problems += fetch_licences(rows, out)
    write_zeek_manifest(rows, out)
    if args.truth:
        write_truth(out)
    for p in problems:
        print(f"Warning: {p}", file=sys.stderr)
    print(f"corpus in {out}: run the tests with FLOWLENS_CORPUS={out}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
