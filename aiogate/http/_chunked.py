"""Chunked request bodies (RFC 9112 §7.1), decoded by our own reader.

Owns: ``ChunkedReader``, which checks every unit of a chunked body and returns the
data of the chunks it decodes. Sans-IO, raises ``ProtocolError``; runs on the event
loop (one reader per request).

Theory of operation:

1. Every unit (chunk-size line with extensions, chunk data and its CRLF, trailer
   lines) is checked before anything after it is taken, more strictly than h11
   (no bare CR or NUL in an extension, at most 16 hex digits, no whitespace after
   the size): those are the chunk-extension smuggling vectors.
2. The data of all the chunks decoded from one call comes out joined, as one bytes
   object. h11 made one event, one bytes object and several microseconds of Python
   per chunk, so a client sending 1-byte chunks could hold the loop and fill memory
   with tiny objects.
3. One call decodes at most ``CHUNK_LINES_PER_CALL`` chunk-size lines, so its work
   is bounded however small the chunks are; the caller asks again (and can let
   other connections in between).
4. A framing error found after some data is kept (``error``) and raised by the
   caller once that data is out, so the events do not depend on how the bytes were
   split.
5. Trailer lines are checked by the head's line rules (the same limits, the same
   order of failures) and parsed into ``trailers``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum, auto
from typing import Final

from ..errors import ProtocolError
from ._syntax import CR, HEXDIG, LF, QUOTED, TOKEN, error, show

__all__ = ["CHUNK_LINES_PER_CALL", "ChunkedReader"]

# RFC 9112 §7.1 and §7.1.1: chunk-size [ chunk-ext ] with
# chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ).
# Stricter than h11's ``;.*``, which lets a bare CR or NUL through in an extension
# (the "chunk extension" smuggling vectors), and than its trailing whitespace.
_CHUNK_LINE_RE: Final = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*"
    + TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + TOKEN
    + rb"|"
    + QUOTED
    + rb"))?)*"
)
# The usual chunk-size line, matched in one step: no extensions, at most 16 digits.
_PLAIN_CHUNK_LINE_RE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})\r\n")
# 16 hex digits is 2**64 - 1. h11 allows 20; more digits than any real body needs
# are only good for overflowing someone else's parser.
_MAX_CHUNK_SIZE_DIGITS: Final = 16
#: Chunk-size lines decoded per call (rule 3): a client sending 1-byte chunks (6
#: bytes of framing per byte of data) costs about a microsecond of Python per chunk,
#: so one call stays well under a millisecond.
CHUNK_LINES_PER_CALL: Final = 128

#: ``check_line(buf, start, end, index, complete=...)``: the head's line rules.
LineCheck = Callable[..., None]


class _Part(Enum):
    """Where in the chunked framing the reader is."""

    SIZE_LINE = auto()
    DATA = auto()
    DATA_CRLF = auto()
    TRAILER = auto()
    END = auto()


_SIZE_LINE, _DATA, _DATA_CRLF, _TRAILER, _END = _Part


def _trailer_field(line: bytes) -> tuple[bytes, bytes]:
    """Split a checked trailer field line (no CRLF) into name and value without OWS;
    h11's ``EndOfMessage`` checks both."""
    name, colon, value = line.partition(b":")
    if not colon:
        raise error(f"malformed trailer field: {show(line)}")
    return name, value.strip(b" \t")


