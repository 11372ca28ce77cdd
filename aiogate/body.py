"""The request body: collected on the event loop, handed to the app whole.

Owns: ``BodyBuffer``, which gathers one request's body while the client sends it, and
``EMPTY_BODY``, the ``wsgi.input`` of every request without one. The loop feeds a
``BodyBuffer`` (``feed_data``); when the body is complete, ``finish`` turns it into the
``wsgi.input`` stream, and from then on the worker thread running the app owns that
stream and closes it.

Theory of operation:

1. No thread is taken while a body arrives, so a slow uploader costs a buffer, never a
   thread (waitress's design; gunicorn needs nginx in front for the same effect).
2. A body stays in memory up to ``spill_size`` bytes (``--body-buffer-size``); past
   that it moves to an anonymous temporary file (``tempfile.TemporaryFile``: unlinked
   at once, so nothing is left on disk even if the process dies). In memory, pieces
   under ``_PIECE`` bytes are joined as they come, so the list holds at most one
   small piece per large one: memory per connection is about ``spill_size``,
   whatever sizes the client sends its bytes in.
3. ``limit`` (``--limit-request-body``) caps the whole body: ``feed_data`` raises
   ``ProtocolError`` with status 413 once it would be exceeded, and the protocol
   answers 413 and closes.
4. ``wsgi.input`` is an ``io.BytesIO`` or the temporary file itself, both C-level
   binary streams with exactly the ``read``/``readline``/``readlines``/iteration that
   PEP 3333 asks for; ``read()`` returns at the end of the body
   (``wsgi.input_terminated``).
5. Ownership of the file: the loop until ``finish``; the thread after it (the request
   cycle closes the stream when the app call is over). A body that never reaches the
   app (client gone, limit exceeded, request shed) is closed by the loop (``discard``).

Runs on the event loop, except the stream ``finish`` returns, which the worker thread
reads.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from .errors import ProtocolError

__all__ = ["EMPTY_BODY", "BodyBuffer", "EmptyBody"]

# Body pieces at least this large are kept as received; smaller ones are joined.
# At 4 KiB a piece's ~60 bytes of list slot and object header are under 2 %.
_PIECE = 4096


class BodyBuffer:
    """One request body while it arrives. Runs on the event loop."""

    __slots__ = ("_chunks", "_file", "_limit", "_spill_size", "size")

    def __init__(self, *, spill_size: int, limit: int) -> None:
        self._chunks: list[bytes | bytearray] = []
        self._file: BinaryIO | None = None
        self._spill_size = spill_size
        self._limit = limit
        #: Body bytes received so far.
        self.size = 0

    @property
    def spilled(self) -> bool:
        """The body is (being) written to a temporary file."""
        return self._file is not None

    def feed_data(self, data: bytes) -> None:
        """Add received body bytes. Raises ``ProtocolError`` (413) past ``limit``."""
        size = self.size + len(data)
        if size > self._limit:
            raise ProtocolError(
                f"request body larger than {self._limit} bytes", status_hint=413
            )
        self.size = size
        file = self._file
        if file is not None:
            file.write(data)
        elif size > self._spill_size:
            # One anonymous file per large body; writes land in the page cache, so
            # they cost about what a memory copy does (waitress spills the same way).
            # Not a with-block: the file outlives this call (see rule 5).
            import tempfile  # here: with shutil, bz2 and lzma, 0.9 MiB of RSS

            file = self._file = tempfile.TemporaryFile()  # noqa: SIM115
            file.writelines(self._chunks)
            file.write(data)
            self._chunks.clear()
        else:
            chunks = self._chunks
            if len(data) >= _PIECE or not chunks or len(chunks[-1]) >= _PIECE:
                chunks.append(data)  # kept as received: no copy
            else:
                # Small pieces (a body trickling in, tiny chunks) are gathered into
                # one bytearray: a bytes object per piece cost ~33 bytes of overhead
                # each, 40 MiB for a 512 KiB body sent one byte at a time (rule 2).
                last = chunks[-1]
                if type(last) is bytes:
                    last = chunks[-1] = bytearray(last)
                last += data

    def finish(self) -> BinaryIO:
        """The whole body has arrived: the ``wsgi.input`` stream over it, positioned
        at the start. The caller (the thread running the app) must close it."""
        file = self._file
        if file is not None:
            self._file = None
            file.flush()
            file.seek(0)
            return file
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return io.BytesIO(data)

    def discard(self) -> None:
        """The body will never reach the app: free memory and close the file."""
        self._chunks.clear()
        file, self._file = self._file, None
        if file is not None:
            file.close()


class EmptyBody:
    """``wsgi.input`` for a request without a body (no Content-Length, or 0, and not
    chunked): every read is at the end. One shared, stateless instance,
    ``EMPTY_BODY``, serves every such request; most requests are like this, and it
    saves building a stream for each."""

    __slots__ = ()

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> EmptyBody:
        return self

    def __next__(self) -> bytes:
        raise StopIteration

    def close(self) -> None:
        """Nothing to free; here so every ``wsgi.input`` can be closed alike."""


EMPTY_BODY = EmptyBody()
