"""Shared pytest options."""


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
