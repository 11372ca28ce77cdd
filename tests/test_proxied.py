"""``--proxy-protocol`` over real loopback sockets (aiogate.proxied): the client a
PROXY header names reaches the app, the access log and the proxy-header trust
check; a refused header or peer gets the connection closed with nothing sent.

Each test runs on the stdlib loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

import pytest

from aiogate.protocol import H11Protocol
from aiogate.proxied import ProxiedH11Protocol
from aiogate.proxy_protocol import V2_SIGNATURE
from tests.client import TIMEOUT, Client
from tests.test_end_to_end import SERVE, ServerProcess
from tests.test_observability import Lines, access_lines  # noqa: F401 (fixture)
from tests.test_server import serving
from tests.test_tls import Certs, certs, client_context  # noqa: F401 (fixture)

GET = b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n"
V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n"
REPO = Path(__file__).resolve().parent.parent


def who(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Echoes the client the app sees, and the proxy header it was left."""
    body = " ".join(
        str(environ.get(key))
        for key in ("REMOTE_ADDR", "REMOTE_PORT", "HTTP_X_FORWARDED_FOR")
    ).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def v2_inet6(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    block = (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + struct.pack(">HH", sport, dport)
        + tlvs
    )
    return V2_SIGNATURE + b"\x21\x21" + struct.pack(">H", len(block)) + block


V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"


class Warnings(logging.Handler):
    """Collects aiogate.error's WARNING lines about the PROXY protocol."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "PROXY" in record.getMessage():
            self.lines.append(record.getMessage())


@pytest.fixture
def warnings() -> Any:
    logger = logging.getLogger("aiogate.error")
    handler = Warnings()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def ask(port: int, data: bytes, *, host: str = "127.0.0.1") -> bytes:
    """Send ``data`` on a new connection; the body of the one response."""
    client = await Client.connect(port, host)
    await client.send(data)
    response = await client.response()
    await client.close()
    assert response.status == 200
    return response.body


async def test_v1_header_sets_remote_addr_and_the_access_log(
    access_lines: Lines,  # noqa: F811
) -> None:
    async with serving(who, proxy_protocol=True, access_log=True) as (_, port):
        assert await ask(port, V1 + GET) == b"203.0.113.7 40000 None"
        [line] = access_lines.wait(1)
    assert re.match(r'203\.0\.113\.7 - - \[[^]]+\] "GET /who HTTP/1\.1" 200', line)


async def test_v2_header_with_tlvs_sets_remote_addr() -> None:
    header = v2_inet6("2001:db8::7", "2001:db8::1", 5555, 443, b"\x01\x00\x02h2")
    async with serving(who, proxy_protocol=True) as (_, port):
        assert await ask(port, header + GET) == b"2001:db8::7 5555 None"


@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n", V2_LOCAL])
async def test_unknown_and_local_keep_the_socket_peer(header: bytes) -> None:
    async with serving(who, proxy_protocol=True) as (_, port):
        addr, sport, _ = (await ask(port, header + GET)).split()
    assert addr == b"127.0.0.1"
    assert int(sport) > 0


async def test_header_and_requests_in_pieces_and_pipelined() -> None:
    """The header a byte at a time, then requests pipelined behind it in one
    segment: every one is answered, on the same connection."""
    async with serving(who, proxy_protocol=True) as (_, port):
        client = await Client.connect(port)
        for index in range(len(V1)):
            await client.send(V1[index : index + 1])
        await client.send(GET + GET)
        for _ in range(2):
            assert (await client.response()).body == b"203.0.113.7 40000 None"
        await client.close()
        client = await Client.connect(port)
        await client.send(V1 + GET + GET)  # header and two requests, one segment
        for _ in range(2):
            assert (await client.response()).body == b"203.0.113.7 40000 None"
        await client.close()


async def test_x_forwarded_for_is_judged_against_the_header_client() -> None:
    """The header's client replaces the socket's peer for the trust check too: an
    untrusted client's own X-Forwarded-For is removed even though the balancer is
    trusted; a trusted L7 proxy named by the header has its header read."""
    spoofed = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
    trusted_l7 = b"PROXY TCP4 10.1.2.3 192.0.2.1 40000 443\r\n"
    async with serving(
        who, proxy_protocol=True, forwarded_allow_ips="127.0.0.1,10.0.0.0/8"
    ) as (_, port):
        assert await ask(port, V1 + spoofed) == b"203.0.113.7 40000 None"
        assert await ask(port, trusted_l7 + spoofed) == b"1.2.3.4 None 1.2.3.4"


async def test_an_untrusted_peer_is_closed_without_a_response(
    warnings: Warnings,
) -> None:
    async with serving(who, proxy_protocol=True, forwarded_allow_ips="10.0.0.0/8") as (
        _,
        port,
    ):
        client = await Client.connect(port)
        await client.send(V1 + GET)
        assert await client.closed_by_server()
    assert len(warnings.lines) == 1
    assert "not in --forwarded-allow-ips" in warnings.lines[0]


@pytest.mark.parametrize(
    "data",
    [
        GET,  # no header at all
        b"PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n" + GET,
        b"PROXY UNKNOWN " + b"x" * 200,  # no CRLF within 107 bytes
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # longer than the cap
    ],
    ids=["missing", "malformed", "v1-oversized", "v2-oversized"],
)
async def test_a_bad_header_is_closed_without_a_response(
    data: bytes, warnings: Warnings
) -> None:
    async with serving(who, proxy_protocol=True) as (_, port):
        client = await Client.connect(port)
        await client.send(data)
        assert await client.closed_by_server()
    assert len(warnings.lines) == 1, warnings.lines


async def test_a_header_not_sent_in_time_is_closed_without_a_408(
    warnings: Warnings,
) -> None:
    async with serving(who, proxy_protocol=True, timeout_request_header=0.2) as (
        _,
        port,
    ):
        client = await Client.connect(port)
        await client.send(V1[:10])  # part of a header, then nothing
        assert await client.closed_by_server()
        client = await Client.connect(port)  # nothing at all
        assert await client.closed_by_server()
    assert len(warnings.lines) == 2, warnings.lines
    assert all("no PROXY header within 0.2 seconds" in w for w in warnings.lines)


async def test_a_close_inside_the_header_is_logged(warnings: Warnings) -> None:
    async with serving(who, proxy_protocol=True) as (_, port):
        client = await Client.connect(port)
        await client.send(V1[:10])
        client.writer.write_eof()
        assert await client.closed_by_server()
        client = await Client.connect(port)  # a TCP health check: not a warning
        client.writer.write_eof()
        assert await client.closed_by_server()
    assert len(warnings.lines) == 1
    assert "inside the PROXY header" in warnings.lines[0]


async def test_the_deadline_after_the_header_is_the_keep_alive_one() -> None:
    """A header with no request behind it is an idle connection: it is closed
    after the keep-alive timeout, quietly (no 408)."""
    async with serving(
        who, proxy_protocol=True, timeout_keep_alive=0.2, timeout_request_header=5
    ) as (_, port):
        client = await Client.connect(port)
        await client.send(V1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await client.closed_by_server()
        assert loop.time() - started < TIMEOUT / 2


async def test_unix_socket_peers_need_unix_in_the_list(
    tmp_path: Path, warnings: Warnings
) -> None:
    path = str(tmp_path / "app.sock")

    async def over_unix(trust: str) -> bytes:
        async with serving(
            who, proxy_protocol=True, uds=path, forwarded_allow_ips=trust
        ):
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(V1 + b"GET / HTTP/1.0\r\n\r\n")
                data = await reader.read()
                writer.close()
            return data

    assert await over_unix("127.0.0.1") == b""
    assert len(warnings.lines) == 1
    assert "PROXY protocol from a UNIX socket peer: " in warnings.lines[0]
    answer = await over_unix("unix")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n203.0.113.7 40000 None")


@pytest.mark.parametrize("on", [False, True])
async def test_only_the_option_makes_proxied_connections(on: bool) -> None:
    """With the option off, connections are plain H11Protocols (nothing of the
    PROXY protocol on their path), and a PROXY header is just a bad request."""
    async with serving(who, proxy_protocol=on) as (server, port):
        client = await Client.connect(port)
        await client.send(V1 + GET)
        assert (await client.response()).status == (200 if on else 400)
        assert server._state is not None
        kinds = {type(conn) for conn in server._state.connections}
        await client.close()
    assert kinds == {ProxiedH11Protocol if on else H11Protocol}


# -- with TLS: the header comes before the handshake (proxied rule 5) -------------


def tls_exchange(
    port: int, first: bytes, requests: bytes, context: ssl.SSLContext
) -> bytes:
    """``first`` (a PROXY header) and the ClientHello in one segment, so a server
    that read past the header would break the handshake; then ``requests``, sent
    with the client's Finished; returns what the server sent until it closed.
    Blocking: run it in a thread."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            sock.sendall(first + outgoing.read())
            first = b""
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed in the handshake")
            incoming.write(data)
        tls.write(requests)
        sock.sendall(outgoing.read())
        received = bytearray()
        while True:
            try:
                chunk = tls.read(65536)
                if not chunk:
                    break  # the server's close_notify
                received += chunk
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            data = sock.recv(65536)
            if not data:
                break
            incoming.write(data)
    return bytes(received)


def who_tls(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def serve_tls(certs: Certs, **options: Any) -> Any:  # noqa: F811 - the fixture's
    return serving(
        who_tls,
        proxy_protocol=True,
        ssl_certfile=str(certs.server_cert),
        ssl_keyfile=str(certs.server_key),
        **options,
    )


KEEP_THEN_CLOSE = GET + GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (V1, b"203.0.113.7"),
        (v2_inet6("2001:db8::7", "::1", 1, 443, b"\x01\x00\x02h2"), b"2001:db8::7"),
        (V2_LOCAL, b"127.0.0.1"),
    ],
    ids=["v1", "v2", "v2-local"],
)
async def test_tls_after_the_header(
    certs: Certs,  # noqa: F811 - the fixture
    header: bytes,
    client: bytes,
) -> None:
    """The handshake right behind the header, in the same segment; then two
    requests on the TLS connection (the first may arrive with the client's
    Finished, before the connection is handed over to HTTP)."""
    context = client_context(certs, with_cert=False)
    async with serve_tls(certs) as (_, port):
        received = await asyncio.to_thread(
            tls_exchange, port, header, KEEP_THEN_CLOSE, context
        )
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2, received
    assert received.count(b"\r\n\r\n" + client + b" https") == 2, received


