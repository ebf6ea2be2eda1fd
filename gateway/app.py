"""The gateway's ASGI application: the MCP endpoint, the sign-in routes and the health routes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from azure.identity.aio import ManagedIdentityCredential
from fastmcp import FastMCP
from fastmcp.server.providers.proxy import FastMCPProxy
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from gateway import HEALTH_PATH, LIVENESS_PATH, MCP_PATH, STORE_HEALTH_PATH
from gateway.auth import GatewayAuth
from gateway.backend import Backend
from gateway.config import Settings
from gateway.store import StoreCheck, build_store, table_client

log = logging.getLogger("gateway")


class Gateway:
    """Everything one gateway process holds: the credential, the store, the backend, the app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Container Apps sets IDENTITY_ENDPOINT/IDENTITY_HEADER; azure-identity's managed identity
        # credential reads them and asks for the user-assigned identity named by its client ID
        # (https://learn.microsoft.com/en-us/azure/container-apps/managed-identity#rest-endpoint-reference).
        self.credential = ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
        self.table = table_client(settings, self.credential)
        self.store = build_store(settings, self.table)
        self.store_check = StoreCheck(self.table)
        self.backend = Backend(settings.backend_url)
        self.auth = GatewayAuth(
            settings,
            store=self.store,
            assertion=self._assertion if settings.credential == "federated" else None,
        )
        self.server = FastMCPProxy(
            client_factory=self.backend.client,
            name="postgres-mcp",
            auth=self.auth,
            lifespan=self._lifespan,
        )
        self.server.custom_route(HEALTH_PATH, methods=["GET"], include_in_schema=False)(self.healthz)
        self.server.custom_route(LIVENESS_PATH, methods=["GET"], include_in_schema=False)(self.livez)
        self.server.custom_route(STORE_HEALTH_PATH, methods=["GET"], include_in_schema=False)(self.store_healthz)
        self.app = self.server.http_app(
            path=MCP_PATH,
            transport="http",
            # Stateless: any replica serves any request, no session affinity (the 2026-07-28
            # protocol revision is stateless too).
            stateless_http=True,
            # No Host/Origin allow-list: it guards servers bound to loopback against DNS rebinding
            # (fastmcp's "auto" mode applies it only there). Behind the ingress, an explicit list would
            # also refuse browser-based MCP clients' Origin with 403 (fastmcp/server/http.py
            # HostOriginGuardMiddleware).
        )

    async def _assertion(self) -> str:
        """The managed identity's token for the federated credential's audience: the client assertion."""
        token = await self.credential.get_token(self.settings.federation_audience + "/.default")
        return str(token.token)

    @contextlib.asynccontextmanager
    async def _lifespan(self, server: FastMCP[Any]) -> AsyncIterator[dict[str, Any]]:
        await self.backend.start()
        try:
            yield {}
        finally:
            await self.backend.stop()
            with contextlib.suppress(Exception):
                await self.table.close()
            with contextlib.suppress(Exception):
                await self.credential.close()

    async def healthz(self, request: Request) -> Response:
        started = time.monotonic()
        problem = await self.backend.check()
        if problem:
            return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ok", "backend_ms": round((time.monotonic() - started) * 1e3, 1)})

    async def store_healthz(self, request: Request) -> Response:
        """200 when the shared store's table answered a read in the last STORE_CHECK_SECONDS, else 503 + why.
        Not a probe (see gateway.STORE_HEALTH_PATH): sign-ins need the store, agents' calls do not."""
        problem, age = await self.store_check.check()
        if problem:
            return JSONResponse({"status": "unavailable", "reason": problem, "age_s": round(age, 1)}, status_code=503)
        return JSONResponse({"status": "ok", "age_s": round(age, 1)})

    async def livez(self, request: Request) -> Response:
        return PlainTextResponse("ok")
