"""The Entra stand-in (testing/entra_endpoint.py) answers like Entra and refuses what Entra refuses.

Tokens are verified here with PyJWT against the stand-in's own JWKS, as a resource server does; the managed
identity side runs the real azure-identity (`ManagedIdentityCredential` for the assertion,
`ClientAssertionCredential` for the federated exchange), trusting the local CA through REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from testing.entra_endpoint import (
    FEDERATION_AUDIENCE,
    AppRegistration,
    EntraEndpoint,
    FederatedCredential,
    pkce_pair,
)
from testing.identity_endpoint import IdentityEndpoint, federation_audience
from testing.scripted_browser import SignInError, SignInResult, sign_in
from testing.signing import RsaSigner, unverified_claims

pytestmark = pytest.mark.program

API = "66666666-7777-8888-9999-000000000000"
AGENT = "77777777-0000-0000-0000-00000000a9e7"
CALLBACK = "http://127.0.0.1:9/auth/callback"  # never requested: the browser stops at the redirect
SECRET = "gateway-secret-value"
AGENT_SECRET = "agent-secret-value"


@pytest.fixture
def entra(tmp_path: Path) -> Iterator[EntraEndpoint]:
    endpoint = EntraEndpoint(
        api=AppRegistration(API, redirect_uris=(CALLBACK,), secrets=(SECRET,)),
        clients=[AppRegistration(AGENT, secrets=(AGENT_SECRET,))],
        access_token_lifetime=3,
    ).start(tmp_path)
    yield endpoint
    endpoint.stop()


def _context(entra: EntraEndpoint) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(entra.ca_bundle))


def _get(entra: EntraEndpoint, url: str) -> Any:
    with urllib.request.urlopen(url, context=_context(entra)) as response:
        return json.load(response)


def _post(entra: EntraEndpoint, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(entra.token_endpoint, data=urllib.parse.urlencode(form).encode())
    try:
        with urllib.request.urlopen(request, context=_context(entra)) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _authorize_url(entra: EntraEndpoint, **overrides: str) -> str:
    params = {
        "client_id": API,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": f"{entra.api_scope} openid offline_access",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
        "state": "state-123",
    }
    params.update(overrides)
    return f"{entra.authorization_endpoint}?{urllib.parse.urlencode({k: v for k, v in params.items() if v})}"


def _browse(entra: EntraEndpoint, url: str) -> SignInResult:
    assert entra.ca_bundle is not None
    return sign_in(url, redirect_uri=CALLBACK, ca_files=[entra.ca_bundle])


def _code(entra: EntraEndpoint, verifier: str, challenge: str) -> str:
    result = _browse(entra, _authorize_url(entra, code_challenge=challenge))
    assert result.error is None and result.state == "state-123" and result.code
    return result.code


def _redeem(entra: EntraEndpoint, code: str, verifier: str | None, **extra: str) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "authorization_code", "client_id": API, "client_secret": SECRET, "code": code}
    form["redirect_uri"] = CALLBACK
    if verifier is not None:
        form["code_verifier"] = verifier
    form.update(extra)
    return _post(entra, form)


def _verified(entra: EntraEndpoint, token: str) -> dict[str, Any]:
    """What a resource server does: the key from the JWKS by `kid`, RS256, audience and issuer, no leeway."""
    keys = _get(entra, entra.jwks_uri)["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == kid)).key
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], audience=API, issuer=entra.issuer)
    return claims


def _assert_refused(answer: tuple[int, dict[str, Any]], status: int, error: str, code: int) -> None:
    got_status, body = answer
    assert (got_status, body["error"], body["error_codes"]) == (status, error, [code]), body
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= body.keys()


# --- discovery -------------------------------------------------------------------------------------


def test_the_discovery_document_names_the_v2_issuer_and_endpoints_on_its_own_host(entra: EntraEndpoint) -> None:
    document = _get(entra, f"{entra.authority}/{entra.tenant_id}/v2.0/.well-known/openid-configuration")
    base = f"https://{entra.host}/{entra.tenant_id}"
    assert document["issuer"] == f"{base}/v2.0"
    assert document["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert document["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert document["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    keys = _get(entra, document["jwks_uri"])["keys"]
    assert [(k["kty"], k["use"], k["kid"]) for k in keys] == [("RSA", "sig", entra.signer.kid)]


def test_another_tenant_is_not_found(entra: EntraEndpoint) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(entra, f"{entra.authority}/other-tenant/v2.0/.well-known/openid-configuration")
    assert json.load(refused.value)["error_codes"] == [90002]


# --- authorization code with PKCE ----------------------------------------------------------------------


def test_a_signed_in_user_gets_a_v2_token_that_lives_the_configured_seconds(entra: EntraEndpoint) -> None:
    verifier, challenge = pkce_pair()
    status, body = _redeem(entra, _code(entra, verifier, challenge), verifier)
    assert status == 200, body
    claims = _verified(entra, body["access_token"])
    assert claims["ver"] == "2.0" and claims["scp"] == "user_impersonation"
    assert (claims["oid"], claims["tid"], claims["azp"]) == (entra.user.oid, entra.tenant_id, API)
    assert claims["preferred_username"] == entra.user.preferred_username
    assert claims["exp"] - claims["iat"] == 3 == body["expires_in"]
    assert body["refresh_token"] and body["id_token"]
    assert unverified_claims(body["id_token"])["aud"] == API
    expired = entra.mint_access_token(iat=claims["iat"] - 10, nbf=claims["iat"] - 10, exp=claims["iat"] - 7)
    with pytest.raises(jwt.ExpiredSignatureError):  # what a resource server does once those seconds are over
        _verified(entra, expired)


def test_a_code_is_redeemed_once_with_its_verifier_and_redirect_uri(entra: EntraEndpoint) -> None:
    verifier, challenge = pkce_pair()
    code = _code(entra, verifier, challenge)
    _assert_refused(_redeem(entra, code, None), 400, "invalid_grant", 50148)
    _assert_refused(_redeem(entra, code, pkce_pair()[0]), 400, "invalid_grant", 501481)
    _assert_refused(
        _redeem(entra, code, verifier, redirect_uri="http://127.0.0.1:9/other"), 400, "invalid_grant", 50011
    )
    assert _redeem(entra, code, verifier)[0] == 200
    _assert_refused(_redeem(entra, code, verifier), 400, "invalid_grant", 54005)
    _assert_refused(_redeem(entra, "1.Anot-a-code", verifier), 400, "invalid_grant", 9002313)


def test_the_resource_parameter_is_refused_on_both_endpoints_and_shows_in_the_log(entra: EntraEndpoint) -> None:
    same = _browse(entra, _authorize_url(entra, resource=f"api://{API}"))
    other = _browse(entra, _authorize_url(entra, resource="https://mcp.example.com/mcp"))
    assert (same.code, same.error, same.state) == (None, "invalid_request", "state-123")
    assert (same.error_description or "").startswith("AADSTS901002: The 'resource' request parameter isn't supported.")
    assert (other.error, (other.error_description or "")[:14]) == ("invalid_target", "AADSTS9010010:")
    verifier, challenge = pkce_pair()
    code = _code(entra, verifier, challenge)
    _assert_refused(
        _redeem(entra, code, verifier, resource=f"api://{API}", scope=entra.api_scope), 400, "invalid_request", 901002
    )
    assert [r.params["resource"] for r in entra.log if "resource" in r.params] == [
        f"api://{API}",
        "https://mcp.example.com/mcp",
        f"api://{API}",
    ]


@pytest.mark.parametrize(
    ("overrides", "error", "code"),
    [
        ({"code_challenge": ""}, "invalid_request", 50147),
        ({"code_challenge_method": "plain"}, "invalid_request", 90100),
        ({"code_challenge_method": ""}, "invalid_request", 90100),
        ({"response_type": "token"}, "unsupported_response_type", 70005),
        ({"scope": "openid offline_access"}, "invalid_scope", 70011),
        ({"scope": f"api://{API}/user_impersonation https://graph.microsoft.com/User.Read"}, "invalid_scope", 70011),
    ],
)
def test_an_invalid_authorize_request_is_redirected_with_entras_error(
    entra: EntraEndpoint, overrides: dict[str, str], error: str, code: int
) -> None:
    result = _browse(entra, _authorize_url(entra, **overrides))
    assert (result.code, result.error, result.state) == (None, error, "state-123")
    assert (result.error_description or "").startswith(f"AADSTS{code}: ")


def test_the_client_id_form_of_the_scope_and_a_declining_user(entra: EntraEndpoint) -> None:
    accepted = _browse(entra, _authorize_url(entra, scope=f"{API}/user_impersonation"))
    assert accepted.code
    entra.user_declines = True
    declined = _browse(entra, _authorize_url(entra))
    assert (declined.error, (declined.error_description or "")[:13]) == ("access_denied", "AADSTS65004: ")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [({"client_id": "unknown-client"}, 700016), ({"redirect_uri": "https://attacker.example/callback"}, 50011)],
)
def test_an_unknown_client_or_redirect_uri_gets_an_error_page_not_a_redirect(
    entra: EntraEndpoint, overrides: dict[str, str], code: int
) -> None:
    with pytest.raises(SignInError, match=rf"answered 400: .*AADSTS{code}: "):
        _browse(entra, _authorize_url(entra, **overrides))


# --- refresh ---------------------------------------------------------------------------------------


def test_a_refresh_needs_the_scope_again_and_rotates_the_refresh_token(entra: EntraEndpoint) -> None:
    verifier, challenge = pkce_pair()
    first = _redeem(entra, _code(entra, verifier, challenge), verifier)[1]
    form = {"grant_type": "refresh_token", "client_id": API, "client_secret": SECRET}
    _assert_refused(_post(entra, {**form, "refresh_token": first["refresh_token"]}), 400, "invalid_request", 900144)
    status, second = _post(entra, {**form, "refresh_token": first["refresh_token"], "scope": entra.api_scope})
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert _verified(entra, second["access_token"])["scp"] == "user_impersonation"
    refreshes = entra.requests("token", grant_type="refresh_token")
    assert [("scope" in r.params, r.outcome) for r in refreshes] == [(False, "AADSTS900144"), (True, "ok")]
    assert all(
        r.params["refresh_token"] == "<redacted>" and r.params["client_secret"] == "<redacted>" for r in refreshes
    )
    entra.single_use_refresh_tokens = True
    _assert_refused(
        _post(entra, {**form, "refresh_token": first["refresh_token"], "scope": entra.api_scope}),
        400,
        "invalid_grant",
        9002313,
    )
    assert _post(entra, {**form, "refresh_token": second["refresh_token"], "scope": entra.api_scope})[0] == 200


# --- client credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [f"api://{API}/.default", f"{API}/.default"])
def test_an_agent_gets_an_app_token_for_the_api(entra: EntraEndpoint, scope: str) -> None:
    form = {"grant_type": "client_credentials", "client_id": AGENT, "client_secret": AGENT_SECRET, "scope": scope}
    status, body = _post(entra, form)
    assert status == 200, body
    claims = _verified(entra, body["access_token"])
    assert (claims["azp"], claims["idtyp"], claims["ver"], claims["aud"]) == (AGENT, "app", "2.0", API)
    assert (
        "scp" not in claims and "roles" not in claims and claims["oid"] == claims["sub"] == entra.clients[0].object_id
    )
    assert "refresh_token" not in body


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_secret": ""}, 401, "invalid_client", 7000218),
        ({"client_id": "unknown"}, 400, "unauthorized_client", 700016),
        ({"scope": f"api://{API}/user_impersonation"}, 400, "invalid_scope", 1002012),
        ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_resource", 500011),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"resource": f"api://{API}"}, 400, "invalid_request", 901002),
    ],
)
def test_client_credentials_refusals(
    entra: EntraEndpoint, form: dict[str, str], status: int, error: str, code: int
) -> None:
    base = {"grant_type": "client_credentials", "client_id": AGENT, "client_secret": AGENT_SECRET}
    base["scope"] = f"api://{API}/.default"
    _assert_refused(_post(entra, {k: v for k, v in {**base, **form}.items() if v}), status, error, code)


# --- a managed identity as the app's credential (federated identity credential) -----------------------


@pytest.fixture
def identity(entra: EntraEndpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEndpoint]:
    endpoint = IdentityEndpoint(lifetime=60)
    endpoint.signed[FEDERATION_AUDIENCE] = federation_audience(entra)
    endpoint.start()
    entra.api.federated_credentials = (FederatedCredential(entra.issuer, endpoint.principal_id),)
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", endpoint.header)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(entra.ca_bundle))
    for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)
    yield endpoint
    endpoint.stop()


def test_the_managed_identity_assertion_signs_the_app_in_through_azure_identity(
    entra: EntraEndpoint, identity: IdentityEndpoint
) -> None:
    from azure.identity import ClientAssertionCredential, ManagedIdentityCredential

    managed_identity = ManagedIdentityCredential(client_id=identity.identity_client_id)
    assertion = managed_identity.get_token(f"{FEDERATION_AUDIENCE}/.default").token
    claims = entra.signer.verify(assertion)
    assert claims is not None
    assert (claims["iss"], claims["sub"], claims["aud"]) == (entra.issuer, identity.principal_id, FEDERATION_AUDIENCE)
    assert identity.requests[-1].query["resource"] == [FEDERATION_AUDIENCE]
    assert identity.requests[-1].query["client_id"] == [identity.identity_client_id]

    app = ClientAssertionCredential(
        entra.tenant_id,
        API,
        lambda: managed_identity.get_token(f"{FEDERATION_AUDIENCE}/.default").token,
        authority=entra.host,
    )
    token = app.get_token(f"api://{API}/.default").token
    assert _verified(entra, token)["azp"] == API
    assert entra.requests("token")[-1].params["client_assertion"] == "<redacted>"


def test_an_assertion_matching_no_federated_credential_is_refused(
    entra: EntraEndpoint, identity: IdentityEndpoint
) -> None:
    now = int(time.time())
    base = {"iss": entra.issuer, "sub": identity.principal_id, "aud": FEDERATION_AUDIENCE, "nbf": now, "iat": now}
    cases = [
        (entra.signer.sign({**base, "exp": now + 60, "sub": "another-identity"}), 400, "invalid_request", 70021),
        (entra.signer.sign({**base, "exp": now + 60, "aud": "api://other"}), 400, "invalid_request", 70021),
        (entra.signer.sign({**base, "nbf": now - 120, "exp": now - 60}), 401, "invalid_client", 700024),
        (RsaSigner(kid=entra.signer.kid).sign({**base, "exp": now + 60}), 401, "invalid_client", 700027),
    ]
    for assertion, status, error, code in cases:
        form = {
            "grant_type": "client_credentials",
            "client_id": API,
            "scope": f"api://{API}/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
        _assert_refused(_post(entra, form), status, error, code)
