"""The exception tree of flowlens; the CLI turns each into one `Error: FILE: problem` line.

    FlowlensError                 anything flowlens raises on purpose
    ├── CaptureError              a capture cannot be read at all (names the file)
    │   ├── NotACaptureError      no pcap/pcapng magic, after decompression
    │   ├── EmptyCaptureError     zero bytes
    │   └── TruncatedHeaderError  the file ends inside the global / section header
    └── UsageError                a valid capture, but the request makes no sense
                                  (unknown uid, bad time expression)

Damage *inside* a readable capture (a cut-off record, an undecodable frame) is not an
exception: it is counted in `CaptureStats` and reported as data.
"""

from __future__ import annotations

__all__ = [
    "FlowlensError",
    "CaptureError",
    "NotACaptureError",
    "EmptyCaptureError",
    "TruncatedHeaderError",
    "UsageError",
]


class FlowlensError(Exception):
    """Base class of every error flowlens raises on purpose."""


class CaptureError(FlowlensError):
    """A capture file that cannot be read at all.

    `path` is the name the user gave (or `-` for standard input), `problem` one short phrase.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class NotACaptureError(CaptureError):
    """The bytes are neither pcap nor pcapng (after any decompression)."""


class EmptyCaptureError(CaptureError):
    """The file holds zero bytes."""


class TruncatedHeaderError(CaptureError):
    """The file ends before its global header (pcap) or section header (pcapng) is complete."""


class UsageError(FlowlensError):
    """The capture is fine but the request is not (unknown uid, bad time, bad filter)."""
