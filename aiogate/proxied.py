"""A connection that starts with a PROXY protocol header (``--proxy-protocol``).

Owns: ``ProxiedH11Protocol``, the ``H11Protocol`` a listener makes when the option
is on, and what happens before HTTP starts on it. Every method runs on the event
loop. With the option off the server makes plain ``H11Protocol``s, so none of this
is on their path.

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
5. Not with TLS (``Config`` refuses ``proxy_protocol`` with ``ssl_certfile``). The
   header comes before the TLS handshake, but a listener with an SSL context wraps
   every socket in asyncio's TLS transport from the accept, and it reads the
   handshake from the first bytes. Reading the header first would take a plain
   listener, reads of exactly the header's size (a ``BufferedProtocol``: a
   ``Protocol`` may read past the header into the ClientHello, which could not be
   given back) and then ``loop.start_tls`` on the transport, with the connection's
   slot and deadline handed over across it, on both event loops. Not done yet; TLS
   is terminated in the balancer in the setups that send the header.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from .errors import ProtocolError
from .http import Phase
from .protocol import H11Protocol
from .proxy_protocol import ProxyHeaderReader

if TYPE_CHECKING:
    import asyncio

    from .listener import Slot
    from .proxy_headers import TrustedProxies
    from .server_state import ServerState

__all__ = ["ProxiedH11Protocol"]

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
            metrics.bytes_received += header.size
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
            self.info.client,
            reason,
        )
        self._close()
