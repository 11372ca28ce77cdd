"""Replay the raw request corpus in ``tests/requests/`` through ``ServerConnection``.

``valid/NAME.http`` holds one complete request; ``valid/NAME.json`` the request h11
must report (method, target, version, headers, body, trailers). ``invalid/NNN-*.http``
holds a bad request whose rejection status is ``NNN``; some only fail at EOF
(``*-eof-*``), which every replay sends at the end.

Each file is replayed whole, one byte at a time and split in two at every byte
position (gunicorn's ``treq.py`` idea), and every replay must give the same outcome.
For a valid request a second copy pipelined behind it must parse the same (or, when
the first one closes the connection, never be parsed); for an invalid one nothing
after the error may ever be parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest

from aiogate.errors import ProtocolError
from aiogate.http import ServerConnection, State

CORPUS = Path(__file__).parent / "requests"
VALID = sorted((CORPUS / "valid").glob("*.http"))
INVALID = sorted((CORPUS / "invalid").glob("*.http"))

NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n"


@dataclass
class Outcome:
    """What one replay saw: the request, its body and trailers, and how it ended."""

    request: tuple[str, str, str, list[list[str]]] | None = None
    body: bytearray = field(default_factory=bytearray)
    trailers: list[list[str]] | None = None
    closed: bool = False
    status: int | None = None
    requests: int = 0

    def add(self, event: Any) -> None:
        if type(event) is h11.Request:
            self.requests += 1
            self.request = (
                event.method.decode("ascii"),
                event.target.decode("latin-1"),
                event.http_version.decode("ascii"),
                [[n.decode("ascii"), v.decode("latin-1")] for n, v in event.headers],
            )
        elif type(event) is h11.Data:
            self.body += event.data
        elif type(event) is h11.EndOfMessage:
            self.trailers = [
                [n.decode("ascii"), v.decode("latin-1")] for n, v in event.headers
            ]
        elif type(event) is h11.ConnectionClosed:
            self.closed = True

    def summary(self) -> tuple[object, ...]:
        return (self.request, bytes(self.body), self.trailers, self.closed, self.status)


def drain(conn: ServerConnection, outcome: Outcome) -> bool:
    """Take events until h11 needs data or pauses. False once the request failed."""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return True
            outcome.add(event)
            if type(event) is h11.ConnectionClosed:
                return True
    except ProtocolError as exc:
        outcome.status = exc.status_hint
        return False


def replay(pieces: list[bytes]) -> Outcome:
    """Feed ``pieces`` one by one (draining after each), then EOF. If the request
    ended but the connection did not (an Upgrade request waits for our answer, as
    in h11), respond and drain again."""
    conn = ServerConnection()
    outcome = Outcome()
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        if not drain(conn, outcome):
            break
    else:
        if outcome.trailers is not None and not outcome.closed:
            respond(conn)
            drain(conn, outcome)
    assert outcome.requests <= 1
    return outcome


def splits(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield f"split at {i}", [data[:i], data[i:]]


def respond(conn: ServerConnection) -> None:
    conn.start_response("200 OK", [("Content-Length", "0")])
    conn.end_response()


def name_of(path: Path) -> str:
    return path.stem


def test_corpus_is_big_enough() -> None:
    assert len(VALID) >= 25
    assert len(INVALID) >= 35
    for path in VALID:
        assert path.with_suffix(".json").exists(), path


@pytest.mark.parametrize("path", VALID, ids=name_of)
def test_valid_request(path: Path) -> None:
    data = path.read_bytes()
    expected = json.loads(path.with_suffix(".json").read_text())
    outcome = replay([data])
    assert outcome.status is None
    assert outcome.request == (
        expected["method"],
        expected["target"],
        expected["version"],
        expected["headers"],
    )
    assert bytes(outcome.body) == expected["body"].encode("latin-1")
    assert outcome.trailers == expected["trailers"]
    assert outcome.closed
    first = outcome.summary()
    for how, pieces in splits(data):
        assert replay(pieces).summary() == first, how


@pytest.mark.parametrize("path", VALID, ids=name_of)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_valid_request_pipelined(path: Path, bytewise: bool) -> None:
    data = path.read_bytes()
    pair = data + data
    pieces = [pair[i : i + 1] for i in range(len(pair))] if bytewise else [pair]
    conn = ServerConnection()
    first = Outcome()
    for piece in pieces:
        conn.receive_data(piece)
        assert drain(conn, first)
    assert first.requests == 1
    assert first.trailers is not None  # the first request ended
    assert conn.next_event() is h11.PAUSED  # the second one waits
    respond(conn)
    if conn.our_state is State.MUST_CLOSE:  # HTTP/1.0 or Connection: close
        assert conn.next_event() is h11.PAUSED
        conn.receive_data(b"")
        assert conn.next_event() is h11.PAUSED  # never parsed, even after EOF
        return
    conn.start_next_cycle()
    second = Outcome()
    assert drain(conn, second)
    respond(conn)
    conn.receive_data(b"")
    assert drain(conn, second)
    assert second.requests == 1
    assert second.closed
    assert second.request == first.request
    assert second.body == first.body
    assert second.trailers == first.trailers


@pytest.mark.parametrize("path", INVALID, ids=name_of)
def test_invalid_request(path: Path) -> None:
    data = path.read_bytes()
    status = int(path.name.split("-", 1)[0])
    outcome = replay([data])
    assert outcome.status == status
    assert not outcome.closed
    expected = (outcome.request, outcome.status)
    for how, pieces in splits(data):
        again = replay(pieces)
        assert (again.request, again.status) == expected, how


@pytest.mark.parametrize("path", INVALID, ids=name_of)
def test_nothing_after_an_invalid_request_is_parsed(path: Path) -> None:
    data = path.read_bytes()
    status = int(path.name.split("-", 1)[0])
    conn = ServerConnection()
    outcome = Outcome()
    conn.receive_data(data + NEXT_REQUEST)
    ok = drain(conn, outcome)
    if ok:  # only a truncated request gets this far: the rest read as its body
        assert "-eof-" in path.name
        return
    assert outcome.status == status
    assert conn.their_state is State.ERROR
    for _ in range(2):
        conn.receive_data(NEXT_REQUEST)
        with pytest.raises(ProtocolError) as excinfo:
            conn.next_event()
        assert excinfo.value.status_hint == status
    assert outcome.requests <= 1
