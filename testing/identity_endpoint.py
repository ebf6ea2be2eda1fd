"""A local stand-in for the Container Apps managed identity endpoint.

Speaks the same protocol (`GET ?resource=..&api-version=2019-08-01[&client_id=..]` with
an `X-IDENTITY-HEADER`) and answers like Azure: `access_token`, `expires_on` as epoch
seconds in a string, `resource`, `token_type`, `client_id`. Its behaviour can be
switched while a client runs, to play outages and malformed answers.

An optional `on_mint` callback lets a test give each token a meaning, for example
making it the role's password in a local PostgreSQL until it expires.

Besides `resource` (whose tokens are JWT-shaped with a random signature, as the refresher never
verifies them), `signed` names more resources for which it mints REAL RS256-signed JWTs, each with
the issuer, key and audience a verifier expects (`SignedAudience`):

- `federation_audience(entra)`: `api://AzureADTokenExchange`, the assertion a federated identity
  credential trusts: `iss` the Entra stand-in's v2 issuer, `sub` and `oid` the identity's principal
  (object) ID, signed with the Entra stand-in's key (on Azure this token is Entra's own; Microsoft
  Learn, "Configure an application to trust a managed identity").
- `storage_audience(tenant)`: `https://storage.azure.com`, a v1 token (`iss`
  `https://sts.windows.net/<tenant>/`), what Azurite's `--oauth basic` accepts (testing/azurite.py).

azure-identity's `ManagedIdentityCredential` asks with `resource` = the scope without `/.default`
(azure/identity/_credentials/app_service.py `_get_request`: `api-version=2019-08-01`, `resource`,
plus `client_id` for a user-assigned identity; header `X-IDENTITY-HEADER`).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from testing.signing import RsaSigner

if TYPE_CHECKING:
    from testing.entra_endpoint import EntraEndpoint

RESOURCE = "https://ossrdbms-aad.database.windows.net"

# Behaviours besides "ok": what the endpoint answers instead of a token.
MALFORMED_BODIES: dict[str, Callable[[float], bytes]] = {
    "not-json": lambda now: b"<html>gateway timeout</html>",
    "not-an-object": lambda now: b'["access_token"]',
    "no-token": lambda now: json.dumps({"expires_on": str(int(now + 3600))}).encode(),
    "empty-token": lambda now: json.dumps({"access_token": "", "expires_on": str(int(now + 3600))}).encode(),
    "token-with-newline": lambda now: json.dumps(
        {"access_token": "eyJhbGciOi.J9\nlocalhost:5432:*:*:evil", "expires_on": str(int(now + 3600))}
    ).encode(),
    "no-expiry": lambda now: json.dumps({"access_token": "eyJhbGciOi.J9.sig"}).encode(),
    "expiry-not-epoch": lambda now: json.dumps(
        {"access_token": "eyJhbGciOi.J9.sig", "expires_on": "11/27/2026 06:00:00 +00:00"}
    ).encode(),
    "already-expired": lambda now: json.dumps(
        {"access_token": "eyJhbGciOi.J9.sig", "expires_on": str(int(now - 10))}
    ).encode(),
    "wrong-resource": lambda now: json.dumps(
        {
            "access_token": "eyJhbGciOi.J9.sig",
            "expires_on": str(int(now + 3600)),
            "resource": "https://management.azure.com/",
        }
    ).encode(),
}


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_like_token(expires_on: float, issued_at: float, serial: int) -> str:
    """Shaped like an Entra access token: a JWT whose `exp` is the answer's expires_on, 1.5-2.5 KB.

    The signature is random bytes: nothing here verifies it, as nothing in the refresher does."""
    header = {"typ": "JWT", "alg": "RS256", "kid": "stand-in"}
    claims = {
        "aud": RESOURCE,
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
        "iat": int(issued_at),
        "exp": int(expires_on),
        "oid": "22222222-2222-2222-2222-222222222222",
        "serial": serial,
        "nonce": secrets.token_urlsafe(600),
    }
    return ".".join(
        (
            _base64url(json.dumps(header).encode()),
            _base64url(json.dumps(claims).encode()),
            _base64url(secrets.token_bytes(256)),
        )
    )


STORAGE_RESOURCE = "https://storage.azure.com"


@dataclass(frozen=True)
class SignedAudience:
    """How to mint a real token for one resource: who signs it, under which issuer, for which audience."""

    signer: RsaSigner
    issuer: str
    audience: str
    version: str = "2.0"


def federation_audience(entra: EntraEndpoint) -> SignedAudience:
    """The FIC assertion's audience, issued and signed as the Entra stand-in `entra` (started) would."""
    from testing.entra_endpoint import FEDERATION_AUDIENCE

    return SignedAudience(entra.signer, entra.issuer, FEDERATION_AUDIENCE)


def storage_audience(tenant_id: str, signer: RsaSigner | None = None) -> SignedAudience:
    """Azure Storage's audience, v1 token with the `sts.windows.net` issuer (what storage is issued)."""
    return SignedAudience(signer or RsaSigner(), f"https://sts.windows.net/{tenant_id}/", STORAGE_RESOURCE, "1.0")


@dataclass
class Minted:
    token: str
    issued_at: float
    expires_on: float


@dataclass
class Request:
    at: float
    query: dict[str, list[str]]
    header: str | None


