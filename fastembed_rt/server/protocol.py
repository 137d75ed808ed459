"""uvicorn's httptools protocol with a deadline on request headers.

uvicorn times out idle keep-alive connections, but not a request whose headers trickle in (or never come):
such a connection would hold a socket, and a slot of --max-connections, for as long as the client likes. The
body has its own deadline, in the application (ModelServer._read_json), where a 408 can be answered."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMEOUT_BODY = b'{"error":"request headers not received in time","error_type":"Timeout"}'
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


def with_header_timeout(seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...): a connection gets `seconds` from its first byte (or from
    being opened) until its request headers are complete; after that it gets 408 and is closed."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(TIMEOUT_RESPONSE)
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:  # the first byte of a request
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:  # between requests, uvicorn's keep-alive timeout applies
            self._disarm()
            super().on_headers_complete()

    return HeaderDeadlineProtocol
