"""The sign-in gateway's Entra app registration under mocks (pulumi-azuread's resources answered as Microsoft Graph
and the provider answer them: tests/harness.py): created when `entraAuthClientId` is empty, with the exact
audience, token version, scope, identifier URI, redirect URI and federated credential; adopted, with nothing in
Entra, when it is set; and the sovereign clouds' issuer and audience."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from harness import (
    CREATED_APP_CLIENT_ID,
    CREATED_APP_OBJECT_ID,
    DEPLOYER_OBJECT_ID,
    SCOPE_UUID,
    TENANT_ID,
    Declared,
    ProgramRun,
    run_program,
)

pytestmark = pytest.mark.program

APPLICATION = "azuread:index/application:Application"
IDENTIFIER_URI = "azuread:index/applicationIdentifierUri:ApplicationIdentifierUri"
SERVICE_PRINCIPAL = "azuread:index/servicePrincipal:ServicePrincipal"
FEDERATED = "azuread:index/applicationFederatedIdentityCredential:ApplicationFederatedIdentityCredential"
PROVIDER = "pulumi:providers:azuread"
IDENTITY_PRINCIPAL = "22222222-2222-2222-2222-222222222222"  # the mocks' user-assigned identity
ADOPTED = "0a0b0c0d-1111-4222-8333-444455556666"
GRAPH_USER_READ = "e1fe6dd8-ba31-4d61-89e7-88639da4683d"


@functools.cache
def created(stack: str) -> ProgramRun:
    return run_program(stack)


def entra(run: ProgramRun) -> list[Declared]:
    return [r for r in run.resources if r.type.startswith(("azuread:", PROVIDER))]


def public_url(run: ProgramRun, stack: str) -> str:
    """The gateway's URL: the app's FQDN as Azure answers it (known to the program before the app exists)."""
    fqdn = run.one("azure-native:app:ContainerApp").outputs["configuration"]["ingress"]["fqdn"]
    assert fqdn.startswith(f"pgmcp-{stack}-mcp.") and fqdn.endswith(".azurecontainerapps.io")
    return f"https://{fqdn}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_created_registration_is_single_tenant_v2_with_one_delegated_scope(stack: str) -> None:
    run = created(stack)
    application = run.one(APPLICATION).inputs
    assert application["signInAudience"] == "AzureADMyOrg"
    assert application["displayName"] == f"postgres-mcp pgmcp-{stack}"
    assert application["api"]["requestedAccessTokenVersion"] == 2
    (scope,) = application["api"]["oauth2PermissionScopes"]
    assert scope["value"] == "user_impersonation" and scope["id"] == SCOPE_UUID
    assert scope["type"] == "User" and scope["enabled"] is True
    for text in (
        "adminConsentDisplayName",
        "adminConsentDescription",
        "userConsentDisplayName",
        "userConsentDescription",
    ):
        assert scope[text].strip(), text
    # The gateway's callback, and nothing else: no implicit grant, no SPA, no public client.
    assert application["web"] == {"redirectUris": [f"{public_url(run, stack)}/auth/callback"]}
    assert "publicClient" not in application and "singlePageApplication" not in application
    assert application["requiredResourceAccesses"] == [
        {
            "resourceAppId": "00000003-0000-0000-c000-000000000000",
            "resourceAccesses": [{"id": GRAPH_USER_READ, "type": "Scope"}],
        }
    ]
    # The deployer owns what it created (Application.ReadWrite.OwnedBy manages only owned applications).
    assert application["owners"] == [DEPLOYER_OBJECT_ID]
    assert "identifierUris" not in application
    assert run.options[run.one(APPLICATION).name].ignore_changes == ["identifierUris"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_identifier_uri_is_api_client_id_and_a_service_principal_exists(stack: str) -> None:
    run = created(stack)
    uri = run.one(IDENTIFIER_URI).inputs
    assert uri == {
        "applicationId": f"/applications/{CREATED_APP_OBJECT_ID}",
        "identifierUri": f"api://{CREATED_APP_CLIENT_ID}",
    }
    principal = run.one(SERVICE_PRINCIPAL).inputs
    assert principal["clientId"] == CREATED_APP_CLIENT_ID and principal["owners"] == [DEPLOYER_OBJECT_ID]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_registration_trusts_the_apps_managed_identity(stack: str) -> None:
    run = created(stack)
    credential = run.one(FEDERATED).inputs
    assert credential["applicationId"] == f"/applications/{CREATED_APP_OBJECT_ID}"
    assert credential["issuer"] == f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
    assert credential["subject"] == IDENTITY_PRINCIPAL
    assert credential["audiences"] == ["api://AzureADTokenExchange"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_outputs_name_the_registration_and_hold_no_secret(stack: str) -> None:
    run = created(stack)
    assert run.exports["signInClientId"] == CREATED_APP_CLIENT_ID
    assert run.exports["signInIdentifierUri"] == f"api://{CREATED_APP_CLIENT_ID}"
    assert run.exports["signInScope"] == f"api://{CREATED_APP_CLIENT_ID}/user_impersonation"
    assert run.exports["signInRedirectUri"] == f"{public_url(run, stack)}/auth/callback"
    assert run.exports["signInRegistrationCreated"] is True
    assert run.exports["signInFederatedCredential"] == {
        "issuer": f"https://login.microsoftonline.com/{TENANT_ID}/v2.0",
        "subject": IDENTITY_PRINCIPAL,
        "audience": "api://AzureADTokenExchange",
    }
    assert not {key for key in run.secret_exports if key.startswith(("signIn", "gateway"))}


def test_the_entra_provider_is_the_stacks_cloud_and_tenant() -> None:
    provider = created("dev").one(PROVIDER).inputs
    assert provider["environment"] == "public" and provider["tenantId"] == TENANT_ID
    for resource in entra(created("dev")):
        if resource.type != PROVIDER:
            assert created("dev").options[resource.name].provider is not None, resource.name


def test_the_gateway_waits_for_the_registration() -> None:
    run = created("dev")
    app_needs = set(run.depends_on(run.one("azure-native:app:ContainerApp").name))
    assert {run.one(IDENTIFIER_URI).name, run.one(SERVICE_PRINCIPAL).name, run.one(FEDERATED).name} <= app_needs


@pytest.mark.parametrize(
    "adoption",
    [
        {"entraAuthClientId": ADOPTED},
        {"entraAuthClientId": ADOPTED, "gatewayCredential": "secret", "gatewayClientSecret": "s3cr3t-value-from-admin"},
    ],
    ids=["federated", "secret"],
)
def test_an_adopted_registration_creates_nothing_in_entra(adoption: dict[str, Any]) -> None:
    secret_keys = ("gatewayClientSecret",) if "gatewayClientSecret" in adoption else ()
    run = run_program("dev", adoption, secret_keys=secret_keys)
    assert entra(run) == []
    assert run.of_type("random:index/randomUuid:RandomUuid") == []
    assert run.exports["signInClientId"] == ADOPTED
    assert run.exports["signInScope"] == f"api://{ADOPTED}/user_impersonation"
    assert run.exports["signInRegistrationCreated"] is False
    if "gatewayClientSecret" in adoption:
        # The gateway signs in with the administrator's secret: no federated credential to add.
        assert "signInFederatedCredential" not in run.exports
        assert "s3cr3t-value-from-admin" not in repr(run.exports)
    else:
        # What the administrator adds to their registration for the federated credential.
        assert run.exports["signInFederatedCredential"] == {
            "issuer": f"https://login.microsoftonline.com/{TENANT_ID}/v2.0",
            "subject": IDENTITY_PRINCIPAL,
            "audience": "api://AzureADTokenExchange",
        }


@pytest.mark.parametrize(
    ("environment", "authority", "audience"),
    [
        ("usgovernment", "https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov"),
        ("china", "https://login.partner.microsoftonline.cn", "api://AzureADTokenExchangeChina"),
    ],
)
def test_a_sovereign_stack_trusts_its_own_clouds_issuer_and_audience(
    environment: str, authority: str, audience: str
) -> None:
    run = run_program("dev", {"azure-native:environment": environment})
    credential = run.one(FEDERATED).inputs
    assert credential["issuer"] == f"{authority}/{TENANT_ID}/v2.0"
    assert credential["audiences"] == [audience]
    assert run.one(PROVIDER).inputs["environment"] == environment
    adopted = run_program("dev", {"azure-native:environment": environment, "entraAuthClientId": ADOPTED})
    assert adopted.exports["signInFederatedCredential"]["audience"] == audience
    assert entra(adopted) == []
