"""ResponseWriter: coalescing, backpressure, the spool, the minimum rate, timeouts,
disconnects and file items (their duplicates closed exactly once), on a fake loop."""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any

import pytest

from aiogate import writer as writer_module
from aiogate.errors import ClientDisconnected, WriteTimeout
from aiogate.writer import (
    ABORT,
    DATA,
    END,
    FILE,
    SPOOL,
    SPOOL_GRACE,
    START,
    Item,
    ResponseWriter,
)
from tests.fakes import FakeLoop


def make_writer(**kwargs: Any) -> tuple[ResponseWriter, FakeLoop, list[list[Item]]]:
    loop = FakeLoop()
    delivered: list[list[Item]] = []
    writer = ResponseWriter(
        loop, delivered.append, timeout=kwargs.pop("timeout", 5.0), **kwargs
    )
    return writer, loop, delivered


def test_small_response_is_one_wakeup_and_one_delivery() -> None:
    writer, loop, delivered = make_writer()
    writer.start("200 OK", [("Content-Length", "2")])
    writer.write(b"hi")
    writer.write(b"")  # empty writes are not items
    writer.finish()
    assert loop.run_pending() == 1
    assert delivered == [
        [(START, "200 OK", [("Content-Length", "2")], "1.1"), (DATA, b"hi"), (END,)]
    ]


def test_items_after_a_drain_schedule_another() -> None:
    writer, loop, delivered = make_writer()
    writer.start("200 OK", [])
    loop.run_pending()
    writer.write(b"a")
    loop.run_pending()
    assert delivered == [[(START, "200 OK", [], "1.1")], [(DATA, b"a")]]


def test_finish_and_abort_end_once() -> None:
    writer, loop, delivered = make_writer()
    writer.finish()
    writer.abort()
    writer.finish()
    assert writer.ensure_ended() is False
    loop.run_pending()
    assert delivered == [[(END,)]]


def test_ensure_ended_aborts_a_forgotten_response() -> None:
    writer, loop, delivered = make_writer()
    writer.start("200 OK", [])
    assert writer.ensure_ended() is True
    loop.run_pending()
    assert delivered == [[(START, "200 OK", [], "1.1"), (ABORT,)]]


def test_write_blocks_while_transport_paused_then_continues() -> None:
    writer, loop, delivered = make_writer()
    writer.set_write_paused(True)
    writer.start("200 OK", [])
    done = threading.Event()

    def app_thread() -> None:
        writer.write(b"x")
        done.set()

    thread = threading.Thread(target=app_thread)
    thread.start()
    assert not done.wait(0.1)  # blocked: the client is not reading
    writer.set_write_paused(False)
    assert done.wait(5)
    thread.join(5)
    loop.run_pending()
    assert delivered == [[(START, "200 OK", [], "1.1"), (DATA, b"x")]]


def test_write_blocks_above_high_water_until_drained() -> None:
    writer, loop, delivered = make_writer(high_water=4)
    writer.write(b"12345")  # over high water now; the next write must wait
    done = threading.Event()
    thread = threading.Thread(target=lambda: (writer.write(b"6"), done.set()))
    thread.start()
    assert not done.wait(0.1)
    assert loop.wakeup.wait(5)
    loop.run_pending()  # the loop takes the queued bytes: the writer may go on
    assert done.wait(5)
    thread.join(5)
    loop.run_pending()
    assert [item for batch in delivered for item in batch] == [
        (DATA, b"12345"),
        (DATA, b"6"),
    ]


def test_write_timeout_raises_and_aborts() -> None:
    writer, loop, delivered = make_writer(timeout=0.05)
    writer.set_write_paused(True)
    with pytest.raises(WriteTimeout):
        writer.write(b"x")
    loop.run_pending()
    assert delivered == [[(ABORT,)]]
    with pytest.raises(ClientDisconnected):
        writer.write(b"y")


def test_close_wakes_blocked_writer_and_fails_later_calls() -> None:
    writer, _, _ = make_writer()
    writer.set_write_paused(True)
    errors: list[BaseException] = []

    def app_thread() -> None:
        try:
            writer.write(b"x")
        except ClientDisconnected as exc:
            errors.append(exc)

    thread = threading.Thread(target=app_thread)
    thread.start()
    writer.close()
    thread.join(5)
    assert len(errors) == 1
    with pytest.raises(ClientDisconnected):
        writer.start("200 OK", [])
    writer.abort()  # aborting a closed writer is quiet
    assert writer.ensure_ended() is False


