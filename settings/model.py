"""Every config key of the project, declared once: name, type, default, what it accepts and what it means.

`Settings` is the stack's configuration, validated and frozen. Each field's alias is the key's name in
Pulumi config; the `config:` block of Pulumi.yaml and docs/configuration.md are generated from these fields
(`python tools/sync_config_docs.py`; a test holds them equal). Defaults are validated like any value.

A rule across keys is a validator on the key it reports, reading keys declared before it from `info.data`,
where only the keys that validated appear: one run reports every bad key. A rule that reads another key's
value stays silent when that value is refused (its own error says enough); one that asks only whether a key
is set asks its text (`_is_set`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import pulumi
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from components.database_owners import validate_owner_roles
from settings.types import (
    GUID,
    PRIVATE_RANGES,
    RFC1918,
    Accepts,
    AzureLocation,
    Boolean,
    Email,
    EnvironmentId,
    FlexibleServerId,
    Ipv4Range,
    MaintenanceWindow,
    MaintenanceWindowSpec,
    PostgresIdentifier,
    PrincipalType,
    PublicIpv4,
    ResourceId,
    SchemaName,
    WholeNumber,
    WorkspaceId,
    is_public_ipv4,
    list_of,
    matching,
    not_accepted,
    rule_broken,
    unique,
    whole_number,
)

PROJECT = "postgres-mcp-azure"


class ConfigError(pulumi.RunError):
    """One or more config values are invalid; the message names each key.

    A RunError: Pulumi ends the run with the message alone, without a Python traceback.
    """


AuthMode = Literal["token", "password"]
PostgresVersion = Literal["14", "15", "16", "17"]
POSTGRES_VERSIONS: tuple[str, ...] = get_args(PostgresVersion)
SkuTier = Literal["Burstable", "GeneralPurpose", "MemoryOptimized"]
SKU_SIZES: dict[str, tuple[re.Pattern[str], str]] = {
    # tier -> (SKU names it accepts, examples for the error message)
    "Burstable": (re.compile(r"Standard_B\d+m?s"), "Standard_B1ms, Standard_B2s, Standard_B2ms"),
    "GeneralPurpose": (
        re.compile(r"Standard_D\d+a?d?s_v[345]"),
        "Standard_D2s_v3, Standard_D2ds_v5, Standard_D4ads_v5",
    ),
    "MemoryOptimized": (
        re.compile(r"Standard_E\d+a?d?s_v[345]"),
        "Standard_E2s_v3, Standard_E2ds_v5, Standard_E4ads_v5",
    ),
}
StorageSize = Literal[32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767]
HighAvailability = Literal["Disabled", "ZoneRedundant", "SameZone"]
PrivilegeLevel = Literal["read_only", "read_write"]
AccessMode = Literal["restricted", "unrestricted"]
SignIn = Literal["gateway", "easyAuth", "none"]
GatewayCredential = Literal["federated", "secret"]
AzureCloudName = Literal["", "AzureCloud", "AzureUSGovernment", "AzureChinaCloud"]  # azure_cloud/clouds.py CLOUD_NAMES
# The widest deployer range admitted: a /16 is 65,536 addresses.
WIDEST_DEPLOYER_PREFIX = 16
DeployerRange = Annotated[
    Ipv4Range,
    Accepts(
        f"a range no wider than /{WIDEST_DEPLOYER_PREFIX}; the server must never be open to the internet",
        check=lambda v: v.prefixlen >= WIDEST_DEPLOYER_PREFIX,
    ),
]
ClientRange = Annotated[
    Ipv4Range,
    Accepts(
        "a range narrower than the whole internet (for that, allowAnonymousPublicAccess is the explicit opt-in)",
        check=lambda v: v.prefixlen > 0,
    ),
]
ClientId = Annotated[str, matching(GUID, "client IDs (GUIDs)")]
# An image reference that names a tag other than "latest", or a digest.
IMAGE = re.compile(
    r"(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::\d+/[a-z0-9]+(?:[._/-][a-z0-9]+)*)?)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)


def _pinned(image: str) -> bool:
    match = IMAGE.fullmatch(image)
    return match is not None and (bool(match.group("digest")) or match.group("tag") not in (None, "latest"))


@dataclass(frozen=True)
class EntraAdmin:
    """The server's Entra administrator. A None field is taken from the deploying principal
    (`settings.deployer.complete_entra_admin`)."""

    object_id: str | None
    principal_name: str | None
    principal_type: PrincipalType | None

    @property
    def complete(self) -> bool:
        return None not in (self.object_id, self.principal_name, self.principal_type)


GIVEN = "given"
"""The validation context's names of the keys given a non-empty text (see `_is_set`)."""


