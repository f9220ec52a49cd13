"""One-line pointers from a view of a connection to the command that goes further with it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

__all__ = ["MAX_HINTS", "extract_command", "extract_hints", "tseq_command"]

#: hint lines for the first connections shown; the rest get one line saying so
MAX_HINTS = 5


def extract_command(capture: str, uid: str, container: str = "pcap") -> str:
    """The `flowlens extract` command line that writes connection `uid`'s frames of `capture`
    to `<uid>.pcap` (`.pcapng` when `container`, CaptureStats.container, is pcapng: the output
    keeps the input's container)."""
    ext = "pcapng" if container.startswith("pcapng") else "pcap"
    return f"flowlens extract {shlex.quote(capture)} --uid {uid} -w {uid}.{ext}"


def tseq_command(capture: str, uid: str) -> str:
    """The `flowlens plot` command line that draws connection `uid`'s time-sequence graph."""
    return f"flowlens plot {shlex.quote(capture)} --uid {uid} --kind tseq -o {uid}-tseq.png"


def extract_hints(
    capture: str, uids: Sequence[str], shown: int, container: str = "pcap"
) -> list[str]:
    """The lines the ladder and the timeline print on stderr after the `shown` connections
    they showed, the first of which have `uids`: one per connection for the first `MAX_HINTS`,
    then one line for the rest (so a caller keeps only the first MAX_HINTS uids)."""
    out = [f"extract these frames: {extract_command(capture, u, container)}" for u in uids]
    out = out[:MAX_HINTS]
    if shown > len(out):
        out.append(
            f"extract these frames: ... and {shown - len(out)} more connections, the same way "
            f"with their uids"
        )
    return out
