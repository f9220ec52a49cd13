"""Shared pytest options."""


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-count",
        type=int,
        default=None,
        help="mutants for tests/test_fuzz.py (default 2000, or $FLOWLENS_FUZZ_COUNT)",
    )