@pytest.mark.parametrize(
    ("first", "options"),
    [
        (V1, {"forwarded_allow_ips": "10.0.0.0/8"}),
        (b"PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n", {}),
        (b"", {}),  # the ClientHello with no header before it
    ],
    ids=["untrusted", "malformed", "missing"],
)
async def test_tls_refusals_close_before_the_handshake(
    certs: Certs,  # noqa: F811 - the fixture
    first: bytes,
    options: dict[str, Any],
    warnings: Warnings,
) -> None:
    context = client_context(certs, with_cert=False)
    async with serve_tls(certs, **options) as (server, port):
        with pytest.raises(ConnectionError):
            await asyncio.to_thread(tls_exchange, port, first, GET, context)
        await wait_for_no_connections(server)
    assert len(warnings.lines) == 1, warnings.lines


async def test_tls_header_deadline_and_failed_handshake_release_the_slot(
    certs: Certs,  # noqa: F811 - the fixture
    warnings: Warnings,
) -> None:
    async with serve_tls(certs, timeout_request_header=0.3) as (server, port):
        client = await Client.connect(port)
        await client.send(V1[:5])  # then nothing: the header's deadline
        assert await client.closed_by_server()
        client = await Client.connect(port)
        await client.send(V1 + b"\x16\x03\x01 not a ClientHello")
        assert await client.closed_by_server()
        await wait_for_no_connections(server)
        # And the next one is served.
        context = client_context(certs, with_cert=False)
        received = await asyncio.to_thread(
            tls_exchange, port, V1, KEEP_THEN_CLOSE, context
        )
        assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert len(warnings.lines) == 1
    assert "no PROXY header within 0.3 seconds" in warnings.lines[0]


