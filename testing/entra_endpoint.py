"""A local stand-in for Microsoft Entra ID (one tenant) over HTTPS, on Entra's own v2.0 paths.

What the sign-in gateway talks to, with `ENTRA_AUTHORITY_HOST` set to `EntraEndpoint.host`:

- `GET /{tenant}/v2.0/.well-known/openid-configuration`: issuer `https://<host>/{tenant}/v2.0`, the authorize,
  token and keys endpoints on the same host, as Entra's document has them.
- `GET /{tenant}/discovery/v2.0/keys`: the RS256 signing key as a JWKS (with `kid`).
- `GET /{tenant}/oauth2/v2.0/authorize`: the browser's side. Entra would show its sign-in page; here `user`
  is the one signed in, and a valid request is answered at once with a 302 to `redirect_uri` carrying `code`,
  `state` and `session_state`. Valid means: a registered `client_id`, a `redirect_uri` registered on that app
  registration, `response_type=code`, `code_challenge_method=S256` with a `code_challenge`, and a scope with
  `api://<api client id>/user_impersonation` (or `<api client id>/user_impersonation`) besides the OIDC
  scopes. An unknown client or redirect URI gets Entra's error page (HTML, status 400, no redirect: Entra
  never redirects to an unregistered URI); other errors redirect with `error`, `error_description`, `state`.
- `POST /{tenant}/oauth2/v2.0/token`: `authorization_code` (PKCE verifier checked, `redirect_uri` equal to
  the authorize request's, each code redeemed once), `refresh_token` (the scope is required again, as Entra's
  v2 endpoint requires it; every refresh answers a new refresh token) and `client_credentials` (scope
  `api://<api>/.default` or `<api>/.default`). Client authentication: `client_secret`, or
  `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` with a `client_assertion`
  checked like a federated identity credential: an RS256 JWT signed by this stand-in's key (a managed
  identity's token for `api://AzureADTokenExchange` is an Entra token; `testing/identity_endpoint.py` mints
  it with `EntraEndpoint.signer`) or by one of `assertion_signers`, inside its validity window, whose
  (`iss`, `sub`, `aud`) equals a federated credential on the app registration (Microsoft Learn, "Configure
  an application to trust a managed identity": issuer `https://login.microsoftonline.com/{tenant}/v2.0`,
  subject the managed identity's principal (object) ID, audience `api://AzureADTokenExchange`).

Access tokens are v2 (`ver` "2.0", `iss` the v2 issuer, `aud` the API's client ID, RS256 with the JWKS key):
for users `scp` "user_impersonation", `oid`, `tid`, `azp`, `name`, `preferred_username`; for applications
(client credentials) `azp` the calling client, `idtyp` "app", `oid`/`sub` its service principal, no `scp`,
and `roles` only when the app registration lists some (Entra leaves the claim out when no role is assigned).
Their lifetime is `access_token_lifetime` SECONDS, so tests can outlive several of them.

Errors are Entra's JSON (`error`, `error_description` "AADSTSnnnnn: ..." with trace and correlation IDs,
`error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`; Microsoft Learn, "Microsoft Entra
authentication and authorization error codes",
https://learn.microsoft.com/entra/identity-platform/reference-error-codes, source
MicrosoftDocs/entra-docs docs/identity-platform/reference-error-codes.md). The codes used, and where from:

- a `resource` parameter, on /authorize or /token: refused, ALWAYS (stricter than Entra, which lets through a
  `resource` equal to the scopes' application ID URI). AADSTS901002 "The 'resource' request parameter isn't
  supported." (Learn's table) when it names the API the scopes ask for; AADSTS9010010 "The resource parameter
  provided in the request doesn't match with the requested scopes." when it names anything else (the text
  Entra answers MCP clients, e.g. anthropics/claude-code#52871; not in Learn's table).
- PKCE: a missing `code_verifier` for a code issued with a challenge: `invalid_grant` AADSTS50148 "The
  code_verifier does not match the code_challenge supplied in the authorization request for PKCE." (what Entra
  answers then; not in Learn's table); a wrong one: `invalid_grant` AADSTS501481 "The Code_Verifier doesn't
  match the code_challenge supplied in the authorization request." (Learn). A missing or non-S256 challenge
  on /authorize: AADSTS50147 / AADSTS90100 (Learn's "MissingCodeChallenge", "InvalidRequestParameter"; Entra
  itself lets confidential clients skip PKCE: this stand-in does not).
- a refresh without `scope`: `invalid_request` AADSTS900144 "The request body must contain the following
  parameter: 'scope'." (Learn: "The request body must contain the following parameter: '{name}'").
- a code redeemed twice: `invalid_grant` AADSTS54005 (Learn); unknown code or refresh token AADSTS9002313,
  expired code AADSTS70008, expired refresh token AADSTS700082, a grant of another client AADSTS70000,
  another `redirect_uri` AADSTS50011 (Learn, each).
- clients: unknown AADSTS700016, no credential AADSTS7000218, wrong secret AADSTS7000215, an assertion with
  a bad signature AADSTS700027, outside its validity window AADSTS700024, matching no federated credential
  AADSTS70021 (Learn, each; the last two with the texts Entra answers, as in `oidc_endpoints.py`).
- scopes: AADSTS70011 invalid scope, AADSTS1002012 client credentials without `/.default`, AADSTS500011 a
  resource this tenant does not have; AADSTS90002 an unknown tenant; AADSTS70003 an unsupported grant type;
  AADSTS65004 the user declined (`user_declines`).

Every request lands in `log` (method, path, grant type, parameters with secrets, codes, verifiers, tokens and
assertions replaced by "<redacted>", outcome): "no `resource` reached Entra" and "each refresh carried the
scope" are assertions on it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from testing.oidc_endpoints import JWT_BEARER, FederatedCredential, _Server, aadsts_error_body, local_ca
from testing.signing import RsaSigner, b64url

FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
API_SCOPE_NAME = "user_impersonation"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
# Parameters whose values never enter the log.
SECRET_PARAMETERS = frozenset(
    {"client_secret", "client_assertion", "code", "code_verifier", "refresh_token", "access_token", "assertion"}
)

__all__ = [
    "FEDERATION_AUDIENCE",
    "AppRegistration",
    "EntraEndpoint",
    "FederatedCredential",
    "Grant",
    "LoggedRequest",
    "SignedInUser",
    "pkce_pair",
]


def pkce_pair() -> tuple[str, str]:
    """A PKCE (verifier, S256 challenge) pair, for tests that play the client themselves."""
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


@dataclass(frozen=True)
class SignedInUser:
    """The user the stand-in's "sign-in page" has signed in."""

    oid: str = "0a1b2c3d-0000-4000-8000-00000000a11c"
    name: str = "Alice Example"
    preferred_username: str = "alice@contoso.example"


