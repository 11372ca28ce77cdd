"""Access log lines: gunicorn's atoms, JSON lines, and escaping of everything the
client controls (no log injection); and the writer thread that keeps formatting and
I/O off the event loop."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from aiogate.access_log import (
    AccessRecord,
    Refusal,
    compile_format,
    environ_keys,
    escape,
    pick_environ,
    request_parts,
)
from aiogate.config import DEFAULT_ACCESS_LOG_FORMAT
from aiogate.log_writer import AccessLogWriter

HOSTILE_AGENT = (
    b'evil"\r\n127.0.0.1 - - [01/Jan/2000] "GET /admin HTTP/1.1" 200\x00\xff'
)


def record(**changes: object) -> AccessRecord:
    fields: dict[str, object] = {
        "client": "203.0.113.9",
        "method": b"GET",
        "target": b"/path?x=1",
        "http_version": b"1.1",
        "status": 200,
        "bytes_sent": 1234,
        "request_headers": [
            (b"host", b"example.com"),
            (b"referer", b"https://ref.example/"),
            (b"user-agent", b"curl/8.0"),
            (b"x-request-id", b"abc"),
        ],
        "response_headers": [("Content-Type", "text/plain")],
        "started": 1_700_000_000.0,
        "duration": 0.0125,
        "queue_wait": 0.002,
        "pid": 4321,
    }
    fields.update(changes)
    return AccessRecord(**fields)  # type: ignore[arg-type]


def test_escape_keeps_printable_ascii_and_hexes_the_rest() -> None:
    assert escape(b"plain text /x?a=1") == "plain text /x?a=1"
    assert escape(b'a"b\\c\r\n\x00\x7f\xff') == "a\\x22b\\x5cc\\x0d\\x0a\\x00\\x7f\\xff"
    assert escape("é") == "\\xe9"


def test_default_format_is_gunicorns() -> None:
    line = compile_format(DEFAULT_ACCESS_LOG_FORMAT)(record())
    assert line.startswith("203.0.113.9 - - [")
    assert line.endswith(
        '] "GET /path?x=1 HTTP/1.1" 200 1234 "https://ref.example/" "curl/8.0"'
    )


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "203.0.113.9"),
        ("m", "GET"),
        ("U", "/path"),
        ("q", "x=1"),
        ("H", "HTTP/1.1"),
        ("s", "200"),
        ("B", "1234"),
        ("b", "1234"),
        ("T", "0"),
        ("M", "12"),
        ("D", "12500"),
        ("L", "0.012500"),
        ("p", "<4321>"),
        ("w", "0.002000"),
        ("{X-Request-Id}i", "abc"),
        ("{missing}i", "-"),
        ("{content-type}o", "text/plain"),
    ],
)
def test_atoms(atom: str, expected: str) -> None:
    assert compile_format(f"%({atom})s")(record()) == expected


def test_empty_body_and_unknown_status() -> None:
    line = compile_format("%(s)s %(b)s %(B)s")(record(status=0, bytes_sent=0))
    assert line == "- - 0"


def test_basic_auth_user() -> None:
    headers = [(b"authorization", b"Basic YWxpY2U6c2VjcmV0")]  # alice:secret
    assert compile_format("%(u)s")(record(request_headers=headers)) == "alice"
    bad = [(b"authorization", b"Basic !!!")]
    assert compile_format("%(u)s")(record(request_headers=bad)) == "-"


def test_percent_is_doubled_as_in_gunicorn() -> None:
    assert compile_format("100%% %(s)s done")(record()) == "100% 200 done"


@pytest.mark.parametrize("spec", ["%(s)s done %", "%(h)d", "%(h", "%s", "50% off"])
def test_any_other_percent_is_refused_at_startup(spec: str) -> None:
    # gunicorn would fail on every line instead (its % formatting).
    with pytest.raises(ValueError, match="a format has %\\(atom\\)s fields and %%"):
        compile_format(spec)


def test_unknown_atom_is_refused() -> None:
    with pytest.raises(ValueError, match=r"%\(Z\)s"):
        compile_format("%(Z)s")


def test_hostile_user_agent_cannot_forge_a_line() -> None:
    line = compile_format(DEFAULT_ACCESS_LOG_FORMAT)(
        record(request_headers=[(b"user-agent", HOSTILE_AGENT)], target=b"/a\r\nb")
    )
    assert "\n" not in line
    assert "\r" not in line
    assert line.count('"') == 6  # only the format's own quotes
    assert "\\x0d\\x0a127.0.0.1" in line


def test_json_lines_round_trip_a_hostile_user_agent() -> None:
    line = compile_format("json")(
        record(request_headers=[(b"user-agent", HOSTILE_AGENT)])
    )
    assert "\n" not in line
    assert line.isascii()
    data = json.loads(line)
    assert data["user_agent"].encode("latin-1") == HOSTILE_AGENT
    assert data["referer"] is None
    assert (data["method"], data["path"], data["query"]) == ("GET", "/path", "x=1")
    assert (data["status"], data["bytes"], data["protocol"]) == (200, 1234, "HTTP/1.1")
    assert data["duration_s"] == 0.0125
    assert data["queue_wait_s"] == 0.002
    assert data["time"].startswith("2023-11-1")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.threads: set[str] = set()
        self.done = threading.Semaphore(0)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.threads.add(threading.current_thread().name)
        self.done.release()


def test_writer_formats_and_logs_in_its_own_thread() -> None:
    logger = logging.getLogger("test.access.writer")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = Collect()
    logger.addHandler(handler)
    writer = AccessLogWriter(compile_format("%(m)s %(U)s %(s)s"), logger)
    try:
        writer.submit(record())
        writer.submit(record(method=b"POST", status=201))
        assert handler.done.acquire(timeout=5)
        assert handler.done.acquire(timeout=5)
    finally:
        writer.close()
        logger.removeHandler(handler)
    assert handler.lines == ["GET /path 200", "POST /path 201"]
    assert handler.threads == {"aiogate-access-log"}


# -- refusals, %({VAR}e)s and atoms checked at startup (issue 15) ---------------------


def test_an_app_response_line_is_gunicorns_and_a_refusal_adds_its_reason() -> None:
    line = compile_format(DEFAULT_ACCESS_LOG_FORMAT)
    assert "refused" not in line(record())
    refused = line(record(status=431, bytes_sent=0, refused=Refusal.HEADERS_TOO_LARGE))
    assert refused.endswith(
        '"GET /path?x=1 HTTP/1.1" 431 - "https://ref.example/" '
        '"curl/8.0" refused=headers_too_large'
    )


def test_a_request_line_that_could_not_be_parsed_is_a_dash() -> None:
    unparsed = record(
        method=b"",
        target=b"",
        http_version=b"",
        request_headers=[],
        status=414,
        refused=Refusal.URI_TOO_LONG,
    )
    line = compile_format('"%(r)s" %(m)s %(U)s %(H)s %(s)s %(refused)s')(unparsed)
    assert line == '"-" - - - 414 uri_too_long'  # placed: nothing appended
    data = json.loads(compile_format("json")(unparsed))
    assert (data["method"], data["path"], data["protocol"]) == (None, None, None)
    assert (data["status"], data["refused"]) == (414, "uri_too_long")
    assert json.loads(compile_format("json")(record()))["refused"] is None


def test_refused_atom_is_a_dash_for_app_responses() -> None:
    assert compile_format("%(s)s %(refused)s")(record()) == "200 -"


def test_every_status_hint_has_a_reason() -> None:
    assert Refusal.of_status(400) is Refusal.BAD_REQUEST
    assert Refusal.of_status(405) is Refusal.METHOD_NOT_ALLOWED
    assert Refusal.of_status(408) is Refusal.TIMEOUT
    assert Refusal.of_status(414) is Refusal.URI_TOO_LONG
    assert Refusal.of_status(431) is Refusal.HEADERS_TOO_LARGE
    assert Refusal.of_status(413) is Refusal.BODY_TOO_LARGE
    assert Refusal.of_status(505) is Refusal.VERSION_NOT_SUPPORTED


def test_request_parts() -> None:
    assert request_parts(b"GET /a?b HTTP/1.0") == (b"GET", b"/a?b", b"1.0")
    assert request_parts(b"") == (b"", b"", b"")
    assert request_parts(b"GET") == (b"", b"", b"")


def test_environ_atom() -> None:
    line = compile_format("%({REMOTE_USER}e)s %({missing}e)s %({wsgi.url_scheme}e)s")
    picked = pick_environ(
        {"REMOTE_USER": "al\nice", "wsgi.url_scheme": "https"},
        environ_keys("%({REMOTE_USER}e)s %({missing}e)s %({wsgi.url_scheme}e)s"),
    )
    assert line(record(environ=picked)) == "al\\x0aice - https"
    assert line(record()) == "- - -"  # the app was not called


def test_environ_names_are_read_in_any_case_as_gunicorn_does() -> None:
    keys = environ_keys("%({remote_addr}e)s %({Wsgi.Url_Scheme}e)s")
    assert keys == {"remote_addr", "Wsgi.Url_Scheme"}
    picked = pick_environ({"REMOTE_ADDR": "10.0.0.1", "wsgi.url_scheme": "http"}, keys)
    assert picked == {"remote_addr": "10.0.0.1", "Wsgi.Url_Scheme": "http"}
    assert environ_keys("json") == frozenset()
    assert environ_keys(DEFAULT_ACCESS_LOG_FORMAT) == frozenset()


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("%(h)s %(nonsense)s", "%(nonsense)s"),
        ("%(request_line)s", "%(request_line)s"),
        ("%({X-Y}z)s", "%({X-Y}z)s"),
        ("%({}e)s", "%({}e)s"),
        ("%()s", "%()s"),
    ],
)
def test_unknown_atoms_of_any_length_are_refused(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match="unknown access log atom") as caught:
        compile_format(spec)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message
