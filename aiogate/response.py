"""The rules a WSGI response must follow before it reaches the wire.

Owns: status-line parsing, response-header validation, the hop-by-hop header set, the
"this response has no body" rule, Content-Length parsing, the cached ``Date`` value, the
default ``Server`` value (``SERVER_SOFTWARE``), and ``scan_headers``, the one-pass fast
path the server's handler runs on every ``start_response``. Sans-IO and pure: no
sockets, threads, event loop or logging; functions raise ``ValueError``/``TypeError``
and the caller decides what that means (the handlers turn it into a 500 before any byte
is sent). Called from worker threads; the shared state is caches: the one-entry ``Date``
cache, swapped as a whole tuple, two bounded dicts (status → code, header name → kind)
and a set of header values known to be plain, emptied when full. Each holds only entries
that are right for every thread, so a race at worst computes one twice.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Final, TypeAlias

from ._version import __version__

__all__ = [
    "HOP_BY_HOP",
    "SERVER_SOFTWARE",
    "body_forbidden",
    "content_length",
    "http_date",
    "is_hop_by_hop",
    "parse_status",
    "scan_headers",
    "status_code",
    "validate_headers",
]

#: The ``Server`` header of every response (and ``SERVER_SOFTWARE``) unless the
#: operator sets ``--server-header`` or a handler class its ``server_software``.
SERVER_SOFTWARE: Final = f"aiogate/{__version__}"

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
# RFC 9110 §15: reason-phrase = *( HTAB / SP / VCHAR / obs-text ), so no control
# characters at all. h11 writes the reason verbatim, so this check is what stands
# between an app and a split status line.
_BAD_REASON_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9110 §8.6: Content-Length = 1*DIGIT (ASCII digits only; int() takes more).
_DIGITS_RE: Final = re.compile(r"[0-9]+")
# RFC 9110 §5.5: field-value = *field-content, whose characters are VCHAR (0x21-0x7E),
# obs-text (0x80-0xFF), SP and HTAB. So no control character: CR, LF and NUL are
# "invalid and dangerous" (they split or truncate the message), and the others
# (ESC, DEL, 0x01 ...) are invalid too: a recipient "MAY retain" them, but we are
# the sender, and an ESC that reaches a terminal showing a log is its own hazard.
# h11 lets them through both ways (its issue 57: clients send Google Analytics
# cookies with 0x01), a tolerance for what arrives that is no reason to send them.
# Above 0xFF nothing can be sent at all (PEP 3333: latin-1). This class is every
# character refused; it is searched only for a value that is not printable ASCII,
# which isascii() and isprintable() (exactly 0x20-0x7E) settle first. A typical
# value (a media type, a cookie, an ETag) costs 0.1-0.3 µs this way, against
# 0.2-0.6 µs for the two regex searches and the encode() it replaced (timeit).
_NOT_FIELD_CHAR_RE: Final = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


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


# Statuses an app repeats ("200 OK") are parsed once. Only valid statuses of exact type
# str are remembered (a str subclass could hash or compare unlike its text), at most
# this many: the status is chosen by the app, but an app may echo what clients send.
_status_codes: dict[str, int] = {}
_STATUS_CACHE_LIMIT: Final = 256


def status_code(status: str) -> int:
    """``parse_status(status)[0]``, remembered for statuses seen before; raises as
    ``parse_status`` does."""
    if type(status) is str:
        code = _status_codes.get(status)
        if code is not None:
            return code
    code = parse_status(status)[0]
    if type(status) is str and len(_status_codes) < _STATUS_CACHE_LIMIT:
        _status_codes[status] = code
    return code


def validate_headers(headers: object) -> None:
    """Check a ``start_response`` header list; return None or raise.

    ``headers`` must be a ``list`` (PEP 3333) of ``(name, value)`` tuples of ``str``;
    else ``TypeError``. A name must be an RFC 9110 token, and a value may hold only
    VCHAR, obs-text (latin-1 above 0x7F), SP and HTAB (RFC 9110 §5.5: no control
    characters); else ``ValueError``. Hop-by-hop names are the caller's business
    (see ``is_hop_by_hop``).
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
        if value.isascii() and value.isprintable():
            continue
        bad = _NOT_FIELD_CHAR_RE.search(value)
        if bad is None:
            continue
        if ord(bad.group()) > 0xFF:
            raise ValueError(
                f"value of header {name!r} must be latin-1 text: {value!r}"
            )
        raise ValueError(
            f"value of header {name!r} has the control character {bad.group()!r} "
            f"(RFC 9110 §5.5 allows VCHAR, obs-text, SP and HTAB): {value!r}"
        )


#: What ``scan_headers`` returns for a plain header list: the headers to send (values
#: stripped of surrounding spaces and tabs), the Content-Length they declare (None if
#: none), how many ``Date`` headers there are, and whether there is a ``Server`` one.
HeaderScan: TypeAlias = tuple[list[tuple[str, str]], int | None, int, bool]

# The kinds of header name scan_headers tells apart; 0 (the common case) is "nothing
# special", so the loop tests a single int for truth before any other comparison.
_OTHER: Final = 0
_HOP_BY_HOP: Final = 1
_CONTENT_LENGTH: Final = 2
_DATE: Final = 3
_SERVER: Final = 4
_SPECIAL_NAMES: Final = {
    "content-length": _CONTENT_LENGTH,
    "date": _DATE,
    "server": _SERVER,
}

