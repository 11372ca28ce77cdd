"""The sans-IO response rules: status parsing, header validation, hop-by-hop names,
bodiless responses, Content-Length and the cached Date value. Table-driven."""

from __future__ import annotations

import email.utils
import threading
import wsgiref.handlers
import wsgiref.util

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiogate import response
from aiogate.response import (
    HOP_BY_HOP,
    HeaderScan,
    body_forbidden,
    content_length,
    http_date,
    is_hop_by_hop,
    parse_status,
    scan_headers,
    status_code,
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
        # RFC 9110 §5.5: VCHAR, obs-text (0x80-0xFF, C1 codes included), SP, HTAB.
        [("X-Vchar", "".join(map(chr, range(0x20, 0x7F))))],
        [("X-Obs", "".join(map(chr, range(0x80, 0x100))))],
        [("X-Ws", " \t a \t ")],
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
        ([("A", "b\r\nSet-Cookie: x=1")], ValueError, r"control character '\\r'"),
        ([("A", "b\n")], ValueError, r"control character '\\n'"),
        ([("A", "b\r")], ValueError, "control character"),
        ([("A", "b\0")], ValueError, "control character"),
        ([("A", "b\x0bc")], ValueError, "control character"),
        ([("A", "b\x0cc")], ValueError, "control character"),
        # RFC 9110 §5.5: the other controls are not field-vchar either (h11 would
        # send them; see _NOT_FIELD_CHAR_RE).
        ([("A", "\x1b[31mred")], ValueError, r"control character '\\x1b'"),
        ([("A", "b\x7f")], ValueError, r"control character '\\x7f'"),
        ([("A", "google\x01analytics")], ValueError, "control character"),
        ([("A", "b\x1f")], ValueError, "control character"),
        ([("A", "\tcafé\x08")], ValueError, "control character"),
        ([("A", "☃")], ValueError, "latin-1"),
        ([("A", "é\u0100")], ValueError, "latin-1"),
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
        (["00012"], 12),
        (["9" * 20], int("9" * 20)),
    ],
)
def test_content_length_accepts(values: list[str], expected: int | None) -> None:
    assert content_length(values) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["1", "2"], "more than one"),
        (["1, 2"], "invalid"),
        # RFC 9110 §8.6: a recipient may repair these; a sender must not send them,
        # so an app that does gets a 500 rather than a guess.
        (["42", "42"], "more than one"),
        (["42, 42"], "invalid"),
        (["42,"], "invalid"),
        (["42", ""], "more than one"),
        ([" 7 "], "invalid"),  # the handler strips values before asking
        (["\x1c7"], "invalid"),  # str.strip() whitespace
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


# ---------------------------------------------------------------------------------
# status_code and scan_headers: the fast paths must agree with the general rules
# ---------------------------------------------------------------------------------


class Text(str):
    """A str subclass: valid text, but not the exact type the fast paths require."""


class Pair(tuple):  # type: ignore[type-arg]
    """A tuple subclass, for the same reason."""


class HeaderList(list):  # type: ignore[type-arg]
    """A list subclass, for the same reason."""


@pytest.mark.parametrize(
    "status",
    ["200 OK", "404 Not Found", "100 Continue", "999 Custom", "200 ", "200 Ça va"],
)
def test_status_code_is_parse_status_code(status: str) -> None:
    for _ in range(2):  # the second call answers from the cache
        assert status_code(status) == parse_status(status)[0]


@pytest.mark.parametrize(
    "status",
    [
        "200",
        "2000 OK",
        "OK 200",
        "",
        "\u0662\u0660\u0660 OK",  # Arabic-Indic digits
        "099 Low",
        "200 OK\r\nSet-Cookie: x=1",
        "200 O\0K",
        "200 ☃",
    ],
)
def test_status_code_raises_as_parse_status(status: str) -> None:
    with pytest.raises(ValueError, match="status") as expected:
        parse_status(status)
    for _ in range(2):  # an invalid status is never remembered
        with pytest.raises(ValueError, match="status") as got:
            status_code(status)
        assert str(got.value) == str(expected.value)


def test_status_code_needs_str() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        status_code(b"200 OK")  # type: ignore[arg-type]


def test_status_code_remembers_only_exact_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(response, "_status_codes", {})
    assert status_code(Text("201 Created")) == 201
    assert response._status_codes == {}
    assert status_code("201 Created") == 201
    assert response._status_codes == {"201 Created": 201}


def test_status_code_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(response, "_status_codes", {})
    monkeypatch.setattr(response, "_STATUS_CACHE_LIMIT", 2)
    statuses = [f"{code} Reason" for code in range(200, 210)]
    assert [status_code(s) for s in statuses] == list(range(200, 210))
    assert len(response._status_codes) == 2