@dataclass
class IdentityEndpoint:
    header: str = "rotating-header-value"
    lifetime: float = 3600.0
    behaviour: str = "ok"  # or "drop", "http-<code>", "trickle", or one of MALFORMED_BODIES
    trickle_interval: float = 0.5  # "trickle": seconds between two bytes of the whole answer
    on_mint: Callable[[Minted], None] | None = None
    fixed_token: str | None = None  # benchmarks: answer the same token every time
    resource: str = RESOURCE  # the audience it issues tokens for (a sovereign cloud's: azure_cloud/clouds.py)
    signed: dict[str, SignedAudience] = field(default_factory=dict)  # more resources, with real JWTs
    principal_id: str = "22222222-2222-2222-2222-222222222222"  # the identity's object ID: `oid`/`sub`
    identity_client_id: str = "33333333-3333-3333-3333-333333333333"  # its client ID: `azp`/`appid`
    tenant_id: str = "11111111-2222-3333-4444-555555555555"
    upcoming: list[str] = field(default_factory=list)  # see answer_next()
    minted: list[Minted] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/msi/token"

    def start(self) -> IdentityEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                endpoint.handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # poll_interval: shutdown() waits up to one interval; the default 0.5 s adds up over the tests.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        now = time.time()
        parsed = urllib.parse.urlparse(handler.path)
        query = urllib.parse.parse_qs(parsed.query)
        header = handler.headers.get("X-IDENTITY-HEADER")
        with self._lock:
            self.requests.append(Request(now, query, header))
            behaviour = self.upcoming.pop(0) if self.upcoming else self.behaviour
        if behaviour == "drop":
            handler.close_connection = True
            handler.connection.shutdown(2)  # the client sees the connection cut without an answer
            return
        if behaviour.startswith("http-"):
            self._answer(handler, int(behaviour[5:]), b'{"error":"unavailable"}')
            return
        if header != self.header:
            self._answer(handler, 401, b'{"error":"invalid X-IDENTITY-HEADER"}')
            return
        requested = (query.get("resource") or [""])[0]
        accepted = requested == self.resource or requested in self.signed
        if query.get("api-version") != ["2019-08-01"] or len(query.get("resource", [])) != 1 or not accepted:
            self._answer(handler, 400, b'{"error":"bad request"}')
            return
        if requested in self.signed:
            self._answer_signed(handler, requested, self.signed[requested], query, now)
            return
        if behaviour in MALFORMED_BODIES:
            self._answer(handler, 200, MALFORMED_BODIES[behaviour](now))
            return
        # Azure sends whole epoch seconds; the stand-in's record uses the same instant.
        expires_on = float(int(now + self.lifetime))
        token = self.fixed_token or jwt_like_token(expires_on, now, len(self.minted))
        minted = Minted(token, now, expires_on)
        if self.on_mint is not None:
            self.on_mint(minted)
        with self._lock:
            self.minted.append(minted)
        body = {
            "access_token": minted.token,
            "expires_on": str(int(minted.expires_on)),
            "resource": self.resource,
            "token_type": "Bearer",
            "client_id": (query.get("client_id") or [""])[0],
        }
        if behaviour == "trickle":
            self._trickle(handler, json.dumps(body).encode())
            return
        self._answer(handler, 200, json.dumps(body).encode())

    def _answer_signed(
        self,
        handler: BaseHTTPRequestHandler,
        resource: str,
        audience: SignedAudience,
        query: dict[str, list[str]],
        now: float,
    ) -> None:
        client_id = (query.get("client_id") or [self.identity_client_id])[0]
        if client_id != self.identity_client_id:  # a user-assigned identity this app does not have
            self._answer(handler, 400, b'{"error":"invalid_request","error_description":"Identity not found"}')
            return
        expires_on = float(int(now + self.lifetime))
        claims: dict[str, Any] = {
            "aud": audience.audience,
            "iss": audience.issuer,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(expires_on),
            "oid": self.principal_id,
            "sub": self.principal_id,
            "tid": self.tenant_id,
            "idtyp": "app",
            "uti": secrets.token_urlsafe(16),
            "ver": audience.version,
        }
        claims["azp" if audience.version == "2.0" else "appid"] = self.identity_client_id
        minted = Minted(audience.signer.sign(claims), now, expires_on)
        with self._lock:
            self.minted.append(minted)
        body = {
            "access_token": minted.token,
            "expires_on": str(int(expires_on)),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": self.identity_client_id,
        }
        self._answer(handler, 200, json.dumps(body).encode())

    def _trickle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        """A good answer, status line and headers included, one byte every `trickle_interval` seconds.

        Each byte beats any socket timeout longer than the interval, so a client bounded per read
        waits for the whole answer: with a 2 KB token at 0.5 s a byte, a quarter of an hour."""
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        handler.close_connection = True
        try:
            for index in range(len(answer)):
                handler.wfile.write(answer[index : index + 1])
                handler.wfile.flush()
                time.sleep(self.trickle_interval)
        except OSError:  # the client gave up
            pass

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def set(self, behaviour: str) -> None:
        with self._lock:
            self.behaviour = behaviour

    def answer_next(self, *behaviours: str) -> None:
        """The next requests get these answers, one each, whenever they come; then `behaviour` again.

        Ties a fault to the client's own attempts rather than to a clock it does not share."""
        with self._lock:
            self.upcoming.extend(behaviours)
