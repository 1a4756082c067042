"""The examples in bivec's docstrings run here (those that need a model, a hub or data files are
marked ``# doctest: +SKIP`` and stay as text)."""

import doctest
import importlib
import pkgutil

import pytest

import bivec

MODULES = sorted(m.name for m in pkgutil.walk_packages(bivec.__path__, "bivec."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {name}; see the output above"


def test_some_examples_are_run_not_skipped():
    runnable = 0
    for name in MODULES:
        for test in doctest.DocTestFinder().find(importlib.import_module(name), name):
            runnable += sum(1 for e in test.examples if not e.options.get(doctest.SKIP))
    assert runnable >= 30
