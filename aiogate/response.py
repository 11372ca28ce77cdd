"""The rules a WSGI response must follow before it reaches the wire.

Owns: status-line parsing, response-header validation, the hop-by-hop header set,
the "this response has no body" rule, Content-Length parsing and the cached ``Date``
value. Sans-IO and pure: no sockets, threads, event loop or logging; functions raise
``ValueError``/``TypeError`` and the caller decides what that means (the handlers turn
it into a 500 before any byte is sent). Called from worker threads; the only shared
state is the one-entry ``Date`` cache, which is swapped as a whole tuple.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Final

__all__ = [
    "HOP_BY_HOP",
    "body_forbidden",
    "content_length",
    "http_date",
    "is_hop_by_hop",
    "parse_status",
    "validate_headers",
]

#: Connection-level headers a WSGI app must not set (PEP 3333, "Other HTTP Features";
#: the same set as ``wsgiref.util.is_hop_by_hop``, RFC 2616 §13.5.1).
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# RFC 9110 §5.6.2: token = 1*tchar. h11 uses the same pattern for field names.
_TOKEN_RE: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: CR, LF and NUL in a field value are "invalid and dangerous" (they
# split or truncate the message). VT and FF are whitespace h11 refuses to send, so
# letting them through would only move the failure to after the response started.
_BAD_VALUE_RE: Final = re.compile(r"[\r\n\0\x0b\x0c]")
# RFC 9110 §15: reason-phrase = *( HTAB / SP / VCHAR / obs-text ), so no control
# characters at all. h11 writes the reason verbatim, so this check is what stands
# between an app and a split status line.
_BAD_REASON_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9110 §8.6: Content-Length = 1*DIGIT (ASCII digits only; int() takes more).
_DIGITS_RE: Final = re.compile(r"[0-9]+")


def parse_status(status: str) -> tuple[int, str]:
    """Split a PEP 3333 status (``"200 OK"``) into ``(200, "OK")``.

    The status must be a ``str``: three ASCII digits (100-999), one space, then a
    reason phrase (which may be empty, as wsgiref allows) of latin-1 characters with
    no control characters other than tab. Raises ``TypeError`` for a non-str and
    ``ValueError`` otherwise, with a message that quotes the status.
    """
    if not isinstance(status, str):
        raise TypeError(
            f"status must be a str, not {type(status).__name__}: {status!r}"
        )
    code = status[:3]
    if len(code) != 3 or not code.isascii() or not code.isdigit():
        raise ValueError(f"status must begin with a 3-digit code: {status!r}")
    if status[3:4] != " ":
        raise ValueError(f"status must have a space after the code: {status!r}")
    number = int(code)
    if number < 100:
        raise ValueError(f"status code must be 100-999: {status!r}")
    reason = status[4:]
    if _BAD_REASON_RE.search(reason):
        raise ValueError(f"status must not contain control characters: {status!r}")
    try:
        reason.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"status must be latin-1 text: {status!r}") from None
    return number, reason


def validate_headers(headers: object) -> None:
    """Check a ``start_response`` header list; return None or raise.

    ``headers`` must be a ``list`` (PEP 3333) of ``(name, value)`` tuples of ``str``;
    else ``TypeError``. A name must be an RFC 9110 token, and a value must be latin-1
    text without CR, LF, NUL, VT or FF; else ``ValueError``. Hop-by-hop names are the
    caller's business (see ``is_hop_by_hop``).
    """
    if not isinstance(headers, list):
        raise TypeError(f"headers must be a list, not {type(headers).__name__}")
    for item in headers:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"each header must be a (name, value) tuple: {item!r}")
        name, value = item
        if not isinstance(name, str):
            raise TypeError(f"header name must be a str: {name!r}")
        if not isinstance(value, str):
            raise TypeError(f"value of header {name!r} must be a str: {value!r}")
        if not _TOKEN_RE.fullmatch(name):
            raise ValueError(f"header name is not a valid token: {name!r}")
        if _BAD_VALUE_RE.search(value):
            raise ValueError(
                f"value of header {name!r} must not contain CR, LF, NUL, VT or FF: "
                f"{value!r}"
            )
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"value of header {name!r} must be latin-1 text: {value!r}"
            ) from None


def is_hop_by_hop(name: str) -> bool:
    """True for a connection-level header name (any case), as ``wsgiref.util``."""
    return name.lower() in HOP_BY_HOP


def body_forbidden(method: str, status_code: int) -> bool:
    """True if this response must carry no body bytes: a response to HEAD, or a
    1xx, 204 or 304 status (RFC 9112 §6.3 rule 1)."""
    return method == "HEAD" or status_code < 200 or status_code in (204, 304)


def content_length(values: Iterable[str]) -> int | None:
    """The one length the ``Content-Length`` values declare, or None if there are none.

    Each value may be a comma-separated list (RFC 9110 §8.6 lets a recipient accept
    ``"42, 42"``); all members must be the same string of ASCII digits, else
    ``ValueError``. This is what h11 accepts, checked before the response starts.
    """
    lengths = {part.strip() for value in values for part in value.split(",")}
    if not lengths:
        return None
    if len(lengths) != 1:
        raise ValueError(f"conflicting Content-Length values: {sorted(lengths)!r}")
    (length,) = lengths
    # h11 refuses more than 20 digits (CONTENT_LENGTH_MAX_DIGITS).
    if not _DIGITS_RE.fullmatch(length) or len(length) > 20:
        raise ValueError(f"invalid Content-Length: {length!r}")
    return int(length)


# IMF-fixdate (RFC 9110 §5.6.7) needs English names whatever the locale; this is
# the formatting of wsgiref.handlers.format_date_time.
_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "", "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip

# (whole second, formatted date). Every response asks for the date, so it is built
# once a second. Readers take the tuple in one step and a writer replaces it in one
# step, so threads racing here at worst format the same second twice.
_date_cache: tuple[int, str] = (-1, "")


def http_date(now: float | None = None) -> str:
    """``now`` (default: the current time) as an IMF-fixdate such as
    ``"Sun, 06 Nov 1994 08:49:37 GMT"``, cached for the whole second."""
    global _date_cache
    second = int(time.time() if now is None else now // 1)
    cached = _date_cache
    if cached[0] == second:
        return cached[1]
    t = time.gmtime(second)
    value = (
        f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
    _date_cache = (second, value)
    return value