# -- the spool (rules 3 to 7) --------------------------------------------------------


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every spool file the writers of a test open."""
    opened: list[Any] = []
    real = writer_module._open_spool

    def open_spool() -> Any:
        opened.append(real())
        return opened[-1]

    monkeypatch.setattr(writer_module, "_open_spool", open_spool)
    return opened


def read_all(writer: ResponseWriter, batches: list[list[Item]]) -> bytes:
    """As the loop does: read every byte the SPOOL items announced."""
    out = b""
    for batch in batches:
        for item in batch:
            if item[0] == SPOOL:
                left = item[1]
                assert isinstance(left, int)
                while left:
                    data = writer.read_spool(min(left, 7))
                    out += data
                    left -= len(data)
    return out


def test_a_client_keeping_up_costs_no_spool(spools: list[Any]) -> None:
    writer, loop, delivered = make_writer(spool_size=1024)
    writer.start("200 OK", [])
    for _ in range(100):
        writer.write(b"x" * 1000)
        loop.run_pending()  # the loop keeps up
    writer.finish()
    loop.run_pending()
    assert spools == []
    assert all(item[0] != SPOOL for batch in delivered for item in batch)


def test_a_client_behind_gets_the_spool_and_the_app_goes_on(
    spools: list[Any],
) -> None:
    writer, loop, delivered = make_writer(spool_size=1024)
    writer.set_write_paused(True)  # the client is not reading
    writer.start("200 OK", [])
    began = time.monotonic()
    writer.write(b"abc")  # waits SPOOL_GRACE, then spools: no loop needed
    assert time.monotonic() - began >= SPOOL_GRACE
    writer.set_write_paused(False)  # caught up: later writes still go behind
    writer.write(b"def")
    writer.finish()
    loop.run_pending()
    # One SPOOL item for both writes, and the END behind it.
    assert delivered == [[(START, "200 OK", [], "1.1"), (SPOOL, 6), (END,)]]
    assert len(spools) == 1
    assert writer.spooled
    assert read_all(writer, delivered) == b"abcdef"
    assert spools[0].closed  # ended and all read: released (rule 7)


def test_a_client_that_catches_up_within_the_grace_gets_no_spool(
    spools: list[Any],
) -> None:
    writer, loop, delivered = make_writer(spool_size=1024)
    writer.set_write_paused(True)
    thread = threading.Thread(target=writer.write, args=(b"x",))
    thread.start()
    writer.set_write_paused(False)
    thread.join(5)
    loop.run_pending()
    assert delivered == [[(DATA, b"x")]]
    assert spools == []


def test_once_drained_writes_are_queued_again(spools: list[Any]) -> None:
    writer, loop, delivered = make_writer(spool_size=1024)
    writer.set_write_paused(True)
    writer.write(b"abc")
    writer.set_write_paused(False)
    loop.run_pending()
    assert read_all(writer, delivered) == b"abc"
    writer.write(b"d")
    loop.run_pending()
    assert delivered[-1] == [(DATA, b"d")]
    assert writer.spooled  # kept for the rest of the response
    writer.finish()
    assert spools[0].closed


def test_the_spool_is_a_ring_and_a_big_write_waits_for_room(
    spools: list[Any],
) -> None:
    # 10 bytes of spool, 26 written at once: they go in as the loop reads, wrapping
    # around the file's end, which never grows past 10 bytes.
    writer, loop, delivered = make_writer(spool_size=10)
    writer.set_write_paused(True)
    data = b"abcdefghijklmnopqrstuvwxyz"
    thread = threading.Thread(target=writer.write, args=(data,))
    thread.start()
    received = b""
    done = 0  # batches read
    deadline = time.monotonic() + 5
    while received != data:
        assert time.monotonic() < deadline
        loop.wakeup.wait(0.01)
        loop.run_pending()
        received += read_all(writer, delivered[done:])
        done = len(delivered)
    thread.join(5)
    assert len(delivered) > 2  # in several rounds
    assert os.fstat(spools[0].fileno()).st_size <= 10
    writer.finish()
    assert spools[0].closed  # ended, and every byte was read


def test_below_the_min_rate_the_waiting_thread_is_dropped() -> None:
    # No spool: each write waits for the loop to take the one before. The loop
    # takes 10 bytes every 20 ms, 100 per 0.2 s window, under 1000 bytes/s x 0.2 s.
    writer, loop, delivered = make_writer(
        timeout=0.2, high_water=0, spool_size=0, min_rate=1000
    )
    errors: list[BaseException] = []

    def app_thread() -> None:
        try:
            while True:
                writer.write(b"x" * 10)
        except WriteTimeout as exc:
            errors.append(exc)

    thread = threading.Thread(target=app_thread)
    thread.start()
    while thread.is_alive():
        loop.run_pending()
        thread.join(0.02)
    loop.run_pending()
    assert "under the minimum of 1000 bytes/s" in str(errors[0])
    assert delivered[-1][-1] == (ABORT,)


def test_min_rate_zero_is_an_idle_rule() -> None:
    # The same client, with no minimum: a byte per window is enough.
    writer, loop, _ = make_writer(timeout=0.2, high_water=0, spool_size=0)
    stop = threading.Event()
    errors: list[BaseException] = []

    def app_thread() -> None:
        try:
            while not stop.is_set():
                writer.write(b"x" * 10)
        except WriteTimeout as exc:
            errors.append(exc)

    thread = threading.Thread(target=app_thread)
    thread.start()
    deadline = time.monotonic() + 0.6  # three windows
    while time.monotonic() < deadline:
        loop.run_pending()
        thread.join(0.02)
    stop.set()
    while thread.is_alive():
        loop.run_pending()
        thread.join(0.02)
    assert errors == []


def test_a_full_spool_waits_against_the_min_rate(spools: list[Any]) -> None:
    writer, loop, delivered = make_writer(timeout=0.1, spool_size=4, min_rate=1)
    writer.set_write_paused(True)
    writer.write(b"abcd")  # the spool is full now
    with pytest.raises(WriteTimeout, match=r"read nothing for 0\.1 seconds"):
        writer.write(b"e")
    writer.abort()
    loop.run_pending()
    assert delivered[-1][-1] == (ABORT,)
    assert not spools[0].closed  # the loop may be reading it: its close() closes it
    writer.close("response aborted")
    assert spools[0].closed


def test_close_closes_the_spool_and_fails_the_thread(spools: list[Any]) -> None:
    writer, _, _ = make_writer(spool_size=1024)
    writer.set_write_paused(True)
    writer.write(b"abc")
    writer.close()
    assert spools[0].closed
    assert not writer.spooled
    with pytest.raises(ClientDisconnected):
        writer.write(b"d")


def test_close_during_a_spool_write_leaves_the_file_to_the_thread(
    spools: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, _, _ = make_writer(spool_size=1024)
    real = writer_module._pwrite_all

    def pwrite_while_the_loop_closes(fd: int, data: memoryview, offset: int) -> None:
        writer.close()  # the connection is lost meanwhile, on the loop
        assert not spools[0].closed  # not under the thread's feet
        real(fd, data, offset)

    monkeypatch.setattr(writer_module, "_pwrite_all", pwrite_while_the_loop_closes)
    writer.set_write_paused(True)
    with pytest.raises(ClientDisconnected):
        writer.write(b"abc")
    assert spools[0].closed


def test_a_failed_spool_write_raises_and_close_frees_the_file(
    spools: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, loop, delivered = make_writer(spool_size=1024)

    def disk_full(fd: int, data: memoryview, offset: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_module, "_pwrite_all", disk_full)
    writer.set_write_paused(True)
    with pytest.raises(OSError, match="No space"):
        writer.write(b"abc")
    writer.abort()  # as the handler does
    loop.run_pending()
    assert delivered[-1] == [(ABORT,)]
    writer.close("response aborted")  # as the loop does on the ABORT
    assert spools[0].closed


def test_a_failed_spool_write_ends_the_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The app may catch the error (as "client gone") and write on: the bytes whose
    # write failed were reserved in the ring and would have gone out as data.
    loop = FakeLoop()
    delivered: list[list[tuple[object, ...]]] = []
    w = ResponseWriter(loop, delivered.append, timeout=5.0, spool_size=1 << 20)
    w.start("200 OK", [])
    loop.run_pending()
    w.set_write_paused(True)  # the client is behind
    monkeypatch.setattr(writer_module, "SPOOL_GRACE", 0.0)
    real = writer_module._pwrite_all
    calls: list[int] = []

    def failing_once(fd: int, data: memoryview, offset: int) -> None:
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, offset)

    monkeypatch.setattr(writer_module, "_pwrite_all", failing_once)
    w.write(b"A" * 10)
    with pytest.raises(OSError, match="No space"):
        w.write(b"B" * 10)
    with pytest.raises(ClientDisconnected):
        w.write(b"C" * 10)  # the app goes on: refused
    loop.run_pending()
    kinds = [item[0] for batch in delivered for item in batch]
    assert kinds[-1] is ABORT
    assert (
        sum(item[1] for batch in delivered for item in batch if item[0] is SPOOL) == 10
    )
    w.close("response aborted")  # what the loop does on the ABORT
    assert not w.spooled  # the file is closed


# -- FILE items (rules 9 and 10) --------------------------------------------------


@pytest.fixture
def app_file(tmp_path: Any) -> Any:
    """An open file of 100 known bytes; closed at the end."""
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(100)))
    with path.open("rb") as file:
        yield file


def same_file(fd: int, other: int) -> bool:
    a, b = os.fstat(fd), os.fstat(other)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_sendfile_posts_a_duplicate_and_returns_at_once(app_file: Any) -> None:
    writer, loop, delivered = make_writer()
    writer.start("200 OK", [("Content-Length", "90")])
    writer.sendfile(app_file.fileno(), 10, 90)
    writer.finish()
    loop.run_pending()
    [[start, (kind, fd, offset, count), end]] = delivered
    assert (start[0], kind, offset, count, end) == (START, FILE, 10, 90, (END,))
    assert fd != app_file.fileno()
    assert same_file(fd, app_file.fileno())
    app_file.close()  # the app's iterable closes its file: the duplicate lives on
    assert os.pread(fd, 5, 10) == bytes(range(10, 15))
    writer.close_file(fd)  # the loop has sent it
    assert not is_open(fd)
    writer.close_file(fd)  # once only: a second call closes nothing
    writer.close("connection lost")  # nor does close() afterwards


def test_close_closes_every_duplicate_not_yet_sent(app_file: Any) -> None:
    writer, loop, delivered = make_writer()
    writer.start("200 OK", [])
    writer.sendfile(app_file.fileno(), 0, 50)
    writer.sendfile(app_file.fileno(), 50, 50)
    loop.run_pending()
    fds = [item[1] for item in delivered[0] if item[0] is FILE]
    assert len(fds) == 2
    assert all(map(is_open, fds))
    writer.close("client disconnected")
    assert not any(map(is_open, fds))
    writer.close_file(fds[0])  # a late loop callback: nothing to close


def test_close_before_the_drain_closes_the_queued_duplicate(app_file: Any) -> None:
    writer, loop, delivered = make_writer()
    before = set(os.listdir("/proc/self/fd"))
    writer.sendfile(app_file.fileno(), 0, 100)
    writer.close("client disconnected")  # the item is never delivered
    loop.run_pending()
    assert delivered == []
    assert set(os.listdir("/proc/self/fd")) <= before


def test_sendfile_on_a_closed_writer_raises_and_keeps_no_descriptor(
    app_file: Any,
) -> None:
    writer = make_writer()[0]
    writer.close("client disconnected")
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ClientDisconnected):
        writer.sendfile(app_file.fileno(), 0, 100)
    assert set(os.listdir("/proc/self/fd")) <= before


def test_sendfile_after_the_end_or_of_nothing_posts_nothing(app_file: Any) -> None:
    writer, loop, delivered = make_writer()
    writer.sendfile(app_file.fileno(), 0, 0)
    writer.finish()
    before = set(os.listdir("/proc/self/fd"))
    writer.sendfile(app_file.fileno(), 0, 100)  # a handler's bug: ignored
    assert set(os.listdir("/proc/self/fd")) <= before
    loop.run_pending()
    assert delivered == [[(END,)]]


def test_out_of_descriptors_the_thread_writes_the_file_itself(
    app_file: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_descriptors(fd: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "dup", no_descriptors)
    writer, loop, delivered = make_writer()
    writer.sendfile(app_file.fileno(), 20, 80)
    loop.run_pending()
    assert {item[0] for item in delivered[0]} == {DATA}
    assert b"".join(item[1] for item in delivered[0]) == bytes(range(20, 100))
    with pytest.raises(OSError, match="short"):
        writer.sendfile(app_file.fileno(), 90, 20)  # the file has 10 of them


def test_file_bytes_sent_count_for_a_thread_waiting_behind_them() -> None:
    # Rule 5: a thread waiting behind a file (a handler that writes after it) is
    # held to the minimum rate by every byte the loop takes of the response: the
    # loop sends 10 bytes of a file every 20 ms, 100 per 0.2 s window, above 20.
    writer = make_writer(timeout=0.2, spool_size=0, min_rate=100)[0]
    writer.set_write_paused(True)  # the client is behind: the write waits
    errors: list[BaseException] = []

    def app_thread() -> None:
        try:
            writer.write(b"after the file")
        except WriteTimeout as exc:
            errors.append(exc)

    thread = threading.Thread(target=app_thread)
    thread.start()
    taken = writer.taken
    deadline = time.monotonic() + 0.6  # three windows
    while time.monotonic() < deadline:
        writer.file_sent(10)
        thread.join(0.02)
    assert writer.taken - taken >= 100
    writer.set_write_paused(False)  # the client caught up
    thread.join(5.0)
    assert not thread.is_alive()
    assert errors == []
