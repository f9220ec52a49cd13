"""Where the public capture corpus is, and what a test that needs it does when it is not there.

The corpus (real captures from Zeek's, nDPI's, Arkime's ... test suites, with what tshark,
tcptrace and Zeek say about them) is not part of the repository: it lives beside the checkout in
``../shared/corpus``, or wherever ``FLOWLENS_CORPUS`` points (``scripts/fetch_corpus.py``
downloads it from the projects it comes from). A test that needs it carries the ``corpus``
mark; without the corpus it is skipped with a reason saying how to get it, except under
``CI=true``, where a missing corpus is a failure (CI must test against it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(
    os.environ.get("FLOWLENS_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)
ZEEK_TRACES = CORPUS / "zeek" / "traces"
OTHER_CAPTURES = CORPUS / "other" / "captures"
TRUTH = CORPUS / "truth"

MISSING = (
    f"the public capture corpus is not at {CORPUS}: set FLOWLENS_CORPUS to its folder, or "
    "fetch it with `python scripts/fetch_corpus.py DIR` (README: The test corpus)"
)

#: the mark of a test that reads the corpus
needs_corpus = pytest.mark.corpus


def available() -> bool:
    """Is the corpus there (both capture folders)?"""
    return ZEEK_TRACES.is_dir() and OTHER_CAPTURES.is_dir()


def skip_or_fail() -> None:
    """Skip the running test with the reason, or fail it under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but {MISSING}", pytrace=False)
    pytest.skip(MISSING)


def captures(*folders: Path, pattern: str = "*") -> list[Path]:
    """The corpus files in `folders` (default: both capture folders) matching `pattern`,
    sorted by folder then name; [] when the corpus is missing (the test's mark then skips)."""
    out: list[Path] = []
    for folder in folders or (ZEEK_TRACES, OTHER_CAPTURES):
        if folder.is_dir():
            out += sorted(p for p in folder.glob(pattern) if p.is_file())
    return out
