"""Local stand-ins for GitHub Actions' ID token endpoint and Entra's token endpoint, for the deployer credential.

`ActionsIdTokenEndpoint` plays the runner's `ACTIONS_ID_TOKEN_REQUEST_URL`: `GET <url>&audience=<aud>` with
`Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>` answers `{"value": "<JWT>"}` (actions/toolkit
packages/core/src/oidc-utils.ts: `getJson<TokenResponse>`, `res.result?.value`; BearerCredentialHandler sets
`Authorization: Bearer <token>`). Without `audience` the audience is "the URL of the repository owner"
(docs.github.com, "OpenID Connect reference", `aud`), which Entra's federated credential does not accept.
Its ID tokens are RS256 JWTs with GitHub's issuer, valid for a few seconds instead of GitHub's few minutes.

`EntraTokenEndpoint` plays `https://<authority>/<tenant>/oauth2/v2.0/token` over HTTPS with a local CA, as
azure-identity's ClientAssertionCredential calls it: a form POST with `grant_type=client_credentials`,
`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, `client_assertion`, `client_id`,
`scope` (azure-identity `_internal/aad_client_base.py`, `_get_jwt_assertion_request`, `_get_token_url`). That
credential talks to the token endpoint only (its AadClient builds the URL itself; MSAL serves only as its token
cache), so no discovery document is needed; the stand-in serves the tenant's OpenID configuration anyway and
records every path asked for. It checks the signature, the validity window with no clock skew allowed, and the
federated credential (issuer, subject, audience), and refuses like Entra, with Entra's JSON error body
(`error`, `error_description`, `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`):

- expired assertion: HTTP 401, `invalid_client`, `AADSTS700024: Client assertion is not within its valid time
  range. Current time: ..., assertion valid from ..., expiry time of assertion ...` (message as reported on
  Azure/login#372 and kata-containers/kata-containers#11758; body fields as in MicrosoftDocs captures of the same
  error; 401 for `invalid_client` as Entra answers AADSTS7000215, databricks/databricks-sdk-go#240);
- no matching federated credential: HTTP 400, `invalid_request`, `AADSTS70021: No matching federated identity
  record found for presented assertion. Assertion Issuer: '...'. Assertion Subject: '...'. Assertion Audience:
  '...'.` (the message format quoted in Azure DevOps' workload identity troubleshooting guide);
- unknown application AADSTS700016, unknown tenant AADSTS90002, a scope without `/.default` AADSTS1002012.
  A bad signature is refused with AADSTS50027 (the code is this stand-in's choice, not checked against Entra).
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import ssl
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from testing.local_ca import LocalCA

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def iso(instant: float) -> str:
    return datetime.datetime.fromtimestamp(instant, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


# --- a local CA and a server certificate it signed ------------------------------------------------


def local_ca(directory: Path) -> tuple[Path, Path, Path]:
    """Writes ca.pem, server.crt and server.key (for 127.0.0.1 and localhost); returns their paths."""
    authority = LocalCA.create("postgres-mcp test CA")
    authority.issue_server_certificate(directory, ("localhost",), ("127.0.0.1",))
    return authority.write_bundle(directory / "ca.pem"), directory / "server.crt", directory / "server.key"


class _Server:
    """A threading HTTP(S) server on 127.0.0.1 handing requests to `handle(handler, method)`."""

    _server: ThreadingHTTPServer | None = None

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    def _start(self, tls: tuple[Path, Path] | None = None) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.handle(self, "GET")

            def do_POST(self) -> None:
                owner.handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        # A short poll interval: stop() waits for it, twice per test.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @staticmethod
    def answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def aadsts_error_body(error: str, code: int, text: str, now: float) -> dict[str, Any]:
    """An Entra token endpoint's error answer: the OAuth `error`, the AADSTS code in `error_description` (with
    Entra's trace lines) and `error_codes`."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}"
        f"\r\nTimestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


# --- GitHub Actions: ACTIONS_ID_TOKEN_REQUEST_URL ----------------------------------------------------


@dataclass
class Minted:
    token: str
    claims: dict[str, Any]


@dataclass
class ActionsIdTokenEndpoint(_Server):
    """Mints GitHub-style ID tokens valid for `lifetime` seconds for the job described by `subject`."""

    subject: str = "repo:octo-org/postgres-mcp-azure:environment:dev"
    repository: str = "octo-org/postgres-mcp-azure"
    lifetime: int = 3
    request_token: str = field(default_factory=lambda: "runtime-" + secrets.token_urlsafe(24))
    upcoming: list[int] = field(default_factory=list)  # HTTP statuses to answer next, one per request
    minted: list[Minted] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    kid: str = field(default_factory=lambda: secrets.token_hex(8))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ActionsIdTokenEndpoint:
        self._start()
        return self

    @property
    def url(self) -> str:
        # The runner's URL already has a query string (api-version); clients append `&audience=...`.
        return f"http://127.0.0.1:{self.port}/00000000-0000-0000-0000-000000000000/_apis/distributedtask/hubs/Actions/plans/1/jobs/2/idtoken?api-version=2.0"

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(parsed.query)
        with self._lock:
            self.requests.append({"method": method, "path": parsed.path, "query": query})
            forced = self.upcoming.pop(0) if self.upcoming else None
        if forced is not None:
            self.answer(handler, forced, {"message": "unavailable"})
            return
        if method != "GET" or not parsed.path.endswith("/idtoken") or query.get("api-version") != ["2.0"]:
            self.answer(handler, 404, {"message": "not found"})
            return
        scheme, _, presented = (handler.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or presented != self.request_token:
            self.answer(handler, 401, {"message": "Unauthorized"})
            return
        audience = query.get("audience", [f"https://github.com/{self.repository.split('/')[0]}"])[0]
        self.answer(handler, 200, {"value": self.mint(audience)})

    def mint(self, audience: str) -> str:
        now = int(time.time())
        claims = {
            "jti": str(uuid.uuid4()),
            "sub": self.subject,
            "aud": audience,
            "repository": self.repository,
            "iss": GITHUB_ISSUER,
            "nbf": now,
            "iat": now,
            "exp": now + self.lifetime,
        }
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input}.{b64url(signature)}"
        with self._lock:
            self.minted.append(Minted(token, claims))
        return token


