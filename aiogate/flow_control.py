"""Read and write flow control for one connection.

Owns: ``FlowControl``, the set of reasons reading is paused for (reading resumes only when
none remain, as in aiohttp's ``base_protocol.py``) and the write-paused flag that
``pause_writing``/``resume_writing`` flip. Runs on the event loop only.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["FlowControl", "PauseReason"]

#: Why reading is paused. ``pipeline``: a request is waiting behind the current
#: one. ``write``: the transport's buffer is above its high-water mark (the client is
#: not reading what we send), whatever filled it. ``busy``: this connection used its
#: share of one loop turn and goes on at the next. (Request bodies never pause
#: reading: they are buffered, spilling to disk.)
PauseReason = Literal["pipeline", "write", "busy"]


class _ReadTransport(Protocol):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool: ...


class FlowControl:
    """Pauses the transport while any reason holds; resumes when the last one goes."""

    __slots__ = ("_reasons", "_transport", "write_paused")

    def __init__(self, transport: _ReadTransport) -> None:
        self._transport = transport
        self._reasons: set[PauseReason] = set()
        #: True between the transport's ``pause_writing`` and ``resume_writing``.
        self.write_paused = False

    @property
    def read_paused(self) -> bool:
        return bool(self._reasons)

    def pause_reading(self, reason: PauseReason) -> None:
        if not self._reasons and not self._transport.is_closing():
            self._transport.pause_reading()
        self._reasons.add(reason)

    def is_paused_for(self, reason: PauseReason) -> bool:
        return reason in self._reasons

    def resume_all(self) -> None:
        """Resume reading whatever it was paused for (a closing connection reads
        and drops what the client still sends)."""
        if self._reasons:
            self._reasons.clear()
            if not self._transport.is_closing():
                self._transport.resume_reading()

    def resume_reading(self, reason: PauseReason) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons and not self._transport.is_closing():
            self._transport.resume_reading()
