"""Access log lines: gunicorn's ``%(h)s %(r)s %(s)s ...`` format, or JSON lines.

Owns: ``AccessRecord`` (the facts of one finished request), ``Refusal`` (why the
server answered a request itself), ``compile_format`` (a format string, or
``"json"``, made into a function from record to line), ``escape``, and the helpers
the loop uses to fill a record (``request_parts``, ``environ_keys``,
``pick_environ``). Sans-IO and pure: the event loop fills a record when a response ends and
hands it to a writer thread (``log_writer``), which calls the compiled format, so no
formatting and no I/O happens on the loop.

Everything the client controls (the request line, header values, the address of an
untrusted peer is not, but a proxy's header could be) is escaped: bytes outside
printable ASCII, ``"`` and ``\\`` become ``\\xHH``, as nginx does, so a hostile
User-Agent can neither forge a second line nor break a field; JSON lines are escaped by
``json.dumps`` with ``ensure_ascii``. No log injection either way.

The atoms are gunicorn's (https://docs.gunicorn.org/en/stable/settings.html#access-
log-format), ``{VAR}e`` included (a value of the request's WSGI environ, picked on
the loop when the response ends, so the writer thread never reads a dict the app's
thread may still change), so a gunicorn ``access_log_format`` works unchanged, plus
``w``: the
seconds the request waited for a thread, and ``refused``: why aiogate answered a
request itself, without the app (a ``Refusal``), else ``-``. A format that does not
place ``%(refused)s`` itself gets `` refused=<reason>`` at the end of a refused
request's line only, so the reason is never lost and an app response's line is
exactly gunicorn's. An unknown atom is refused when the format is compiled, at
startup, never printed literally.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "AccessRecord",
    "Refusal",
    "compile_format",
    "environ_keys",
    "escape",
    "pick_environ",
    "request_parts",
]

_ESCAPE = re.compile(rb'[^\x20-\x7e]|["\\]')


def escape(value: bytes | str) -> str:
    """Printable ASCII as it is; anything else, ``"`` and ``\\`` as ``\\xHH``."""
    data = value.encode("latin-1", "replace") if isinstance(value, str) else value
    return _ESCAPE.sub(lambda m: f"\\x{m[0][0]:02x}".encode(), data).decode("ascii")


class Refusal(enum.StrEnum):
    """Why aiogate answered a request itself instead of calling the app (or cut its
    response): the ``refused`` atom and JSON field. The values are the ``reason``
    labels of the rejection metrics, so a log line and a counter use one word."""

    BAD_REQUEST = "bad_request"  # 400: a malformed head (a bad Host...) or framing
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405: CONNECT
    NOT_IMPLEMENTED = "not_implemented"  # 501: a transfer coding other than chunked
    VERSION_NOT_SUPPORTED = "version_not_supported"  # 505
    BODY_TOO_LARGE = "body_too_large"  # 413: --limit-request-body
    URI_TOO_LONG = "uri_too_long"  # 414: request line over --limit-request-line
    HEADERS_TOO_LARGE = "headers_too_large"  # 431: a field or the field count
    TIMEOUT = "timeout"  # 408: the head or the body did not arrive in time
    CONNECTION_LIMIT = "connection_limit"  # 503 at accept: --limit-connections
    CONCURRENCY_LIMIT = "concurrency_limit"  # 503: --limit-concurrency
    QUEUE_WAIT = "queue_wait"  # 503: waited over --max-queue-wait for a thread
    APP_TIMEOUT = "app_timeout"  # 503 (or a cut response): --timeout-request
    BODY_STORAGE = "body_storage"  # 503: no temporary file for the body
    # No response (there is no HTTP yet): --proxy-protocol's header missing,
    # malformed, late, or from a peer not in --forwarded-allow-ips.
    PROXY_HEADER = "proxy_header"

    @classmethod
    def of_status(cls, status: int) -> Refusal:
        """The reason a protocol error's status stands for (``status_hint``)."""
        return _BY_STATUS.get(status, cls.BAD_REQUEST)


_BY_STATUS = {
    405: Refusal.METHOD_NOT_ALLOWED,
    408: Refusal.TIMEOUT,
    413: Refusal.BODY_TOO_LARGE,
    414: Refusal.URI_TOO_LONG,
    431: Refusal.HEADERS_TOO_LARGE,
    501: Refusal.NOT_IMPLEMENTED,
    505: Refusal.VERSION_NOT_SUPPORTED,
}


