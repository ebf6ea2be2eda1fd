"""The Entra app registration MCP clients sign in to through the gateway: created by the stack, or adopted.

With `signIn: gateway` and `entraAuthClientId` empty, the stack CREATES the registration with pulumi-azuread
(the Terraform azuread provider, bridged; resource docs quoted from pulumi_azuread 6.11):
- `Application`: single tenant (`signInAudience: AzureADMyOrg`), v2 access tokens
  (`api.requestedAccessTokenVersion: 2`), one delegated scope `user_impersonation` (admin and user consent texts),
  the gateway's OAuth callback `<gateway URL>/auth/callback` as a web redirect URI, Microsoft Graph `User.Read`
  (delegated, e1fe6dd8-ba31-4d61-89e7-88639da4683d: "Sign in and read user profile", Microsoft Graph permissions
  reference) and the deployer as an owner ("When using the `Application.ReadWrite.OwnedBy` application role, you
  should ensure that the principal being used ... is included in the `owners` property").
- `ApplicationIdentifierUri`: `api://<client id>`. The client ID exists only once Entra has created the
  application, so the URI is its own resource; the application ignores changes to `identifierUris` ("When using
  these resources together, you should use the `ignore_changes` lifecycle meta-argument").
- `ServicePrincipal`: the registration's enterprise application in the tenant, which users consent to and sign in to.
- `ApplicationFederatedIdentityCredential`: the registration trusts the app's user-assigned managed identity
  (no client secret exists): issuer = the tenant's Entra v2 issuer, subject = the identity's principal (object)
  ID, audience = the cloud's token exchange audience (azure_cloud/clouds.py `entra_v2_issuer`,
  `federation_audience`; Microsoft Learn, "Configure an application to trust a managed identity").

The deployer needs the right to create applications: as an application (the pipeline's identity), the Microsoft
Graph application permission `Application.ReadWrite.OwnedBy` (or `.All`), admin-consented; as a user, the
Application Developer role, or the tenant's default "Users can register applications". Without it Microsoft Graph
answers `Authorization_RequestDenied` ("Insufficient privileges to complete the operation") and `pulumi up` stops
at the `Application`; the fix is the adopt path (docs/sign-in.md#the-app-registration): an administrator creates
the registration and the stack is given its client ID.

With `entraAuthClientId` set, the stack ADOPTS that registration and declares nothing in Entra: no provider, no
resource. With `gatewayCredential: federated` the administrator adds the federated identity credential; the values
they need are this component's `federation` (exported, no secret among them). With `secret`, the gateway uses
`gatewayClientSecret` (a Key Vault reference, components/mcp_app.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

import pulumi
import pulumi_azuread as azuread
import pulumi_random as random

from azure_cloud.clouds import Cloud
from gateway import CALLBACK_PATH as GATEWAY_CALLBACK_PATH
from gateway import SCOPE

SCOPE_NAME = SCOPE  # gateway/__init__.py: the scope the gateway requires
"""The gateway's OAuth callback (FastMCP's OAuthProxy default `redirect_path`), the shared design's."""
SIGN_IN_AUDIENCE = "AzureADMyOrg"
ACCESS_TOKEN_VERSION = 2
MICROSOFT_GRAPH = "00000003-0000-0000-c000-000000000000"
GRAPH_USER_READ = "e1fe6dd8-ba31-4d61-89e7-88639da4683d"
COMPONENT_TYPE = "postgresmcp:gateway:AppRegistration"


def identifier_uri(client_id: str) -> str:
    return f"api://{client_id}"


def scope(client_id: str) -> str:
    """The delegated scope MCP clients and the gateway ask Entra for."""
    return f"{identifier_uri(client_id)}/{SCOPE_NAME}"


def redirect_uri(public_url: str) -> str:
    return public_url.rstrip("/") + GATEWAY_CALLBACK_PATH


@dataclass(frozen=True)
class Federation:
    """What a federated identity credential that trusts the app's managed identity holds."""

    issuer: pulumi.Output[str]
    subject: pulumi.Output[str]
    audience: str

    def as_output(self) -> pulumi.Output[dict[str, str]]:
        return pulumi.Output.all(self.issuer, self.subject).apply(
            lambda values: {"issuer": values[0], "subject": values[1], "audience": self.audience}
        )


class AppRegistrationArgs(TypedDict):
    display_name: str
    tenant_id: pulumi.Input[str]
    deployer_object_id: pulumi.Input[str]
    """Becomes an owner of a created registration (what `Application.ReadWrite.OwnedBy` needs to manage it)."""
    cloud: Cloud
    public_url: pulumi.Input[str]
    """`https://<app fqdn>`, no trailing slash: the gateway's public URL."""
    identity_principal_id: pulumi.Input[str]
    """The app's user-assigned identity's principal (object) ID: the federated credential's subject."""
    adopted_client_id: str
    """`entraAuthClientId`: empty creates the registration; a GUID adopts it."""
    credential: Literal["federated", "secret"]


