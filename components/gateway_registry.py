"""The stack's own container registry for the sign-in gateway's image, and the app's right to pull from it.

Declared only with `signIn: gateway` and no prebuilt `gatewayImage`: the deploy pipeline builds
`gateway/Dockerfile`, computes the image's digest (tools/gateway_image.py), creates this registry with a
targeted `pulumi up` (`python -m tools.gateway_image targets`), pushes the image, then runs the full `pulumi up`
with `gatewayImageDigest` (docs/sign-in.md#the-gateway-image).

The registry (Microsoft.ContainerRegistry/registries, REST API 2023-01-01-preview as azure-native 3.x uses it;
azure-rest-api-specs, specification/containerregistry/resource-manager/Microsoft.ContainerRegistry):
- `adminUserEnabled: false`: no shared username and password exist; the pipeline pushes with its own Entra
  identity (`az acr login`, which needs AcrPush or a role with push rights on this registry) and the app pulls
  with its user-assigned identity (AcrPull, below).
- `anonymousPullEnabled: false`: "Enables registry-wide pull from unauthenticated clients" (the REST spec's
  description); off, so only Entra identities with a pull role read the image.
- SKU Basic: one small image (a few hundred MB) pulled when a revision or replica starts. Basic includes 10 GiB
  of storage and the same Entra authentication, and its read throughput is far above a handful of pulls
  (Microsoft Learn, "Azure Container Registry service tiers", learn.microsoft.com/azure/container-registry/
  container-registry-skus). Premium would add private endpoints, geo-replication and network rules, none of
  which this registry uses: Container Apps pulls over the registry's public endpoint with an Entra token, and
  a GitHub-hosted runner must reach it to push.
- `publicNetworkAccess: Enabled` for that reason (network rule sets are Premium-only, same page).

AcrPull (role definition 7f951dda-4ed3-4680-a7ca-43fe172d538d, Microsoft Learn, "Azure built-in roles for
Containers", learn.microsoft.com/azure/role-based-access-control/built-in-roles/containers#acrpull) is assigned to
the app's user-assigned identity on this registry only. The Container App pulls with that identity: its
`configuration.registries` names the registry's login server and the identity's resource ID ("For user-assigned
identities, use the full user-assigned identity Resource ID", azure-native's RegistryCredentials; Microsoft Learn,
"Azure Container Apps image pull with managed identity"). `registry_credentials` builds that entry.

A revision created before AcrPull applies cannot pull its image and fails, like a Key Vault reference before
Key Vault Secrets User (components/role_propagation.py): the app waits for `pull_ready`, which holds the role
assignment and the propagation wait counted from the assignment's `createdOn`. On the pipeline's first deploy
the targeted `up` creates the assignment minutes before the full `up`, so the wait that is left is short.
"""

from __future__ import annotations

import re
from typing import NotRequired, TypedDict

import pulumi
from pulumi_azure_native import app, authorization, containerregistry

from components.identity_and_secrets import assign_role
from components.role_propagation import DOCUMENTED_PROPAGATION_SECONDS, wait_for_role

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
"""AcrPull: Learn's built-in roles page for Containers (see the module docstring)."""
GATEWAY_REPOSITORY = "postgres-mcp-gateway"
"""The repository the pipeline pushes the gateway image to."""
"""What a preview without `gatewayImageDigest` shows as the image's tag (`pulumi up` refuses to run without a
digest: see `require_digest`)."""
COMPONENT_TYPE = "postgresmcp:gateway:GatewayRegistry"


def registry_name(base_name: str, suffix: str) -> str:
    """Registry names are global, 5 to 50 letters and digits (no hyphens; the REST spec's pattern
    `^[a-zA-Z0-9]*$`): the stack's base name without its hyphens, then the stack's random suffix."""
    return re.sub(r"[^a-z0-9]", "", base_name.lower())[:40] + suffix