@dataclass
class AppRegistration:
    """An app registration and its service principal: credentials, redirect URIs, federated credentials."""

    client_id: str
    redirect_uris: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    federated_credentials: tuple[FederatedCredential, ...] = ()
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))  # the service principal's, for app tokens
    app_roles: tuple[str, ...] = ()  # roles assigned to this client on the API, for its app tokens


@dataclass
class Grant:
    """What a code or refresh token stands for."""

    client_id: str
    scopes: tuple[str, ...]
    expires_at: float
    redirect_uri: str = ""
    code_challenge: str = ""
    nonce: str = ""
    used: bool = False


@dataclass
class LoggedRequest:
    at: float
    method: str
    path: str
    grant_type: str
    params: dict[str, str]  # query or form, secrets redacted
    outcome: str = ""  # "ok" (token issued / code redirect), "AADSTSnnnnn", or "served" for documents


def _redacted(params: Mapping[str, list[str]]) -> dict[str, str]:
    return {name: "<redacted>" if name in SECRET_PARAMETERS else values[0] for name, values in params.items()}


class _RefusalError(Exception):
    def __init__(self, status: int, error: str, code: int, text: str) -> None:
        super().__init__(f"AADSTS{code}")
        self.status, self.error, self.code, self.text = status, error, code, text