def general_path(headers: list[tuple[str, str]]) -> HeaderScan:
    """What the general checks make of a header list without hop-by-hop headers:
    ``validate_headers``, values stripped of spaces and tabs, ``content_length``."""
    validate_headers(headers)
    kept = [(name, value.strip(" \t")) for name, value in headers]
    assert not any(is_hop_by_hop(name) for name, _ in kept)
    length = content_length(v for n, v in kept if n.lower() == "content-length")
    dates = sum(name.lower() == "date" for name, _ in kept)
    server = any(name.lower() == "server" for name, _ in kept)
    return kept, length, dates, server


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Content-Type", "text/plain"), ("Content-Length", "14")],
        [("X-Name", "café")],  # latin-1
        [("X-Empty", "")],
        [("X-Tab", "a\tb")],
        [("X-Obs", "\x80\x9f\xff")],  # obs-text, C1 codes included
        [("X-Pad", " \tvalue \t")],  # stripped
        [("X-Weird!#$%&'*+.^_`|~", "v")],  # every tchar
        [("content-length", "00012")],
        [("CONTENT-LENGTH", " 7 ")],
        [("Content-Length", "9" * 20)],
        [("Date", "a"), ("date", "b"), ("Server", "s")],
        [("server", "")],
        [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Vary", "Cookie")],
    ],
)
def test_scan_headers_agrees_with_the_general_checks(
    headers: list[tuple[str, str]],
) -> None:
    for _ in range(2):  # the second time, names and values come from the caches
        scan = scan_headers(list(headers))
        assert scan == general_path(headers)
        assert scan is not None
        assert all(type(pair) is tuple for pair in scan[0])


@pytest.mark.parametrize(
    "headers",
    [
        # Whatever validate_headers refuses...
        (("A", "b"),),
        {"A": "b"},
        [["A", "b"]],
        [("A", "b", "c")],
        [("A",)],
        [(b"A", "b")],
        [("A", b"b")],
        [("A", 1)],
        [("", "b")],
        [("A B", "b")],
        [("Näme", "b")],
        [("A", "b\r\nSet-Cookie: x=1")],
        [("A", "b\0")],
        [("A", "b\x0bc")],
        [("A", "b\x1bc")],
        [("A", "b\x7f")],
        [("X-Ctl", "google\x01analytics")],
        [("A", "☃")],
        [("Ok", "fine"), ("A", "\u20ac")],
        [("Content-Length", "abc")],
        [("Content-Length", "1"), ("Content-Length", "2")],
        [("Content-Length", "\u0665")],  # isdigit() but not ASCII
        [("Content-Length", "9" * 21)],
        # ...and what it accepts but the general path must handle: hop-by-hop
        # headers (dropped and logged), list forms of Content-Length, and anything
        # that is not exactly a list of tuples of str.
        [("Connection", "close")],
        [("Keep-Alive", "5"), ("X-A", "b")],
        [("Transfer-Encoding", "chunked")],
        [("Content-Length", "4, 4")],
        [("Content-Length", "4"), ("Content-Length", "4")],
        [("Content-Length", "\x1c4")],  # str.strip() whitespace, for content_length
        [(Text("X-A"), "b")],
        [("X-A", Text("b"))],
        [Pair(("X-A", "b"))],
        HeaderList([("X-A", "b")]),
    ],
)
def test_scan_headers_leaves_the_rest_to_the_general_path(headers: object) -> None:
    assert scan_headers(headers) is None


# Mostly valid names and values, so that many lists take the fast path, with some
# of everything the fast path must refuse or treat specially.
_NAMES = st.sampled_from(
    ["Content-Type", "content-length", "Date", "SERVER", "Connection", "X A", "Näme"]
) | st.text(alphabet="Aa-_", min_size=1, max_size=3)
_VALUES = st.sampled_from(
    ["", "5", " 5 ", "5, 5", "\u0665", "\x1c5", "0" * 21, "café", "☃", "a\r\nb"]
) | st.text(alphabet=" \tab5,é\x01", max_size=4)


@settings(derandomize=True, max_examples=500, deadline=None, database=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=5))
def test_scan_headers_never_disagrees(headers: list[tuple[str, str]]) -> None:
    scan = scan_headers(headers)
    if scan is not None:
        assert scan == general_path(headers)


def test_scan_headers_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(response, "_name_kinds", {})
    monkeypatch.setattr(response, "_NAME_CACHE_LIMIT", 2)
    monkeypatch.setattr(response, "_plain_values", set())
    monkeypatch.setattr(response, "_VALUE_CACHE_LIMIT", 3)
    for round_ in range(3):
        headers = [(f"X-{i}", f"v{i}") for i in range(10)]
        headers.append(("Content-Length", str(round_)))
        scan = scan_headers(headers)
        assert scan == general_path(headers)
        assert len(response._name_kinds) <= 2
        assert len(response._plain_values) <= 3


def test_scan_headers_copies_the_list() -> None:
    headers = [("X-A", "b")]
    scan = scan_headers(headers)
    assert scan is not None
    assert scan[0] == headers
    assert scan[0] is not headers
