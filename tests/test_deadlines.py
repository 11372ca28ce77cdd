"""The deadline sweep: every due deadline fires, a few per loop callback, with the
loop free to poll I/O between batches (an in-memory loop; no sockets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogate.deadlines import DeadlineSweeper


class StepLoop:
    """Just enough of an event loop: a clock, timers and a ready queue, run one
    callback at a time so a test can see what happens between them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.ready: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.timers: list[tuple[float, Callable[..., Any]]] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        handle = Handle(self, callback, args)
        self.ready.append((handle.run, ()))
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any]) -> Handle:
        handle = Handle(self, callback, ())
        self.timers.append((self.now + delay, handle.run))
        return handle

    def advance(self, seconds: float) -> None:
        """Let time pass and move the timers that came due to the ready queue."""
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        self.ready.extend((callback, ()) for _, callback in due)

    def run_one(self) -> bool:
        if not self.ready:
            return False
        callback, args = self.ready.pop(0)
        callback(*args)
        return True


class Handle:
    def __init__(
        self, loop: StepLoop, callback: Callable[..., Any], args: tuple[Any, ...]
    ):
        self.callback, self.args, self.cancelled = callback, args, False

    def run(self) -> None:
        if not self.cancelled:
            self.callback(*self.args)

    def cancel(self) -> None:
        self.cancelled = True


class Connection:
    def __init__(self, deadline: float | None, fired: list[Connection]) -> None:
        self.deadline = deadline
        self.fired = fired

    def check_deadline(self, now: float) -> bool:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.fired.append(self)
            return True
        return False


def make(count: int, deadline: float | None, **options: Any):
    loop = StepLoop()
    fired: list[Connection] = []
    connections = {Connection(deadline, fired) for _ in range(count)}
    sweeper = DeadlineSweeper(loop, lambda: connections, 0.5, **options)  # type: ignore[arg-type]
    sweeper.start()
    return loop, sweeper, connections, fired


def test_nothing_fires_before_its_deadline() -> None:
    loop, _, _, fired = make(10, 1.0)
    loop.advance(0.5)
    while loop.run_one():
        pass
    assert fired == []
    loop.advance(0.5)
    while loop.run_one():
        pass
    assert len(fired) == 10


def test_a_wave_is_spread_over_callbacks() -> None:
    loop, sweeper, connections, fired = make(1000, 1.0, fire_batch=16)
    loop.advance(1.0)
    assert loop.run_one()  # the tick: the first batch
    assert len(fired) == 16
    callbacks = 1
    while loop.run_one():
        callbacks += 1
        # Each callback fires at most a batch, so the loop can poll between them.
        assert len(fired) <= 16 * callbacks
    assert len(fired) == 1000
    assert set(fired) == connections
    assert callbacks == 1000 // 16 + 1
    assert not sweeper.sweeping


def test_scanning_is_bounded_per_callback_too() -> None:
    loop, _, _, fired = make(100, None, scan_batch=30)
    loop.advance(0.5)
    callbacks = 0
    while loop.run_one():
        callbacks += 1
    assert callbacks == 4  # 30 + 30 + 30 + 10 connections checked
    assert fired == []


def test_a_connection_rearmed_between_batches_is_not_fired() -> None:
    loop, _, connections, fired = make(40, 1.0, fire_batch=10)
    loop.advance(1.0)
    loop.run_one()
    spared = [c for c in connections if c not in fired]
    for connection in spared[:5]:
        connection.deadline = loop.now + 5  # became busy: a new deadline
    while loop.run_one():
        pass
    assert len(fired) == 35
    assert not set(spared[:5]) & set(fired)


def test_a_long_sweep_is_not_restarted_by_the_next_tick() -> None:
    loop, _, _, fired = make(100, 1.0, fire_batch=10)
    loop.advance(1.0)
    loop.run_one()
    loop.advance(0.5)  # the next tick is due while the sweep is still going
    while loop.run_one():
        pass
    assert len(fired) == 100
    assert len(set(fired)) == 100


def test_stop_cancels_the_tick_and_a_sweep_in_progress() -> None:
    loop, sweeper, _, fired = make(100, 1.0, fire_batch=10)
    loop.advance(1.0)
    loop.run_one()
    sweeper.stop()
    loop.advance(10)
    while loop.run_one():
        pass
    assert len(fired) == 10
