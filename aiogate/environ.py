"""The CGI half of a WSGI environ: request line, headers and addresses as PEP 3333 keys.

Owns: ``build_environ``, which turns one parsed request head plus the facts about its
connection into the CGI variables (``REQUEST_METHOD``, ``PATH_INFO``, ``HTTP_*``,
``SERVER_*``, ``REMOTE_*`` ...), and ``check_authority``, the rule an absolute-form
target's authority must meet (the parser, ``aiogate.http``, answers 400 when it does not).
The handler adds the ``wsgi.*`` keys itself. Sans-IO and pure: no I/O, no logging, no
locks. Runs in a worker thread, once per request, so it is on the hot path: plain
``str``/``bytes`` methods, no regexes (one for the rare absolute-form target), bounded
caches (the environ key of each header name, the split of each Host value), and h11's
header list read directly. The caches are shared by the worker threads; each only gains
entries that are right for every request, so a race at worst computes one twice.

Decisions (each one matches wsgiref or gunicorn unless it says otherwise):

- **Strings are "bytes as latin-1"** (PEP 3333 "native strings"): every value is the
  request's bytes decoded as latin-1, so no byte is lost and none is guessed at.
  ``PATH_INFO`` is percent-decoded *to bytes* first, then decoded latin-1:
  ``/caf%C3%A9`` becomes ``'/cafÃ©'`` and the app recovers ``'/café'`` with
  ``.encode("latin-1").decode("utf-8")`` (what wsgiref, gunicorn and werkzeug do).
- **``%2F`` is decoded like any other escape**, so ``/a%2Fb`` and ``/a/b`` both give
  ``PATH_INFO == '/a/b'`` (wsgiref and gunicorn do the same; CGI has no way to say
  otherwise). An app that must tell them apart reads ``RAW_URI``/``REQUEST_URI``, the
  request-target exactly as sent (gunicorn's and uWSGI's names; both are set). Dot
  segments (``/a/../b``) are not collapsed either: routing is the app's business.
- **Request-target forms** (RFC 9112 §3.2): origin-form ``/p?q`` splits at the first
  ``?``. A ``#fragment`` is not valid in any request-target, and the parser answers one
  with a 400; should such a head arrive anyway (another parser), the fragment is
  dropped, as gunicorn's ``urlsplit`` does. Absolute-form ``http://host:port/p?q`` gives
  path ``/p`` (``/`` when empty) and query ``q``, and its authority replaces the Host
  header (§3.2.2: the server "MUST ignore the received Host header field"): it is
  ``HTTP_HOST``, and ``SERVER_NAME``/``SERVER_PORT`` come from it. Both, so that an app
  never sees two hosts: frameworks check ``HTTP_HOST`` against their allowed hosts and
  build URLs from it (Django ``get_host``, werkzeug), so a Host that disagreed with the
  name the request was routed by would pass that check with one name and act on another.
  werkzeug's dev server does the same; gunicorn and waitress ignore the target's
  authority (their ``SERVER_NAME`` comes from Host or their config), and wsgiref puts
  the whole target in ``PATH_INFO``. The authority must pass ``check_authority`` (the
  Host rule, with a non-empty host and no userinfo); the parser refuses one that does
  not, and if such a head arrives anyway (another parser), ``HTTP_HOST`` is left out and
  ``SERVER_*`` come from the socket: neither the bad authority nor the ignored Host
  reaches the app. Asterisk-form ``*`` (``OPTIONS *``) gives ``PATH_INFO == '*'``, as
  with wsgiref and gunicorn. Any other form (authority-form ``host:443`` of CONNECT) is
  passed through as the path.
- **``root_path``** is ``SCRIPT_NAME`` on every request. When the decoded path equals it
  or continues it at a segment boundary (``/api`` matches ``/api`` and ``/api/x``, not
  ``/apix``), ``PATH_INFO`` is the rest; otherwise ``PATH_INFO`` is the whole path
  (uvicorn's rule for a proxy that does not strip the prefix; gunicorn raises instead).
  A non-ASCII ``root_path`` is compared as its UTF-8 bytes, in the same latin-1 form.
- **Headers**: ``Content-Type``/``Content-Length`` become ``CONTENT_TYPE``/
  ``CONTENT_LENGTH`` (absent when the request has none); every other field becomes
  ``HTTP_<NAME>`` with ``-`` → ``_``. A name that contains ``_`` is dropped, because
  ``X-Auth_User`` and ``X-Auth-User`` would map to the same key and a proxy that
  checks one could be fooled by the other (RFC 9110 §17.10; nginx and Apache drop them
  too). The handler logs what was dropped. Repeated fields are joined with ``","`` (RFC
  9110 §5.3), except ``Cookie``, joined with ``"; "``, the separator of the one-line
  form (RFC 6265 §5.4; HTTP/2 servers must do the same, RFC 9113 §8.2.3).
- **``SERVER_NAME``/``SERVER_PORT``** come from the Host header (the first one, if a
  client sent several), its port or else 80/443 by ``url_scheme``. An IPv6 literal keeps
  its brackets, as RFC 3875 §4.1.14 writes ``server-name``. A Host value that does not
  parse (bad port, unbracketed IPv6) or is empty is ignored for these two keys. Without
  a usable Host they come from the socket (``conn.server``); on a UNIX socket, or when
  the address is unknown, they are ``"localhost"`` and the scheme's default port, so
  ``wsgiref.util.request_uri`` still builds a valid URL (gunicorn uses the socket path
  and an empty port, which does not).
- **``REMOTE_ADDR``/``REMOTE_PORT``** come from ``conn.client``, as strings. On a UNIX
  socket ``REMOTE_ADDR`` is the peer's socket name (usually ``""``, as with gunicorn)
  and ``REMOTE_PORT`` is absent; with no peer address at all, ``REMOTE_ADDR`` is ``""``.
- **``REMOTE_HOST``** is always ``REMOTE_ADDR`` (RFC 3875 §4.1.9: the client's name
  SHOULD be given, and the address MAY stand in for it "for performance reasons").
  No reverse DNS lookup is made: it would block a worker thread on a resolver for
  every request, and a PTR record is chosen by whoever owns the address, so it
  proves nothing. waitress does the same; wsgiref and gunicorn leave the key out,
  and an app that reads it there gets a KeyError.
- **``SERVER_PROTOCOL``** is the version the client spoke: ``HTTP/1.1``, or
  ``HTTP/1.0`` for a 1.0 client (apps use it to decide on chunking and keep-alive).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_to_bytes

import h11

if TYPE_CHECKING:
    from ._types import ConnectionInfo, RequestHead

__all__ = [
    "absolute_form_authority",
    "build_environ",
    "check_authority",
    "header_environ_key",
]

# The default port of each scheme, as SERVER_PORT strings (RFC 9110 §4.2.1, §4.2.2).
_DEFAULT_PORTS = {"http": "80", "https": "443"}

_PROTOCOLS = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0"}

# Header fields that most requests carry, with their environ keys computed up front.
# Names arrive lowercased (h11 lowercases them), so these are the dict keys.
_COMMON_HEADERS = (
    b"accept",
    b"accept-charset",
    b"accept-encoding",
    b"accept-language",
    b"authorization",
    b"cache-control",
    b"connection",
    b"cookie",
    b"dnt",
    b"expect",
    b"forwarded",
    b"host",
    b"if-match",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"if-unmodified-since",
    b"keep-alive",
    b"origin",
    b"pragma",
    b"priority",
    b"range",
    b"referer",
    b"sec-ch-ua",
    b"sec-ch-ua-mobile",
    b"sec-ch-ua-platform",
    b"sec-fetch-dest",
    b"sec-fetch-mode",
    b"sec-fetch-site",
    b"sec-fetch-user",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"upgrade-insecure-requests",
    b"user-agent",
    b"via",
    b"x-csrftoken",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-proto",
    b"x-real-ip",
    b"x-request-id",
    b"x-requested-with",
)


# RFC 9110 §7.2: Host = uri-host [ ":" port ], uri-host from RFC 3986 §3.2.2
# (IP-literal with an RFC 6874 zone, IPvFuture, IPv4address or reg-name): the same
# pattern as aiogate.http._syntax.HOST_RE for the Host header, except that the host may not be
# empty (RFC 9110 §4.2.1: an http(s) URI with an empty host "MUST" be rejected).
# There is no "@": RFC 9110 §4.2.4 asks a recipient to treat userinfo in an http(s)
# URI as an error (it is mostly used to make one host look like another).
_AUTHORITY_RE: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+(?:%25(?:[-._~0-9A-Za-z]|%[0-9A-Fa-f]{2})+)?\]"
    rb"|\[[vV][0-9A-Fa-f]+\.[-._~0-9A-Za-z!$&'()*+,;=:]+\]"
    rb"|(?:[-._~0-9A-Za-z!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)"
    rb"(?::[0-9]*)?"
)


def check_authority(value: bytes) -> bool:
    """True if ``value`` may be the authority of an absolute-form request target.

    The rule for a Host header value (RFC 9110 §7.2: ``uri-host [ ":" port ]``), with
    a non-empty host (§4.2.1) and no userinfo (§4.2.4). ``value`` is the target's
    authority as sent, e.g. what ``absolute_form_authority`` returns.
    """
    return _AUTHORITY_RE.fullmatch(value) is not None


def absolute_form_authority(target: bytes) -> bytes | None:
    """The authority of an absolute-form request target, as sent (userinfo and all):
    ``http://u@host:80/p?q#f`` → ``b"u@host:80"``. None if ``target`` has no
    ``scheme://`` (origin-form, asterisk-form, authority-form)."""
    start = target.find(b"://")
    if start <= 0 or b"/" in target[:start]:
        return None
    rest = target[start + 3 :]
    end = len(rest)
    for delimiter in (b"/", b"?", b"#"):
        index = rest.find(delimiter)
        if 0 <= index < end:
            end = index
    return rest[:end]


