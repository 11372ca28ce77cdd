"""Response framing and serialisation: the bytes we send, by h11's rules.

Owns: ``response_head`` (the status line and header block of a response, and the
framing its body gets), ``error_response`` (the canned responses we answer bad or
refused requests with) and the framing markers. Pure functions, sans-IO; raise
``h11.LocalProtocolError`` for a response that must not go out; run on the event
loop.

Responses are serialised here rather than by h11: the handler has already
validated the status and headers (``aiogate.response``), and h11's send path
re-validated them with regexes and built each Response twice, about a third of the
server's CPU per hello-world request (measured with benchmarks/profile_inline.py).
The framing rules are h11's (and RFC 9112 §6): Content-Length when the app gives
one, chunked for a 1.1 client otherwise, close-delimited for 1.0; no body for HEAD,
204 and 304. HTTP/1.0 keep-alive, which h11 does not do, is ``_state`` rule 9.
The guard against response splitting (CR, LF or NUL, non-latin-1)
stays here even if a custom handler skips validation.

Our own error responses carry the same ``Server`` header as the app's responses, or
none when the operator turned it off (``--server-header ""``): one policy for every
response, so the header neither tells a scanner which answers came from the app nor
says more than the operator chose to. The caller resolves the setting once, at
startup, with ``server_field``, and passes the bytes to ``error_response``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

import h11

from ..response import SERVER_SOFTWARE, http_date
from ._head import CHUNKED

__all__ = [
    "CHUNKED",
    "DEFAULT_SERVER_FIELD",
    "NO_BODY",
    "UNTIL_CLOSE",
    "error_response",
    "response_head",
    "server_field",
]

#: Body framing of a response besides a remaining Content-Length >= 0 and CHUNKED.
NO_BODY: Final = -2  # HEAD, 204, 304
UNTIL_CLOSE: Final = -3  # no length, HTTP/1.0 client: the close ends the body

# error_response: the body repeats the reason, cut to this many characters.
_MAX_REASON_CHARS: Final = 200
# RFC 9110 §15.5.6: a 405 MUST carry Allow. We answer 405 only to CONNECT, which we
# do not serve; every other method goes to the app.
_ALLOW: Final = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"


def server_field(software: str | None) -> bytes:
    """The ``Server`` field line (CRLF included) of ``error_response`` for the
    server's ``software`` (``--server-header``, else the handler's
    ``server_software``): ``b""`` when it is None or empty, as the handler then
    sends none either. Raises ``ValueError`` for a value that cannot be sent (CR,
    LF or NUL, or not latin-1); call it once, at startup."""
    if not software:
        return b""
    if "\r" in software or "\n" in software or "\0" in software:
        raise ValueError(f"Server header must not contain CR, LF or NUL: {software!r}")
    try:
        return f"Server: {software}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"Server header must be latin-1: {software!r}") from None


#: The ``Server`` field line of ``error_response`` when no setting is given: the
#: same as the default ``ServerHandler.server_software`` puts on app responses.
DEFAULT_SERVER_FIELD: Final = server_field(SERVER_SOFTWARE)


def response_head(
    status: str,
    headers: list[tuple[str, str]],
    *,
    head_request: bool,
    http11: bool,
    keep_alive: bool,
    version: str = "1.1",
) -> tuple[bytes, int, bool]:
    """The status line and header block of a final response, the framing of its
    body (a Content-Length, ``CHUNKED``, ``NO_BODY`` or ``UNTIL_CLOSE``) and
    whether the connection may be reused after it.

    ``version`` is the response's HTTP version, "1.1" or "1.0" (a handler's
    ``http_version``): a 1.0 response is never chunked and ends the connection, as
    for a 1.0 client (RFC 9112 §6.3, §9.3).

    Any ``Connection`` or ``Transfer-Encoding`` field of ``headers`` is replaced by
    our own framing and keep-alive fields; ``keep_alive=False`` adds
    ``Connection: close``, and so does a close-delimited body; a 1.0 client
    (``http11=False``) that asked for keep-alive gets ``Connection: keep-alive``
    when the body's length is known (``_state`` rule 9). Raises
    ``h11.LocalProtocolError`` if the status or a header would break the message
    (CR, LF or NUL; non-latin-1; a 1xx status; a bad Content-Length)."""
    length = -1
    lines = [f"HTTP/{version} {status}"]
    if version != "1.1":
        http11 = keep_alive = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-length":
            # One field of ASCII digits (RFC 9110 §8.6), as the handler checks.
            if length != -1 or not (value.isascii() and value.isdigit()):
                raise h11.LocalProtocolError(f"bad Content-Length {value!r}")
            length = int(value)
        elif lowered == "connection":
            if "close" in value.lower():
                keep_alive = False
            continue
        elif lowered == "transfer-encoding":
            continue
        lines.append(f"{name}: {value}")
    code = int(status[:3]) if status[:3].isdigit() else 0
    if code < 200:
        raise h11.LocalProtocolError(f"not a final status: {status!r}")
    if head_request or code == 204 or code == 304:
        framing = NO_BODY
    elif length != -1:
        framing = length
    elif http11:
        framing = CHUNKED
        lines.append("Transfer-Encoding: chunked")
    else:
        framing = UNTIL_CLOSE
        keep_alive = False
    if not keep_alive:
        lines.append("Connection: close")
    elif not http11:
        # ``_state`` rule 9: a 1.0 client keeps the connection only if told so.
        lines.append("Connection: keep-alive")
    lines.append("\r\n")
    text = "\r\n".join(lines)
    # Exactly one LF per line, each after a CR, and no NUL: no split response.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines) or "\0" in text:
        raise h11.LocalProtocolError("CR, LF or NUL in the status or a header")
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise h11.LocalProtocolError(f"status or header not latin-1: {exc}") from None
    return data, framing, keep_alive


def error_response(
    status: int,
    reason: str,
    *,
    retry_after: int | None = None,
    head_only: bool,
    server: bytes = DEFAULT_SERVER_FIELD,
) -> bytes:
    """The complete bytes of a small ``text/plain`` error response that closes the
    connection. ``status`` must be 400-599; ``retry_after`` (seconds) adds a
    ``Retry-After`` header (RFC 9110 §10.2.3), for 503s; ``head_only`` leaves out
    the body (RFC 9110 §9.3.2: a response to HEAD has no content); ``server`` is
    the ``Server`` field line from ``server_field`` (``b""`` for none)."""
    if not 400 <= status <= 599:
        raise ValueError(f"error status must be 400-599, not {status}")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    text = "".join(c if " " <= c <= "~" else "?" for c in reason[:_MAX_REASON_CHARS])
    body = (text + "\n").encode("ascii")
    extra = f"Allow: {_ALLOW}\r\n" if status == 405 else ""
    if retry_after is not None:
        extra += f"Retry-After: {int(retry_after)}\r\n"
    head = (
        # RFC 9110 §6.6.1: an origin server with a clock MUST send Date in 4xx.
        f"HTTP/1.1 {status} {phrase}\r\nDate: {http_date()}\r\n".encode("ascii")
        + server
        + (
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{extra}"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
    )
    return head if head_only else head + body
