"""Access log lines: gunicorn's ``%(h)s %(r)s %(s)s ...`` format, or JSON lines.

Owns: ``AccessRecord`` (the facts of one finished request), ``compile_format`` (a
format string, or ``"json"``, made into a function from record to line) and
``escape``. Sans-IO and pure: the event loop fills a record when a response ends and
hands it to a writer thread (``log_writer``), which calls the compiled format, so no
formatting and no I/O happens on the loop.

Everything the client controls (the request line, header values, the address of an
untrusted peer is not, but a proxy's header could be) is escaped: bytes outside
printable ASCII, ``"`` and ``\\`` become ``\\xHH``, as nginx does, so a hostile
User-Agent can neither forge a second line nor break a field; JSON lines are escaped by
``json.dumps`` with ``ensure_ascii``. No log injection either way.

The atoms are gunicorn's (https://docs.gunicorn.org/en/stable/settings.html#access-
log-format), so a gunicorn ``access_log_format`` works unchanged, plus ``w``: the
seconds the request waited for a thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "AccessRecord",
    "compile_format",
    "escape",
]

_ESCAPE = re.compile(rb'[^\x20-\x7e]|["\\]')


def escape(value: bytes | str) -> str:
    """Printable ASCII as it is; anything else, ``"`` and ``\\`` as ``\\xHH``."""
    data = value.encode("latin-1", "replace") if isinstance(value, str) else value
    return _ESCAPE.sub(lambda m: f"\\x{m[0][0]:02x}".encode(), data).decode("ascii")


@dataclass(slots=True)
class AccessRecord:
    """One finished request, as the event loop saw it."""

    client: str  # address (and nothing else: no port), or "-"
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


# gunicorn's atoms (the single-letter ones), each a function of the record.
_ATOMS: dict[str, Callable[[AccessRecord], str]] = {
    "h": lambda r: r.client,
    "l": lambda r: "-",
    "u": _user,
    "t": lambda r: _clf_time(r.started),
    "r": lambda r: escape(b"%s %s HTTP/%s" % (r.method, r.target, r.http_version)),
    "m": lambda r: escape(r.method),
    "U": lambda r: escape(_path(r)),
    "q": lambda r: escape(r.target.partition(b"?")[2]),
    "H": lambda r: "HTTP/" + escape(r.http_version),
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
}

# %(name)s, %({header}i)s, %({header}o)s; everything else is literal text.
_FIELD = re.compile(r"%\((\{[^}]*\}[io]|[A-Za-z])\)s")


class _Lookup(dict[str, str]):
    """The mapping ``format % mapping`` reads, computing each atom on demand."""

    __slots__ = ("record",)

    def __init__(self, record: AccessRecord) -> None:
        super().__init__()
        self.record = record

    def __missing__(self, key: str) -> str:
        record = self.record
        if key.startswith("{") and key[-2:] in ("}i", "}o"):
            name = key[1:-2]
            if key[-1] == "i":
                return _dash(record.request_header(name.lower().encode("latin-1")))
            return _dash(record.response_header(name))
        return _ATOMS[key](record)


def _json_line(record: AccessRecord) -> str:
    """One JSON object per line; ``ensure_ascii`` escapes anything non-ASCII."""
    return json.dumps(
        {
            "time": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(record.started)
            ),
            "client": record.client,
            "method": record.method.decode("latin-1"),
            "path": _path(record).decode("latin-1"),
            "query": record.target.partition(b"?")[2].decode("latin-1"),
            "protocol": "HTTP/" + record.http_version.decode("latin-1"),
            "status": record.status or None,
            "bytes": record.bytes_sent,
            "duration_s": round(record.duration, 6),
            "queue_wait_s": round(record.queue_wait, 6),
            "referer": _header_text(record.request_header(b"referer")),
            "user_agent": _header_text(record.request_header(b"user-agent")),
            "pid": record.pid,
        },
        ensure_ascii=True,
        separators=(",", ":"),
    )


def _header_text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def compile_format(spec: str) -> Callable[[AccessRecord], str]:
    """The line function for ``--access-log-format``: ``"json"`` for JSON lines, else
    a gunicorn-style format. Raises ``ValueError`` naming an unknown atom."""
    if spec == "json":
        return _json_line
    for match in _FIELD.finditer(spec):
        key = match[1]
        if not key.startswith("{") and key not in _ATOMS:
            raise ValueError(f"unknown access log atom %({key})s in {spec!r}")
    # Keep %(...)s fields for the % operator; any other % is literal text.
    template = _FIELD.sub(lambda m: "\0" + m[1] + "\1", spec).replace("%", "%%")
    template = template.replace("\0", "%(").replace("\1", ")s")

    def line(record: AccessRecord) -> str:
        return template % _Lookup(record)

    return line