# Valid header names of exact type str, as written by apps, and their kind. Bounded for
# the same reason as _status_codes.
_name_kinds: dict[str, int] = {}
_NAME_CACHE_LIMIT: Final = 1024

# Header values (exact str) already found valid and with nothing to strip. Most values
# an app sends are constants ("text/html; charset=utf-8"), and a set lookup costs a
# third of the checks it saves (0.3 µs for five headers, benchmarks/micro_handler.py).
# Values that vary (cookies, lengths, ETags) would fill any bound, so the set is
# emptied when full: the constants come back at their next use.
_plain_values: set[str] = set()
_VALUE_CACHE_LIMIT: Final = 1024


def _name_kind(name: str) -> int | None:
    """The kind of header ``name`` (exact str), or None if it is not a token."""
    if not _TOKEN_RE.fullmatch(name):
        return None
    lower = name.lower()
    kind = _HOP_BY_HOP if lower in HOP_BY_HOP else _SPECIAL_NAMES.get(lower, _OTHER)
    if len(_name_kinds) < _NAME_CACHE_LIMIT:
        _name_kinds[name] = kind
    return kind


def scan_headers(headers: object) -> HeaderScan | None:
    """Validate a plain ``start_response`` header list and learn its facts, in one pass.

    "Plain" is what nearly every app sends: a ``list`` of ``tuple`` pairs of exact
    ``str``, valid names and values (as ``validate_headers`` judges them), no
    hop-by-hop header, and at most one Content-Length, of ASCII digits. For such a list
    the result is the same as ``validate_headers``, the handler's hop-by-hop filter and
    ``content_length`` would give, computed without their three passes, their regex
    searches and their ``lower()`` calls (a name's kind is remembered).

    Anything else returns None, without raising: the caller then runs the general
    checks, which raise the precise error or drop (and log) hop-by-hop headers. So a
    None says "take the slow path", never "invalid".
    """
    if type(headers) is not list:
        return None
    kept: list[tuple[str, str]] = []
    length: int | None = None
    dates = 0
    server = False
    kinds = _name_kinds
    plain_values = _plain_values
    for item in headers:
        if type(item) is not tuple:
            return None
        try:
            name, value = item
        except ValueError:  # not a pair
            return None
        if type(name) is not str or type(value) is not str:
            return None
        kind = kinds.get(name)
        if kind is None:
            kind = _name_kind(name)
            if kind is None:
                return None
        if value in plain_values:
            stripped = value
        else:
            # Printable ASCII is valid; only other values need the regex (which
            # refuses what validate_headers refuses).
            plain = value.isascii() and value.isprintable()
            if not plain and _NOT_FIELD_CHAR_RE.search(value):
                return None
            # strip() returns value itself when there is nothing to strip.
            stripped = value.strip(" \t")
            if stripped is value:
                if len(plain_values) >= _VALUE_CACHE_LIMIT:
                    plain_values.clear()
                plain_values.add(value)
        if kind:
            if kind == _CONTENT_LENGTH:
                # The common case of content_length's rule: one value, 1 to 20
                # ASCII digits. Anything else ("4, 4", a second Content-Length,
                # a bad value) is left to content_length on the slow path.
                if (
                    length is not None
                    or not (stripped.isascii() and stripped.isdigit())
                    or len(stripped) > 20
                ):
                    return None
                length = int(stripped)
            elif kind == _DATE:
                dates += 1
            elif kind == _SERVER:
                server = True
            else:
                return None  # hop-by-hop
        # An exact tuple is immutable, so the app's own pair can be sent as is.
        kept.append(item if stripped is value else (name, stripped))
    return kept, length, dates, server


def is_hop_by_hop(name: str) -> bool:
    """True for a connection-level header name (any case), as ``wsgiref.util``."""
    return name.lower() in HOP_BY_HOP


def body_forbidden(method: str, status_code: int) -> bool:
    """True if this response must carry no body bytes: a response to HEAD, or a
    1xx, 204 or 304 status (RFC 9112 §6.3 rule 1)."""
    return method == "HEAD" or status_code < 200 or status_code in (204, 304)


def content_length(values: Iterable[str]) -> int | None:
    """The length the ``Content-Length`` values declare, or None if there are none.

    ``values`` are the (stripped) values of every Content-Length header of the
    response. There must be at most one, and it must be 1 to 20 ASCII digits, else
    ``ValueError``: a list (``"42, 42"``) or a repeated header is refused even when
    the lengths agree.
    """
    lengths = list(values)
    if not lengths:
        return None
    # RFC 9110 §8.6: Content-Length = 1*DIGIT. Only a *recipient* may repair
    # "42, 42" (a duplicate some upstream processor made); a sender must not
    # generate it, and two header lines are the same list once combined (§5.3).
    # We are the sender, so we are strict: whichever way we repaired it, some
    # client or proxy downstream might read the framing differently.
    if len(lengths) > 1:
        raise ValueError(
            f"more than one Content-Length header: {lengths!r} (RFC 9110 §8.6 "
            "allows one value)"
        )
    (length,) = lengths
    # h11 refuses more than 20 digits (CONTENT_LENGTH_MAX_DIGITS).
    if not _DIGITS_RE.fullmatch(length) or len(length) > 20:
        raise ValueError(
            f"invalid Content-Length {length!r}: must be 1 to 20 ASCII digits "
            "(RFC 9110 §8.6)"
        )
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
