"""The metrics of every process of one server, in memory they all share.

Owns: ``Region`` (a fixed number of slots of float cells in one anonymous shared
mapping, made by the supervisor before it forks, so every worker inherits it; it
knows only which cells are counters), ``ServerTally`` (the supervisor's use of it,
with the slot layout of ``metrics``), the slot this process writes
(``assign``/``assigned``), and ``sample_process`` (what a process publishes about
itself: CPU, memory, descriptors).

Theory of operation:

1. **One writer per slot.** A worker's event loop is the only writer of its slot
   (``metrics.Metrics``); the supervisor writes a slot only before the worker runs
   (``claim``) and after it is reaped (``fold``). So a cell is never updated by two
   processes, and no lock is taken on the hot path: an aligned 8-byte store is seen
   whole by a reader (x86-64 and arm64 both guarantee that).
2. **Slots are per process, not per worker index**: a replacement is forked before
   the worker it replaces has drained (``--max-requests``, SIGHUP), and both count.
3. **Slot 0 holds the retired.** When the supervisor reaps a worker it adds the
   worker's counters into slot 0 and zeroes the slot (``fold``); CPU comes from the
   kernel's account of the dead process (``wait4``), which covers its last moments.
   So totals survive restarts, crashes, TTOU and SIGHUP.
4. **A seqlock makes a fold look atomic.** ``fold`` makes the sequence cell odd,
   moves the counts, and makes it even again. A reader (``rows``) reads the sequence,
   the rows, and the sequence again, and retries if it was odd or has changed: it
   never sees a worker's counts twice (added to slot 0, not yet zeroed) or not at
   all. The writers' own updates need no such care: each cell only grows. Python
   cannot issue a memory fence: on x86-64 the processor keeps stores in order, and
   loads in order, which is all a seqlock needs; on a weakly ordered processor
   (arm64) that order is not promised, only made very likely by the thousands of
   instructions between the sequence and the counts, and a misordered read would
   show one scrape one worker's counts off.
5. **Fixed size**: the mapping cannot grow once workers share it. A worker started
   when every slot is in use (dozens of TTIN) gets a slot of its own: it serves,
   and its counts are missing from the sum (the supervisor logs it).

The supervisor calls ``claim``/``fold``/``release`` from its main thread; a worker's
event loop calls ``rows`` when the metrics endpoint is asked.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import resource
import time
from collections.abc import Callable, Sequence
from typing import cast

from .metrics import CELLS, COUNTERS, Cell, Kind, write_process

__all__ = [
    "Region",
    "RetryLater",
    "ServerTally",
    "assign",
    "assigned",
    "sample_process",
]

_SEQ = 0  # the sequence cell, in the header
_HEADER = 8  # cells before slot 0 (one 64-byte line: the sequence alone on it)
#: How often a reader retries while the supervisor folds (a fold takes a few
#: microseconds, unless the supervisor is descheduled in the middle of one).
_ATTEMPTS = 1000


class RetryLater(Exception):
    """The supervisor stayed in a fold for the whole of a reader's retries."""


class Region:
    """``slots`` rows of ``cells`` float cells; cells ``counters`` (and those
    only) are folded into slot 0 when a process is gone. Cell 0 of a row is the pid
    of its process (0: free; -1: claimed, not yet forked). ``shared=False``: in
    this process's memory alone (one server, and tests)."""

    def __init__(
        self,
        slots: int,
        cells: int,
        counters: range,
        *,
        shared: bool = True,
    ) -> None:
        self.slots = slots
        self.cells = cells
        self.counters = counters
        size = (_HEADER + slots * cells) * 8
        if shared:
            # MAP_SHARED | MAP_ANONYMOUS: inherited across fork, not copied on
            # write; pages are only backed once touched.
            self._buffer: mmap.mmap | bytearray = mmap.mmap(
                -1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
            )
        else:
            self._buffer = bytearray(size)
        self._view = memoryview(self._buffer).cast("d")

    def slot(self, index: int) -> memoryview[float]:
        """The cells of slot ``index``, for its single writer."""
        start = _HEADER + index * self.cells
        return self._view[start : start + self.cells]

    # -- the supervisor ----------------------------------------------------------

    def claim(
        self,
        labels: Callable[[int], Sequence[tuple[int, float]]],
        *,
        last: bool = False,
    ) -> int:
        """Take the lowest free slot after slot 0 (``last``: the last slot) for a
        process about to start, writing ``labels(index)`` ((cell, value) pairs)
        before it counts as in use; its index, or -1 if none is free. The pid cell
        says -1 until ``started``."""
        for index in [self.slots - 1] if last else range(1, self.slots):
            cells = self.slot(index)
            if cells[0] == 0:
                for cell, value in labels(index):
                    cells[cell] = value
                cells[0] = -1
                return index
        return -1

    def started(self, index: int, pid: int) -> None:
        self.slot(index)[0] = pid

    def fold(self, index: int, overrides: Sequence[tuple[int, float]] = ()) -> None:
        """The process of slot ``index`` is gone: add its counters to slot 0 and
        free the slot, atomically for readers (rule 4). ``overrides``: (cell,
        value) pairs folded instead of the cell's last value when larger (CPU)."""
        view, retired, cells = self._view, self.slot(0), self.slot(index)
        values = _floats(cells)
        for cell, value in overrides:
            values[cell] = max(values[cell], value)
        view[_SEQ] += 1  # odd: a fold is under way
        try:
            for cell in self.counters:
                if values[cell]:
                    retired[cell] += values[cell]
            for cell in range(self.cells):
                cells[cell] = 0.0
        finally:
            view[_SEQ] += 1

    def release(self, index: int) -> None:
        """Free a slot whose process never ran (the fork failed)."""
        self.fold(index)

    # -- readers -----------------------------------------------------------------

    def rows(self) -> list[list[float]]:
        """Slot 0 and every slot in use, as one consistent view (rule 4). Raises
        ``RetryLater`` if a fold outlasted every retry."""
        view = self._view
        for _ in range(_ATTEMPTS):
            sequence = view[_SEQ]
            if sequence % 2 == 0:
                rows = [_floats(self.slot(0))]
                for index in range(1, self.slots):
                    cells = self.slot(index)
                    if cells[0] != 0:
                        rows.append(_floats(cells))
                if view[_SEQ] == sequence:
                    return rows
            os.sched_yield()  # let the supervisor finish its fold
        raise RetryLater("the metrics are being updated; try again")


