"""Write sample_pcaps/ from the same dpkt builders the tests use (tests/pcapgen.py).

python scripts/make_sample_pcaps.py            # rewrite every sample
python scripts/make_sample_pcaps.py --check    # exit 1 if a committed sample differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import pcapgen  # noqa: E402

OUT = ROOT / "sample_pcaps"


def samples() -> dict[str, bytes]:
    out = {name + ".pcap": pcapgen.pcap_bytes(build()) for name, build in pcapgen.SCENARIOS.items()}
    # the same clean connection in other containers and link types
    clean = pcapgen.clean_close()
    out["clean-close.pcapng"] = pcapgen.pcapng_bytes([(1, clean)])
    out["clean-close-nano.pcap.gz"] = pcapgen.compress(pcapgen.pcap_bytes(clean, nano=True), "gzip")
    out["clean-close-sll2.pcap"] = pcapgen.pcap_bytes(pcapgen.relink(clean, 276), linktype=276)
    out["clean-close-ipv6-vlan.pcap"] = pcapgen.pcap_bytes(
        pcapgen.vlan(
            pcapgen.clean_close(client=pcapgen.CLIENT6, server=pcapgen.SERVER6), vids=(100, 200)
        )
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    stale = []
    for name, data in sorted(samples().items()):
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.write_bytes(data)
            print(f"wrote {path.relative_to(ROOT)} ({len(data)} bytes)")
    if stale:
        print(
            "stale samples (run scripts/make_sample_pcaps.py):", ", ".join(stale), file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