def image_reference(login_server: str, digest: str) -> str:
    """`<login server>/postgres-mcp-gateway@sha256:<hex>`: the image by digest, never by a movable tag."""
    if not digest:
        # preflight/gateway_image.py gives a preview a placeholder digest and stops `pulumi up` without one.
        raise ValueError("the gateway image's digest is empty")
    return f"{login_server}/{GATEWAY_REPOSITORY}@{digest}"


class GatewayRegistryArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    tags: dict[str, str]
    base_name: str
    name_suffix: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    identity_principal_id: pulumi.Input[str]
    """The app's user-assigned identity's principal (object) ID: AcrPull's assignee."""
    image_digest: str
    """`gatewayImageDigest`: `sha256:<64 hex>`, or empty (a preview's placeholder; `pulumi up` refuses it)."""
    role_wait_seconds: NotRequired[int]
    """How long the app waits for AcrPull to apply (the documented bound, 600, unless set)."""


class GatewayRegistry(pulumi.ComponentResource):
    registry: containerregistry.Registry
    login_server: pulumi.Output[str]
    """`<name>.azurecr.io` (or the sovereign cloud's suffix), as Azure answers it."""
    image: pulumi.Output[str]
    """The gateway image by digest: `<login server>/postgres-mcp-gateway@sha256:<hex>`."""
    acr_pull: authorization.RoleAssignment
    pull_ready: list[pulumi.Resource]
    """What the Container App waits for before its first revision: AcrPull and its propagation wait."""

    def __init__(self, name: str, args: GatewayRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base_name = args["base_name"]

        self.registry = containerregistry.Registry(
            name,
            registry_name=pulumi.Output.from_input(args["name_suffix"]).apply(
                lambda suffix: registry_name(base_name, suffix)
            ),
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            sku=containerregistry.SkuArgs(name=containerregistry.SkuName.BASIC),
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            public_network_access=containerregistry.PublicNetworkAccess.ENABLED,
            tags=args["tags"],
            opts=child,
        )
        self.login_server = self.registry.login_server

        self.acr_pull = assign_role(
            f"{name}-acr-pull",
            scope=self.registry.id,
            principal_id=args["identity_principal_id"],
            subscription_id=args["subscription_id"],
            role=ACR_PULL,
            description="The MCP app pulls the sign-in gateway's image",
            opts=child,
        )
        wait = wait_for_role(
            f"{name}-acr-pull", self.acr_pull, args.get("role_wait_seconds", DOCUMENTED_PROPAGATION_SECONDS), self
        )
        self.pull_ready = [self.acr_pull, wait]

        digest = args["image_digest"]
        self.image = self.login_server.apply(lambda server: image_reference(server, digest))
        self.register_outputs({"login_server": self.login_server, "image": self.image})

    def registry_credentials(self, identity_id: pulumi.Input[str]) -> app.RegistryCredentialsArgs:
        """The Container App's `configuration.registries` entry: pull from this registry with the user-assigned
        identity (its resource ID), no username and no password."""
        return app.RegistryCredentialsArgs(server=self.login_server, identity=identity_id)


# Azure Container Registry login servers per cloud: `<name>.azurecr.io`, `.azurecr.us` (US Government),
# `.azurecr.cn` (China): the Azure CLI's cloud suffixes `acr_login_server_endpoint` (Azure/azure-cli,
# src/azure-cli-core/azure/cli/core/cloud.py), as Microsoft Learn's sovereign cloud pages list them.
ACR_LOGIN_SERVER_SUFFIXES = (".azurecr.io", ".azurecr.us", ".azurecr.cn")


def prebuilt_registry_credentials(image: str, identity_id: pulumi.Input[str]) -> app.RegistryCredentialsArgs | None:
    """A prebuilt `gatewayImage` in an Azure Container Registry: pull it with the app's user-assigned identity (an
    administrator grants that identity AcrPull there; the stack assigns nothing outside its own resources). Any other
    registry is pulled anonymously (None: no `registries` entry)."""
    host = image.split("/", 1)[0].lower()
    if "/" not in image or not host.split(":", 1)[0].endswith(ACR_LOGIN_SERVER_SUFFIXES):
        return None
    return app.RegistryCredentialsArgs(server=host, identity=identity_id)
