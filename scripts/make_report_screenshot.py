"""Write docs/report-screenshot.png: the top of `flowlens report sample_pcaps/incident.pcap` as
headless Chromium draws it, so the picture in the README and docs/report.md is today's output.

    python scripts/make_report_screenshot.py                 # rewrite docs/report-screenshot.png
    python scripts/make_report_screenshot.py --browser PATH  # another Chromium/Chrome binary

The page is made by the installed flowlens (the same command a user runs) into a temporary
folder; Chromium loads it from disk with no network (the report needs none).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "sample_pcaps" / "incident.pcap"
OUT = ROOT / "docs" / "report-screenshot.png"
#: the window drawn: a laptop's width, tall enough for the findings, the timeline and the charts
WIDTH, HEIGHT = 1280, 2400
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser(given: str | None) -> str:
    for name in (given,) if given else BROWSERS:
        found = shutil.which(name) if name else None
        if found:
            return found
    raise SystemExit(f"no Chromium found (tried {', '.join(BROWSERS)}); pass --browser PATH")


def make_report(folder: Path) -> Path:
    page = folder / "report.html"
    subprocess.run(
        [sys.executable, "-m", "flowlens", "report", str(CAPTURE), "-o", str(page)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return page


def screenshot(browser: str, page: Path, out: Path, folder: Path) -> None:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={folder / 'profile'}",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", help="Chromium or Chrome binary (default: from PATH)")
    parser.add_argument("--output", type=Path, default=OUT, help=f"default: {OUT}")
    args = parser.parse_args()
    browser = find_browser(args.browser)
    with tempfile.TemporaryDirectory(prefix="flowlens-shot-") as tmp:
        folder = Path(tmp)
        page = make_report(folder)
        shot = folder / "shot.png"
        screenshot(browser, page, shot, folder)
        if not shot.exists() or shot.stat().st_size == 0:
            raise SystemExit(f"{browser} wrote no screenshot")
        shutil.copyfile(shot, args.output)
    print(f"wrote {args.output} ({WIDTH}x{HEIGHT}) from {CAPTURE.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
