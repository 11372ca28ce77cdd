"""The state machine of one connection: both sides of the exchange, and its phase.

Owns: ``State`` (where each side of the exchange is, with h11's names), the
transition table both sides follow, and ``Phase`` (what the connection as a whole
is doing, which decides the deadline that applies). Sans-IO, pure; runs on the event
loop as part of ``ServerConnection``.

Rules (as h11's ``_state.py``; one transition table per side, below):

1. The client: IDLE --request--> SEND_BODY --end of message--> DONE. A request that
   does not let the connection be reused (``Connection: close``, HTTP/1.0 without
   keep-alive: rule 9) ends in MUST_CLOSE instead.
2. The client: EOF with nothing left unparsed makes IDLE, DONE or MUST_CLOSE CLOSED.
   EOF inside a request is a ``ProtocolError``.
3. Us: IDLE --request--> SEND_RESPONSE --response--> SEND_BODY --end--> DONE, or
   MUST_CLOSE if either side forbids reuse (the request, the response's framing or
   a ``Connection: close`` from the app, a draining server), or the client is
   CLOSED.
4. Us: an error response (``error_response``) from IDLE or SEND_RESPONSE (a bad
   head, a refused connection), or a failure to
   send a response whole (``send_failed``) from anywhere, makes our side ERROR.
5. A ``ProtocolError`` makes the client's side ERROR, for good: nothing after a bad
   request is ever parsed.
6. The next request cycle starts only when both sides are DONE; both become IDLE.
7. The phase (``Phase``) is derived from both sides and the bytes held: IDLE (no
   request, nothing buffered), HEAD (a head arriving), BODY (a body arriving),
   DISPATCHED (the request is complete and no response has started), RESPONDING,
   LINGER (the connection is closing: we send nothing more, and what we sent may
   still wait for the client to read it, whether or not it has closed its side)
   and CLOSED (the client has closed and we have not begun to).
8. Each phase has one deadline (``Deadline``, table ``DEADLINES``): IDLE the
   keep-alive, HEAD the whole head, BODY the body's progress, DISPATCHED and
   RESPONDING the app's (the wait for a thread, then the call), LINGER the linger,
   CLOSED none. In IDLE, HEAD and RESPONDING a client that holds us up by not
   reading (its requests wait behind unread responses; the app is done and its
   output waits in the spool) is on the WRITE deadline instead: the minimum read
   rate.
9. HTTP/1.0 keep-alive (h11 has none: it closes every 1.0 connection). A 1.0
   request allows reuse (rule 1) only with a ``Connection: keep-alive`` token and
   no ``close`` (RFC 9112 §9.3 and appendix C.2.2, RFC 2068 §19.7.1); its response
   then says ``Connection: keep-alive`` if its length is known (Content-Length, or
   no body: HEAD, 204, 304), while a close-delimited body ends the connection
   (rule 3). h11 is unaffected: it parses one head per h11 connection, and each
   request cycle gets a fresh one (``ServerConnection.start_next_cycle``), so the
   keep-alive decision is ours (``_head.check_framing``) and so is the response's
   header (``_framing.response_head``). A response written as HTTP/1.0 (a
   handler's ``http_version``) still ends the connection.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Final

__all__ = [
    "CLOSED",
    "DEADLINES",
    "DONE",
    "ERROR",
    "IDLE",
    "MUST_CLOSE",
    "SEND_BODY",
    "SEND_RESPONSE",
    "Deadline",
    "Event",
    "Phase",
    "State",
    "deadline",
    "moves",
    "transition",
]


class State(Enum):
    """Where one side of the exchange is (h11's names)."""

    # Members are compared by identity anyway; Enum's own __hash__ is Python code
    # hashing the name, about half the cost of a transition (measured with
    # cProfile: 14 calls a request).
    __hash__ = object.__hash__

    IDLE = auto()
    SEND_RESPONSE = auto()
    SEND_BODY = auto()
    DONE = auto()
    MUST_CLOSE = auto()
    CLOSED = auto()
    ERROR = auto()


class Event(Enum):
    """What moves a side from one state to another."""

    __hash__ = object.__hash__  # as State's

    REQUEST = auto()  # a request head was accepted
    END_OF_MESSAGE = auto()  # the request body ended
    EOF = auto()  # the client closed its side, nothing left unparsed
    RESPONSE = auto()  # our response started
    RESPONSE_END = auto()  # our response ended
    ERROR_RESPONSE = auto()  # we answered with an error and will close
    FAILED = auto()  # our response could not be sent whole
    NEXT_CYCLE = auto()  # both sides DONE: the next request may come


# The members as module names. ``State.IDLE`` goes through the enum's metaclass,
# about 95 ns a lookup on CPython 3.11 against 20 ns for a module global, and the
# connection looks its states up twenty-odd times a request: hot code imports these.
IDLE, SEND_RESPONSE, SEND_BODY, DONE, MUST_CLOSE, CLOSED, ERROR = State

#: The client's transitions (rules 1, 2, 6).
CLIENT: Final[dict[State, dict[Event, State]]] = {
    IDLE: {Event.REQUEST: SEND_BODY, Event.EOF: CLOSED},
    SEND_BODY: {Event.END_OF_MESSAGE: DONE},
    DONE: {Event.EOF: CLOSED, Event.NEXT_CYCLE: IDLE},
    MUST_CLOSE: {Event.EOF: CLOSED},
}
#: Our transitions (rules 3, 4, 6); FAILED is allowed from every state.
SERVER: Final[dict[State, dict[Event, State]]] = {
    IDLE: {Event.REQUEST: SEND_RESPONSE, Event.ERROR_RESPONSE: ERROR},
    SEND_RESPONSE: {Event.RESPONSE: SEND_BODY, Event.ERROR_RESPONSE: ERROR},
    SEND_BODY: {Event.RESPONSE_END: DONE},
    DONE: {Event.NEXT_CYCLE: IDLE},
}


def transition(
    table: dict[State, dict[Event, State]], state: State, event: Event
) -> State:
    """The state after ``event``; ``RuntimeError`` if the table has no such move
    (a bug in the caller: the connection checks what it may do first)."""
    if event is Event.FAILED:
        return ERROR
    try:
        return table[state][event]
    except KeyError:
        raise RuntimeError(f"no transition from {state.name} on {event.name}") from None


def moves(table: dict[State, dict[Event, State]], event: Event) -> dict[State, State]:
    """The table's moves on ``event``, from state to state: what the hot path looks
    up, one dict lookup instead of a call of ``transition`` (seven a request)."""
    return {state: after[event] for state, after in table.items() if event in after}


class Phase(Enum):
    """What the connection as a whole is doing (rule 7)."""

    __hash__ = object.__hash__  # as State's

    IDLE = auto()
    HEAD = auto()
    BODY = auto()
    DISPATCHED = auto()
    RESPONDING = auto()
    LINGER = auto()
    CLOSED = auto()


class Deadline(Enum):
    """The clock a connection is on (rule 8), with the setting that bounds it."""

    __hash__ = object.__hash__  # as State's

    KEEP_ALIVE = auto()  # timeout_keep_alive: the next request's first byte
    HEAD = auto()  # timeout_request_header: the whole head, from its first byte
    BODY = auto()  # timeout_request_body: each piece of the body renews it
    APP = auto()  # max_queue_wait for a thread, then timeout_request for the call
    WRITE = auto()  # timeout_write: the client reads min_write_rate of our output
    LINGER = auto()  # after our FIN: the client's close, then our output read


#: The deadline of each phase (rule 8).
DEADLINES: Final[dict[Phase, Deadline | None]] = {
    Phase.IDLE: Deadline.KEEP_ALIVE,
    Phase.HEAD: Deadline.HEAD,
    Phase.BODY: Deadline.BODY,
    Phase.DISPATCHED: Deadline.APP,
    Phase.RESPONDING: Deadline.APP,
    Phase.LINGER: Deadline.LINGER,
    Phase.CLOSED: None,
}


_HELD = frozenset((Phase.IDLE, Phase.HEAD, Phase.RESPONDING))


def deadline(phase: Phase, *, held_by_client: bool = False) -> Deadline | None:
    """The deadline that applies in ``phase`` (rule 8); ``held_by_client`` says that
    only the client's reading stands between us and the next step."""
    if held_by_client and phase in _HELD:
        return Deadline.WRITE
    return DEADLINES[phase]
