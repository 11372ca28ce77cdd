"""ResponseWriter: coalescing, backpressure, timeouts and disconnects, on a fake loop."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from aiogate.errors import ClientDisconnected, WriteTimeout
from aiogate.writer import ABORT, DATA, END, START, Item, ResponseWriter
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
        [(START, "200 OK", [("Content-Length", "2")]), (DATA, b"hi"), (END,)]
    ]


def test_items_after_a_drain_schedule_another() -> None:
    writer, loop, delivered = make_writer()
    writer.start("200 OK", [])
    loop.run_pending()
    writer.write(b"a")
    loop.run_pending()
    assert delivered == [[(START, "200 OK", [])], [(DATA, b"a")]]


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
    assert delivered == [[(START, "200 OK", []), (ABORT,)]]


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
    assert delivered == [[(START, "200 OK", []), (DATA, b"x")]]


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
