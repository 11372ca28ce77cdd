"""The connection's state machine (aiogate/http/_state.py): the transition tables,
and the phase ``ServerConnection`` derives from both sides, through a whole cycle."""

from __future__ import annotations

import h11
import pytest

from aiogate.http import DEADLINES, Deadline, Phase, ServerConnection, State, deadline
from aiogate.http._state import CLIENT, SERVER, Event, transition

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize(
    ("table", "state", "event", "after"),
    [
        (CLIENT, State.IDLE, Event.REQUEST, State.SEND_BODY),
        (CLIENT, State.SEND_BODY, Event.END_OF_MESSAGE, State.DONE),
        (CLIENT, State.DONE, Event.EOF, State.CLOSED),
        (CLIENT, State.DONE, Event.NEXT_CYCLE, State.IDLE),
        (SERVER, State.IDLE, Event.REQUEST, State.SEND_RESPONSE),
        (SERVER, State.SEND_RESPONSE, Event.RESPONSE, State.SEND_BODY),
        (SERVER, State.SEND_BODY, Event.RESPONSE_END, State.DONE),
        (SERVER, State.IDLE, Event.ERROR_RESPONSE, State.ERROR),
        (SERVER, State.SEND_BODY, Event.FAILED, State.ERROR),  # rule 4: from anywhere
        (SERVER, State.DONE, Event.FAILED, State.ERROR),
    ],
)
def test_transitions(
    table: dict[State, dict[Event, State]], state: State, event: Event, after: State
) -> None:
    assert transition(table, state, event) is after


@pytest.mark.parametrize(
    ("table", "state", "event"),
    [
        (CLIENT, State.SEND_BODY, Event.REQUEST),  # one request at a time
        (CLIENT, State.MUST_CLOSE, Event.NEXT_CYCLE),  # never reused
        (SERVER, State.SEND_BODY, Event.ERROR_RESPONSE),  # too late for an error
        (SERVER, State.MUST_CLOSE, Event.NEXT_CYCLE),
        (SERVER, State.ERROR, Event.RESPONSE),
    ],
)
def test_moves_the_tables_do_not_have_are_refused(
    table: dict[State, dict[Event, State]], state: State, event: Event
) -> None:
    with pytest.raises(RuntimeError, match="no transition"):
        transition(table, state, event)


def test_phases_through_a_cycle() -> None:
    conn = ServerConnection()
    assert conn.phase is Phase.IDLE
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\n")
    assert conn.next_event() is h11.NEED_DATA
    assert conn.phase is Phase.HEAD
    conn.receive_data(b"Content-Length: 2\r\n\r\na")
    assert type(conn.next_event()) is h11.Request
    assert conn.phase is Phase.BODY
    assert conn.next_event() == h11.Data(data=b"a")
    assert conn.next_event() is h11.NEED_DATA
    assert conn.phase is Phase.BODY
    conn.receive_data(b"b")
    assert conn.next_event() == h11.Data(data=b"b")
    assert type(conn.next_event()) is h11.EndOfMessage
    assert conn.phase is Phase.DISPATCHED
    conn.start_response("200 OK", [("Content-Length", "0")])
    assert conn.phase is Phase.RESPONDING
    conn.end_response()
    assert (conn.our_state, conn.their_state) == (State.DONE, State.DONE)
    conn.start_next_cycle()
    assert conn.phase is Phase.IDLE
    conn.receive_data(b"")
    assert type(conn.next_event()) is h11.ConnectionClosed
    assert conn.phase is Phase.CLOSED


def test_a_closing_connection_lingers() -> None:
    conn = ServerConnection()
    conn.receive_data(GET[:-2] + b"Connection: close\r\n\r\n")
    assert type(conn.next_event()) is h11.Request
    conn.start_response("200 OK", [("Content-Length", "0")])
    conn.end_response()
    assert conn.our_state is State.MUST_CLOSE
    assert conn.phase is Phase.LINGER
    conn.closing()
    assert conn.phase is Phase.LINGER


def test_closing_after_the_clients_eof_still_lingers_and_has_a_deadline() -> None:
    # Our response may still wait in the socket for a client that half-closed:
    # the linger's deadline must hold it, so closing is LINGER, never CLOSED.
    conn = ServerConnection()
    conn.receive_data(GET)
    assert type(conn.next_event()) is h11.Request
    assert type(conn.next_event()) is h11.EndOfMessage
    conn.start_response("200 OK", [("Content-Length", "0")])
    conn.end_response()
    conn.receive_data(b"")
    assert type(conn.next_event()) is h11.ConnectionClosed
    assert conn.phase is Phase.CLOSED
    assert deadline(conn.phase) is None
    conn.closing()
    assert conn.phase is Phase.LINGER
    assert deadline(conn.phase) is Deadline.LINGER


def test_every_phase_has_its_deadline_and_a_client_not_reading_has_write() -> None:
    assert set(DEADLINES) == set(Phase)
    for phase in Phase:
        held = deadline(phase, held_by_client=True)
        if phase in (Phase.IDLE, Phase.HEAD, Phase.RESPONDING):
            assert held is Deadline.WRITE
        else:
            assert held is DEADLINES[phase]
    assert deadline(Phase.DISPATCHED) is Deadline.APP
    assert deadline(Phase.BODY) is Deadline.BODY


def test_an_error_response_ends_our_side() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")  # no Host
    with pytest.raises(Exception, match="missing Host"):
        conn.next_event()
    assert conn.their_state is State.ERROR
    assert conn.error_response(400, "missing Host").startswith(b"HTTP/1.1 400 ")
    assert conn.our_state is State.ERROR
    assert conn.error_response(400, "again") == b""  # one answer, then nothing
    assert conn.phase is Phase.LINGER
