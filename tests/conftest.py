"""Test configuration: run every async test on the stdlib loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
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
