"""Azurite's Table service (testing/azurite.py) over HTTPS with `--oauth basic`, reached as the gateway reaches
Azure Table Storage: azure-data-tables with azure-identity's `ManagedIdentityCredential` against the identity
stand-in, which mints storage tokens (`storage_audience`). The `drill` tier: it starts a Node.js process from
tools/azurite (`npm ci --prefix tools/azurite`, which .ci/run does before the tests).
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.azurite import Azurite
from testing.identity_endpoint import STORAGE_RESOURCE, IdentityEndpoint, SignedAudience, storage_audience
from testing.signing import unverified_claims

pytestmark = pytest.mark.drill

TENANT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield server
    server.stop()


@pytest.fixture
def identity(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEndpoint]:
    endpoint = IdentityEndpoint(lifetime=300)
    endpoint.signed[STORAGE_RESOURCE] = storage_audience(TENANT)
    endpoint.start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", endpoint.header)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(azurite.ca_bundle))
    for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    yield endpoint
    endpoint.stop()


def _list_tables(azurite: Azurite, authorization: str | None) -> tuple[int, str]:
    """`GET /<account>/Tables` (Query Tables) with this Authorization header, or none."""
    headers = {"x-ms-version": "2019-02-02", "Accept": "application/json;odata=nometadata"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(f"{azurite.table_endpoint}/Tables", headers=headers)
    context = ssl.create_default_context(cafile=str(azurite.ca_bundle))
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _token(audience: SignedAudience, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"aud": audience.audience, "iss": audience.issuer, "iat": now, "nbf": now, "exp": now + 300}
    claims.update({"oid": "22222222-2222-2222-2222-222222222222", "tid": TENANT, "ver": "1.0"})
    claims.update(overrides)
    return audience.signer.sign(claims)


def test_the_table_client_works_with_a_managed_identity_token_and_never_a_shared_key(
    azurite: Azurite, identity: IdentityEndpoint
) -> None:
    from azure.data.tables import TableServiceClient
    from azure.identity import ManagedIdentityCredential

    authorizations: list[str] = []
    service = TableServiceClient(
        endpoint=azurite.table_endpoint,
        credential=ManagedIdentityCredential(client_id=identity.identity_client_id),
        raw_request_hook=lambda pipeline_request: authorizations.append(
            pipeline_request.http_request.headers.get("Authorization", "")
        ),
    )
    table = service.create_table_if_not_exists("gatewaystore")
    table.upsert_entity({"PartitionKey": "clients", "RowKey": "abc", "value": "encrypted"})
    assert table.get_entity("clients", "abc")["value"] == "encrypted"
    assert [request.query["resource"] for request in identity.requests] == [[STORAGE_RESOURCE]]
    minted = identity.minted[-1].token
    assert len(authorizations) >= 3 and set(authorizations) == {f"Bearer {minted}"}  # no SharedKey, ever
    claims = unverified_claims(minted)
    assert (claims["aud"], claims["iss"]) == (STORAGE_RESOURCE, f"https://sts.windows.net/{TENANT}/")


def test_requests_without_a_valid_token_are_refused(azurite: Azurite) -> None:
    audience = storage_audience(TENANT)
    assert _list_tables(azurite, f"Bearer {_token(audience)}")[0] == 200
    now = int(time.time())
    refused = {
        "no token": None,
        "expired": f"Bearer {_token(audience, nbf=now - 120, iat=now - 120, exp=now - 1)}",
        "not yet valid": f"Bearer {_token(audience, nbf=now + 120)}",
        "v2 issuer": f"Bearer {_token(audience, iss=f'https://login.microsoftonline.com/{TENANT}/v2.0')}",
        "other audience": f"Bearer {_token(audience, aud='api://AzureADTokenExchange')}",
        "another account": f"Bearer {_token(audience, aud='https://otheraccount.table.core.windows.net')}",
        "not a JWT": "Bearer not-a-token",
    }
    answers = {case: _list_tables(azurite, header) for case, header in refused.items()}
    assert all(status in (401, 403) for status, _ in answers.values()), answers
    assert "The token is expired" in answers["expired"][1]
    assert "Invalid token issuer" in answers["v2 issuer"][1]
    assert "Invalid token audience" in answers["other audience"][1]
    assert "Invalid token audience" in answers["another account"][1]


def test_the_port_speaks_only_tls(azurite: Azurite) -> None:
    """HTTPS only (Azurite also refuses Bearer over HTTP): a plain HTTP request gets no answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{azurite.port}/devstoreaccount1/Tables")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(request, timeout=5)


def test_azurite_checks_no_signature_so_the_stand_in_is_what_signs(azurite: Azurite) -> None:
    """Documents the limit: `--oauth basic` skips the signature; tokens from an unknown key pass."""
    stranger = storage_audience(TENANT)
    assert _list_tables(azurite, f"Bearer {_token(stranger)}")[0] == 200


def test_one_trust_store_serves_azurite_and_entra(azurite: Azurite, tmp_path: Path) -> None:
    """The gateway process gets one SSL_CERT_FILE: both stand-ins' CAs in it, each server verifies."""
    from testing.entra_endpoint import EntraEndpoint
    from testing.local_ca import combined_bundle

    (tmp_path / "entra").mkdir()
    entra = EntraEndpoint().start(tmp_path / "entra")
    try:
        assert azurite.ca_bundle is not None and entra.ca_bundle is not None
        bundle = combined_bundle(tmp_path / "trust.pem", azurite.ca_bundle, entra.ca_bundle)
        context = ssl.create_default_context(cafile=str(bundle))
        for url in (f"{azurite.table_endpoint}/Tables", f"{entra.issuer}/.well-known/openid-configuration"):
            try:
                urllib.request.urlopen(url, context=context, timeout=5).close()
            except urllib.error.HTTPError:  # an answer over verified TLS (Azurite: 403 without a token)
                pass
    finally:
        entra.stop()
