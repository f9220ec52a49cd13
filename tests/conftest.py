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
