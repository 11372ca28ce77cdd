"""A raw HTTP/1.1 test client over real loopback sockets, parsing responses with h11.

It sends exactly the bytes a test gives it (so tests control pipelining, framing and
malformed input) and reads responses one at a time, every wait bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import h11

TIMEOUT = 10.0


@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    http_version: bytes = b"1.1"
    informational: list[int] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name.lower()]


class Client:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._leftover = b""
        self._eof = False

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> Client:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(TIMEOUT):
            await self.writer.drain()

    async def _fill(self, conn: h11.Connection) -> None:
        if self._leftover:
            conn.receive_data(self._leftover)
            self._leftover = b""
        elif self._eof:
            conn.receive_data(b"")
        else:
            async with asyncio.timeout(TIMEOUT):
                data = await self.reader.read(65536)
            if not data:
                self._eof = True
            conn.receive_data(data)

    async def response(
        self, method: bytes = b"GET", *, stop_after_head: bool = False
    ) -> Response:
        """Read the next response to a request with this method."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[(b"host", b"t")]))
        conn.send(h11.EndOfMessage())
        informational: list[int] = []
        response: Response | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                await self._fill(conn)
                continue
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
                if stop_after_head:
                    data, _ = conn.trailing_data
                    self._leftover = data
                    return Response(
                        event.status_code,
                        event.reason,
                        list(event.headers),
                        informational=informational,
                    )
            elif isinstance(event, h11.Response):
                response = Response(
                    event.status_code,
                    event.reason,
                    list(event.headers),
                    http_version=event.http_version,
                    informational=informational,
                )
                if stop_after_head:
                    data, _ = conn.trailing_data
                    self._leftover = data
                    return response
            elif isinstance(event, h11.Data):
                assert response is not None
                response.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                data, closed = conn.trailing_data
                self._leftover = data
                self._eof = self._eof or closed
                return response
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed before a complete response")

    async def read_until_eof(self) -> bytes:
        chunks = [self._leftover]
        self._leftover = b""
        async with asyncio.timeout(TIMEOUT):
            while data := await self.reader.read(65536):
                chunks.append(data)
        self._eof = True
        await self.close()  # the server closed; release our end too
        return b"".join(chunks)

    async def read_until_reset(self) -> tuple[bytes, bool]:
        """Read until the server closes: what arrived, and whether the close was a
        reset (True) rather than a FIN."""
        chunks = [self._leftover]
        self._leftover = b""
        reset = False
        async with asyncio.timeout(TIMEOUT):
            try:
                while data := await self.reader.read(65536):
                    chunks.append(data)
            except ConnectionResetError:
                reset = True
        self._eof = True
        self.writer.close()
        return b"".join(chunks), reset

    async def closed_by_server(self) -> bool:
        """True when the server closes the connection (EOF) with nothing more sent."""
        return await self.read_until_eof() == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(TIMEOUT):
                await self.writer.wait_closed()
        except (ConnectionError, TimeoutError):
            pass
