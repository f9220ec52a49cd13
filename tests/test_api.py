"""The library surface: docs/api.md and the module docstrings run as doctests."""

from __future__ import annotations

import doctest
import io
import os
from pathlib import Path

import pytest

import flowlens
import flowlens.api

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples name sample_pcaps/ relative to the repository


@pytest.mark.parametrize("doc", ["docs/api.md"])
def test_docs_examples_run(doc, at_root):
    failures, tried = doctest.testfile(
        str(ROOT / doc), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False
    )
    assert tried > 10 and failures == 0


@pytest.mark.parametrize("module", [flowlens, flowlens.api])
def test_module_docstring_examples_run(module, at_root):
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert tried > 0 and failures == 0


def test_every_source_form_gives_the_same_connections(at_root):
    path = "sample_pcaps/incident.pcap"
    by_str = [c.to_record() for c in flowlens.analyze(path, analyzers=()).connections]
    by_path = [c.to_record() for c in flowlens.analyze(Path(path), analyzers=()).connections]
    with open(path, "rb") as f:
        by_file = [c.to_record() for c in flowlens.analyze(f, analyzers=()).connections]
    by_bytes = flowlens.analyze(io.BytesIO(Path(path).read_bytes()), analyzers=())
    assert by_str == by_path == by_file == [c.to_record() for c in by_bytes.connections]
    assert by_bytes.path == "<stream>"


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        flowlens.analyze("sample_pcaps/incident.pcap", flowlens.Config())  # type: ignore[misc]


def test_the_package_ships_its_type_marker():
    assert os.path.exists(Path(flowlens.__file__).parent / "py.typed")