# --- Entra: https://<authority>/<tenant>/oauth2/v2.0/token -------------------------------------------


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audience: str = "api://AzureADTokenExchange"


@dataclass
class EntraTokenEndpoint(_Server):
    """An app registration `client_id` in `tenant_id` that trusts `federated` credentials of `github`'s tokens."""

    github: ActionsIdTokenEndpoint | None = None
    tls: tuple[Path, Path] | None = None
    tenant_id: str = "11111111-2222-3333-4444-555555555555"
    client_id: str = "66666666-7777-8888-9999-000000000000"
    federated: list[FederatedCredential] = field(default_factory=list)
    access_token_lifetime: int = 3599
    paths: list[str] = field(default_factory=list)
    presented: list[str] = field(default_factory=list)  # every client_assertion, in order
    outcomes: list[str] = field(default_factory=list)  # "ok" or the AADSTS code, per token request
    issued: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)  # the scope of each issued token, in order
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> EntraTokenEndpoint:
        assert self.tls is not None, "Entra is reached over HTTPS only"
        self._start(self.tls)
        return self

    @property
    def authority(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urllib.parse.urlsplit(handler.path).path
        with self._lock:
            self.paths.append(f"{method} {path}")
        tenant, _, rest = path.lstrip("/").partition("/")
        if method == "GET" and rest == "v2.0/.well-known/openid-configuration" and tenant == self.tenant_id:
            base = f"{self.authority}/{tenant}"
            self.answer(
                handler,
                200,
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                },
            )
            return
        if method != "POST" or rest != "oauth2/v2.0/token":
            self.answer(handler, 404, {"error": "not_found"})
            return
        length = int(handler.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(handler.rfile.read(length).decode())
        status, body = self.token(tenant, handler.headers.get("Content-Type") or "", form)
        self.answer(handler, status, body)

    def token(self, tenant: str, content_type: str, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        def field_(name: str) -> str:
            return (form.get(name) or [""])[0]

        now = time.time()
        assertion = field_("client_assertion")
        if assertion:
            with self._lock:
                self.presented.append(assertion)
        if tenant != self.tenant_id:
            return self.error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.", now)
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return self.error(400, "invalid_request", 900144, "The request body must be form-encoded.", now)
        if field_("grant_type") != "client_credentials":
            return self.error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.", now)
        if field_("client_id") != self.client_id:
            return self.error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{field_('client_id')}' was not found in the directory '{tenant}'.",
                now,
            )
        if field_("client_assertion_type") != JWT_BEARER or not assertion:
            return self.error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                now,
            )
        scope = field_("scope")
        if not scope.endswith("/.default"):
            return self.error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
                now,
            )
        claims = self.verified_claims(assertion)
        if claims is None:
            return self.error(400, "invalid_request", 50027, "JWT token is invalid or malformed.", now)
        if not claims["nbf"] <= now < claims["exp"]:
            return self.error(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: {iso(now)}, assertion valid "
                f"from {iso(claims['nbf'])}, expiry time of assertion {iso(claims['exp'])}. Review the "
                "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                now,
            )
        presented = FederatedCredential(str(claims.get("iss")), str(claims.get("sub")), str(claims.get("aud")))
        if presented not in self.federated:
            return self.error(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{presented.issuer}'. Assertion Subject: '{presented.subject}'. "
                f"Assertion Audience: '{presented.audience}'.",
                now,
            )
        access_token = f"eyJ0eXAiOiJKV1QifQ.{b64url(secrets.token_bytes(900))}.{len(self.issued)}"
        with self._lock:
            self.issued.append(access_token)
            self.scopes.append(scope)
            self.outcomes.append("ok")
        lifetime = self.access_token_lifetime
        return 200, {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }

    def verified_claims(self, assertion: str) -> dict[str, Any] | None:
        if self.github is None:
            return None
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(b64url_decode(header_b64))
            if header.get("alg") != "RS256" or header.get("kid") != self.github.kid:
                return None
            self.github.key.public_key().verify(
                b64url_decode(signature_b64),
                f"{header_b64}.{payload_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims = json.loads(b64url_decode(payload_b64))
        except (ValueError, InvalidSignature):
            return None
        if not isinstance(claims, dict) or not all(isinstance(claims.get(k), int) for k in ("nbf", "exp")):
            return None
        return claims

    def error(self, status: int, error: str, code: int, text: str, now: float) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.outcomes.append(f"AADSTS{code}")
        return status, aadsts_error_body(error, code, text, now)