async def wait_for_no_connections(server: Any) -> None:
    """Poll the listener's count of open sockets down to 0, with a deadline."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if not server._listener.open:
                return
            await asyncio.sleep(0.01)  # polling a condition, bounded


def test_command_line_serves_the_proxy_protocol_and_logs_the_client(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        [
            *(*SERVE, "tests.test_proxied:who", "--port", "0", "--proxy-protocol"),
            *("--access-log", "--app-dir", str(REPO)),
        ],
        cwd=tmp_path,
    )
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                V1 + GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
            )
            response = b""
            while data := sock.recv(65536):
                response += data
        assert response.endswith(b"\r\n\r\n203.0.113.7 40000 None"), response
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    assert any(
        line.startswith("203.0.113.7 - - [") and '"GET /who HTTP/1.1" 200' in line
        for line in server.lines
    ), server.lines


async def test_proxy_headers_from_a_unix_socket_peer_listed_as_unix(
    tmp_path: Path,
) -> None:
    """The 'unix' entry trusts a UNIX-socket peer (whose name is ""), without the
    PROXY protocol too."""
    path = str(tmp_path / "app.sock")
    for trust, expected in (("unix", b"1.2.3.4"), ("127.0.0.1", b" None None")):
        async with serving(who, uds=path, forwarded_allow_ips=trust):
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(b"GET / HTTP/1.0\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n")
                data = await reader.read()
                writer.close()
        assert data.partition(b"\r\n\r\n")[2].startswith(expected), data


async def test_a_refused_header_is_counted_under_its_reason() -> None:
    scrape = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    async with serving(who, proxy_protocol=True, metrics_path="/metrics") as (_, port):
        client = await Client.connect(port)
        await client.send(b"PROXY nonsense\r\n")
        assert await client.closed_by_server()
        text = (await ask(port, V1 + scrape)).decode()
    assert '\naiogate_rejections_total{reason="proxy_header"} 1\n' in text, text


async def test_the_header_counts_as_received_bytes() -> None:
    scrape = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    async with serving(who, proxy_protocol=True, metrics_path="/metrics") as (_, port):
        text = (await ask(port, V1 + scrape)).decode()
    assert f"aiogate_received_bytes_total {len(V1) + len(scrape)}\n" in text


async def test_tls_connections_are_counted_once_each(
    certs: Certs,  # noqa: F811 - the fixture
) -> None:
    context = client_context(certs, with_cert=False)
    scrape = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    async with serve_tls(certs, metrics_path="/metrics") as (_, port):
        client = await Client.connect(port)
        await client.send(b"PROXY nonsense\r\n")  # refused: counted all the same
        assert await client.closed_by_server()
        await asyncio.to_thread(tls_exchange, port, V1, KEEP_THEN_CLOSE, context)
        text = (
            await asyncio.to_thread(tls_exchange, port, V1, scrape, context)
        ).decode()
    assert "\naiogate_connections_accepted_total 3\n" in text, text
    assert '\naiogate_rejections_total{reason="proxy_header"} 1\n' in text, text
