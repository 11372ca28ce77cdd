"""CPython's own ``test_wsgiref`` handler tests, run unchanged on ``aiogate.handlers``.

The module is loaded from the interpreter's ``test`` package with
``wsgiref.handlers.BaseHandler``, ``BaseCGIHandler`` and ``SimpleHandler`` replaced by
ours while it is imported, so its ``ErrorHandler``/``TestHandler`` and every test in
``HandlerTests`` run on aiogate's classes; nothing in the test file is edited. The
``test`` package ships with CPython builds such as pyenv's and python.org's; some
distributions strip it, and then these tests cannot run (they are skipped, saying so).
"""

from __future__ import annotations

import importlib.util
import unittest
import wsgiref.handlers
import wsgiref.simple_server  # imported before the swap: it subclasses SimpleHandler
from types import ModuleType

import pytest

from aiogate import handlers

SWAPPED = ("BaseHandler", "BaseCGIHandler", "SimpleHandler")


def load_on_aiogate() -> ModuleType | None:
    try:
        spec = importlib.util.find_spec("test.test_wsgiref")
    except ImportError:
        return None
    if spec is None or spec.loader is None:
        return None
    saved = {name: getattr(wsgiref.handlers, name) for name in SWAPPED}
    try:
        for name in SWAPPED:
            setattr(wsgiref.handlers, name, getattr(handlers, name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, value in saved.items():
            setattr(wsgiref.handlers, name, value)
    return module


CPYTHON = load_on_aiogate()
NAMES = (
    unittest.TestLoader().getTestCaseNames(CPYTHON.HandlerTests)
    if CPYTHON is not None
    else ["(test.test_wsgiref not installed)"]
)


def test_the_cpython_tests_run_on_our_classes() -> None:
    if CPYTHON is None:
        pytest.skip(
            "this Python has no test.test_wsgiref (its test package is stripped)"
        )
    for name in SWAPPED:
        assert getattr(CPYTHON, name) is getattr(handlers, name)
    assert issubclass(CPYTHON.ErrorHandler, handlers.BaseCGIHandler)
    assert len(NAMES) >= 10  # the handler tests were found, not an empty class


@pytest.mark.parametrize("name", NAMES)
def test_cpython_handler_test(name: str) -> None:
    if CPYTHON is None:
        pytest.skip(
            "this Python has no test.test_wsgiref (its test package is stripped)"
        )
    result = unittest.TestResult()
    CPYTHON.HandlerTests(name).run(result)
    problems = [text for _, text in result.failures + result.errors]
    assert result.testsRun == 1
    assert not problems, "\n".join(problems)
