"""The sans-IO response rules: status parsing, header validation, hop-by-hop names,
bodiless responses, Content-Length and the cached Date value. Table-driven."""

from __future__ import annotations

import email.utils
import threading
import wsgiref.handlers
import wsgiref.util

import pytest

from aiogate import response
from aiogate.response import (
    HOP_BY_HOP,
    body_forbidden,
    content_length,
    http_date,
    is_hop_by_hop,
    parse_status,
    validate_headers,
)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("200 OK", (200, "OK")),
        ("404 Not Found", (404, "Not Found")),
        ("100 Continue", (100, "Continue")),
        ("999 Custom", (999, "Custom")),
        ("200 ", (200, "")),  # an empty reason is allowed, as by wsgiref
        ("200 Ça va", (200, "Ça va")),  # latin-1
        ("500 Tab\there", (500, "Tab\there")),  # HTAB is allowed in a reason
        ("301 Moved  Permanently ", (301, "Moved  Permanently ")),
    ],
)
def test_parse_status_accepts(status: str, expected: tuple[int, str]) -> None:
    assert parse_status(status) == expected


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("200", "space after the code"),
        ("200OK", "space after the code"),
        ("2000 OK", "space after the code"),
        ("20 OK", "3-digit code"),
        ("OK 200", "3-digit code"),
        ("", "3-digit code"),
        ("٢٠٠ OK", "3-digit code"),  # Arabic-Indic digits: isdigit() but not ASCII
        ("099 Low", "100-999"),
        ("000 Zero", "100-999"),
        ("200 OK\r\nSet-Cookie: x=1", "control characters"),
        ("200 OK\n", "control characters"),
        ("200 OK\r", "control characters"),
        ("200 O\0K", "control characters"),
        ("200 O\x7fK", "control characters"),
        ("200 ☃", "latin-1"),
    ],
)
def test_parse_status_rejects(status: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_status(status)
    assert repr(status) in str(info.value)


@pytest.mark.parametrize("status", [b"200 OK", 200, None])
def test_parse_status_needs_str(status: object) -> None:
    with pytest.raises(TypeError, match="status must be a str"):
        parse_status(status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Content-Type", "text/plain")],
        [("X-Name", "café")],  # latin-1 values are fine
        [("X-Empty", "")],
        [("X-Tab", "a\tb")],
        [("X-Weird!#$%&'*+.^_`|~", "v")],  # every tchar
        [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
        [("X-Ctl", "google\x01analytics")],  # h11 lets other controls through
    ],
)
def test_validate_headers_accepts(headers: list[tuple[str, str]]) -> None:
    assert validate_headers(headers) is None


@pytest.mark.parametrize(
    ("headers", "error", "message"),
    [
        ((("A", "b"),), TypeError, "must be a list"),
        ({"A": "b"}, TypeError, "must be a list"),
        ([["A", "b"]], TypeError, "tuple"),
        ([("A", "b", "c")], TypeError, "tuple"),
        ([("A",)], TypeError, "tuple"),
        ([(b"A", "b")], TypeError, "header name must be a str"),
        ([("A", b"b")], TypeError, "value of header 'A' must be a str"),
        ([("A", 1)], TypeError, "must be a str"),
        ([("", "b")], ValueError, "not a valid token"),
        ([("A B", "b")], ValueError, "not a valid token"),
        ([("A:", "b")], ValueError, "not a valid token"),
        ([("A\r\nB", "b")], ValueError, "not a valid token"),
        ([("Näme", "b")], ValueError, "not a valid token"),
        ([("A", "b\r\nSet-Cookie: x=1")], ValueError, "CR, LF, NUL"),
        ([("A", "b\n")], ValueError, "CR, LF, NUL"),
        ([("A", "b\r")], ValueError, "CR, LF, NUL"),
        ([("A", "b\0")], ValueError, "CR, LF, NUL"),
        ([("A", "b\x0bc")], ValueError, "VT or FF"),
        ([("A", "☃")], ValueError, "latin-1"),
        ([("Ok", "fine"), ("A", "\u20ac")], ValueError, "latin-1"),
    ],
)
def test_validate_headers_rejects(
    headers: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        validate_headers(headers)


def test_hop_by_hop_is_wsgirefs_set() -> None:
    for name in HOP_BY_HOP:
        assert wsgiref.util.is_hop_by_hop(name)
        assert is_hop_by_hop(name)
        assert is_hop_by_hop(name.upper())
        assert is_hop_by_hop(name.title())
    for name in ("Content-Type", "Content-Length", "Server", "Date", "Keep", "Tes"):
        assert not wsgiref.util.is_hop_by_hop(name)
        assert not is_hop_by_hop(name)
    assert len(HOP_BY_HOP) == 8


@pytest.mark.parametrize(
    ("method", "status", "forbidden"),
    [
        ("GET", 200, False),
        ("POST", 500, False),
        ("GET", 404, False),
        ("GET", 205, False),
        ("GET", 299, False),
        ("HEAD", 200, True),
        ("HEAD", 500, True),
        ("GET", 100, True),
        ("GET", 101, True),
        ("GET", 199, True),
        ("GET", 204, True),
        ("POST", 304, True),
        ("head", 200, False),  # methods are case-sensitive (RFC 9110 §9.1)
    ],
)
def test_body_forbidden(method: str, status: int, forbidden: bool) -> None:
    assert body_forbidden(method, status) is forbidden


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["0"], 0),
        (["42"], 42),
        (["42", "42"], 42),
        (["42, 42"], 42),
        ([" 7 "], 7),
        (["00012"], 12),
        (["9" * 20], int("9" * 20)),
    ],
)
def test_content_length_accepts(values: list[str], expected: int | None) -> None:
    assert content_length(values) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["1", "2"], "conflicting"),
        (["1, 2"], "conflicting"),
        (["abc"], "invalid"),
        (["-1"], "invalid"),
        (["+1"], "invalid"),
        (["1_000"], "invalid"),
        (["١٢"], "invalid"),  # int() would take these digits
        ([""], "invalid"),
        (["9" * 21], "invalid"),
    ],
)
def test_content_length_rejects(values: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        content_length(values)


@pytest.mark.parametrize(
    "timestamp",
    [0.0, 784111777.0, 784111777.999, 951782400.5, 1700000000.0, 4102444799.0],
)
def test_http_date_matches_wsgiref(timestamp: float) -> None:
    expected = wsgiref.handlers.format_date_time(timestamp)
    assert http_date(timestamp) == expected
    assert email.utils.formatdate(int(timestamp), usegmt=True) == expected


def test_http_date_known_value() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_http_date_defaults_to_now() -> None:
    # Bracket the call: the value must be one of the seconds around it.
    before = wsgiref.handlers.format_date_time(None)
    value = http_date()
    after = wsgiref.handlers.format_date_time(None)
    assert value in (before, after)


def test_http_date_is_cached_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real_gmtime = response.time.gmtime

    def counting_gmtime(secs: float | None = None) -> object:
        calls.append(0.0 if secs is None else secs)
        return real_gmtime(secs)

    monkeypatch.setattr(response, "_date_cache", (-1, ""))
    monkeypatch.setattr(response.time, "gmtime", counting_gmtime)
    first = http_date(1_000_000.1)
    assert http_date(1_000_000.9) is first
    assert calls == [1_000_000]
    second = http_date(1_000_001.0)
    assert second != first
    assert calls == [1_000_000, 1_000_001]
    # Going back a second is a miss, not a stale answer.
    assert http_date(1_000_000.5) == first
    assert len(calls) == 3


def test_http_date_from_many_threads() -> None:
    results: list[tuple[float, str]] = []
    lock = threading.Lock()
    stamps = [1_000_000.0 + (i % 3) for i in range(300)]

    def work(chunk: list[float]) -> None:
        for stamp in chunk:
            value = http_date(stamp)
            with lock:
                results.append((stamp, value))

    threads = [threading.Thread(target=work, args=(stamps[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(stamps)
    for stamp, value in results:
        assert value == wsgiref.handlers.format_date_time(stamp)
