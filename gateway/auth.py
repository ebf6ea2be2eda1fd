"""Sign-in: fastmcp's AzureProvider (an OAuth proxy to Entra ID) plus the agents' path.

- Users' MCP clients register with the gateway (DCR or CIMD), see its consent screen, sign in
  at Entra (PKCE on both legs) and get the gateway's own tokens; the gateway keeps the Entra
  tokens in the shared store and refreshes them itself, asking for the scope again (Entra
  needs it: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token).
  AzureProvider drops the RFC 8707 `resource` parameter, which Entra v2 refuses
  (fastmcp/server/auth/providers/azure.py `authorize`); `forward_resource=False` says so twice.
- The gateway authenticates to Entra's token endpoint as the app registration, either with a
  client secret or (preferred) with a federated credential: the app trusts the Container
  App's user-assigned managed identity, whose token for `api://AzureADTokenExchange` is sent
  as `client_assertion` (https://learn.microsoft.com/en-us/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity,
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow#second-case-access-token-request-with-a-certificate).
- Agents (no browser) send a raw Entra v2 client-credentials token for this API; it is
  accepted when fastmcp's JWTVerifier finds it signed by the tenant's keys, from the tenant's
  v2 issuer, for this API (client id or api://client id), and its `azp` (the calling app,
  https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference#payload-claims)
  is in ENTRA_ALLOWED_AGENT_CLIENT_IDS.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from fastmcp.server.auth.oauth_proxy.upstream import AsyncOAuth2Client
from fastmcp.server.auth.providers.azure import AzureProvider
from fastmcp.server.auth.providers.jwt import JWTVerifier
from key_value.aio.protocols import AsyncKeyValue
from mcp.server.auth.provider import AccessToken

from gateway import CALLBACK_PATH, SCOPE
from gateway.config import Settings

log = logging.getLogger("gateway.auth")

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
UPSTREAM_TIMEOUT = 30.0
# The lifetime of the gateway's own access tokens, decoupled from Entra's (60-90 minutes, or seconds in
# the tests). They are reference tokens: every request looks up the Entra token they stand for in the
# store, verifies it and, when it has expired, refreshes it at Entra with the scope first
# (OAuthProxy.load_access_token, `_try_transparent_refresh`), so a refused or revoked sign-in is
# refused on the next call whatever this lifetime. Mirroring Entra's lifetime instead makes clients
# refresh at the gateway right at expiry, and a client that misjudges the instant (the MCP SDK computes
# the expiry from `expires_in` on receipt, without margin, and answers a 401 with a new browser sign-in,
# not a refresh) would ask its user to sign in again.
ACCESS_TOKEN_LIFETIME = 3600
# Refresh the Entra token when it has this many seconds left, not only after it expired. fastmcp
# decides on `expires_at` (receipt time + Entra's `expires_in`) while the verifier rejects on the
# token's own `exp` (whole seconds, set before the answer travelled): between the two instants a
# call would find the token expired and no refresh due, and get a 401 (seen in the end-to-end
# tests). A margin of 2 s covers the rounding and the round trip on synchronized clocks.
REFRESH_MARGIN_SECONDS = 2
# A replica keeps its verdict on a token it accepted for a few seconds: fastmcp's proxy reads the store twice per
# call (the token's JTI mapping, then the encrypted Entra token) and verifies the Entra token, which costs a
# signed-in user's call about 26 ms p50 on loopback against Azurite, more against Table Storage over the
# network (python -m drill.gateway_benchmark). Kept no longer than VERDICT_SECONDS nor past the Entra token's own
# expiry less REFRESH_MARGIN_SECONDS, so the refresh at Entra still happens on time; a refusal is never kept.
# The price: a sign-in revoked at the gateway (its /revoke) may still pass on another replica for up to
# VERDICT_SECONDS. Keyed by the token's SHA-256, never the token itself.
VERDICT_SECONDS = 10.0
VERDICT_ENTRIES = 4096

Assertion = Callable[[], Awaitable[str]]


class AssertionClient(AsyncOAuth2Client):
    """fastmcp's upstream token client, authenticating with a fresh client assertion.

    fastmcp replaced authlib's httpx client by its own (fastmcp/server/auth/oauth_proxy/upstream.py)
    whose `_apply_client_auth` knows secrets only; subclasses of OAuthProxy may return "any object
    with the same fetch_token/refresh_token/client_secret/aclose surface". This one sends
    `client_id` (method "none") and adds `client_assertion_type` + `client_assertion` to every
    token request (code exchange and refresh), the assertion fetched per request (azure-identity
    caches the managed identity's token until shortly before it expires).
    """

    def __init__(self, client_id: str, assertion: Assertion, timeout: float) -> None:
        super().__init__(client_id=client_id, client_secret=None, token_endpoint_auth_method="none", timeout=timeout)  # noqa: S106 (a method name)
        self._assertion = assertion

    async def _request_token(self, url: str, data: dict[str, Any]) -> dict[str, Any]:
        data = {**data, "client_assertion_type": JWT_BEARER, "client_assertion": await self._assertion()}
        return await super()._request_token(url, data)


class Verdicts:
    """Accepted tokens' verdicts for a few seconds each (see VERDICT_SECONDS), least recently used evicted."""

    def __init__(
        self,
        seconds: float = VERDICT_SECONDS,
        entries: int = VERDICT_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seconds, self.entries, self.clock = seconds, entries, clock
        self._kept: OrderedDict[str, tuple[float, AccessToken]] = OrderedDict()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str) -> AccessToken | None:
        key = self._key(token)
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept[0] <= self.clock():
            del self._kept[key]
            return None
        self._kept.move_to_end(key)
        return kept[1]

    def keep(self, token: str, verdict: AccessToken) -> None:
        now = self.clock()
        until = now + self.seconds
        if verdict.expires_at is not None:
            until = min(until, verdict.expires_at - REFRESH_MARGIN_SECONDS)
        if until <= now:
            return
        key = self._key(token)
        self._kept[key] = (until, verdict)
        self._kept.move_to_end(key)
        while len(self._kept) > self.entries:
            self._kept.popitem(last=False)

    def __len__(self) -> int:
        return len(self._kept)


class GatewayAuth(AzureProvider):
    def __init__(
        self,
        settings: Settings,
        *,
        store: AsyncKeyValue,
        assertion: Assertion | None,
    ) -> None:
        if settings.credential == "federated" and assertion is None:
            raise ValueError("the federated credential needs an assertion source")
        self._assertion = assertion if settings.credential == "federated" else None
        super().__init__(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            tenant_id=settings.tenant_id,
            required_scopes=[SCOPE],
            base_url=settings.public_url,
            redirect_path=CALLBACK_PATH,
            base_authority=settings.authority_host,
            # The `iss` its verifier expects: not always the authority's host (China).
            token_issuer=settings.token_issuer,
            client_storage=store,
            jwt_signing_key=settings.signing_key,
            # The consent screen stays on (CVE-2026-27124 was a consent bypass).
            require_authorization_consent=True,
            forward_resource=False,
            fastmcp_access_token_expiry_seconds=ACCESS_TOKEN_LIFETIME,
            token_expiry_threshold_seconds=REFRESH_MARGIN_SECONDS,
        )
        identifier_uri = f"api://{settings.client_id}"
        self.allowed_agents = frozenset(settings.allowed_agent_client_ids)
        self.verdicts = Verdicts()
        # The agents' tokens: same keys, issuer and audiences as the users' Entra tokens, no
        # delegated scope (client credentials carry `roles`, never `scp`).
        self.agent_verifier = JWTVerifier(
            jwks_uri=f"https://{settings.authority_host}/{settings.tenant_id}/discovery/v2.0/keys",
            issuer=settings.token_issuer,
            audience=[settings.client_id, identifier_uri],
            algorithm="RS256",
        )

    def _create_upstream_oauth_client(self) -> AsyncOAuth2Client:
        if self._assertion is None:
            return super()._create_upstream_oauth_client()
        return AssertionClient(self._upstream_client_id, self._assertion, UPSTREAM_TIMEOUT)

    async def load_access_token(self, token: str) -> AccessToken | None:  # type: ignore[override]  # as fastmcp's own
        """The gateway's own token (the sign-in), else an allowed agent's Entra token, else None (401); an accepted
        token's verdict is kept a few seconds (`Verdicts`)."""
        kept = self.verdicts.get(token)
        if kept is not None:
            return kept
        verdict = await self._verify(token)
        if verdict is not None:
            self.verdicts.keep(token, verdict)
        return verdict

    async def _verify(self, token: str) -> AccessToken | None:
        own = await super().load_access_token(token)
        if own is not None:
            return own
        if not self.allowed_agents:
            return None
        agent = await self.agent_verifier.load_access_token(token)
        if agent is None:
            return None
        claims = agent.claims or {}
        azp = str(claims.get("azp", "")).lower()
        if azp not in self.allowed_agents:
            log.warning("refused an Entra token from client %s: not in ENTRA_ALLOWED_AGENT_CLIENT_IDS", azp or "?")
            return None
        if "scp" in claims:
            # A delegated (user) token minted for this API directly, not through the gateway's
            # sign-in: the agents' path is for applications only.
            log.warning("refused an Entra token from client %s: delegated, not an application token", azp)
            return None
        # Application tokens carry no delegated scope; the allowed list is what authorizes an agent, so
        # it gets the scope the MCP endpoint requires (fastmcp's RequireAuthMiddleware checks it).
        return agent.model_copy(update={"scopes": [SCOPE]})
