"""The ceiling of the h11 design: a bare uvloop protocol that parses requests with h11
and answers a fixed response, with no WSGI, no threads and no checks.

Run: ``python benchmarks/h11_ceiling.py PORT``. ``run.py --servers h11-ceiling`` uses it
as the reference the issue's "85 % of the h11 ceiling" is measured against.
"""

from __future__ import annotations

import asyncio
import sys

import h11

BODY = b"Hello, world!\n"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))]


class Ceiling(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.conn = h11.Connection(h11.SERVER)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                    continue
                return
            if type(event) is h11.EndOfMessage:
                out = conn.send(h11.Response(status_code=200, headers=HEADERS))
                out += conn.send(h11.Data(data=BODY))
                out += conn.send(h11.EndOfMessage())
                self.transport.write(out)  # type: ignore[attr-defined]
                if conn.our_state is h11.MUST_CLOSE:
                    self.transport.close()
                    return
                conn.start_next_cycle()
            elif type(event) is h11.ConnectionClosed:
                self.transport.close()
                return


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Ceiling, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
