"""One client connection's HTTP/1.1 exchange: checked bytes in, events out, our
response bytes framed.

Owns: ``ServerConnection``, the facade of the sans-IO core. It keeps the received
bytes, asks ``HeadReader`` for each checked head and h11 to parse it, counts or
decodes the body itself (``ChunkedReader``), keeps both sides' state by the rules
of ``_state``, and frames our response (``_framing``). Sans-IO: it raises
``ProtocolError`` and never logs. Runs on the event loop (one object per
connection, used only by ``protocol.H11Protocol``).

Theory of operation:

1. Received bytes go to ``_buf``, never straight to h11: h11 only ever parses a
   whole head we have accepted (``_head``), and is not asked again after the
   ``Request``.
2. The body is ours. A body framed by Content-Length (or none at all) needs only
   counting: the ``Data`` events carry the received bytes objects themselves, not
   copies. A chunked body goes through ``ChunkedReader``: contiguous data, a bounded
   number of chunks per call. Bytes after the end of the message stay in ``_buf``.
3. While the request is done and ``_buf`` holds the next one, ``next_event``
   returns ``h11.PAUSED`` until ``start_next_cycle``; after ``Connection: close``
   or HTTP/1.0 without keep-alive (``_state`` rule 9) those bytes are never parsed
   at all. EOF counts only once ``_buf``
   is empty.
4. After a ``ProtocolError`` the connection is dead: ``next_event`` raises again,
   received bytes are dropped, and the caller sends ``error_response`` and closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import h11

from ..errors import ProtocolError
from ._chunked import ChunkedReader
from ._framing import (
    CHUNKED,
    DEFAULT_SERVER_FIELD,
    UNTIL_CLOSE,
    error_response,
    response_head,
)
from ._head import HeadReader, check_framing
from ._state import (
    CLIENT,
    CLOSED,
    DONE,
    ERROR,
    IDLE,
    MUST_CLOSE,
    SEND_BODY,
    SEND_RESPONSE,
    SERVER,
    Event,
    Phase,
    State,
    moves,
    transition,
)
from ._syntax import error

if TYPE_CHECKING:
    #: What ``next_event`` returns (as ``h11.Connection.next_event``).
    NextEvent: TypeAlias = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]

__all__ = ["ServerConnection"]

_END_OF_MESSAGE = h11.EndOfMessage()  # events are immutable: one serves every request

# The transitions every request makes, from the tables of ``_state`` (the callers
# check first that the move is allowed, so a missing key is a bug).
_CLIENT_REQUEST = moves(CLIENT, Event.REQUEST)
_CLIENT_END = moves(CLIENT, Event.END_OF_MESSAGE)
_CLIENT_NEXT = moves(CLIENT, Event.NEXT_CYCLE)
_SERVER_REQUEST = moves(SERVER, Event.REQUEST)
_SERVER_RESPONSE = moves(SERVER, Event.RESPONSE)
_SERVER_END = moves(SERVER, Event.RESPONSE_END)
_SERVER_NEXT = moves(SERVER, Event.NEXT_CYCLE)


class ServerConnection:
    """One client connection's HTTP/1.1 state; see the module docstring.

    Runs on the event loop. ``next_event`` raises ``ProtocolError`` for a bad request;
    then the caller sends ``error_response(exc.status_hint, str(exc))`` and closes.
    """

    __slots__ = (
        "_body",
        "_buf",
        "_chunked",
        "_closing",
        "_continue_sent",
        "_eof",
        "_error",
        "_h11",
        "_head",
        "_http11",
        "_keep_alive",
        "_max_event",
        "_method",
        "_our",
        "_out_framing",
        "_out_keep_alive",
        "_ready",
        "_server_field",
        "_their",
        "_waiting_100",
    )

    def __init__(
        self,
        *,
        limit_request_line: int = 8190,
        limit_request_fields: int = 100,
        limit_request_field_size: int = 8190,
        server_field: bytes = DEFAULT_SERVER_FIELD,
    ) -> None:
        # Our error responses' Server line (``_framing.server_field``), the same
        # value app responses carry.
        self._server_field = server_field
        self._head = HeadReader(
            limit_request_line, limit_request_fields, limit_request_field_size
        )
        # h11 is given whole heads only, so its own limit just has to exceed ours.
        self._max_event = limit_request_line + (limit_request_fields + 2) * (
            limit_request_field_size + 2
        )
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._max_event
        )
        self._their = IDLE  # the client's side (rules 1, 2, 5)
        self._our = IDLE  # ours (rules 3, 4)
        self._closing = False  # we send nothing more: the connection is closing
        self._buf = bytearray()  # received, not yet taken
        self._eof = False
        self._error: ProtocolError | None = None
        # The current request.
        self._method: bytes | None = None
        self._http11 = True
        self._keep_alive = True  # the request allows reusing the connection
        self._body = 0  # body bytes still to come by Content-Length, or CHUNKED
        self._chunked: ChunkedReader | None = None
        # Body bytes received whole, to be returned as they are (rule 2).
        self._ready: bytes | None = None
        self._waiting_100 = False  # h11's 100-continue rule, kept here
        self._continue_sent = False
        # The current response.
        self._out_framing = 0  # remaining Content-Length, or a framing marker
        self._out_keep_alive = True

    # -- state -------------------------------------------------------------------------

    @property
    def our_state(self) -> State:
        """Our (the server's) side."""
        return self._our

    @property
    def their_state(self) -> State:
        """The client's side; ``ERROR`` after a ``ProtocolError`` (rule 5)."""
        return ERROR if self._error is not None else self._their

    @property
    def phase(self) -> Phase:
        """What the connection as a whole is doing (``_state`` rule 7)."""
        their, our = self.their_state, self._our
        if self._closing:
            # Until the socket is gone: what we sent may still wait for the client
            # to read it, even after its EOF.
            return Phase.LINGER
        if our is ERROR or our is MUST_CLOSE:
            return Phase.CLOSED if their is CLOSED else Phase.LINGER
        if their is IDLE:
            return Phase.HEAD if self._buf else Phase.IDLE
        if their is SEND_BODY:
            return Phase.BODY
        if our is SEND_RESPONSE:
            return Phase.DISPATCHED
        if our is SEND_BODY:
            return Phase.RESPONDING
        return Phase.CLOSED if their is CLOSED else Phase.IDLE

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` (HTTP/1.1 only; h11 ignores it
        for HTTP/1.0 as RFC 9110 §10.1.1 requires) and no response or body yet."""
        return (
            self._waiting_100 and not self._continue_sent and self._our is SEND_RESPONSE
        )

    @property
    def request_has_body(self) -> bool:
        """The current request has a body to read (after its ``Request`` event:
        a Content-Length above 0, or chunked)."""
        return self._body != 0

    @property
    def body_bytes_expected(self) -> int | None:
        """Body bytes still to come by Content-Length (right after the ``Request``
        event: the declared length), or None for a chunked body."""
        return None if self._body == CHUNKED else self._body

    @property
    def has_unparsed_data(self) -> bool:
        """Bytes were received that no event has consumed yet: part of a request
        head still arriving, or a pipelined request waiting its turn."""
        return bool(self._buf) or self._ready is not None

    @property
    def request_line(self) -> bytes:
        """The request line of the head being read (or of the last one taken), once
        it passed its checks; b"" before that. For the access log of a refused head."""
        return self._head.request_line

    @property
    def client_is_http10(self) -> bool:
        """The current (or last) request was HTTP/1.0."""
        return not self._http11

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the client sent EOF (as in h11)."""
        if data:
            if self._eof:
                raise RuntimeError("received data after EOF")
            if self._error is None:  # a dead connection keeps nothing
                if (
                    self._their is SEND_BODY
                    and self._ready is None
                    and not self._buf
                    and len(data) <= self._body
                    and type(data) is bytes
                ):
                    self._ready = data  # body bytes, returned as they are (rule 2)
                else:
                    self._buf += data
        else:
            self._eof = True

    def next_event(self) -> NextEvent:
        """The next h11 event, ``h11.NEED_DATA`` or ``h11.PAUSED``.

        Raises ``ProtocolError`` (with ``status_hint``) for a bad request, and again
        on every later call.
        """
        if self._error is not None:
            raise error(str(self._error), self._error.status_hint)
        try:
            if self._their is IDLE:
                return self._request_event()
            return self._body_event()
        except ProtocolError as exc:
            self._fail(exc)
            raise
        except h11.RemoteProtocolError as exc:
            failure = error(str(exc), exc.error_status_hint)
            self._fail(failure)
            raise failure from exc

    def _fail(self, exc: ProtocolError) -> None:
        self._error = exc
        self._buf.clear()
        self._ready = None

    def _request_event(self) -> NextEvent:
        """Between requests: the next checked head, parsed by h11."""
        head = self._head.take_head(self._buf)
        if head is None:
            if not self._eof:
                return h11.NEED_DATA
            if self._buf:
                raise error("client closed the connection inside a request head")
            self._their = transition(CLIENT, self._their, Event.EOF)
            return h11.ConnectionClosed()
        http11 = self._head.version == b"HTTP/1.1"
        framing, keep_alive = check_framing(head, http11)
        conn = self._h11
        conn.receive_data(head)
        event = conn.next_event()
        if type(event) is not h11.Request:  # h11 parses a whole head at once
            raise RuntimeError(f"h11 returned {event!r} for a complete head")
        self._method = event.method
        self._http11 = http11
        self._keep_alive = keep_alive
        self._body = framing
        if framing == CHUNKED:
            head_reader = self._head
            self._chunked = ChunkedReader(
                head_reader.check_line, head_reader.limit_field
            )
        self._waiting_100 = framing != 0 and conn.they_are_waiting_for_100_continue
        # An Upgrade request is no exception to rule 2: a WSGI server never switches
        # protocols, so its message simply ends, as any other.
        self._their = _CLIENT_REQUEST[self._their]
        self._our = _SERVER_REQUEST[self._our]
        return event

    def _body_event(self) -> NextEvent:
        """The events after the ``Request``, as h11 would give them: ``Data`` until
        the body is complete, ``EndOfMessage``, then PAUSED while a pipelined
        request waits, ``ConnectionClosed`` at EOF, else NEED_DATA."""
        their = self._their
        if their is SEND_BODY:
            remaining = self._body
            if remaining == CHUNKED:
                return self._chunked_event()
            if remaining:
                data = self._ready
                if data is not None:
                    self._ready = None
                    self._body = remaining - len(data)
                elif self._buf:
                    data = self._take_counted_body()
                elif self._eof:
                    raise error("client closed the connection inside a request body")
                else:
                    return h11.NEED_DATA
                self._waiting_100 = False  # h11's rule: body data ends the wait
                return h11.Data(data=data)
            return self._end_of_message(_END_OF_MESSAGE)
        if their is DONE or their is MUST_CLOSE:
            if self._buf:
                return h11.PAUSED
            if not self._eof:
                return h11.NEED_DATA
            self._their = transition(CLIENT, their, Event.EOF)
        return h11.ConnectionClosed()

    def _end_of_message(self, event: h11.EndOfMessage) -> h11.EndOfMessage:
        # Rule 1: a request that does not allow reuse ends in MUST_CLOSE.
        their = _CLIENT_END[self._their]
        self._their = their if self._keep_alive else MUST_CLOSE
        return event

    def _take_counted_body(self) -> bytes:
        """Remove and return the bytes of a Content-Length body that are in ``_buf``
        (at most what is left of the length), counting them off ``_body``."""
        buf = self._buf
        count = min(self._body, len(buf))
        if count == len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:count])
            del buf[:count]
        self._body -= count
        return data

    def _chunked_event(self) -> NextEvent:
        """The next event of a chunked body: the data decoded so far (one ``Data``),
        ``EndOfMessage`` after the trailer section, or an error found in the framing
        once the data before it is out."""
        reader = self._chunked
        assert reader is not None  # set with the CHUNKED framing
        if self._buf and reader.error is None and not reader.done:
            data = reader.decode(self._buf)
            if data:
                self._waiting_100 = False
                return h11.Data(data=data)
        if reader.done:
            self._chunked = None
            if not reader.trailers:
                return self._end_of_message(_END_OF_MESSAGE)
            try:
                return self._end_of_message(h11.EndOfMessage(headers=reader.trailers))
            except h11.LocalProtocolError as exc:  # h11's field checks, as before
                raise error(str(exc), exc.error_status_hint) from None
        if reader.error is not None:
            raise reader.error
        if self._eof:
            raise error("client closed the connection inside a request body")
        return h11.NEED_DATA

    # -- sending -----------------------------------------------------------------------

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        *,
        close: bool = False,
        version: str = "1.1",
    ) -> bytes:
        """The status line and header block of the response to the current request
        (see ``_framing.response_head``). ``close=True`` ends the connection after
        this response; so does ``version`` "1.0". Raises ``h11.LocalProtocolError``
        if no response may start now, or if the response would break the
        message."""
        if self._our is not SEND_RESPONSE:
            raise h11.LocalProtocolError(f"cannot start a response in {self._our.name}")
        data, framing, keep_alive = response_head(
            status,
            headers,
            head_request=self._method == b"HEAD",
            http11=self._http11,
            keep_alive=self._keep_alive and not close,
            version=version,
        )
        self._our = _SERVER_RESPONSE[self._our]
        self._out_framing = framing
        self._out_keep_alive = keep_alive
        return data

    def send_data(self, data: bytes) -> bytes:
        """Frame body bytes of the current response. Raises
        ``h11.LocalProtocolError`` past the declared Content-Length."""
        if self._our is not SEND_BODY:
            raise h11.LocalProtocolError(f"cannot send data in {self._our.name}")
        framing = self._out_framing
        if framing >= 0:
            if len(data) > framing:
                raise h11.LocalProtocolError(
                    "more data than the declared Content-Length"
                )
            self._out_framing = framing - len(data)
            return data
        if framing == CHUNKED:
            return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        if framing == UNTIL_CLOSE:
            return data
        return b""  # NO_BODY: HEAD, 204, 304

    def body_goes_as_is(self) -> bool:
        """Whether the current response's body bytes go on the wire as they are (a
        Content-Length or close-delimited body, not chunked, not bodiless), so they
        may be sent by other means (``os.sendfile``) and counted with
        ``count_data``. Raises ``h11.LocalProtocolError`` if no body may be sent
        now."""
        if self._our is not SEND_BODY:
            raise h11.LocalProtocolError(f"cannot send data in {self._our.name}")
        return self._out_framing >= 0 or self._out_framing == UNTIL_CLOSE

    def count_data(self, size: int) -> None:
        """``size`` body bytes of the current response went out by other means
        (``body_goes_as_is``): they count as ``send_data``'s would. Raises
        ``h11.LocalProtocolError`` past the declared Content-Length."""
        framing = self._out_framing
        if framing >= 0:
            if size > framing:
                raise h11.LocalProtocolError(
                    "more data than the declared Content-Length"
                )
            self._out_framing = framing - size
        elif framing != UNTIL_CLOSE:
            raise h11.LocalProtocolError("this body is not sent as it is")

    def end_response(self) -> bytes:
        """End the current response. Raises ``h11.LocalProtocolError`` if fewer bytes
        than the declared Content-Length were sent (the caller then closes)."""
        if self._our is not SEND_BODY:
            raise h11.LocalProtocolError(f"cannot end a response in {self._our.name}")
        if self._out_framing > 0:
            raise h11.LocalProtocolError("less data than the declared Content-Length")
        our = _SERVER_END[self._our]
        # Rule 3: reused only if both sides allow it and the client is still there.
        reusable = self._out_keep_alive and self.their_state is not CLOSED
        self._our = our if reusable else MUST_CLOSE
        return b"0\r\n\r\n" if self._out_framing == CHUNKED else b""

    def send_100_continue(self) -> bytes:
        """``100 Continue`` if the client is still waiting for it, else ``b""``."""
        if not self.they_are_waiting_for_100_continue:
            return b""
        self._continue_sent = True
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def send_failed(self) -> None:
        """The response could not be sent whole (rule 4): nothing more can be sent,
        and the connection is not reused."""
        self._our = transition(SERVER, self._our, Event.FAILED)

    def closing(self) -> None:
        """The connection is closing (our FIN is sent or about to be): its phase is
        LINGER from now on."""
        self._closing = True

    def start_next_cycle(self) -> None:
        """Both sides are DONE: reset for the next request on this connection
        (``h11.LocalProtocolError`` otherwise). Each request gets a fresh h11
        connection (1.4 µs), so h11 never holds state across messages. The next
        request is parsed from the bytes already buffered, if any."""
        if self._our is not DONE or self.their_state is not DONE:
            raise h11.LocalProtocolError(
                f"cannot start the next cycle in {self._our.name}/"
                f"{self.their_state.name}"
            )
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._max_event
        )
        self._our = _SERVER_NEXT[self._our]
        self._their = _CLIENT_NEXT[self._their]
        self._waiting_100 = False
        self._continue_sent = False
        self._method = None
        self._body = 0

    def error_response(
        self, status: int, reason: str, retry_after: int | None = None
    ) -> bytes:
        """The complete bytes of a small ``text/plain`` error response that closes
        the connection (``_framing.error_response``), or ``b""`` if a response to
        this request has already begun (then the caller just closes). Our side is
        ERROR afterwards: nothing more can be sent on this connection."""
        if not 400 <= status <= 599:
            raise ValueError(f"error status must be 400-599, not {status}")
        if self._our is not IDLE and self._our is not SEND_RESPONSE:
            return b""
        self._our = transition(SERVER, self._our, Event.ERROR_RESPONSE)
        return error_response(
            status,
            reason,
            retry_after=retry_after,
            head_only=self._method == b"HEAD",
            server=self._server_field,
        )
