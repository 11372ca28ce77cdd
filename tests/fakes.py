"""In-memory fakes for the seams between the loop, the threads and the transport."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class FakeLoop:
    """Records ``call_soon_threadsafe`` callbacks; ``run_pending`` runs them in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.wakeup = threading.Event()

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            self.pending.append((callback, args))
        self.wakeup.set()

    def run_pending(self) -> int:
        with self._lock:
            pending, self.pending = self.pending, []
            self.wakeup.clear()
        for callback, args in pending:
            callback(*args)
        return len(pending)
