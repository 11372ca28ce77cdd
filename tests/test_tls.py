"""HTTPS with the stdlib ssl module: a request with and without a client certificate,
required client certificates, and the TLS variables in the environ. The certificates
are made for each test run by the openssl command line tool."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aiogate import Server
from aiogate.errors import ConfigError

Environ = dict[str, Any]
TIMEOUT = 10.0


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed."""
    d = tmp_path_factory.mktemp("certs")
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=aiogate test CA",
        cwd=d,
    )  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject, ext in (
        ("server", "/CN=localhost", ["-extfile", "server.ext"]),
        ("client", "/O=Example/CN=alice", []),
    ):
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", subject,
            cwd=d,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext,
            cwd=d,
        )  # fmt: skip
    return Certs(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
    )


def tls_app(environ: Environ, start_response: Any) -> list[bytes]:
    keys = (
        "wsgi.url_scheme",
        "HTTPS",
        "SSL_PROTOCOL",
        "SSL_CLIENT_VERIFY",
        "SSL_CLIENT_S_DN",
    )
    seen = {key: environ.get(key) for key in keys}
    seen["has_cert"] = "BEGIN CERTIFICATE" in environ.get("SSL_CLIENT_CERT", "")
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def client_context(certs: Certs, *, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if with_cert:
        context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return context


async def https_get(port: int, context: ssl.SSLContext) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        raw = await reader.read()
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    result: dict[str, Any] = json.loads(body)
    return result


def serve_tls(certs: Certs, **options: Any) -> Server:
    return Server(
        tls_app,
        port=0,
        ssl_certfile=str(certs.server_cert),
        ssl_keyfile=str(certs.server_key),
        **options,
    )


async def test_https_request_without_a_client_certificate(certs: Certs) -> None:
    async with serve_tls(certs) as server:
        port = server.sockets[0].getsockname()[1]
        seen = await https_get(port, client_context(certs, with_cert=False))
    assert seen["wsgi.url_scheme"] == "https"
    assert seen["HTTPS"] == "on"
    assert seen["SSL_PROTOCOL"] in ("TLSv1.2", "TLSv1.3")
    assert seen["SSL_CLIENT_VERIFY"] == "NONE"
    assert seen["has_cert"] is False


async def test_client_certificate_reaches_the_environ(certs: Certs) -> None:
    options = {"ssl_ca_certs": str(certs.ca), "ssl_cert_reqs": "optional"}
    async with serve_tls(certs, **options) as server:
        port = server.sockets[0].getsockname()[1]
        with_cert = await https_get(port, client_context(certs, with_cert=True))
        without = await https_get(port, client_context(certs, with_cert=False))
    assert with_cert["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert with_cert["has_cert"] is True
    assert with_cert["SSL_CLIENT_S_DN"] == "CN=alice,O=Example"
    assert without["SSL_CLIENT_VERIFY"] == "NONE"


async def test_required_client_certificate_refuses_a_client_without_one(
    certs: Certs,
) -> None:
    options = {"ssl_ca_certs": str(certs.ca), "ssl_cert_reqs": "required"}
    async with serve_tls(certs, **options) as server:
        port = server.sockets[0].getsockname()[1]
        assert (await https_get(port, client_context(certs, with_cert=True)))[
            "has_cert"
        ]
        # TLS 1.3 reports the refusal after the handshake, at the first read.
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            await https_get(port, client_context(certs, with_cert=False))


async def test_plain_http_on_the_tls_port_is_refused(certs: Certs) -> None:
    async with serve_tls(certs) as server:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await reader.read()
            writer.close()
        assert not data.startswith(b"HTTP/1.1 200")


def test_bad_tls_settings_are_config_errors(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ssl_certfile"):
        Server(tls_app, ssl_certfile=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="needs ssl_ca_certs"):
        Server(tls_app, ssl_certfile=str(certs.server_cert), ssl_cert_reqs="required")
    with pytest.raises(ConfigError, match="need ssl_certfile"):
        Server(tls_app, ssl_keyfile=str(certs.server_key))