class ChunkedReader:
    """Decodes one chunked request body; see the module docstring."""

    __slots__ = (
        "_check_line",
        "_left",
        "_limit_field",
        "_lines",
        "_part",
        "error",
        "trailers",
    )

    def __init__(self, check_line: LineCheck, limit_field: int) -> None:
        self._check_line = check_line
        self._limit_field = limit_field  # a chunk-size line is held to a field's limit
        self._part = _SIZE_LINE
        self._left = 0  # data bytes left in the current chunk
        self._lines = 0  # trailer lines checked so far, plus one
        #: A framing error found after data that is still to be handed out (rule 4).
        self.error: ProtocolError | None = None
        #: The trailer fields, once ``done``.
        self.trailers: list[tuple[bytes, bytes]] = []

    @property
    def done(self) -> bool:
        """The trailer section has ended: the body is complete."""
        return self._part is _END

    def decode(self, buf: bytearray) -> bytes:
        """Decode chunked framing from ``buf``: return the data of the chunks it
        holds, joined, and remove what was decoded (rules 2 and 3). Stops at the end
        of ``buf``, at the end of the trailer section, after an error (``error``),
        or after ``CHUNK_LINES_PER_CALL`` chunk-size lines."""
        size = len(buf)
        pos = 0  # end of what is decoded
        spans: list[tuple[int, int]] = []  # where the chunk data lies in ``buf``
        lines = CHUNK_LINES_PER_CALL
        try:
            while pos < size:
                part = self._part
                if part is _SIZE_LINE:
                    if not lines:
                        break
                    lines -= 1
                    match = _PLAIN_CHUNK_LINE_RE.match(buf, pos)
                    if match is not None:  # the usual line: only the size
                        chunk_size = int(match[1], 16)
                        pos = match.end()
                    else:
                        newline = buf.find(b"\n", pos)
                        end = size if newline == -1 else newline
                        checked = self._check_size_line(
                            buf, pos, end, complete=newline != -1
                        )
                        if checked is None:
                            break
                        chunk_size = checked
                        pos = newline + 1
                    if not chunk_size:  # last-chunk; trailers follow (RFC 9112 §7.1.2)
                        self._part = _TRAILER
                        self._lines = 1
                        continue
                    end = pos + chunk_size
                    if end + 2 <= size and buf[end] == CR and buf[end + 1] == LF:
                        # The whole chunk is here (the usual case): take it in one step.
                        spans.append((pos, end))
                        pos = end + 2
                        continue
                    self._part = _DATA
                    self._left = chunk_size
                elif part is _DATA:
                    count = min(self._left, size - pos)
                    spans.append((pos, pos + count))
                    pos += count
                    self._left -= count
                    if self._left == 0:
                        self._part = _DATA_CRLF
                elif part is _DATA_CRLF:
                    # chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF, exactly.
                    if buf[pos] != CR or (size - pos > 1 and buf[pos + 1] != LF):
                        raise error("chunk data not followed by CRLF")
                    if size - pos < 2:
                        break
                    pos += 2
                    self._part = _SIZE_LINE
                elif part is _TRAILER:
                    newline = buf.find(b"\n", pos)
                    if newline == -1:
                        self._check_line(buf, pos, size, self._lines, complete=False)
                        break
                    self._check_line(buf, pos, newline, self._lines, complete=True)
                    if newline - pos == 1:  # the empty line that ends the message
                        self._part = _END
                        pos = newline + 1
                        break  # the rest belongs to the next request
                    self.trailers.append(_trailer_field(bytes(buf[pos : newline - 1])))
                    self._lines += 1
                    pos = newline + 1
                else:  # _END: the rest belongs to the next request
                    break
        except ProtocolError as exc:
            # Each branch raises before it moves ``pos``, so what is before ``pos``
            # was checked and its data still goes out (rule 4).
            self.error = exc
        if not spans:
            data = b""
        elif len(spans) == 1:
            first, last = spans[0]
            data = bytes(buf[first:last])
        else:
            with memoryview(buf) as view:
                data = b"".join([view[first:last] for first, last in spans])
        if pos == size:
            buf.clear()
        elif pos:
            del buf[:pos]
        return data

    def _check_size_line(
        self, buf: bytearray, start: int, end: int, *, complete: bool
    ) -> int | None:
        """Check a chunk-size line ``buf[start:end]``; its size once complete."""
        size = end - start
        if size == 0:  # (a partial line has at least one byte)
            raise error("empty chunk-size line")
        if buf[start] not in HEXDIG:
            raise error(f"invalid chunk size: {show(buf[start:end])}")
        # RFC 9112 §7.1.1 and §2.2: a CR anywhere but before the LF is invalid (h11's
        # extension pattern lets it through: a TERM.EXT smuggling vector).
        if buf.find(b"\r", start, end - 1) != -1:
            raise error("bare CR in a chunk-size line")
        if size > self._limit_field + 1:
            raise error("chunk-size line too long")
        if not complete:
            return None
        if buf[end - 1] != CR:
            raise error("chunk-size line ends with a bare LF")
        line = bytes(buf[start : end - 1])
        match = _CHUNK_LINE_RE.fullmatch(line)
        if match is None:
            raise error(f"invalid chunk-size line: {show(line)}")
        digits = match.group(1)
        if len(digits) > _MAX_CHUNK_SIZE_DIGITS:
            raise error(f"chunk size too large: {show(digits)}")
        return int(digits, 16)
