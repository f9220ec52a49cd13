"""Run the damaged-capture fuzz tests (tests/test_fuzz.py) at a larger scale than the suite does.

The suite runs 2,000 mutants through the library and a few per command and option set through
every CLI command; `--scale 10` runs ten times as many of each (about 20,000 + 700 runs, some
minutes on two cores). Every run must end in exit 0 or one `Error:` line, within its time
guard and under its memory guard; a failure names the mutant (index, seed capture, mutators)
and `--seed` with `--save DIR` reproduces it and keeps its file.

    python scripts/fuzz.py --scale 10
    python scripts/fuzz.py --scale 10 --seed 7 --save /tmp/mutants
    python scripts/fuzz.py --scale 3 -k every_command     # only the CLI part
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: mutants the suite runs at scale 1 (tests/test_fuzz.py DEFAULT_COUNT)
SUITE_COUNT = 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="times the suite's size")
    parser.add_argument("--seed", type=int, default=None, help="another random sequence")
    parser.add_argument("--save", metavar="DIR", help="keep the files of failing mutants here")
    parser.add_argument("-k", dest="select", default="mutants", help="pytest -k expression")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    env = dict(os.environ)
    if args.seed is not None:
        env["FLOWLENS_FUZZ_SEED"] = str(args.seed)
    if args.save:
        env["FLOWLENS_FUZZ_SAVE"] = args.save
    count = max(1, round(SUITE_COUNT * args.scale))
    command = [
        sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "test_fuzz.py"),
        "-k", args.select, "--fuzz-count", str(count), "-p", "no:cacheprovider",
    ]  # fmt: skip
    print(f"fuzz: {count} mutants (scale {args.scale:g}): {' '.join(command[2:])}", flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
