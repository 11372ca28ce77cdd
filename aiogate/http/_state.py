"""The state machine of one connection: both sides of the exchange, and its phase.

Owns: ``State`` (where each side of the exchange is, with h11's names), the
transition table both sides follow, and ``Phase`` (what the connection as a whole
is doing, which decides the deadline that applies). Sans-IO, pure; runs on the event
loop as part of ``ServerConnection``.

Rules (as h11's ``_state.py``; one transition table per side, below):

1. The client: IDLE --request--> SEND_BODY --end of message--> DONE. A request that
   does not let the connection be reused (HTTP/1.0, ``Connection: close``) ends in
   MUST_CLOSE instead.
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
   LINGER (the connection is closing: we send nothing more) and CLOSED. Each phase
   has one kind of deadline (keep-alive, head, body, the app's, the linger).
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Final

__all__ = [
    "CLOSED",
    "DONE",
    "ERROR",
    "IDLE",
    "MUST_CLOSE",
    "SEND_BODY",
    "SEND_RESPONSE",
    "Event",
    "Phase",
    "State",
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

    IDLE = auto()
    HEAD = auto()
    BODY = auto()
    DISPATCHED = auto()
    RESPONDING = auto()
    LINGER = auto()
    CLOSED = auto()
