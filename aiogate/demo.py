"""A WSGI app that shows the request it received: ``aiogate serve aiogate.demo:app``.

Owns: ``app`` (also ``application``), a small, dependency-free echo of the method,
path, query, headers, a few environ keys and the body size (with the first KiB of the
body) of a request. Plain text by default, HTML when the Accept header prefers
``text/html``. Runs in a worker thread, like any app; it uses only the standard
library and never imports the rest of aiogate, so any WSGI server can run it.

Everything echoed back is escaped: non-printable characters become ``\\x..`` escapes
(so a body cannot drive the terminal of a ``curl`` user), and the HTML page is
``html.escape``-d. Responses carry ``X-Content-Type-Options: nosniff`` so a browser
never reads the text page as HTML.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

__all__ = ["app", "application", "prefers_html"]

#: How much of the body is shown; the rest is only counted.
BODY_PREVIEW_SIZE = 1024
_READ_SIZE = 64 * 1024

_ENVIRON_KEYS = (
    "wsgi.url_scheme",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "SERVER_SOFTWARE",
)


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Describe the request, as text/plain or (if preferred) text/html."""
    method = environ["REQUEST_METHOD"]
    body_size, preview = _read_body(environ)
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "Request",
            [
                ("method", _show(method)),
                (
                    "path",
                    _show(environ.get("SCRIPT_NAME", ""))
                    + _show(environ.get("PATH_INFO", "")),
                ),
                ("query", _show(environ.get("QUERY_STRING", ""))),
            ],
        ),
        ("Headers", _headers(environ)),
        (
            "Environ",
            [
                (key, _show(str(environ[key])))
                for key in _ENVIRON_KEYS
                if key in environ
            ],
        ),
    ]
    if body_size or method in ("POST", "PUT", "PATCH"):
        body_rows = [("size", f"{body_size} bytes")]
        if preview:
            label = (
                f"first {len(preview)} bytes" if body_size > len(preview) else "body"
            )
            body_rows.append((label, _show_bytes(preview)))
        sections.append(("Body", body_rows))

    if prefers_html(environ.get("HTTP_ACCEPT", "")):
        content_type, text = "text/html; charset=utf-8", _render_html(sections)
    else:
        content_type, text = "text/plain; charset=utf-8", _render_text(sections)
    payload = text.encode("utf-8")
    start_response(
        "200 OK",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
            ("Vary", "Accept"),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )
    # HEAD: same headers (Content-Length included), no body (RFC 9110 §9.3.2).
    return [] if method == "HEAD" else [payload]


application = app


def _read_body(environ: WSGIEnvironment) -> tuple[int, bytes]:
    """(size, first ``BODY_PREVIEW_SIZE`` bytes), reading the body to its end."""
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    # Without a length (a chunked body) read to EOF, but only where the server says
    # the input ends (wsgi.input_terminated, the WSGI 1.0.1 extension aiogate sets).
    until_eof = (
        not remaining
        and bool(environ.get("wsgi.input_terminated"))
        and ("HTTP_TRANSFER_ENCODING" in environ)
    )
    stream = environ["wsgi.input"]
    size = 0
    preview = b""
    while remaining > 0 or until_eof:
        chunk = stream.read(min(remaining, _READ_SIZE) if not until_eof else _READ_SIZE)
        if not chunk:
            break
        size += len(chunk)
        remaining -= len(chunk)
        if len(preview) < BODY_PREVIEW_SIZE:
            preview += chunk[: BODY_PREVIEW_SIZE - len(preview)]
    return size, preview


def _headers(environ: WSGIEnvironment) -> list[tuple[str, str]]:
    rows = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        if isinstance(value, str):
            rows.append((name.replace("_", "-").title(), _show(value)))
    return sorted(rows)


def _show(native: str) -> str:
    """A WSGI "bytes as latin-1" string, shown as UTF-8 text with escapes."""
    try:
        raw = native.encode("latin-1")
    except UnicodeEncodeError:  # not a native string after all: show it as it is
        return _escape_unprintable(native)
    return _show_bytes(raw)


def _show_bytes(raw: bytes) -> str:
    return _escape_unprintable(raw.decode("utf-8", "backslashreplace"))


def _escape_unprintable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or char in "\n\t" else repr(char)[1:-1]
        for char in text
    )


def prefers_html(accept: str) -> bool:
    """Whether ``accept`` ranks ``text/html`` above ``text/plain`` (RFC 9110 §12.5.1).

    Browsers send ``text/html,...,*/*;q=0.8``: HTML. ``curl`` sends ``*/*``: a tie,
    and a tie goes to plain text.
    """
    return _quality(accept, "text", "html") > _quality(accept, "text", "plain")


def _quality(accept: str, main: str, sub: str) -> float:
    """The q-value of ``main/sub`` under ``accept``: the most specific range wins."""
    best_specificity = -1
    quality = 0.0
    for media_range in accept.split(","):
        kind, _, params = media_range.partition(";")
        range_main, _, range_sub = kind.strip().lower().partition("/")
        if range_main == main and range_sub == sub:
            specificity = 2
        elif range_main == main and range_sub == "*":
            specificity = 1
        elif range_main == "*" and range_sub == "*":
            specificity = 0
        else:
            continue
        if specificity <= best_specificity:
            continue
        best_specificity = specificity
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
    return quality


def _render_text(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    lines = []
    for title, rows in sections:
        lines.append(f"{title}:")
        width = max((len(name) for name, _ in rows), default=0)
        for name, value in rows:
            value = value.replace("\n", "\n" + " " * (width + 4))
            lines.append(f"  {name.ljust(width)}  {value}".rstrip())
        lines.append("")
    return "\n".join(lines)


def _render_html(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>aiogate demo</title>',
        "<style>body{font-family:sans-serif}th{text-align:left;padding-right:1em}"
        "td{font-family:monospace;white-space:pre-wrap}</style></head><body>",
        "<h1>aiogate demo</h1>",
    ]
    for title, rows in sections:
        parts.append(f"<h2>{html.escape(title)}</h2><table>")
        parts.extend(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
            for name, value in rows
        )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
