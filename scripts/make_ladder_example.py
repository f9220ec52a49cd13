"""Capture one real loopback HTTP connection and write its ladder to docs/ladder-example.md (+ .png).

Inside a throwaway network namespace (tests/netlab.py; needs root, ip, tcpdump) a real server
and client from scripts/traffic.py talk over 127.0.0.1 with every packet delayed by --delay-ms
(so the handshake legs are visible), the client closing first, while tcpdump records lo. Then
`flowlens ladder` draws the connection as text and as a PNG, and the page is written.

Example: sudo python scripts/make_ladder_example.py            # rewrites docs/ladder-example.*
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from netlab import Lab

PORT = 8080


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--delay-ms", type=float, default=5.0, help="one-way delay of every packet (default 5)"
    )
    parser.add_argument(
        "--body-bytes", type=int, default=20000, help="size of the HTTP response body"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ladder-example.md")
    args = parser.parse_args()
    ok, why = Lab.available()
    if not ok:
        print(f"cannot run the lab: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "loopback-http.pcap"
        with Lab(delay_ms=args.delay_ms) as lab:
            server = lab.start_traffic("http-server", PORT, "--body-bytes", str(args.body_bytes))
            with lab.capture(pcap, bpf_filter=f"tcp port {PORT}"):
                lab.traffic("http-clients", PORT, "--count", "1", "--close-first", "client")
            server.stop()
            delay_method = lab.delay_method
        png = args.out.with_suffix(".png")
        ladder_args = ["ladder", "capture.pcap", "--port", str(PORT), "--note", "1=connect()",
                       "--png", png.name]  # fmt: skip
        run = [sys.executable, "-m", "flowlens", *ladder_args]
        run[run.index("capture.pcap")] = str(pcap)
        run[run.index(png.name)] = str(png)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        text = subprocess.run(run, capture_output=True, text=True, check=True, env=env).stdout
        tcpdump = subprocess.run(["tcpdump", "-n", "-r", str(pcap), "-#", "-tttt"], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(
        "# A real connection, drawn by `flowlens ladder`\n\n"
        "One HTTP request over loopback between two real programs (`scripts/traffic.py` server and\n"
        f"client in a throwaway network namespace, every packet delayed by {args.delay_ms:g} ms with "
        f"{delay_method}),\nrecorded by tcpdump and drawn with\n\n"
        f"    flowlens {shlex.join(ladder_args).replace('capture.pcap', 'loopback-http.pcap')}\n\n"
        "Regenerate with `sudo python scripts/make_ladder_example.py`.\n\n"
        "```\n" + text + "```\n\n"
        f"![the same ladder as a picture]({png.name})\n\n"
        "What tcpdump printed for the same capture (`tcpdump -n -# -tttt -r loopback-http.pcap`):\n\n"
        "```\n" + tcpdump + "```\n"
    )
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
