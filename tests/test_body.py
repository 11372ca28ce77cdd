"""BodyBuffer and EMPTY_BODY: the request body collected on the loop, memory then a
temporary file, capped by the body limit, and the wsgi.input streams they become."""

from __future__ import annotations

import io

import pytest

from aiogate.body import EMPTY_BODY, BodyBuffer
from aiogate.errors import ProtocolError


def collect(
    chunks: list[bytes], *, spill_size: int = 100, limit: int = 10_000
) -> BodyBuffer:
    buffer = BodyBuffer(spill_size=spill_size, limit=limit)
    for chunk in chunks:
        buffer.feed_data(chunk)
    return buffer


def test_small_body_stays_in_memory() -> None:
    buffer = collect([b"abc", b"def"])
    assert not buffer.spilled
    assert buffer.size == 6
    stream = buffer.finish()
    assert isinstance(stream, io.BytesIO)
    assert stream.read() == b"abcdef"


def test_body_over_the_spill_size_moves_to_a_file() -> None:
    buffer = collect([b"a" * 60, b"b" * 60, b"c" * 10])
    assert buffer.spilled
    stream = buffer.finish()
    assert not isinstance(stream, io.BytesIO)
    assert stream.fileno() >= 0
    assert stream.read() == b"a" * 60 + b"b" * 60 + b"c" * 10
    stream.close()


@pytest.mark.parametrize("spill_size", [0, 5, 1000])
def test_streams_support_every_pep3333_read(spill_size: int) -> None:
    data = b"line one\nline two\n\nlast"
    stream = collect([data[:7], data[7:]], spill_size=spill_size).finish()
    assert stream.read(4) == b"line"
    assert stream.readline() == b" one\n"
    assert stream.readline(4) == b"line"
    assert stream.readlines() == [b" two\n", b"\n", b"last"]
    assert stream.read() == b""
    assert stream.read(10) == b""
    stream.close()
    again = collect([data], spill_size=spill_size).finish()
    assert list(again) == [b"line one\n", b"line two\n", b"\n", b"last"]
    again.close()


def test_limit_is_exact() -> None:
    buffer = collect([b"x" * 10], limit=10)
    with pytest.raises(ProtocolError) as info:
        buffer.feed_data(b"y")
    assert info.value.status_hint == 413
    assert buffer.size == 10  # the refused bytes are not kept


def test_discard_closes_the_file() -> None:
    buffer = collect([b"x" * 200], spill_size=10)
    file = buffer._file
    assert file is not None
    buffer.discard()
    assert file.closed
    assert not buffer.spilled


def test_empty_body_reads_nothing_and_is_shared() -> None:
    assert EMPTY_BODY.read() == b""
    assert EMPTY_BODY.read(10) == b""
    assert EMPTY_BODY.readline() == b""
    assert EMPTY_BODY.readline(5) == b""
    assert EMPTY_BODY.readlines() == []
    assert list(EMPTY_BODY) == []
    EMPTY_BODY.close()
    assert EMPTY_BODY.read() == b""  # closing the shared instance changes nothing