def _floats(cells: memoryview[float]) -> list[float]:
    # (typeshed types memoryview.tolist() as a list of int whatever the format.)
    return cast("list[float]", cells.tolist())


class ServerTally:
    """The supervisor's side: the region, a slot for each worker it forks (and one
    for itself: its own process sample), folded when the worker is reaped. Runs in
    the supervisor's main thread, and its ``enter`` in a new worker."""

    def __init__(self, workers: int) -> None:
        # Room for TTIN and for replacements forked while their predecessors drain;
        # an untouched slot costs address space only.
        self.region = Region(2 + max(64, 4 * workers), CELLS, COUNTERS)
        self._slots: dict[int, int] = {}  # worker pid -> slot
        self._own = self.region.claim(
            lambda index: [(Cell.KIND, Kind.SUPERVISOR)], last=True
        )
        self.region.started(self._own, os.getpid())
        self.full = False  # the last worker forked found no free slot

    def before_fork(self) -> int:
        """A slot for the worker about to be forked (-1: none free)."""
        index = self.region.claim(
            lambda index: [(Cell.KIND, Kind.WORKER), (Cell.NUMBER, index - 1)]
        )
        self.full = index < 0
        return index

    def enter(self, index: int) -> None:
        """Runs in the new worker: its server writes slot ``index``."""
        assign(self.region, index)

    def forked(self, index: int, pid: int | None) -> None:
        """The fork of the worker given slot ``index`` is done (None: it failed)."""
        if index < 0:
            return
        if pid is None:
            self.region.release(index)
        else:
            self.region.started(index, pid)
            self._slots[pid] = index

    def reaped(self, pid: int, usage: resource.struct_rusage) -> None:
        """Worker ``pid`` is gone: keep its counts (and all the CPU it used)."""
        index = self._slots.pop(pid, None)
        if index is not None:
            cpu = usage.ru_utime + usage.ru_stime
            self.region.fold(index, [(Cell.CPU, cpu)])

    def publish(self) -> None:
        """The supervisor's own process sample (CPU, memory, descriptors)."""
        write_process(self.region.slot(self._own), sample_process())


# -- this process's slot ---------------------------------------------------------

_assigned: tuple[Region, int] | None = None


def assign(region: Region | None, index: int = -1) -> None:
    """Runs in a new worker: its server writes slot ``index`` of ``region``."""
    global _assigned
    _assigned = None if region is None or index < 0 else (region, index)


def assigned() -> tuple[Region, int] | None:
    """The region and slot this process was given by its supervisor, if any."""
    return _assigned


# -- what a process says about itself --------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _linux_start_time() -> float | None:
    """This process's start, Unix time, from /proc (None elsewhere)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            # The fields after the command (which may hold spaces): field 3 on, so
            # starttime (field 22) is at 19.
            fields = stat.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as system:
            boot = next(
                float(line.split()[1]) for line in system if line.startswith(b"btime ")
            )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return None


_started: float | None = None


def start_time() -> float:
    """When this process started (elsewhere than Linux: when it imported aiogate,
    or forked)."""
    global _started
    if _started is None:
        _started = _linux_start_time() or time.time()
    return _started


def _forgot_start() -> None:
    global _started
    _started = None
    start_time()  # now, so that elsewhere than Linux it is the fork's time


os.register_at_fork(after_in_child=_forgot_start)


def sample_process() -> dict[str, float]:
    """CPU seconds, resident and virtual memory, open and allowed descriptors of
    this process, as well as the platform tells them (Linux: /proc)."""
    times = os.times()
    sample = {
        "cpu": times.user + times.system,
        "max_fds": float(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
    }
    try:
        with open("/proc/self/statm", "rb") as statm:
            size, resident = statm.read().split()[:2]
        sample["virtual"] = int(size) * _PAGE
        sample["resident"] = int(resident) * _PAGE
        sample["fds"] = len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: the peak, which is what getrusage knows
        usage = resource.getrusage(resource.RUSAGE_SELF)
        # ru_maxrss is in bytes on macOS, in KiB elsewhere.
        scale = 1 if os.uname().sysname == "Darwin" else 1024
        sample["resident"] = usage.ru_maxrss * scale
        with contextlib.suppress(OSError):
            sample["fds"] = len(os.listdir("/dev/fd"))
    sample["started"] = start_time()
    return sample