class AppRegistration(pulumi.ComponentResource):
    created: bool
    client_id: pulumi.Output[str]
    identifier_uri: pulumi.Output[str]
    scope: pulumi.Output[str]
    redirect_uri: pulumi.Output[str]
    federation: Federation
    """The federated credential's values: declared here when created, the administrator's to add when adopted."""
    ready: list[pulumi.Resource]
    """What the gateway waits for: a created registration's identifier URI, service principal and federated
    credential (empty when adopted)."""

    def __init__(self, name: str, args: AppRegistrationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        cloud = args["cloud"]
        self.created = not args["adopted_client_id"]
        self.redirect_uri = pulumi.Output.from_input(args["public_url"]).apply(redirect_uri)
        self.federation = Federation(
            issuer=pulumi.Output.from_input(args["tenant_id"]).apply(cloud.entra_v2_issuer),
            subject=pulumi.Output.from_input(args["identity_principal_id"]),
            audience=cloud.federation_audience,
        )
        self.ready = []
        if not self.created:
            self.client_id = pulumi.Output.from_input(args["adopted_client_id"])
        else:
            self.client_id = self._create(name, args)
        self.identifier_uri = self.client_id.apply(identifier_uri)
        self.scope = self.client_id.apply(scope)
        self.register_outputs(
            {
                "client_id": self.client_id,
                "identifier_uri": self.identifier_uri,
                "scope": self.scope,
                "redirect_uri": self.redirect_uri,
            }
        )

    def _create(self, name: str, args: AppRegistrationArgs) -> pulumi.Output[str]:
        cloud = args["cloud"]
        # The provider signs in as azure-native does (ARM_CLIENT_ID, ARM_USE_OIDC, ARM_TENANT_ID, or the Azure
        # CLI); its cloud and tenant are the stack's, not whatever ARM_ENVIRONMENT happens to say.
        provider = azuread.Provider(
            f"{name}-azuread", environment=cloud.azuread_environment, tenant_id=args["tenant_id"], opts=self._child()
        )
        in_entra = pulumi.ResourceOptions(parent=self, provider=provider)
        # The scope's ID is any UUID, kept stable (pulumi_azuread: "you can use the `random_uuid` resource").
        scope_id = random.RandomUuid(f"{name}-scope-id", opts=self._child())
        application = azuread.Application(
            name,
            display_name=args["display_name"],
            sign_in_audience=SIGN_IN_AUDIENCE,
            owners=[args["deployer_object_id"]],
            api=azuread.ApplicationApiArgs(
                requested_access_token_version=ACCESS_TOKEN_VERSION,
                oauth2_permission_scopes=[
                    azuread.ApplicationApiOauth2PermissionScopeArgs(
                        id=scope_id.result,
                        value=SCOPE_NAME,
                        type="User",
                        enabled=True,
                        admin_consent_display_name="Use the PostgreSQL MCP server",
                        admin_consent_description=(
                            "Allows the application to call the PostgreSQL MCP server's tools on behalf of the "
                            "signed-in user."
                        ),
                        user_consent_display_name="Use the PostgreSQL MCP server",
                        user_consent_description=(
                            "Allows the application to call the PostgreSQL MCP server's tools on your behalf."
                        ),
                    )
                ],
            ),
            web=azuread.ApplicationWebArgs(redirect_uris=[self.redirect_uri]),
            required_resource_accesses=[
                azuread.ApplicationRequiredResourceAccessArgs(
                    resource_app_id=MICROSOFT_GRAPH,
                    resource_accesses=[
                        azuread.ApplicationRequiredResourceAccessResourceAccessArgs(id=GRAPH_USER_READ, type="Scope")
                    ],
                )
            ],
            opts=pulumi.ResourceOptions.merge(in_entra, pulumi.ResourceOptions(ignore_changes=["identifierUris"])),
        )
        uri = azuread.ApplicationIdentifierUri(
            f"{name}-identifier-uri",
            application_id=application.id,
            identifier_uri=application.client_id.apply(identifier_uri),
            opts=in_entra,
        )
        principal = azuread.ServicePrincipal(
            f"{name}-service-principal",
            client_id=application.client_id,
            owners=[args["deployer_object_id"]],
            opts=in_entra,
        )
        self.ready = [uri, principal]
        if args["credential"] == "federated":
            self.ready.append(
                azuread.ApplicationFederatedIdentityCredential(
                    f"{name}-managed-identity",
                    application_id=application.id,
                    display_name="postgres-mcp-gateway-managed-identity",
                    description="The sign-in gateway redeems sign-ins as this registration with the app's identity",
                    issuer=self.federation.issuer,
                    subject=self.federation.subject,
                    audiences=[self.federation.audience],
                    opts=in_entra,
                )
            )
        # Dependents see the client ID once the registration can be used: its URI and service principal exist.
        return pulumi.Output.all(application.client_id, uri.id, principal.id).apply(lambda values: values[0])

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)
