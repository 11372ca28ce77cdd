"""The sans-IO HTTP/1.1 core: what a client may send us, and how we answer.

``ServerConnection`` takes received bytes and gives back events (h11's event types:
h11 parses each request head, once we have checked it), keeps the state of both
sides of the exchange (``State``, by the rules of ``_state``) and frames our
responses. No I/O, no threads, no logging: it raises ``ProtocolError`` for a bad
request, and the caller (``aiogate.protocol``, on the event loop) answers and
closes.

Modules: ``_syntax`` (the grammar), ``_head`` (request heads), ``_chunked`` (chunked
bodies), ``_framing`` (response bytes), ``_state`` (the state machine),
``_connection`` (the facade).
"""

from ._chunked import CHUNK_LINES_PER_CALL
from ._connection import ServerConnection
from ._framing import DEFAULT_SERVER_FIELD, server_field
from ._state import (
    CLOSED,
    DEADLINES,
    DONE,
    ERROR,
    IDLE,
    MUST_CLOSE,
    SEND_BODY,
    SEND_RESPONSE,
    Deadline,
    Phase,
    State,
    deadline,
)

# The states are also exported as module names, for hot code (see _state.py).
__all__ = [
    "CHUNK_LINES_PER_CALL",
    "CLOSED",
    "DEADLINES",
    "DEFAULT_SERVER_FIELD",
    "DONE",
    "ERROR",
    "IDLE",
    "MUST_CLOSE",
    "SEND_BODY",
    "SEND_RESPONSE",
    "Deadline",
    "Phase",
    "ServerConnection",
    "State",
    "deadline",
    "server_field",
]