def header_environ_key(name: bytes) -> str:
    """The environ key of the (lowercased) header field ``name``; ``""`` drops it.

    ``content-type`` → ``CONTENT_TYPE``, ``content-length`` → ``CONTENT_LENGTH``,
    ``x-foo`` → ``HTTP_X_FOO``; a name containing ``_`` → ``""`` (dropped, see above).
    """
    if b"_" in name:
        return ""
    key = name.decode("latin-1").upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return key
    return "HTTP_" + key


def _h11_headers_class() -> type | None:
    """The class of ``h11.Request.headers`` if it keeps its fields as (raw name,
    lowercased name, value) triples in ``_full_items``, as h11 0.16 does; else None.

    That list is private to h11, so it is probed once here: should a later h11 keep
    its fields some other way, build_environ quietly iterates instead.
    """
    probe = h11.Request(method="GET", target="/", headers=[("Host", "x")]).headers
    if getattr(probe, "_full_items", None) == [(b"Host", b"host", b"x")]:
        return type(probe)
    return None  # pragma: no cover  # a future h11


_H11_HEADERS: Any = _h11_headers_class()  # Any: mypy would narrow headers to object


_KEY_CACHE: dict[bytes, str] = {
    name: header_environ_key(name) for name in _COMMON_HEADERS
}
_KEY_CACHE[b"content-type"] = "CONTENT_TYPE"
_KEY_CACHE[b"content-length"] = "CONTENT_LENGTH"
# Uncommon names are cached too, but only this many: header names are chosen by
# clients, and an unbounded cache would let them grow our memory one name at a time.
_KEY_CACHE_LIMIT = 512


