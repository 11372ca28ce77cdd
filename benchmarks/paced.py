"""A paced, open-loop HTTP/1.1 client: ``rate`` requests a second, each timed.

wrk (4, as packaged) sends as fast as the server answers, so its latency percentiles
are queueing at saturation. This client keeps a fixed schedule instead, identical
whatever the server does (no coordinated omission): request *i* is started at
``start + i / rate`` over a pool of keep-alive connections, and timed from the moment
it is ready to go, so a wait for a free connection (all of them busy with slow
answers) is charged to the server. Used by ``slow_clients.py`` (the normal client
beside an attack) and by ``run.py --workload paced`` (latency at a moderate rate).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0  # a request slower than this counts as failed


class BadResponse(Exception):
    """The server answered something other than a 200."""


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(port: int) -> Connection:
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT
    )


async def _request(connection: Connection) -> None:
    """One GET / on a keep-alive connection, its whole response read."""
    reader, writer = connection
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise BadResponse(head.split(b"\r\n", 1)[0].decode("latin-1"))
    length = None
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise BadResponse("no Content-Length")
    await reader.readexactly(length)


@dataclass
class Measurement:
    latencies: list[float]  # seconds, including any wait for a free connection
    failures: Counter[str]
    started: float  # wall time
    ended: float


async def measure(
    port: int, rate: float, duration: float, connections: int
) -> Measurement:
    """Send ``rate`` requests a second for ``duration`` seconds; time each one."""
    loop = asyncio.get_running_loop()
    pool: asyncio.Queue[Connection | None] = asyncio.Queue()
    for _ in range(connections):
        connection = await _connect(port)
        await asyncio.wait_for(_request(connection), REQUEST_TIMEOUT)  # warm-up
        pool.put_nowait(connection)
    latencies: list[float] = []
    failures: Counter[str] = Counter()

    async def one() -> None:
        # From here, not from when the request was due: the client's own timer
        # lateness is not the server's doing, a wait for a free connection is.
        # perf_counter, not loop.time(): uvloop's clock has a resolution of 1 ms.
        wanted = time.perf_counter()
        connection = await pool.get()
        try:
            if connection is None:  # an earlier reconnect failed
                connection = await _connect(port)
            await asyncio.wait_for(_request(connection), REQUEST_TIMEOUT)
            latencies.append(time.perf_counter() - wanted)
        except (
            OSError,
            TimeoutError,
            BadResponse,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            failures[type(exc).__name__] += 1
            if connection is not None:
                connection[1].close()
            connection = None
            with contextlib.suppress(OSError, TimeoutError):
                connection = await _connect(port)
        finally:
            pool.put_nowait(connection)

    started = time.time()
    start = loop.time()
    tasks = []
    for index in range(round(rate * duration)):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    ended = time.time()
    while not pool.empty():
        connection = pool.get_nowait()
        if connection is not None:
            connection[1].close()
    return Measurement(latencies, failures, started, ended)


def percentile_ms(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0-1] of sorted seconds, in ms."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000
