"""Test configuration: run every async test on the stdlib loop and on uvloop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop installs wherever CI runs
        pass
    else:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "slow: real processes or long-running tests")


@pytest.fixture(autouse=True)
def _aiogate_loggers_restored() -> Iterator[None]:
    """Put aiogate's loggers back as they were after each test. A test that runs
    ``main()`` or ``configure_logging`` gives them handlers on that test's captured
    stderr, which pytest closes afterwards: a later test's server logging through
    them would print "--- Logging error ---" into that test's own stderr."""
    loggers = [logging.getLogger(name) for name in ("aiogate", "aiogate.error")]
    loggers.append(logging.getLogger("aiogate.access"))
    saved = [
        (lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers
    ]
    yield
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