def build_environ(
    request: RequestHead, conn: ConnectionInfo, root_path: str
) -> dict[str, Any]:
    """The CGI variables of PEP 3333 for one request (no ``wsgi.*`` keys).

    ``request`` is an ``h11.Request`` or anything shaped like one, with lowercased
    header names; ``root_path`` is ``Config.root_path`` (``""`` or ``/prefix``).
    Runs in a worker thread.
    """
    target = request.target
    raw_uri = target.decode("latin-1")
    authority: bytes | None = None
    # The common origin-form, with nothing to unescape or cut: split the text already
    # decoded instead of decoding each part. (Tested on the str: ``b"%" in target``
    # costs 0.13 µs, as bytes.__contains__ first tries the needle as an int.)
    if raw_uri[:1] == "/" and "%" not in raw_uri and "#" not in raw_uri:
        path_info, _, query_string = raw_uri.partition("?")
    else:
        if b"#" in target:
            target = target.partition(b"#")[0]
        if target[:1] == b"/":
            path, _, query = target.partition(b"?")
        elif target == b"*":
            path, query = target, b""
        else:
            path, query, authority = _split_absolute_form(target)
        # Percent-decode to bytes, then latin-1 (PEP 3333); the check skips the slow
        # pure-Python unquote for a path with no escapes.
        path_info = (
            unquote_to_bytes(path).decode("latin-1")
            if b"%" in path
            else path.decode("latin-1")
        )
        query_string = query.decode("latin-1")
    script_name = root_path
    if root_path:
        if not root_path.isascii():
            script_name = root_path.encode("utf-8").decode("latin-1")
        if path_info.startswith(script_name) and (
            len(path_info) == len(script_name) or path_info[len(script_name)] == "/"
        ):
            path_info = path_info[len(script_name) :]

    version = request.http_version
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.decode("latin-1"),
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": query_string,
        "RAW_URI": raw_uri,
        "REQUEST_URI": raw_uri,
        "SERVER_PROTOCOL": _PROTOCOLS.get(version)
        or "HTTP/" + version.decode("latin-1"),
    }

    headers: Any = request.headers
    # h11's Headers is a Sequence whose iterator calls a Python __getitem__ per field
    # (0.9 µs for three fields, benchmarks/micro_handler.py); the list of (raw name,
    # lowercased name, value) triples inside it is read directly instead. Anything
    # else is made into the same triples (only fakes and tests take that path).
    # tests/test_environ.py checks that both give the same environ.
    fields = (
        headers._full_items
        if type(headers) is _H11_HEADERS
        else [(b"", name, value) for name, value in headers]
    )
    cache = _KEY_CACHE
    for _, name, value in fields:
        key = cache.get(name)
        if key is None:
            key = header_environ_key(name)
            if len(cache) < _KEY_CACHE_LIMIT:
                cache[name] = key
        if not key:
            continue
        text = value.decode("latin-1")
        if key in environ:
            separator = "; " if key == "HTTP_COOKIE" else ","
            environ[key] = environ[key] + separator + text
        else:
            environ[key] = text

    scheme = conn.url_scheme
    server = None
    if authority is None:
        host = environ.get("HTTP_HOST")
        if host:
            # The cache lookup of _server_from_host, inlined for the common case.
            server = _HOST_CACHES.get(scheme, _NO_HOSTS).get(host)
            if server is None:
                server = _server_from_host(host, scheme)
    elif check_authority(authority):
        # RFC 9112 §3.2.2: the target's authority, not the Host header (see the
        # module docstring for why HTTP_HOST follows it too).
        host = authority.decode("latin-1")
        environ["HTTP_HOST"] = host
        server = _split_host(host, _DEFAULT_PORTS.get(scheme, "80"))
    else:
        # The parser refuses this head; if another one let it through, the app
        # gets neither the bad authority nor the Host it must not believe.
        environ.pop("HTTP_HOST", None)
    if server is None:
        server = _server_from_socket(conn.server, _DEFAULT_PORTS.get(scheme, "80"))
    environ["SERVER_NAME"], environ["SERVER_PORT"] = server

    client = conn.client
    if isinstance(client, tuple):
        # A 4-tuple (host, port, flowinfo, scope_id) for IPv6: index, don't unpack.
        environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    else:
        environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = client or ""
    return environ