@dataclass(slots=True)
class AccessRecord:
    """One finished request, as the event loop saw it."""

    client: str  # address (and nothing else: no port), or "-"
    # The request line's parts; all three empty when no request line could be
    # parsed (a refusal of a malformed or incomplete head): ``%(r)s`` is then "-".
    method: bytes
    target: bytes
    http_version: bytes
    status: int  # 0: no response head was sent (connection aborted)
    bytes_sent: int  # body bytes of the response
    request_headers: list[tuple[bytes, bytes]]  # lowercased names, as h11 gives them
    response_headers: list[tuple[str, str]]
    started: float  # wall-clock time (time.time()) when the request head arrived
    duration: float  # seconds from the request head to the end of the response
    queue_wait: float  # seconds the complete request waited for a thread
    pid: int
    #: Why aiogate answered (or cut) the request itself; None: the app answered.
    refused: Refusal | None = None
    #: The WSGI environ values the format reads (``%({VAR}e)s``), picked when the
    #: request ended; None when the app was not called.
    environ: Mapping[str, object] | None = None

    def request_header(self, name: bytes) -> bytes | None:
        """The first value of a request header (name lowercased), or None."""
        for key, value in self.request_headers:
            if key == name:
                return value
        return None

    def response_header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.response_headers:
            if key.lower() == lowered:
                return value
        return None


def _clf_time(started: float) -> str:
    """``[10/Oct/2000:13:55:36 +0000]``, the Common Log Format time."""
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(started))


def _dash(value: bytes | str | None) -> str:
    return "-" if value is None or value == b"" or value == "" else escape(value)


