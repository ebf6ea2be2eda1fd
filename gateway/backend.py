"""One shared, long-lived MCP session to postgres-mcp's SSE endpoint, reconnected when it dies.

Measured (DESIGN.md, postgres-mcp 0.3.0, `list_schemas` on loopback): a fresh backend session
per request adds ~100 ms per call (SSE connect + initialize), a shared one 2-10 ms, and five
concurrent calls on one session are not serialized (the MCP session multiplexes requests by id).

fastmcp's proxy takes a `client_factory` (sync or async) and, per request, enters the client it
returns (`async with client:`): a connected `Client` is re-entered, not reconnected
(fastmcp/client/client.py `_connect`: a reference count on the running session task). When
postgres-mcp restarts, the session task ends; re-entering that client would fail ("nesting
counter should be 0"), so this module replaces it with a new connected client instead, on the
first request or health probe that finds it dead, and from a watchdog every few seconds.

The client is a plain `Client` over `SSETransport` with no headers: fastmcp's
`TransportOptions.forward_incoming_headers` defaults to False for it (only `ProxyClient`
forwards the caller's headers, `Authorization` included), so nothing of the caller's request
reaches postgres-mcp. `mode="legacy"` makes it speak the initialize handshake with postgres-mcp's
own protocol version, whatever the caller negotiated with the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastmcp import Client
from fastmcp.client.transports import SSETransport

log = logging.getLogger("gateway.backend")

PING_TIMEOUT = 3.0
# A slow ping (a busy postgres-mcp on 0.15 vCPU) is not a dead session: dropping the shared session would kill
# every call in flight on it. It is dropped when its task has ended, or after this many failed pings in a row
# (readiness reports each failure at once; the watchdog pings every WATCHDOG_SECONDS).
FAILED_PINGS_BEFORE_DROP = 3
CONNECT_TIMEOUT = 10.0
WATCHDOG_SECONDS = 5.0


class BackendUnavailableError(RuntimeError):
    """postgres-mcp does not answer; the message says why (no secrets: it holds none)."""


class Backend:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Client[SSETransport] | None = None
        self._lock = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self.last_error = "not connected yet"
        self.connects = 0
        self.failed_pings = 0  # in a row, on the current session

    def _new_client(self) -> Client[SSETransport]:
        return Client(SSETransport(self.url), mode="legacy", timeout=60)

    def _alive(self, client: Client[SSETransport] | None) -> bool:
        if client is None or not client.is_connected():
            return False
        task = client._session_state.session_task  # fastmcp's own session runner
        return task is not None and not task.done()

    async def client(self) -> Client[SSETransport]:
        """The shared connected client; connects (once, under a lock) when there is none alive."""
        client = self._client
        if self._alive(client):
            assert client is not None
            return client
        async with self._lock:
            if self._alive(self._client):
                assert self._client is not None
                return self._client
            return await self._reconnect()

    async def _reconnect(self) -> Client[SSETransport]:
        old, self._client = self._client, None
        if old is not None:
            asyncio.get_running_loop().create_task(_close_quietly(old))
        client = self._new_client()
        started = time.monotonic()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await client.__aenter__()  # type: ignore[no-untyped-call]
        except BaseException as error:
            await _close_quietly(client)
            self.last_error = f"cannot connect to {self.url}: {_describe(error)}"
            if isinstance(error, asyncio.CancelledError):
                raise
            raise BackendUnavailableError(self.last_error) from None
        self.connects += 1
        self._client = client
        self.failed_pings = 0
        self.last_error = ""
        log.info(
            "backend session %d open to %s in %.0f ms", self.connects, self.url, (time.monotonic() - started) * 1e3
        )
        return client

    async def check(self) -> str | None:
        """None when postgres-mcp answers a ping on the shared session, else why not."""
        client: Client[SSETransport] | None = None
        try:
            client = await self.client()
            async with asyncio.timeout(PING_TIMEOUT):
                await client.ping()
        except BackendUnavailableError as error:
            return str(error)
        except Exception as error:  # noqa: BLE001 (any failure of the ping means "not healthy")
            async with self._lock:
                if client is not None and self._client is client:
                    self.failed_pings += 1
                    # Drop the session (the next caller reconnects) only when it is dead or has failed
                    # FAILED_PINGS_BEFORE_DROP pings in a row: calls in flight on a slow one go on.
                    if not self._alive(client) or self.failed_pings >= FAILED_PINGS_BEFORE_DROP:
                        await self._forget(client)
            self.last_error = f"postgres-mcp did not answer a ping: {_describe(error)}"
            return self.last_error
        if self._client is client:
            self.failed_pings = 0
        return None

    async def _forget(self, client: Client[SSETransport]) -> None:
        self._client = None
        self.failed_pings = 0
        asyncio.get_running_loop().create_task(_close_quietly(client))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            problem = await self.check()
            if problem:
                log.warning("backend: %s", problem)

    async def start(self) -> None:
        with contextlib.suppress(BackendUnavailableError):
            await self.client()
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._client is not None:
            await _close_quietly(self._client)
            self._client = None


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:300]


async def _close_quietly(client: Client[SSETransport]) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await client.close()  # type: ignore[no-untyped-call]
