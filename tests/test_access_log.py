"""Access log lines: gunicorn's atoms, JSON lines, and escaping of everything the
client controls (no log injection); and the writer thread that keeps formatting and
I/O off the event loop."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from aiogate.access_log import AccessRecord, compile_format, escape
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


def test_literal_percent_and_text() -> None:
    assert compile_format("100%% %(s)s done %")(record()) == "100%% 200 done %"


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