# The usable SERVER_NAME/SERVER_PORT pair of each Host value seen, per URL scheme
# (it decides the default port): a server sees few distinct Host values, and splitting
# one costs about 0.5 µs (benchmarks/micro_handler.py). Host values come from clients,
# so only this many are remembered; past that, the rest are split every time.
_HOST_CACHES: dict[str, dict[str, tuple[str, str]]] = {
    scheme: {} for scheme in _DEFAULT_PORTS
}
_HOST_CACHE_LIMIT = 256
_NO_HOSTS: dict[str, tuple[str, str]] = {}  # for other schemes; stays empty


def _server_from_host(host: str, scheme: str) -> tuple[str, str] | None:
    """SERVER_NAME and SERVER_PORT from the ``HTTP_HOST`` value, or None if unusable."""
    cache = _HOST_CACHES.get(scheme)
    if cache is not None:
        server = cache.get(host)
        if server is not None:
            return server
    # Several Host fields were joined with ","; the first one counts.
    server = _split_host(
        host.partition(",")[0].strip(), _DEFAULT_PORTS.get(scheme, "80")
    )
    if server is not None and cache is not None and len(cache) < _HOST_CACHE_LIMIT:
        cache[host] = server
    return server


def _split_absolute_form(target: bytes) -> tuple[bytes, bytes, bytes | None]:
    """``http://host:port/p?q`` → ``(b"/p", b"q", b"host:port")``; the target has
    no fragment. The authority is as sent, userinfo included (``check_authority``
    refuses one). Any other form (no ``scheme://``) comes back whole, as the path.
    """
    authority = absolute_form_authority(target)
    if authority is None:
        return target, b"", None  # authority-form or nonsense: keep it as the path
    rest = target[target.find(b"://") + 3 + len(authority) :]
    path, _, query = rest.partition(b"?")
    if not path:
        path = b"/"
    return path, query, authority


def _split_host(host: str, default_port: str) -> tuple[str, str] | None:
    """``"example.com:8080"`` → ``("example.com", "8080")``; ``None`` if unusable."""
    if host[:1] == "[":
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[: end + 1], host[end + 1 :]
        if rest and rest[:1] != ":":
            return None
        port = rest[1:]
    else:
        name, _, port = host.partition(":")
        if ":" in port:
            return None  # an IPv6 literal without brackets
    if not name:
        return None
    if not port:
        return name, default_port
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        return None
    return name, str(int(port))


def _server_from_socket(server: object, default_port: str) -> tuple[str, str]:
    if isinstance(server, tuple):
        host = str(server[0])
        if ":" in host:
            host = "[" + host + "]"
        return host, str(server[1])
    return "localhost", default_port
