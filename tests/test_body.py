"""RequestBody: wsgi.input semantics, flow control signals, timeouts and errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from aiogate.body import RequestBody
from aiogate.errors import ClientDisconnected


def make_body(data: bytes = b"", *, eof: bool = True, **kwargs: Any) -> RequestBody:
    body = RequestBody(timeout=kwargs.pop("timeout", 5.0), **kwargs)
    if data:
        body.feed_data(data)
    if eof:
        body.feed_eof()
    return body


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; the result (or exception) lands in the list."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


@pytest.mark.parametrize(
    ("data", "calls", "expected"),
    [
        (b"hello world", [("read", -1)], [b"hello world"]),
        (b"hello world", [("read", None)], [b"hello world"]),
        (b"hello world", [("read", 5), ("read", 100)], [b"hello", b" world"]),
        (b"hello", [("read", 0), ("read", 5), ("read", 1)], [b"", b"hello", b""]),
        (b"a\nbb\nccc", [("readline", -1)] * 4, [b"a\n", b"bb\n", b"ccc", b""]),
        (b"abcdef\n", [("readline", 4), ("readline", -1)], [b"abcd", b"ef\n"]),
        (b"abc\n", [("readline", 0), ("readline", None)], [b"", b"abc\n"]),
        (b"", [("read", -1), ("readline", -1)], [b"", b""]),
    ],
)
def test_reads(
    data: bytes, calls: list[tuple[str, Any]], expected: list[bytes]
) -> None:
    body = make_body(data)
    assert [getattr(body, name)(arg) for name, arg in calls] == expected


def test_readlines_and_iteration() -> None:
    assert make_body(b"a\nb\nc").readlines() == [b"a\n", b"b\n", b"c"]
    assert list(make_body(b"a\nb\n")) == [b"a\n", b"b\n"]
    assert make_body(b"aa\nbb\ncc\n").readlines(3) == [b"aa\n"]


def test_read_waits_for_data_fed_later() -> None:
    body = make_body(eof=False)
    thread, out = in_thread(lambda: body.read(6))
    body.feed_data(b"abc")
    body.feed_data(b"defg")
    thread.join(5)
    assert out == [b"abcdef"]
    body.feed_eof()
    assert body.read() == b"g"


def test_read_all_waits_for_eof() -> None:
    body = make_body(eof=False)
    thread, out = in_thread(body.read)
    body.feed_data(b"x" * 10)
    body.feed_data(b"y")
    body.feed_eof()
    thread.join(5)
    assert out == [b"x" * 10 + b"y"]


def test_disconnect_wakes_reader() -> None:
    body = make_body(eof=False)
    thread, out = in_thread(body.read)
    body.set_exception(ConnectionResetError("gone"))
    thread.join(5)
    assert isinstance(out[0], ClientDisconnected)
    assert isinstance(out[0], ConnectionAbortedError)


def test_exception_after_eof_is_ignored() -> None:
    body = make_body(b"done")
    body.set_exception(ConnectionResetError())
    assert body.read() == b"done"


def test_timeout_without_data_raises() -> None:
    body = make_body(eof=False, timeout=0.05)
    with pytest.raises(ClientDisconnected, match="no request body data"):
        body.read()


def test_first_read_asks_for_continue_once() -> None:
    calls: list[str] = []
    body = make_body(eof=False, on_first_read=lambda: calls.append("continue"))
    body.feed_data(b"abc")
    assert body.read(1) == b"a"
    assert body.read(1) == b"b"
    assert calls == ["continue"]


def test_no_continue_when_body_already_complete() -> None:
    calls: list[str] = []
    body = make_body(b"abc", on_first_read=lambda: calls.append("continue"))
    assert body.read() == b"abc"
    assert calls == []


def test_high_water_pauses_and_low_water_resumes() -> None:
    resumed: list[bool] = []
    body = RequestBody(
        timeout=5, high_water=10, low_water=4, on_resume=lambda: resumed.append(True)
    )
    assert body.feed_data(b"12345") is False
    assert body.feed_data(b"67890") is True  # at high water: pause the socket
    assert body.read(5) == b"12345"
    assert resumed == []  # 5 left, not under low water yet
    assert body.read(2) == b"67"
    assert resumed == [True]  # 3 left: resume once
    body.feed_eof()
    assert body.read() == b"890"
    assert resumed == [True]


def test_reader_wanting_more_than_high_water_resumes_socket() -> None:
    resumed = threading.Event()
    body = RequestBody(timeout=5, high_water=4, low_water=2, on_resume=resumed.set)
    assert body.feed_data(b"abcd") is True
    thread, out = in_thread(lambda: body.read(8))
    # Without asking the loop to resume reading, this read would wait forever.
    assert resumed.wait(5)
    body.feed_data(b"efgh")
    thread.join(5)
    assert out == [b"abcdefgh"]


def test_bytes_received_counts_everything() -> None:
    body = make_body(b"abc", eof=False)
    body.feed_data(b"de")
    assert body.bytes_received == 5


def test_empty_body_reads_nothing() -> None:
    from aiogate.body import EMPTY_BODY

    assert EMPTY_BODY.read() == b""
    assert EMPTY_BODY.read(10) == b""
    assert EMPTY_BODY.readline() == b""
    assert EMPTY_BODY.readlines() == []
    assert list(EMPTY_BODY) == []
    EMPTY_BODY.feed_eof()
    EMPTY_BODY.set_exception(ConnectionResetError())
    assert EMPTY_BODY.read() == b""
