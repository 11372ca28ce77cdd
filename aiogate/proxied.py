"""A connection that starts with a PROXY protocol header (``--proxy-protocol``).

Owns: ``ProxiedH11Protocol``, the ``H11Protocol`` a listener makes when the option
is on, ``ProxiedTLSGate``, what it makes instead with TLS, and what happens before
HTTP starts on either. Every method runs on the event loop. With the option off
the server makes plain ``H11Protocol``s, so none of this is on their path.

Theory of operation:

1. Trust first. The socket's peer must be in ``--forwarded-allow-ips`` (the trust
   list of proxy headers, ``unix`` and ``*`` included), or the connection is closed
   at once, before a byte is read: only a proxy we trust may say who the client is.
2. Until the header is whole, received bytes go to ``ProxyHeaderReader``, none to
   HTTP, under the head's deadline (``timeout_request_header``, from the accept).
   A malformed, oversized or missing header (EOF or the deadline first) closes the
   connection without a response, since there is no HTTP yet to answer in, and is
   logged once: a WARNING for a refused header or peer (a misconfigured proxy, or
   someone else reaching the port), DEBUG for a connection closed before sending
   anything (a balancer's TCP health check).
3. The header's client replaces the socket's peer in ``info`` for everything after
   it: ``REMOTE_ADDR``/``REMOTE_PORT``, the access log's ``%(h)s``, and the trust
   check of proxy headers (``X-Forwarded-For``, ``Forwarded``), which then asks
   whether *that* address is trusted. The connection is treated as if it came
   from that client directly: a client behind an L4 balancer cannot have its own
   ``X-Forwarded-For`` believed because the balancer is trusted, while a chain in
   which the PROXY header names a trusted L7 proxy still has that proxy's headers
   read. Version 1 ``UNKNOWN`` and version 2 ``LOCAL``/``UNSPEC`` keep the
   socket's peer (and so the balancer's own headers count, as from any trusted
   peer). The server address stays the socket's.
4. The bytes after the header, in the same segment or later, go to HTTP unchanged
   (``H11Protocol.data_received``), a pipelined request included; from then on
   every call is handed on at once.
5. With TLS the header comes before the handshake, so a listener with the PROXY
   protocol on takes plain sockets, and ``ProxiedTLSGate`` (a
   ``BufferedProtocol``) reads the header first, never a byte more
   (``ProxyHeaderReader.bytes_needed``): a ``Protocol`` could read the
   ClientHello behind it too, and there is no way to give bytes back to a
   transport. Then ``loop.start_tls`` makes the handshake (within
   ``timeout_request_header``, as for a plain TLS listener), the gate keeps what
   the client sends meanwhile, and an ``H11Protocol`` takes over the TLS
   transport, its slot and what was kept, with the header's client as its peer.
   Until then the gate is the connection for the server: it holds the slot, is
   in ``ServerState.connections`` (the header's deadline is checked by the
   sweep) and releases the slot if the connection ends first. A drain leaves it
   to its deadlines, as it leaves a plain TLS listener's handshakes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, cast

from .access_log import Refusal
from .errors import ProtocolError
from .http import Phase
from .protocol import H11Protocol, socket_address
from .proxy_protocol import V2_MAX_SIZE, ProxyHeader, ProxyHeaderReader
from .server_state import LINGER_TIMEOUT

if TYPE_CHECKING:
    import ssl

    from .listener import Slot
    from .proxy_headers import TrustedProxies
    from .server_state import ServerState

__all__ = ["ProxiedH11Protocol", "ProxiedTLSGate"]

log = logging.getLogger("aiogate.error")


class ProxiedH11Protocol(H11Protocol):
    """One client connection behind a PROXY header. Runs on the event loop."""

    def __init__(
        self,
        state: ServerState,
        slot: Slot | None = None,
        *,
        trusted: TrustedProxies,
    ) -> None:
        super().__init__(state, slot)
        self.trusted = trusted
        #: Until the header is whole; then None and HTTP has the connection.
        self.proxy_reader: ProxyHeaderReader | None = ProxyHeaderReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._closing:
            return  # refused over --limit-connections: the 503 is on its way
        peer = self.info.client
        if not self.trusted.is_trusted(peer):  # rule 1
            self._refuse_header("the peer is not in --forwarded-allow-ips")
            return
        if not self.state.shutting_down:  # (else the drain's grace stands)
            self.arm(Phase.HEAD)  # rule 2: the header is due with the head

    def data_received(self, data: bytes) -> None:
        reader = self.proxy_reader
        if reader is None:
            super().data_received(data)
            return
        if self._closing:
            return
        try:
            header = reader.feed(data)
        except ProtocolError as exc:
            self._refuse_header(str(exc))
            return
        if header is None:
            return
        self.proxy_reader = None
        metrics = self.state.metrics
        if metrics is not None:  # (the bytes after it are counted as HTTP's)
            metrics.received(header.size)
        if header.client is not None:  # rule 3
            self.info = dataclasses.replace(self.info, client=header.client)
        if reader.rest:  # rule 4
            super().data_received(reader.rest)
        else:
            self._handle_events()  # no request yet: the keep-alive clock

    def eof_received(self) -> bool:
        if self.proxy_reader is not None and not self._closing:
            self._client_eof = True
            if self.proxy_reader.started:
                self._refuse_header("connection closed inside the PROXY header")
            else:
                log.debug("%s closed before a PROXY header", self.info.client)
                self._close()
            return False
        return super().eof_received()

    def _on_head_timeout(self) -> None:
        if self.proxy_reader is not None:
            self._refuse_header(
                "no PROXY header within "
                f"{self.state.config.timeout_request_header:g} seconds"
            )
            return
        super()._on_head_timeout()

    def _refuse_header(self, reason: str) -> None:
        """Rule 2: log once and close, answering nothing."""
        log.warning(
            "PROXY protocol from %s: %s; closing the connection",
            _shown(self.info.client),
            reason,
        )
        self.state.count_rejection(Refusal.PROXY_HEADER)
        self._close()


class ProxiedTLSGate(asyncio.BufferedProtocol):
    """The start of a TLS connection behind a PROXY header (rule 5): the header,
    then the handshake, then an ``H11Protocol``. Runs on the event loop."""

    def __init__(
        self,
        state: ServerState,
        slot: Slot | None = None,
        *,
        trusted: TrustedProxies,
        ssl_context: ssl.SSLContext,
    ) -> None:
        self.state = state
        self.slot = slot
        self.trusted = trusted
        self.ssl_context = ssl_context
        #: The connection once TLS is up. Made now: the server's probes read its
        #: ``conn`` (an idle connection's) while the gate stands in for it.
        self.inner = H11Protocol(state, slot)
        self.conn = self.inner.conn
        self.reader = ProxyHeaderReader()
        self.header: ProxyHeader | None = None
        self._buffer = bytearray(V2_MAX_SIZE)  # the header, then data kept for later
        self._kept: list[bytes] = []  # what the client sent before the hand-over
        self._eof = False
        self._done = False  # refused, lost or handed over: nothing more to do
        self._deadline = 0.0  # the header's, in loop.time()
        self._handshake: asyncio.Task[None] | None = None
        self._peer: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        state = self.state
        state.connections.add(self)
        self._peer = peer = socket_address(transport.get_extra_info("peername"))
        self._deadline = state.loop.time() + state.config.timeout_request_header
        if self.slot is not None and self.slot.refused:
            # Over --limit-connections (the listener logged it): no TLS to answer
            # a 503 in yet, so the connection is just closed.
            state.count_rejection(Refusal.CONNECTION_LIMIT)
            self._close()
        elif not self.trusted.is_trusted(peer):  # rule 1
            self._refuse("the peer is not in --forwarded-allow-ips")

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.header is None:
            # Never past the header: what follows is the TLS handshake's.
            return memoryview(self._buffer)[: self.reader.bytes_needed]
        return memoryview(self._buffer)  # decrypted data, kept for the hand-over

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self._buffer[:nbytes])
        if self.header is not None:
            self._kept.append(data)
            return
        if self._done:
            return
        try:
            header = self.reader.feed(data)
        except ProtocolError as exc:
            self._refuse(str(exc))
            return
        if header is not None:
            self.header = header
            self.transport.pause_reading()  # until start_tls reads for the handshake
            self._handshake = self.state.loop.create_task(self._start_tls())

    def eof_received(self) -> bool:
        if self.header is not None:
            self._eof = True  # the client closed after its request: handed over too
            return True
        if not self._done:
            if self.reader.started:
                self._refuse("connection closed inside the PROXY header")
            else:
                log.debug("%s closed before a PROXY header", self._peer)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended before the hand-over (after it, the H11Protocol is
        told instead): give the slot back."""
        self._done = True
        self.state.connections.discard(self)
        if self.state.metrics is not None:  # (a connection handed over is counted
            self.state.metrics.accepted()  # by its H11Protocol's connection_made)
        if self.slot is not None:
            self.slot.release()

    async def _start_tls(self) -> None:
        state = self.state
        try:
            transport = await state.loop.start_tls(
                self.transport,
                self,
                self.ssl_context,
                server_side=True,
                ssl_handshake_timeout=state.config.timeout_request_header,
                ssl_shutdown_timeout=LINGER_TIMEOUT,
            )
        except OSError as exc:  # SSLError, a reset, the handshake's timeout
            log.debug("TLS handshake after a PROXY header failed: %r", exc)
            self.transport.abort()
            self.connection_lost(exc)
            return
        except Exception as exc:  # a bug: the connection must still end, its slot too
            log.exception("Could not start TLS after a PROXY header")
            self.transport.abort()
            self.connection_lost(exc)
            return
        if transport is None or self._done:
            return  # (start_tls says None when the connection closed meanwhile)
        self._hand_over(transport)

    def _hand_over(self, transport: asyncio.BaseTransport) -> None:
        """TLS is up: the H11Protocol has the connection from here on (rule 5)."""
        header = self.header
        assert header is not None
        self._done = True
        state = self.state
        state.connections.discard(self)
        inner = self.inner
        transport.set_protocol(inner)
        inner.connection_made(transport)  # (counts the accept)
        if header.client is not None:  # rule 3
            inner.info = dataclasses.replace(inner.info, client=header.client)
        if state.metrics is not None:
            state.metrics.received(header.size)
        for data in self._kept:  # (what a request said before the hand-over)
            inner.data_received(data)
        if self._eof and not inner.eof_received():
            cast(asyncio.Transport, transport).close()

    # -- what the server asks of a connection (server_state.Connection) -----------

    def check_deadline(self, now: float) -> bool:
        """The header's deadline (the handshake's is start_tls's)."""
        if self.header is None and not self._done and now >= self._deadline:
            self._refuse(
                "no PROXY header within "
                f"{self.state.config.timeout_request_header:g} seconds"
            )
            return True
        return False

    def shutdown(self) -> None:
        """A drain leaves a connection that has not started HTTP to its deadlines,
        as it does one in its TLS handshake."""

    def abort(self) -> None:
        self.transport.abort()

    def _refuse(self, reason: str) -> None:
        """Rule 2: log once and close, answering nothing."""
        log.warning(
            "PROXY protocol from %s: %s; closing the connection",
            _shown(self._peer),
            reason,
        )
        self.state.count_rejection(Refusal.PROXY_HEADER)
        self._close()

    def _close(self) -> None:
        self._done = True
        self.transport.close()


def _shown(peer: object) -> object:
    """A peer for a log line: a UNIX socket's has no name ("")."""
    return peer if peer else "a UNIX socket peer"
