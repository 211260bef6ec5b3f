"""What stands between the network and the sidecar's work, cheapest check first:

1. the Host header (TrustedHostMiddleware, server.py): DNS rebinding;
2. the bearer token (`BearerToken`), checked from the headers alone: a request without it
   gets 401 before a byte of its body is read;
3. the body limit (`BodyLimit`): 413 from Content-Length before reading, or as soon as a
   chunked body passes the limit;
4. a header timeout (`HeaderTimeoutProtocol`): a connection that sends no request, or sends
   its headers slowly (slowloris), is closed after `HEADER_TIMEOUT` seconds; uvicorn itself
   only times out idle keep-alive connections.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from typing import Optional, Sequence

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0  # seconds for a request's line and headers to arrive whole


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(host: str, extra: Sequence[str] = ()) -> list[str]:
    hosts = ["localhost", "127.0.0.1", "::1", "[::1]", *extra]
    if host not in ("0.0.0.0", "::") and host not in hosts:
        hosts.append(host)
    return hosts


async def _reply(send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A JSON error answer that closes the connection (its unread body is never read)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class BearerToken:
    """ASGI middleware: 401 unless `Authorization: Bearer TOKEN`, decided from the headers."""

    def __init__(self, app, token: Optional[str]):
        self.app, self.expected = app, f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.expected is None:
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):
            return await _reply(send, 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 before reading a body whose Content-Length is over the limit, and
    as soon as a body without one (chunked) passes it; nothing past the limit is spooled. The
    chunked case raises Starlette's HTTPException from `receive`, which FastAPI passes through
    its body parsing (any other exception there would become a 400)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def message(self) -> str:
        return f"upload exceeds the limit of {self.limit} bytes"

    async def __call__(self, scope, receive, send):
        from starlette.exceptions import HTTPException

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _reply(send, 413, self.message())
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, self.message())
            return message

        await self.app(scope, limited_receive, send)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers: from the
    connection's start, and again when a kept-alive connection starts its next request."""

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: Optional[asyncio.TimerHandle] = None
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        if self._waiting_for_headers():
            self._arm()  # the next request on a kept-alive connection gets its own deadline
        super().data_received(data)
        if self.cycle is not before:  # h11 parsed a whole request head: a new cycle began
            self._disarm()

    def _expired(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)