def _user(record: AccessRecord) -> str:
    """The user name of Basic authentication, as gunicorn's ``u``, else ``-``."""
    auth = record.request_header(b"authorization")
    if auth is None or auth[:6].lower() != b"basic ":
        return "-"
    try:
        decoded = base64.b64decode(auth[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return "-"
    return _dash(decoded.partition(b":")[0])


def _path(record: AccessRecord) -> bytes:
    return record.target.partition(b"?")[0]


def _request_line(record: AccessRecord) -> str:
    if not record.method:  # no request line could be parsed
        return "-"
    return escape(
        b"%s %s HTTP/%s" % (record.method, record.target, record.http_version)
    )


def _environ_value(record: AccessRecord, name: str) -> str:
    """``%({name}e)s``: a value of the request's WSGI environ, or ``-``."""
    environ = record.environ
    if environ is None:
        return "-"
    value = environ.get(name)
    if value is None or value == "":
        return "-"
    return escape(value if isinstance(value, (str, bytes)) else str(value))


# gunicorn's atoms (the single-letter ones), each a function of the record.
_ATOMS: dict[str, Callable[[AccessRecord], str]] = {
    "h": lambda r: r.client,
    "l": lambda r: "-",
    "u": _user,
    "t": lambda r: _clf_time(r.started),
    "r": _request_line,
    "m": lambda r: _dash(r.method),
    "U": lambda r: escape(_path(r)) if r.method else "-",
    "q": lambda r: escape(r.target.partition(b"?")[2]),
    "H": lambda r: "HTTP/" + escape(r.http_version) if r.http_version else "-",
    "s": lambda r: str(r.status) if r.status else "-",
    "B": lambda r: str(r.bytes_sent),
    "b": lambda r: str(r.bytes_sent) if r.bytes_sent else "-",
    "f": lambda r: _dash(r.request_header(b"referer")),
    "a": lambda r: _dash(r.request_header(b"user-agent")),
    "T": lambda r: str(int(r.duration)),
    "M": lambda r: str(int(r.duration * 1000)),
    "D": lambda r: str(int(r.duration * 1_000_000)),
    "L": lambda r: f"{r.duration:.6f}",
    "p": lambda r: f"<{r.pid}>",
    "w": lambda r: f"{r.queue_wait:.6f}",
    # aiogate's own: why the server answered without the app (module docstring).
    "refused": lambda r: "-" if r.refused is None else r.refused.value,
}

# %(name)s, %({header}i)s, %({header}o)s, %({variable}e)s, and %% for a "%", as
# gunicorn's % formatting reads them; any other "%" (%(h)d, an unclosed %(h) is
# refused at startup, where gunicorn would fail on every line. Any %(...)s is a
# field, so an unknown one is refused, not printed.
_FIELD = re.compile(r"%\(([^()]*)\)s")
_PERCENT = re.compile(r"%\([^()]*\)s|%%|%")
_BRACED = re.compile(r"\{([^{}]+)\}([ioe])")


class _Lookup(dict[str, str]):
    """The mapping ``format % mapping`` reads, computing each atom on demand."""

    __slots__ = ("record",)

    def __init__(self, record: AccessRecord) -> None:
        super().__init__()
        self.record = record

    def __missing__(self, key: str) -> str:
        record = self.record
        if key[:1] == "{":
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                return _dash(record.request_header(name.lower().encode("latin-1")))
            if kind == "o":
                return _dash(record.response_header(name))
            return _environ_value(record, name)
        return _ATOMS[key](record)


def _json_line(record: AccessRecord) -> str:
    """One JSON object per line; ``ensure_ascii`` escapes anything non-ASCII."""
    parsed = bool(record.method)
    return json.dumps(
        {
            "time": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(record.started)
            ),
            "client": record.client,
            # null for a refused head whose request line could not be parsed
            "method": record.method.decode("latin-1") if parsed else None,
            "path": _path(record).decode("latin-1") if parsed else None,
            "query": record.target.partition(b"?")[2].decode("latin-1")
            if parsed
            else None,
            "protocol": "HTTP/" + record.http_version.decode("latin-1")
            if parsed
            else None,
            "status": record.status or None,
            "bytes": record.bytes_sent,
            "duration_s": round(record.duration, 6),
            "queue_wait_s": round(record.queue_wait, 6),
            "referer": _header_text(record.request_header(b"referer")),
            "user_agent": _header_text(record.request_header(b"user-agent")),
            "pid": record.pid,
            "refused": None if record.refused is None else record.refused.value,
        },
        ensure_ascii=True,
        separators=(",", ":"),
    )


def _header_text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _check_atom(key: str, spec: str) -> None:
    """Raise ``ValueError`` naming ``%(key)s`` unless it is an atom we fill."""
    braced = _BRACED.fullmatch(key)
    if key in _ATOMS or braced is not None:
        return
    hint = ""
    if key[:1] == "{":
        hint = " (a braced atom is {Header}i, {Header}o or {VARIABLE}e)"
    raise ValueError(f"unknown access log atom %({key})s{hint} in {spec!r}")


def environ_keys(spec: str) -> frozenset[str]:
    """The WSGI environ keys a format reads through ``%({VAR}e)s`` (none for JSON)."""
    if spec == "json":
        return frozenset()
    return frozenset(
        braced[1]
        for match in _FIELD.finditer(spec)
        if (braced := _BRACED.fullmatch(match[1])) is not None and braced[2] == "e"
    )


def pick_environ(
    environ: Mapping[str, object], keys: frozenset[str]
) -> dict[str, object]:
    """The values of ``keys`` in a request's environ, for ``%({VAR}e)s``. As in
    gunicorn, the name's case does not matter: ``{remote_addr}e`` reads
    ``REMOTE_ADDR`` (the exact name is tried first, then upper and lower case)."""
    picked: dict[str, object] = {}
    for key in keys:
        for name in (key, key.upper(), key.lower()):
            if name in environ:
                picked[key] = environ[name]
                break
    return picked


def request_parts(line: bytes) -> tuple[bytes, bytes, bytes]:
    """A checked request line (``GET /x HTTP/1.1``) as method, target and version
    (``1.1``) for an ``AccessRecord``; three empty values for none (``b""``)."""
    method, _, rest = line.partition(b" ")
    target, _, version = rest.rpartition(b" ")
    if not method or not target or not version.startswith(b"HTTP/"):
        return b"", b"", b""
    return method, target, version[5:]


def compile_format(spec: str) -> Callable[[AccessRecord], str]:
    """The line function for ``--access-log-format``: ``"json"`` for JSON lines, else
    a gunicorn-style format. Raises ``ValueError`` naming an unknown atom."""
    if spec == "json":
        return _json_line
    for match in _PERCENT.finditer(spec):
        if match[0] == "%":
            rest = spec[match.start() : match.start() + 8]
            raise ValueError(
                f"{rest!r}... in {spec!r}: a format has %(atom)s fields and %% for a "
                "percent sign, nothing else after a %"
            )
    for match in _FIELD.finditer(spec):
        _check_atom(match[1], spec)
    template = spec  # already what the % operator reads (checked above)
    # The reason of a refusal is never lost (module docstring).
    places_reason = any(match[1] == "refused" for match in _FIELD.finditer(spec))

    def line(record: AccessRecord) -> str:
        text = template % _Lookup(record)
        if record.refused is not None and not places_reason:
            return f"{text} refused={record.refused.value}"
        return text

    return line
