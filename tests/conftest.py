"""Shared pytest options, and the corpus mark (tests/corpus.py)."""

import corpus
import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-count",
        type=int,
        default=None,
        help="mutants for tests/test_fuzz.py (default 2000, or $FLOWLENS_FUZZ_COUNT)",
    )
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ from the current output instead of comparing (review the diff)",
    )


def pytest_sessionstart(session):
    """Refuse to test a compiled module older than its source: Python would import the old
    compiled one and the edit would go untested (rebuild with `pip install -e .`)."""
    import pytest

    from flowlens.compiled import stale_modules

    stale = stale_modules()
    if stale:
        pytest.exit(
            f"compiled modules older than their sources: {', '.join(stale)}; "
            "rebuild with `pip install -e .` (or `python setup.py build_ext --inplace`)",
            returncode=4,
        )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "corpus: reads the public capture corpus (../shared/corpus or $FLOWLENS_CORPUS)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A corpus test without the corpus: skipped with how to get it, failed under CI=true."""
    if item.get_closest_marker("corpus") is not None and not corpus.available():
        corpus.skip_or_fail()