def stack_base_name(name_prefix: str, stack: str) -> str:
    """`<prefix>-<stack>`, lowercased and trimmed to fit Azure's name rules (`Settings.base_name`; also what
    tools/gateway_image.py names a stack's resources by, without the rest of its config)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-") or "stack"
    return f"{name_prefix}-{cleaned}"[:30].rstrip("-")


def _by_digest(image: str) -> bool:
    return not image or re.fullmatch(r"[a-z0-9.\-]+(?::[0-9]+)?/[a-z0-9._/\-]+@sha256:[0-9a-f]{64}", image) is not None


def _is_set(info: ValidationInfo, name: str) -> bool:
    """Whether a key declared earlier is set: by its value or, when that is refused, by its text. A rule that
    asks whether another key is set then speaks in the same run as that key's own error."""
    if name in info.data:
        return bool(info.data[name])
    return name in (info.context or {}).get(GIVEN, ())


class Settings(BaseModel):
    """The stack's configuration: every project key, validated, frozen."""

    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True, validate_default=True)

    _stack: str = PrivateAttr("")

    auth_mode: AuthMode = Field(
        "token",
        description="How postgres-mcp signs in to PostgreSQL: `token` (Entra ID access tokens kept fresh by the "
        "token-refresher sidecar; password auth off on the server) or `password` (a generated password, delivered "
        "as a Key Vault reference).",
    )
    location: AzureLocation = Field("westeurope", description="Azure region of every resource.")
    azure_cloud: AzureCloudName = Field(
        "",
        description="The Azure cloud the stack lives in, by Azure CLI's name (`az cloud show --query name`): "
        "AzureCloud, AzureUSGovernment or AzureChinaCloud. Empty: the cloud azure-native deploys to "
        "(`azure-native:environment`, else ARM_ENVIRONMENT; public when neither is set). When set, azure-native's "
        "cloud must be the same or the run stops. It chooses the PostgreSQL token audience, the Entra authority "
        "and the Resource Manager endpoint (see docs/deploy.md, Sovereign clouds).",
    )
    name_prefix: Annotated[
        str, matching(r"[a-z][a-z0-9]{1,9}", "2-10 lowercase letters or digits starting with a letter")
    ] = Field("pgmcp", description="Prefix of resource names.")
    owner: Annotated[
        str,
        Accepts(
            "1-256 characters without <>%&\\?/",
            check=lambda v: 0 < len(v) <= 256 and not re.search(r"[<>%&\\?/]", v),
        ),
    ] = Field("platform-team", description="Value of the `owner` tag on every resource.")
    postgres_version: PostgresVersion = Field("17", description="PostgreSQL major version of the Flexible Server.")
    allow_major_version_upgrade: Boolean = Field(
        False,
        description="Let a `postgresVersion` above the one the stack's server runs (recorded in the output "
        "`serverCreateOnly`) upgrade it in place: an offline operation of usually under 15 minutes, with no way "
        "back but a point-in-time restore. Without it such a change stops at preview; a lower version is always "
        "refused (see docs/upgrades-and-records.md).",
    )
    sku_tier: SkuTier = Field("Burstable", description="Flexible Server compute tier.")
    sku_name: Annotated[str, matching(r"Standard_[A-Za-z0-9_]+", "a Flexible Server SKU name")] = Field(
        "Standard_B1ms",
        description="Flexible Server compute size; must belong to `skuTier` (`Standard_B*` for Burstable, "
        "`Standard_D*s_v3/v4/v5` for GeneralPurpose, `Standard_E*s_v3/v4/v5` for MemoryOptimized).",
    )
    storage_size_gb: Annotated[StorageSize, whole_number] = Field(32, description="Server storage in GiB.")
    backup_retention_days: WholeNumber = Field(7, ge=7, le=35, description="Days of point-in-time backups.")
    geo_redundant_backup: Boolean = Field(
        False, description="Copy backups to the paired region (can only be chosen when the server is created)."
    )
    high_availability: HighAvailability = Field(
        "Disabled", description="Standby server (not available on the Burstable tier)."
    )
    maintenance_window: MaintenanceWindowSpec = Field(
        MaintenanceWindow(day_of_week=0, start_hour=2, start_minute=0),
        description="When Azure may patch the server (a restart, and a failover with a standby): the start of a "
        "one-hour custom window, or a window Azure picks.",
    )
    database_name: PostgresIdentifier = Field("app", description="The application database postgres-mcp connects to.")
    app_role_name: PostgresIdentifier = Field("postgres_mcp", description="The database role postgres-mcp signs in as.")
    manage_database_access: Boolean = Field(
        True,
        description="Create the app's role and grants from `pulumi up` (a dynamic provider that signs in to the "
        "server as its administrator; the machine running pulumi must be admitted by `deployerCidrs`).",
    )
    privilege_level: PrivilegeLevel = Field(
        "read_only",
        description="The app role's privileges on `grantSchemas`: read_only (SELECT) or read_write (SELECT, INSERT, "
        "UPDATE, DELETE; for postgres-mcp's unrestricted access mode).",
    )
    grant_schemas: Annotated[
        tuple[SchemaName, ...],
        list_of("schema names"),
        Accepts("at least one schema name", check=len),
        unique("schema"),
    ] = Field(("public",), description="Schemas of the application database the app role may use.")
    grant_on_objects_owned_by: Annotated[
        tuple[str, ...],
        list_of("role names"),
        Accepts(
            "distinct role names exactly as \\du lists them (1-63 bytes; not PUBLIC, NONE, CURRENT_USER, "
            "SESSION_USER, CURRENT_ROLE or a pg_* role)",
            check=lambda names: not validate_owner_roles(list(names)),
        ),
    ] = Field(
        (),
        description="Roles that own tables, sequences and schemas in `grantSchemas` (the application's owner role, "
        "a migration tool's role): the role/grant step grants on their objects and sets their default privileges "
        "by acting as each of them (`SET ROLE`), so tables they create later are readable at once. The server "
        "administrator needs the right to act for each (see docs/database-owners.md); empty grants only on the "
        "administrator's own objects.",
    )
    entra_admin_object_id: Annotated[
        str, matching(GUID, "empty (the deploying principal) or an object ID (a GUID)", empty=True)
    ] = Field(
        "",
        description="Object ID of the server's Entra administrator; empty means the deploying principal (the `oid` "
        "claim of its Azure token).",
    )
    entra_admin_principal_name: Annotated[
        str,
        Accepts(
            "empty or 1-63 characters without : or whitespace other than spaces",
            check=lambda v: len(v.encode()) <= 63 and not re.search(r"[:\t\r\n\x00]", v),
        ),
    ] = Field(
        "",
        description="Role name of the Entra administrator in PostgreSQL (its UPN or display name); required when "
        "`entraAdminObjectId` is set; empty takes the deployer's own: a user's UPN, an application's display name "
        "(`pulumi-deployer` when its token carries none).",
    )
    entra_admin_principal_type: Literal["", PrincipalType] = Field(
        "",
        description="Kind of the Entra administrator; required when `entraAdminObjectId` is set; empty takes the "
        "deployer's own (User for a signed-in user, ServicePrincipal for an application or managed identity).",
    )
    deployer_networks: Annotated[tuple[DeployerRange, ...], list_of("IPv4 addresses or CIDR ranges")] = Field(
        (),
        alias="deployerCidrs",
        description="IPv4 addresses or CIDR ranges admitted by the server firewall, for the deployer and operators.",
    )
    allow_azure_services: Boolean = Field(
        False,
        description="Explicit opt-in to the firewall rule that admits every Azure service (0.0.0.0-0.0.0.0); off "
        "because it admits other tenants' resources too.",
    )
    ci_runner_ip: Annotated[
        str, Accepts("empty or one public IPv4 address", check=lambda v: v == "" or is_public_ipv4(v))
    ] = Field(
        "",
        description="Set by the deploy pipeline for one run (never in a stack file): the runner's public IPv4 "
        "address, admitted by a 'ci-runner' firewall rule so that the role/grant step reaches the server, and by "
        "a 'ci-runner' ingress rule when allowedClientCidrs is set, so that the post-deploy verification can call "
        "list_tools; the pipeline removes both rules after the run.",
    )
    vnet_cidr: Annotated[
        Ipv4Range,
        Accepts(
            f"a private IPv4 range ({PRIVATE_RANGES}) from /8 to /24",
            check=lambda v: v.is_private and 8 <= v.prefixlen <= 24,
        ),
    ] = Field(
        ipaddress.IPv4Network("10.60.0.0/16"),
        description="Address space of the virtual network of the Container Apps environment.",
    )
    app_subnet_cidr: Annotated[
        Ipv4Range,
        Accepts(
            "a range from /21 to /27 (Container Apps workload profiles need at least a /27)",
            check=lambda v: 21 <= v.prefixlen <= 27,
        ),
    ] = Field(
        ipaddress.IPv4Network("10.60.0.0/23"),
        description="Subnet of the Container Apps environment, inside `vnetCidr`; its egress leaves through a NAT "
        "gateway with one static IP that the server firewall admits. A change of `ingressInternal` replaces the "
        "environment and needs a new, non-overlapping range here.",
    )
    zone_redundant: Boolean = Field(
        False,
        description="Spread the Container Apps environment over the region's availability zones and make the "
        "egress public IP zone-redundant. Egress is not: the Standard NAT gateway in front of the IP is zonal "
        '("no zone", in one zone Azure picks), so an outage of that zone stops the app\'s connections to the '
        "server. Chosen at creation: a change replaces the environment (and needs a new `appSubnetCidr`) and the "
        "egress IP (a new address, which the server firewall follows).",
    )
    ingress_internal: Boolean = Field(
        False,
        description="Serve the MCP endpoint only inside the virtual network: an internal Container Apps environment "
        "(no public address at all) and a private DNS zone for its domain, linked to the VNet.",
    )
    allowed_client_networks: Annotated[tuple[ClientRange, ...], list_of("IPv4 addresses or CIDR ranges")] = Field(
        (),
        alias="allowedClientCidrs",
        description="IPv4 addresses or CIDR ranges admitted by the MCP ingress (an allow-list; with "
        "`ingressInternal` also enforced by the apps subnet's network security group, which cannot lock down an "
        "external environment's inbound traffic); private ranges only with `ingressInternal`; empty admits any "
        "address, so Entra sign-in or internal ingress must then close the endpoint.",
    )
    sign_in: SignIn = Field(
        "gateway",
        description="How MCP clients sign in. `gateway`: a sign-in gateway in the app (FastMCP's OAuth proxy) serves "
        "the MCP authorization specification at `https://<app>/mcp` (Streamable HTTP); editors and agents sign in "
        "with Entra by themselves and the gateway refreshes their tokens (docs/sign-in.md). `easyAuth`: Container "
        "Apps authentication in front of postgres-mcp's SSE endpoint; clients paste an Entra token that lasts about "
        "an hour. `none`: no sign-in (the allow-list or internal ingress must close the endpoint).",
    )
    entra_auth_client_id: Annotated[
        str, matching(GUID, "empty or an app registration's client ID (a GUID)", empty=True)
    ] = Field(
        "",
        description="Client ID of the Entra app registration MCP clients sign in to. With `signIn: gateway`, empty "
        "lets the stack create the registration (pulumi-azuread; the deployer needs the right to create "
        "applications) and a GUID adopts one an administrator created (docs/sign-in.md lists what it must hold). "
        "Required with `easyAuth`; empty with `none`.",
    )
    entra_auth_allowed_client_ids: Annotated[tuple[ClientId, ...], list_of("client IDs (GUIDs)")] = Field(
        (),
        description="Client IDs of the applications (managed identities, service principals) allowed to call with a "
        "client-credentials token for the API's scope, without a browser. With `gateway`, empty admits no such "
        "agent (people still sign in); with `easyAuth`, empty allows any application that obtains a token.",
    )
    gateway_credential: GatewayCredential = Field(
        "federated",
        description="How the gateway proves itself to Entra when it redeems and refreshes sign-ins. `federated`: "
        "the app registration trusts the app's managed identity (a federated identity credential; no secret "
        "exists). `secret`: a client secret of an adopted registration (`gatewayClientSecret`), kept in Key Vault.",
    )
    gateway_client_secret: Annotated[SecretStr, Accepts("empty, or a secret (pulumi config set --secret)")] = Field(
        SecretStr(""),
        description="With `gatewayCredential: secret`: the adopted app registration's client secret; stored in Key "
        "Vault and given to the gateway as a Key Vault reference, never exported.",
    )
    gateway_image: Annotated[
        str,
        Accepts(
            "empty, or an image pinned by digest, such as myregistry.azurecr.io/gateway@sha256:<64 hex>",
            check=_by_digest,
        ),
    ] = Field(
        "",
        description="A prebuilt sign-in gateway image (from `gateway/Dockerfile`), pinned by digest. Empty: the "
        "stack declares a container registry and runs the image the deploy pipeline built and pushed there "
        "(`gatewayImageDigest`).",
    )
    gateway_image_digest: Annotated[
        str, matching(r"sha256:[0-9a-f]{64}", "empty or sha256:<64 lowercase hex digits>", empty=True)
    ] = Field(
        "",
        description="Digest of the gateway image in the stack's own registry, set by the deploy pipeline after it "
        "builds `gateway/Dockerfile` (docs/sign-in.md#the-gateway-image). A preview without it shows a placeholder "
        "and warns; `pulumi up` refuses without it or `gatewayImage`.",
    )
    replicas: WholeNumber = Field(
        1,
        ge=1,
        le=10,
        description="Replicas of the app. More than one needs `signIn: gateway` (its sessions are stateless and "
        "its sign-ins live in a shared store; postgres-mcp's own SSE sessions live in one process). With "
        "`zoneRedundant`, two or more spread over zones.",
    )
    allow_anonymous_public_access: Boolean = Field(
        False,
        description="DANGER: explicit opt-in to a public MCP endpoint that anyone on the internet can call without "
        "signing in (postgres-mcp has no authentication of its own). For throwaway demos only.",
    )
    mcp_image: Annotated[
        str,
        Accepts(
            "an image pinned by a tag other than latest, or by digest, such as docker.io/crystaldba/postgres-mcp:0.3.0",
            check=_pinned,
        ),
    ] = Field("docker.io/crystaldba/postgres-mcp:0.3.0", description="postgres-mcp container image.")
    mcp_access_mode: AccessMode = Field(
        "restricted", description="postgres-mcp access mode: restricted (read-only SQL) or unrestricted."
    )
    token_refresh_margin_seconds: WholeNumber = Field(
        900,
        ge=300,
        le=3600,
        description="Token mode: how long before a token's expiry the sidecar fetches the next one. With half of it "
        "left the sidecar reports unhealthy and the platform restarts it, minutes before the token expires.",
    )
    alert_emails: Annotated[tuple[Email, ...], list_of("e-mail addresses"), unique("address", fold=str.lower)] = Field(
        (),
        description="Token mode: e-mail addresses of the action group that the token alerts (token expired, "
        "refresher failing, refresher restarted) notify; empty creates the alert rules without an action group "
        "(visible in Azure Monitor, nobody notified).",
    )
    key_vault_purge_protection: Boolean = Field(
        False,
        description="Turn on Key Vault purge protection (irreversible: a deleted vault is kept for the whole "
        "retention period).",
    )
    key_vault_soft_delete_retention_days: WholeNumber = Field(
        90, ge=7, le=90, description="Days a deleted vault or secret can be recovered."
    )
    key_vault_role_wait_seconds: WholeNumber = Field(
        600,
        ge=0,
        le=1800,
        description="Password mode: seconds the app waits after its identity is given Key Vault Secrets User, "
        "before its first revision resolves the Key Vault reference (Azure: up to 10 minutes for a role "
        "assignment to apply). The wait runs alongside the server's creation and again only when the role "
        "assignment is replaced; 0 turns it off.",
    )
    protect_resources: Boolean = Field(
        False,
        description="Set Pulumi `protect` on the server and the vault (on an adopted server: on the database the "
        "stack created there) so that no `pulumi up` or `pulumi destroy` deletes them.",
    )
    log_retention_days: WholeNumber = Field(30, ge=30, le=730, description="Log Analytics retention in days.")
    existing_server: FlexibleServerId = Field(
        None,
        alias="existingServerId",
        description="Adopt an existing Flexible Server by its full resource ID instead of creating one: the program "
        "reads it before declaring anything, declares no server and never changes its server-wide settings; it adds "
        "only its own children (Entra administrator unless `entraAdminExists`, firewall rules named `<namePrefix>-"
        "<stack>-*`, a diagnostic setting, the app's role and grants). The server must have Entra authentication on, "
        "`require_secure_transport` on and PostgreSQL 14 to 17. The server-shaping keys (`postgresVersion`, `sku*`, "
        "`storageSizeGb`, backups, `highAvailability`, `maintenanceWindow`) are then ignored.",
    )
    adopted_server_password: Annotated[SecretStr, Accepts("empty, or a secret (pulumi config set --secret)")] = Field(
        SecretStr(""),
        alias="existingServerAdminPassword",
        description="Password mode on an adopted server: the password of that server's administrator login (read "
        "from the server); never stored in Key Vault or exported.",
    )
    existing_database: Boolean = Field(
        False,
        description="With `existingServerId`: `databaseName` already exists on the server; it is referenced, never "
        "created or dropped.",
    )
    release_created_database: Boolean = Field(
        False,
        description="With `existingServerId`: let go of the database this stack created on that server (recorded "
        "in `serverCreateOnly`) instead of deleting it. Run `pulumi up` once with it (the database is then kept "
        "in Azure when the stack stops declaring it), then change `existingServerId` or `databaseName`; without "
        "it such a change is refused (see docs/upgrades-and-records.md).",
    )
    entra_admin_exists: Boolean = Field(
        False,
        description="With `existingServerId`: the Entra administrator named by the `entraAdmin*` keys is already set "
        "on the server; the program does not declare it, so `pulumi destroy` cannot remove a shared administrator.",
    )
    existing_environment: EnvironmentId = Field(
        None,
        alias="existingEnvironmentId",
        description="Deploy the app into an existing Container Apps environment (full resource ID) instead of "
        "creating the network and an environment: only a workload profiles environment on a VNet, with a "
        "Consumption profile, in `location`, whose internal/external kind matches `ingressInternal`. The program "
        "never changes it; `vnetCidr`, `appSubnetCidr` and `zoneRedundant` are then ignored; the token alerts go "
        "to `alertWorkspaceId`, the workspace that receives the environment's logs.",
    )
    alert_workspace: WorkspaceId = Field(
        None,
        alias="alertWorkspaceId",
        description="Token mode with `existingEnvironmentId`: the Log Analytics workspace (full resource ID) that "
        "receives the existing environment's logs, where the token alerts are created. With the `log-analytics` "
        "logs destination it must be the workspace the environment names (its customer ID is checked); with "
        "`azure-monitor`, the workspace of the environment's diagnostic setting. Empty: no token alerts in an "
        "existing environment (a warning says so). Empty otherwise: the stack's own workspace holds the logs.",
    )
    app_egress_ips: Annotated[tuple[PublicIpv4, ...], list_of("public IPv4 addresses"), unique("address")] = Field(
        (),
        description="With `existingEnvironmentId`: the public IPv4 addresses the environment's traffic leaves from "
        "(its NAT gateway or firewall), admitted by the server firewall; required unless `allowAzureServices` is "
        "the explicit opt-in. Empty otherwise: the program's own NAT gateway gives the address.",
    )
    container_app_name: Annotated[
        str,
        matching(
            r"[a-z](?:-?[a-z0-9]){1,31}",
            "empty or 2-32 lowercase letters, digits and single hyphens, starting with a letter, not ending with a "
            "hyphen",
            empty=True,
        ),
    ] = Field("", description="Name of the Container App; empty means `<namePrefix>-<stack>-mcp`.")

    # --- rules across keys: each on the key it reports, reading keys declared before it ---------------------

    @field_validator("sku_name")
    @classmethod
    def _size_belongs_to_tier(cls, sku_name: str, info: ValidationInfo) -> str:
        tier = info.data.get("sku_tier")
        if tier is not None and not SKU_SIZES[tier][0].fullmatch(sku_name):
            raise not_accepted(f"a {tier} size such as {SKU_SIZES[tier][1]} (it must belong to skuTier '{tier}')")
        return sku_name

    @field_validator("high_availability")
    @classmethod
    def _no_standby_on_burstable(cls, mode: str, info: ValidationInfo) -> str:
        if mode != "Disabled" and info.data.get("sku_tier") == "Burstable":
            raise not_accepted(
                "Disabled on the Burstable tier (choose skuTier GeneralPurpose or MemoryOptimized for a standby)"
            )
        return mode

    @field_validator("entra_admin_principal_name")
    @classmethod
    def _admin_named_with_its_object_id(cls, name: str, info: ValidationInfo) -> str:
        if _is_set(info, "entra_admin_object_id") and not name:
            raise not_accepted("the administrator's UPN or display name whenever entraAdminObjectId is set")
        return name

    @field_validator("entra_admin_principal_type")
    @classmethod
    def _admin_typed_with_its_object_id(cls, principal_type: str, info: ValidationInfo) -> str:
        if _is_set(info, "entra_admin_object_id") and not principal_type:
            raise not_accepted("User, Group or ServicePrincipal whenever entraAdminObjectId is set")
        return principal_type

    @field_validator("app_subnet_cidr")
    @classmethod
    def _subnet_inside_vnet(cls, subnet: ipaddress.IPv4Network, info: ValidationInfo) -> ipaddress.IPv4Network:
        vnet = info.data.get("vnet_cidr")
        if vnet is not None and not subnet.subnet_of(vnet):
            raise not_accepted(f"a range inside vnetCidr {vnet}")
        return subnet

    @field_validator("allowed_client_networks")
    @classmethod
    def _internal_callers_are_private(
        cls, networks: tuple[ipaddress.IPv4Network, ...], info: ValidationInfo
    ) -> tuple[ipaddress.IPv4Network, ...]:
        # An internal environment has no public address: its IP restrictions take private ranges only
        # (Microsoft Learn, "Set up IP ingress restrictions"; PSRule Azure.ContainerApp.RestrictIngress).
        public = [str(n) for n in networks if not any(n.subnet_of(private) for private in RFC1918)]
        if info.data.get("ingress_internal") and public:
            raise not_accepted(
                f"private ranges ({PRIVATE_RANGES}) with ingressInternal: true, where callers come from the virtual "
                "network and what is peered or connected to it",
                public[0] if len(public) == 1 else public,
            )
        return networks

    @field_validator("grant_on_objects_owned_by")
    @classmethod
    def _owners_are_not_the_app_role(cls, owners: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        app_role = info.data.get("app_role_name")
        if app_role is not None and app_role in owners:
            raise not_accepted(f"role names other than appRoleName {app_role!r} (the app's role owns nothing)")
        return owners

    @field_validator("entra_auth_client_id")
    @classmethod
    def _client_id_for_the_sign_in(cls, client_id: str, info: ValidationInfo) -> str:
        sign_in = info.data.get("sign_in")
        if sign_in == "easyAuth" and not client_id:
            raise not_accepted(
                "an app registration's client ID with signIn 'easyAuth' (Container Apps authentication "
                "needs one; 'gateway' can create it)"
            )
        if sign_in == "none" and client_id:
            raise not_accepted(
                "empty with signIn 'none' (choose 'gateway' or 'easyAuth' to sign callers in)", client_id
            )
        return client_id

    @field_validator("entra_auth_allowed_client_ids")
    @classmethod
    def _client_ids_need_sign_in(cls, client_ids: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if client_ids and info.data.get("sign_in") == "none":
            raise not_accepted("an empty list with signIn 'none' (nobody signs in)", list(client_ids))
        return client_ids

    @field_validator("gateway_credential")
    @classmethod
    def _secret_of_an_adopted_registration(cls, credential: str, info: ValidationInfo) -> str:
        if credential == "secret" and info.data.get("sign_in") == "gateway" and "entra_auth_client_id" in info.data:
            if not info.data["entra_auth_client_id"]:
                raise not_accepted(
                    "federated when the stack creates the app registration (it trusts the app's identity; no secret "
                    "is needed), or secret with entraAuthClientId set to an adopted registration",
                    credential,
                )
        return credential

    @field_validator("gateway_client_secret")
    @classmethod
    def _secret_with_the_secret_credential(cls, secret: SecretStr, info: ValidationInfo) -> SecretStr:
        wanted = info.data.get("sign_in") == "gateway" and info.data.get("gateway_credential") == "secret"
        if wanted and not secret.get_secret_value():
            raise not_accepted(
                "the adopted registration's client secret with gatewayCredential 'secret': "
                "pulumi config set --secret gatewayClientSecret"
            )
        if secret.get_secret_value() and not wanted:
            raise not_accepted("empty unless signIn is 'gateway' and gatewayCredential is 'secret'")
        return secret

    @field_validator("gateway_image_digest")
    @classmethod
    def _one_gateway_image(cls, digest: str, info: ValidationInfo) -> str:
        if digest and info.data.get("gateway_image"):
            raise not_accepted("empty when gatewayImage names a prebuilt image (one image source, not two)", digest)
        return digest

    @field_validator("replicas")
    @classmethod
    def _replicas_need_the_gateway(cls, replicas: int, info: ValidationInfo) -> int:
        sign_in = info.data.get("sign_in")
        if replicas > 1 and sign_in is not None and sign_in != "gateway":
            raise not_accepted(
                f"1 with signIn {sign_in!r}: clients hold SSE sessions in one postgres-mcp process, which a second "
                "replica would break (signIn 'gateway' serves stateless Streamable HTTP)",
                replicas,
            )
        return replicas

    @field_validator("allow_anonymous_public_access")
    @classmethod
    def _endpoint_closed_or_explicitly_open(cls, opted_in: bool, info: ValidationInfo) -> bool:
        closers = ("ingress_internal", "allowed_client_networks", "sign_in")
        if opted_in or not all(key in info.data for key in closers):
            return opted_in  # a closing key that is itself invalid is reported as such
        if not (
            info.data["ingress_internal"] or info.data["allowed_client_networks"] or info.data["sign_in"] != "none"
        ):
            raise rule_broken(
                "the MCP endpoint would be public and anonymous (postgres-mcp has no authentication of its own); "
                "expected at least one of: config key 'signIn' 'gateway' or 'easyAuth' (Entra sign-in), "
                "'allowedClientCidrs' (an IP allow-list), 'ingressInternal: true' (no public endpoint), or the "
                "explicit opt-in 'allowAnonymousPublicAccess: true'"
            )
        return opted_in

    @field_validator("adopted_server_password")
    @classmethod
    def _password_of_an_adopted_server(cls, password: SecretStr, info: ValidationInfo) -> SecretStr:
        adopting = _is_set(info, "existing_server")
        if password.get_secret_value() and not adopting:
            raise not_accepted("empty unless existingServerId is set")
        if adopting and info.data.get("auth_mode") == "password" and not password.get_secret_value():
            raise not_accepted(
                "the adopted server's administrator password with authMode 'password' (the role/grant step signs in "
                "with it): pulumi config set --secret existingServerAdminPassword"
            )
        return password

    @field_validator("existing_database")
    @classmethod
    def _existing_database_on_an_adopted_server(cls, existing: bool, info: ValidationInfo) -> bool:
        if existing and not _is_set(info, "existing_server"):
            raise not_accepted("false unless existingServerId is set (a new server has no database)", existing)
        return existing

    @field_validator("entra_admin_exists")
    @classmethod
    def _existing_admin_on_an_adopted_server(cls, existing: bool, info: ValidationInfo) -> bool:
        if existing and not _is_set(info, "existing_server"):
            raise not_accepted("false unless existingServerId is set (a new server has no admin)", existing)
        return existing

    @field_validator("alert_workspace")
    @classmethod
    def _alerts_of_an_existing_environment(
        cls, workspace: ResourceId | None, info: ValidationInfo
    ) -> ResourceId | None:
        if workspace is not None and not _is_set(info, "existing_environment"):
            raise not_accepted(
                "empty unless existingEnvironmentId is set (the stack's own environment logs to the stack's workspace)",
                workspace.id,
            )
        return workspace

    @field_validator("app_egress_ips")
    @classmethod
    def _egress_of_an_existing_environment(
        cls, addresses: tuple[ipaddress.IPv4Address, ...], info: ValidationInfo
    ) -> tuple[ipaddress.IPv4Address, ...]:
        given = [str(a) for a in addresses]
        environment_set = _is_set(info, "existing_environment")
        if addresses and not environment_set:
            raise not_accepted(
                "an empty list unless existingEnvironmentId is set (the program's NAT gateway gives the app's address)",
                given,
            )
        if environment_set and not addresses and info.data.get("allow_azure_services") is False:
            raise not_accepted(
                "the public addresses the existing environment's traffic leaves from, for the server firewall (a "
                "Consumption environment's outbound addresses change without notice), or the explicit opt-in "
                "allowAzureServices: true",
                given,
            )
        return addresses

    # --- what the program reads besides the keys -------------------------------------------------------------

    def for_stack(self, stack: str) -> Settings:
        """These settings for the named stack (`stack` is not a key: Pulumi names it)."""
        settings = self.model_copy()
        settings._stack = stack
        return settings

    @property
    def stack(self) -> str:
        return self._stack

    @property
    def entra_admin(self) -> EntraAdmin:
        """Empty keys are None; `settings.deployer.complete_entra_admin` fills them from the deployer."""
        return EntraAdmin(
            object_id=self.entra_admin_object_id or None,
            principal_name=self.entra_admin_principal_name or None,
            principal_type=self.entra_admin_principal_type or None,
        )

    def with_entra_admin(self, admin: EntraAdmin) -> Settings:
        return self.model_copy(
            update={
                "entra_admin_object_id": admin.object_id or "",
                "entra_admin_principal_name": admin.principal_name or "",
                "entra_admin_principal_type": admin.principal_type or "",
            }
        )

    @property
    def gateway_client_secret_value(self) -> str:
        """Verbatim: never stripped, never shown."""
        return self.gateway_client_secret.get_secret_value()

    @property
    def existing_server_admin_password(self) -> str:
        """Verbatim: never stripped, never shown."""
        return self.adopted_server_password.get_secret_value()

    @property
    def app_name(self) -> str:
        return self.container_app_name or f"{self.base_name}-mcp"[:32].rstrip("-")

    @property
    def base_name(self) -> str:
        """`<prefix>-<stack>`, lowercased and trimmed to fit Azure's name rules."""
        return stack_base_name(self.name_prefix, self.stack)

    @property
    def admission(self) -> str:
        """How MCP clients are admitted, for outputs and docs: e.g. `entra+allow-list`, `internal`."""
        modes = [
            name
            for name, on in (
                ("internal", self.ingress_internal),
                ("entra-gateway", self.sign_in == "gateway"),
                ("entra", self.sign_in == "easyAuth"),
                ("allow-list", bool(self.allowed_client_networks)),
            )
            if on
        ]
        return "+".join(modes) or "anonymous-public"

    @property
    def mcp_client_sources(self) -> tuple[str, ...]:
        """Where MCP clients call from, for the apps subnet's security group (an allow-list, or the whole scope)."""
        if self.allowed_client_networks:
            return tuple(str(network) for network in self.allowed_client_networks)
        return ("VirtualNetwork",) if self.ingress_internal else ("Internet",)

    @property
    def tags(self) -> dict[str, str]:
        return {
            "environment": self.stack,
            "owner": self.owner,
            "application": "postgres-mcp",
            "managed-by": "pulumi",
        }


__all__ = [
    "POSTGRES_VERSIONS",
    "PROJECT",
    "ConfigError",
    "EntraAdmin",
    "MaintenanceWindow",
    "ResourceId",
    "Settings",
]