@dataclass
class EntraEndpoint(_Server):
    """Entra for one tenant: the API's app registration `api`, more client registrations in `clients`.

    `start(directory)` writes a local CA and a certificate for 127.0.0.1/localhost into `directory` and
    serves HTTPS; `ca_bundle` is the CA's PEM file (give it to the client: SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
    an SSL context). `host` is what ENTRA_AUTHORITY_HOST takes; `issuer`, `jwks_uri`, `token_endpoint`,
    `authorization_endpoint` are the URLs the discovery document publishes.
    """

    tenant_id: str = "11111111-2222-3333-4444-555555555555"
    api: AppRegistration = field(default_factory=lambda: AppRegistration("66666666-7777-8888-9999-000000000000"))
    clients: list[AppRegistration] = field(default_factory=list)
    user: SignedInUser = field(default_factory=SignedInUser)
    user_declines: bool = False  # the scripted user clicks "Cancel" on the sign-in page
    access_token_lifetime: int = 5  # seconds
    # The host in the `iss` of its tokens and in the discovery document's `issuer`, when it is not the host it
    # serves on: China's Entra serves at login.chinacloudapi.cn while its v2 tokens say
    # https://login.partner.microsoftonline.cn/<tenant>/v2.0 (azure_cloud/clouds.py `v2_issuer_host`).
    issuer_host: str = ""
    refresh_token_lifetime: int = 24 * 3600
    code_lifetime: int = 600
    single_use_refresh_tokens: bool = False  # Entra keeps a used refresh token valid; True refuses its reuse
    signer: RsaSigner = field(default_factory=RsaSigner)
    assertion_signers: list[RsaSigner] = field(default_factory=list)  # other issuers' keys trusted for assertions
    log: list[LoggedRequest] = field(default_factory=list)
    issued: list[dict[str, Any]] = field(default_factory=list)  # claims of every access token issued, in order
    ca_bundle: Path | None = None
    _codes: dict[str, Grant] = field(default_factory=dict)
    _refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- lifecycle and addresses --------------------------------------------------------------------

    def start(self, directory: Path) -> EntraEndpoint:
        """Writes ca.pem, server.crt and server.key into `directory` and serves HTTPS on a free port."""
        ca_file, certificate, key = local_ca(directory)
        self.ca_bundle = ca_file
        self._start((certificate, key))
        return self

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        return f"https://{self.host}"

    @property
    def issuer(self) -> str:
        return f"https://{self.issuer_host or self.host}/{self.tenant_id}/v2.0"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.authority}/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def api_scope(self) -> str:
        return f"api://{self.api.client_id}/{API_SCOPE_NAME}"

    def registration(self, client_id: str) -> AppRegistration | None:
        return next((app for app in (self.api, *self.clients) if app.client_id == client_id), None)

    # --- what tests read ----------------------------------------------------------------------------

    def requests(self, endpoint: str = "", grant_type: str = "") -> list[LoggedRequest]:
        """Logged requests whose path ends with `endpoint` ("token", "authorize", ...) and of `grant_type`."""
        with self._lock:
            return [
                entry
                for entry in self.log
                if entry.path.endswith(endpoint) and (not grant_type or entry.grant_type == grant_type)
            ]

    def mint_access_token(self, **overrides: Any) -> str:
        """A user access token as /token would issue it, with claims replaced or added by `overrides`.

        For tests of the resource server's checks: `aud="someone-else"`, `exp=<past>`, `iss=...`."""
        claims = self._user_claims(self.api.client_id, (self.api_scope,), time.time())
        claims.update(overrides)
        return self.signer.sign(claims)

    def mint_app_token(self, client_id: str, *, signer: RsaSigner | None = None, **overrides: Any) -> str:
        """An application (client credentials) token for the API as /token would issue it to `client_id`
        (`azp` it, `idtyp` "app", no `scp`), with claims replaced by `overrides`, signed by `signer` (default:
        this tenant's key). For tests where only one claim, or the key, is wrong."""
        app = self.registration(client_id)
        claims = self._base_claims(client_id, time.time())
        object_id = app.object_id if app is not None else str(uuid.uuid4())
        claims.update({"azpacr": "1", "idtyp": "app", "oid": object_id, "sub": object_id})
        claims.update(overrides)
        return (signer or self.signer).sign(claims)

    # --- HTTP ---------------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        tenant, _, rest = parsed.path.lstrip("/").partition("/")
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            params = urllib.parse.parse_qs(handler.rfile.read(length).decode(), keep_blank_values=True)
        else:
            params = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        entry = LoggedRequest(
            time.time(), method, parsed.path, (params.get("grant_type") or [""])[0], _redacted(params)
        )
        with self._lock:
            self.log.append(entry)
        if tenant != self.tenant_id:
            entry.outcome = "AADSTS90002"
            self._json(handler, 400, self._error_body("invalid_request", 90002, f"Tenant '{tenant}' not found."))
            return
        if method == "GET" and rest == "v2.0/.well-known/openid-configuration":
            entry.outcome = "served"
            self._json(handler, 200, self.openid_configuration())
        elif method == "GET" and rest == "discovery/v2.0/keys":
            entry.outcome = "served"
            self._json(handler, 200, {"keys": [self.signer.jwk()]})
        elif method == "GET" and rest == "oauth2/v2.0/authorize":
            self._authorize(handler, params, entry)
        elif method == "POST" and rest == "oauth2/v2.0/token":
            content_type = handler.headers.get("Content-Type") or ""
            try:
                if not content_type.startswith("application/x-www-form-urlencoded"):
                    raise _RefusalError(400, "invalid_request", 900144, "The request body must be form-encoded.")
                body = self.token(params, basic=handler.headers.get("Authorization"))
            except _RefusalError as refusal:
                entry.outcome = f"AADSTS{refusal.code}"
                self._json(handler, refusal.status, self._error_body(refusal.error, refusal.code, refusal.text))
                return
            entry.outcome = "ok"
            self._json(handler, 200, body)
        else:
            entry.outcome = "not found"
            self._json(handler, 404, {"error": "not_found"})

    def openid_configuration(self) -> dict[str, Any]:
        """The members of Entra's v2.0 discovery document a client reads, with this host in every URL."""
        return {
            "token_endpoint": self.token_endpoint,
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": self.jwks_uri,
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.issuer,
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": self.authorization_endpoint,
            "device_authorization_endpoint": f"{self.authority}/{self.tenant_id}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{self.authority}/{self.tenant_id}/oauth2/v2.0/logout",
            "claims_supported": "sub iss aud exp iat auth_time acr nonce preferred_username name tid ver at_hash "
            "c_hash email".split(),
            "kerberos_endpoint": f"{self.authority}/{self.tenant_id}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    # --- /authorize ---------------------------------------------------------------------------------

    def _authorize(self, handler: BaseHTTPRequestHandler, params: dict[str, list[str]], entry: LoggedRequest) -> None:
        def param(name: str) -> str:
            return (params.get(name) or [""])[0]

        client_id, redirect_uri, state = param("client_id"), param("redirect_uri"), param("state")
        app = self.registration(client_id)
        if app is None:
            entry.outcome = "AADSTS700016"
            self._error_page(handler, 700016, self._unknown_client_text(client_id))
            return
        if redirect_uri not in app.redirect_uris:
            entry.outcome = "AADSTS50011"
            self._error_page(
                handler,
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
                f"configured for the application '{client_id}'. Make sure the redirect URI sent in the request "
                "matches one added to your application in the Azure portal.",
            )
            return
        try:
            scopes = self._authorize_checks(params)
        except _RefusalError as refusal:
            entry.outcome = f"AADSTS{refusal.code}"
            self._redirect(
                handler,
                redirect_uri,
                {
                    "error": refusal.error,
                    "error_description": self._description(refusal.code, refusal.text),
                    "error_uri": f"https://login.microsoftonline.com/error?code={refusal.code}",
                    "state": state,
                },
            )
            return
        code = "1.A" + secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = Grant(
                client_id,
                scopes,
                time.time() + self.code_lifetime,
                redirect_uri=redirect_uri,
                code_challenge=param("code_challenge"),
                nonce=param("nonce"),
            )
        entry.outcome = "ok"
        self._redirect(handler, redirect_uri, {"code": code, "state": state, "session_state": str(uuid.uuid4())})

    def _authorize_checks(self, params: dict[str, list[str]]) -> tuple[str, ...]:
        def param(name: str) -> str:
            return (params.get(name) or [""])[0]

        scopes = tuple(param("scope").split())
        self._refuse_resource(params, scopes)
        if param("response_type") != "code":
            raise _RefusalError(
                400,
                "unsupported_response_type",
                70005,
                f"The provided value for the input parameter 'response_type' is not allowed for this request. "
                f"Expected value: 'code'. Received value: '{param('response_type')}'.",
            )
        self._check_delegated_scopes(scopes)
        if not param("code_challenge"):
            raise _RefusalError(400, "invalid_request", 50147, "The code_challenge parameter is required (PKCE).")
        if param("code_challenge_method") != "S256":
            raise _RefusalError(
                400,
                "invalid_request",
                90100,
                f"The parameter 'code_challenge_method' is empty or not valid: '{param('code_challenge_method')}'. "
                "This stand-in accepts S256 only.",
            )
        if self.user_declines:
            raise _RefusalError(400, "access_denied", 65004, "User declined to consent to access the app.")
        return scopes

    # --- /token -------------------------------------------------------------------------------------

    def token(self, params: dict[str, list[str]], basic: str | None = None) -> dict[str, Any]:
        """The token endpoint's decision for a form: the JSON it answers, or a `_RefusalError`."""

        def param(name: str) -> str:
            return (params.get(name) or [""])[0]

        grant_type = param("grant_type")
        scopes = tuple(param("scope").split())
        self._refuse_resource(params, scopes)
        if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
            raise _RefusalError(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        app, client_auth = self._authenticate_client(params, basic)
        now = time.time()
        if grant_type == "client_credentials":
            return self._client_credentials(app, scopes, client_auth, now)
        if grant_type == "authorization_code":
            return self._redeem_code(app, params, now)
        return self._refresh(app, params, scopes, now)

    def _authenticate_client(self, params: dict[str, list[str]], basic: str | None) -> tuple[AppRegistration, str]:
        """The calling app registration and its `azpacr`: "1" for a secret, "2" for an assertion."""

        def param(name: str) -> str:
            return (params.get(name) or [""])[0]

        client_id, secret = param("client_id"), param("client_secret")
        if basic and basic.lower().startswith("basic "):  # client_secret_basic
            decoded = base64.b64decode(basic[6:]).decode()
            basic_id, _, basic_secret = decoded.partition(":")
            client_id = client_id or urllib.parse.unquote_plus(basic_id)
            secret = secret or urllib.parse.unquote_plus(basic_secret)
        if not client_id:
            raise _RefusalError(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
            )
        app = self.registration(client_id)
        if app is None:
            raise _RefusalError(400, "unauthorized_client", 700016, self._unknown_client_text(client_id))
        assertion = param("client_assertion")
        if assertion and param("client_assertion_type") == JWT_BEARER:
            self._check_assertion(app, assertion)
            return app, "2"
        if secret:
            if secret not in app.secrets:
                raise _RefusalError(
                    401,
                    "invalid_client",
                    7000215,
                    f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
                    f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
                )
            return app, "1"
        raise _RefusalError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )

    def _check_assertion(self, app: AppRegistration, assertion: str) -> None:
        claims = None
        for signer in (self.signer, *self.assertion_signers):
            claims = signer.verify(assertion)
            if claims is not None:
                break
        if claims is None:
            raise _RefusalError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        now = time.time()
        nbf, exp = claims.get("nbf", claims.get("iat")), claims.get("exp")
        if not isinstance(nbf, int | float) or not isinstance(exp, int | float) or not nbf <= now < exp:
            raise _RefusalError(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: {_iso(now)}, assertion valid "
                f"from {_iso(float(nbf or 0))}, expiry time of assertion {_iso(float(exp or 0))}. Review the "
                "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
            )
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        presented = [FederatedCredential(str(claims.get("iss")), str(claims.get("sub")), str(a)) for a in audiences]
        if not any(credential in app.federated_credentials for credential in presented):
            raise _RefusalError(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{claims.get('iss')}'. Assertion Subject: '{claims.get('sub')}'. "
                f"Assertion Audience: '{audience}'.",
            )

    def _client_credentials(
        self, app: AppRegistration, scopes: tuple[str, ...], client_auth: str, now: float
    ) -> dict[str, Any]:
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise _RefusalError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {' '.join(scopes)} is not valid. Client credential flows must have "
                "a scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = scopes[0].removesuffix("/.default")
        if resource not in (f"api://{self.api.client_id}", self.api.client_id):
            raise _RefusalError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {self.tenant_id}. "
                "This can happen if the application has not been installed by the administrator of the tenant "
                "or consented to by any user in the tenant. You might have sent your authentication request to "
                "the wrong tenant.",
            )
        claims = self._base_claims(app.client_id, now)
        claims.update({"azpacr": client_auth, "idtyp": "app", "oid": app.object_id, "sub": app.object_id})
        if app.app_roles:
            claims["roles"] = list(app.app_roles)
        return self._token_response(claims, scopes[0], refresh=None, id_token=None)

    def _redeem_code(self, app: AppRegistration, params: dict[str, list[str]], now: float) -> dict[str, Any]:
        def param(name: str) -> str:
            return (params.get(name) or [""])[0]

        code = param("code")
        if not code:
            raise _RefusalError(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'code'."
            )
        with self._lock:
            grant = self._codes.get(code)
            if grant is None:
                raise _RefusalError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
            if grant.used:
                raise _RefusalError(
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
                    "existing refresh token.",
                )
            if grant.expires_at <= now:
                raise _RefusalError(
                    400,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new "
                    "interactive authorization request for this user and resource.",
                )
            if grant.client_id != app.client_id:
                raise _RefusalError(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided value for the 'code' parameter was issued to another client.",
                )
            if param("redirect_uri") != grant.redirect_uri:
                raise _RefusalError(
                    400,
                    "invalid_grant",
                    50011,
                    f"The redirect URI '{param('redirect_uri')}' specified in the request does not match the "
                    "redirect URI used to obtain the authorization code.",
                )
            if grant.code_challenge:
                verifier = param("code_verifier")
                if not verifier:
                    raise _RefusalError(
                        400,
                        "invalid_grant",
                        50148,
                        "The code_verifier does not match the code_challenge supplied in the authorization request "
                        "for PKCE.",
                    )
                if b64url(hashlib.sha256(verifier.encode()).digest()) != grant.code_challenge:
                    raise _RefusalError(
                        400,
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    )
            grant.used = True
        return self._user_tokens(app, grant.scopes, grant.nonce, now)

    def _refresh(
        self, app: AppRegistration, params: dict[str, list[str]], scopes: tuple[str, ...], now: float
    ) -> dict[str, Any]:
        refresh_token = (params.get("refresh_token") or [""])[0]
        if not refresh_token:
            raise _RefusalError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'refresh_token'.",
            )
        if not scopes:
            raise _RefusalError(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'."
            )
        with self._lock:
            grant = self._refresh_tokens.get(refresh_token)
            if grant is None or (grant.used and self.single_use_refresh_tokens):
                raise _RefusalError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
            if grant.expires_at <= now:
                raise _RefusalError(
                    400,
                    "invalid_grant",
                    700082,
                    f"The refresh token has expired due to inactivity. The token was issued on "
                    f"{_iso(grant.expires_at - self.refresh_token_lifetime)} and was inactive for "
                    f"{self.refresh_token_lifetime} seconds.",
                )
            if grant.client_id != app.client_id:
                raise _RefusalError(400, "invalid_grant", 70000, "The refresh token was issued to another client.")
            grant.used = True
        self._check_delegated_scopes(scopes)
        # Entra lets a refresh ask for any scope the user consented to; here the original grant's OIDC scopes
        # carry over so that a refresh token keeps coming.
        return self._user_tokens(app, tuple(dict.fromkeys((*scopes, *grant.scopes))), grant.nonce, now)

    # --- tokens -------------------------------------------------------------------------------------

    def _base_claims(self, client_id: str, now: float) -> dict[str, Any]:
        return {
            "aud": self.api.client_id,
            "iss": self.issuer,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + self.access_token_lifetime,
            "aio": b64url(secrets.token_bytes(48)),
            "azp": client_id,
            "rh": "0.A" + b64url(secrets.token_bytes(24)),
            "tid": self.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }

    def _user_claims(self, client_id: str, scopes: tuple[str, ...], now: float) -> dict[str, Any]:
        claims = self._base_claims(client_id, now)
        granted = [s.rsplit("/", 1)[-1] for s in scopes if s not in OIDC_SCOPES]
        claims.update(
            {
                "azpacr": "1",
                "name": self.user.name,
                "oid": self.user.oid,
                "preferred_username": self.user.preferred_username,
                "scp": " ".join(dict.fromkeys(granted)),
                "sid": str(uuid.uuid5(uuid.NAMESPACE_URL, self.user.oid)),
                # Entra's `sub` is pairwise: the same user has another `sub` for another application.
                "sub": b64url(hashlib.sha256(f"{self.user.oid}:{client_id}".encode()).digest()),
            }
        )
        return claims

    def _user_tokens(self, app: AppRegistration, scopes: tuple[str, ...], nonce: str, now: float) -> dict[str, Any]:
        claims = self._user_claims(app.client_id, scopes, now)
        refresh = None
        if "offline_access" in scopes:
            refresh = "1.A" + secrets.token_urlsafe(96)
            with self._lock:
                self._refresh_tokens[refresh] = Grant(app.client_id, scopes, now + self.refresh_token_lifetime)
        id_token = None
        if "openid" in scopes:
            id_claims = {
                "aud": app.client_id,
                "iss": self.issuer,
                "iat": int(now),
                "nbf": int(now),
                "exp": int(now) + 3600,
                "name": self.user.name,
                "oid": self.user.oid,
                "preferred_username": self.user.preferred_username,
                "sub": claims["sub"],
                "tid": self.tenant_id,
                "ver": "2.0",
            }
            if nonce:
                id_claims["nonce"] = nonce
            id_token = self.signer.sign(id_claims)
        granted = " ".join(s for s in scopes if s not in ("openid", "offline_access", "profile", "email"))
        return self._token_response(claims, granted, refresh, id_token)

    def _token_response(
        self, claims: dict[str, Any], scope: str, refresh: str | None, id_token: str | None
    ) -> dict[str, Any]:
        with self._lock:
            self.issued.append(claims)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": self.signer.sign(claims),
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        if id_token is not None:
            body["id_token"] = id_token
        return body

    # --- checks shared by both endpoints ------------------------------------------------------------

    def _refuse_resource(self, params: dict[str, list[str]], scopes: tuple[str, ...]) -> None:
        if "resource" not in params:
            return
        resource = params["resource"][0]
        scope_resources = {s.rsplit("/", 1)[0] for s in scopes if "/" in s}
        if resource.rstrip("/") in scope_resources:
            raise _RefusalError(400, "invalid_request", 901002, "The 'resource' request parameter isn't supported.")
        raise _RefusalError(
            400,
            "invalid_target",
            9010010,
            "The resource parameter provided in the request doesn't match with the requested scopes.",
        )

    def _check_delegated_scopes(self, scopes: tuple[str, ...]) -> None:
        accepted = {self.api_scope, f"{self.api.client_id}/{API_SCOPE_NAME}"}
        unknown = [s for s in scopes if s not in OIDC_SCOPES and s not in accepted]
        if unknown or not any(s in accepted for s in scopes):
            shown = " ".join(unknown) or " ".join(scopes)
            raise _RefusalError(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' isn't valid. The scope {shown} isn't valid.",
            )

    # --- answers ------------------------------------------------------------------------------------

    def _unknown_client_text(self, client_id: str) -> str:
        return (
            f"Application with identifier '{client_id}' was not found in the directory '{self.tenant_id}'. This "
            "can happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You may have sent your authentication request to the wrong "
            "tenant."
        )

    @staticmethod
    def _description(code: int, text: str) -> str:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return f"AADSTS{code}: {text} Trace ID: {uuid.uuid4()} Correlation ID: {uuid.uuid4()} Timestamp: {stamp}"

    @staticmethod
    def _error_body(error: str, code: int, text: str) -> dict[str, Any]:
        return aadsts_error_body(error, code, text, time.time())

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Cache-Control", "no-store, no-cache")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _redirect(handler: BaseHTTPRequestHandler, target: str, params: dict[str, str]) -> None:
        separator = "&" if urllib.parse.urlsplit(target).query else "?"
        handler.send_response(302)
        handler.send_header("Location", target + separator + urllib.parse.urlencode(params))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _error_page(self, handler: BaseHTTPRequestHandler, code: int, text: str) -> None:
        """Entra's "Sign in / Sorry, but we're having trouble signing you in" page, reduced to its message."""
        page = (
            "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>"
            '<div id="error"><h1>Sorry, but we\'re having trouble signing you in.</h1>'
            f"<p>{html.escape(self._description(code, text))}</p></div></body></html>"
        ).encode()
        handler.send_response(400)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)


def _iso(instant: float) -> str:
    return datetime.datetime.fromtimestamp(instant, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
