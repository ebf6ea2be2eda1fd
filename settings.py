"""Stack configuration: read once, validated once, frozen.

Every project key is declared here with its default, the values it accepts and what
it means; `Pulumi.yaml` declares the same keys with the same defaults (a test keeps
the two and the README in step). Every other module receives a `Settings` object,
never `pulumi.Config()`.

Validation runs before any resource is declared and reports every bad key at once:
each message names the key, the value given and what would be accepted.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi

PROJECT = "postgres-mcp-azure"

AuthMode = Literal["token", "password"]
PrincipalType = Literal["User", "Group", "ServicePrincipal"]

POSTGRES_VERSIONS = ("14", "15", "16", "17")
SKU_TIERS: dict[str, tuple[re.Pattern[str], str]] = {
    # tier -> (SKU names it accepts, examples for the error message)
    "Burstable": (re.compile(r"^Standard_B\d+m?s$"), "Standard_B1ms, Standard_B2s, Standard_B2ms"),
    "GeneralPurpose": (
        re.compile(r"^Standard_D\d+a?d?s_v[345]$"),
        "Standard_D2s_v3, Standard_D2ds_v5, Standard_D4ads_v5",
    ),
    "MemoryOptimized": (
        re.compile(r"^Standard_E\d+a?d?s_v[345]$"),
        "Standard_E2s_v3, Standard_E2ds_v5, Standard_E4ads_v5",
    ),
}
STORAGE_SIZES_GB = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767)
HIGH_AVAILABILITY_MODES = ("Disabled", "ZoneRedundant", "SameZone")
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal")
ACCESS_MODES = ("restricted", "unrestricted")
PRIVILEGE_LEVELS = ("read_only", "read_write")
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
# Narrowest deployer range we refuse to widen past: a /16 is 65,536 addresses.
WIDEST_DEPLOYER_PREFIX = 16
RESERVED_ROLE_NAMES = frozenset(
    {
        "postgres",
        "public",
        "azure_superuser",
        "azure_pg_admin",
        "azuresu",
        "replication",
        "template0",
        "template1",
        "azure_maintenance",
        "azure_sys",
    }
)
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LOCATION = re.compile(r"^[a-z][a-z0-9]{2,30}$")
NAME_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,9}$")
EMAIL = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# An image reference that names a tag other than "latest", or a digest.
IMAGE = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::\d+/[a-z0-9]+(?:[._/-][a-z0-9]+)*)?)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


class ConfigError(pulumi.RunError):
    """One or more config values are invalid; the message names each key.

    A RunError: Pulumi ends the run with the message alone, without a Python traceback.
    """


@dataclass(frozen=True)
class Key:
    """A project config key: its type in Pulumi.yaml, its default and its meaning."""

    name: str
    type: Literal["string", "integer", "boolean", "array"]
    default: Any
    description: str


KEYS: tuple[Key, ...] = (
    Key(
        "authMode",
        "string",
        "token",
        "How postgres-mcp signs in to PostgreSQL: `token` (Entra ID access tokens kept fresh "
        "by the token-refresher sidecar; password auth off on the server) or `password` "
        "(a generated password, delivered as a Key Vault reference).",
    ),
    Key("location", "string", "westeurope", "Azure region of every resource."),
    Key(
        "namePrefix",
        "string",
        "pgmcp",
        "Prefix of resource names: 2-10 lowercase letters or digits, starting with a letter.",
    ),
    Key("owner", "string", "platform-team", "Value of the `owner` tag on every resource."),
    Key("postgresVersion", "string", "17", "PostgreSQL major version of the Flexible Server: 14, 15, 16 or 17."),
    Key(
        "skuTier", "string", "Burstable", "Flexible Server compute tier: Burstable, GeneralPurpose or MemoryOptimized."
    ),
    Key(
        "skuName",
        "string",
        "Standard_B1ms",
        "Flexible Server compute size; must belong to `skuTier` (Standard_B* for Burstable, "
        "Standard_D*s_v3/v4/v5 for GeneralPurpose, Standard_E*s_v3/v4/v5 for MemoryOptimized).",
    ),
    Key(
        "storageSizeGb",
        "integer",
        32,
        "Server storage in GiB: 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384 or 32767.",
    ),
    Key("backupRetentionDays", "integer", 7, "Days of point-in-time backups: 7 to 35."),
    Key(
        "geoRedundantBackup",
        "boolean",
        False,
        "Copy backups to the paired region (can only be chosen when the server is created).",
    ),
    Key(
        "highAvailability",
        "string",
        "Disabled",
        "Standby server: Disabled, ZoneRedundant or SameZone (not available on Burstable).",
    ),
    Key(
        "maintenanceWindow",
        "string",
        "Sun 02:00",
        "When Azure may patch the server (a restart, and a failover with a standby): `<Mon..Sun> <HH:MM>` "
        "UTC, the start of a one-hour custom window, or `system` for a window Azure picks.",
    ),
    Key(
        "databaseName",
        "string",
        "app",
        "The application database postgres-mcp connects to: a lowercase PostgreSQL identifier.",
    ),
    Key(
        "appRoleName",
        "string",
        "postgres_mcp",
        "The database role postgres-mcp signs in as: a lowercase PostgreSQL identifier.",
    ),
    Key(
        "manageDatabaseAccess",
        "boolean",
        True,
        "Create the app's role and grants from `pulumi up` (a dynamic provider that signs in to the server as "
        "its administrator; the machine running pulumi must be admitted by `deployerCidrs`).",
    ),
    Key(
        "privilegeLevel",
        "string",
        "read_only",
        "The app role's privileges on `grantSchemas`: read_only (SELECT) or read_write (SELECT, INSERT, UPDATE, "
        "DELETE; for postgres-mcp's unrestricted access mode).",
    ),
    Key(
        "grantSchemas",
        "array",
        ["public"],
        "Schemas of the application database the app role may use (lowercase PostgreSQL identifiers).",
    ),
    Key(
        "entraAdminObjectId",
        "string",
        "",
        "Object ID of the server's Entra administrator; empty means the deploying principal (the `oid` "
        "claim of its Azure token).",
    ),
    Key(
        "entraAdminPrincipalName",
        "string",
        "",
        "Role name of the Entra administrator in PostgreSQL (its UPN or display name); required when "
        "`entraAdminObjectId` is set; empty takes the deployer's own: a user's UPN, an application's "
        "display name (`pulumi-deployer` when its token carries none).",
    ),
    Key(
        "entraAdminPrincipalType",
        "string",
        "",
        "Kind of the Entra administrator: User, Group or ServicePrincipal; required when "
        "`entraAdminObjectId` is set; empty takes the deployer's own (User for a signed-in user, "
        "ServicePrincipal for an application or managed identity).",
    ),
    Key(
        "deployerCidrs",
        "array",
        [],
        "IPv4 addresses or CIDR ranges (no wider than /16) admitted by the server firewall, "
        "for the deployer and operators.",
    ),
    Key(
        "allowAzureServices",
        "boolean",
        False,
        "Explicit opt-in to the firewall rule that admits every Azure service "
        "(0.0.0.0-0.0.0.0); off because it admits other tenants' resources too.",
    ),
    Key(
        "ciRunnerIp",
        "string",
        "",
        "Set by the deploy pipeline for one run (never in a stack file): the runner's public IPv4 address, "
        "admitted by a 'ci-runner' firewall rule so that the role/grant step reaches the server; the "
        "pipeline removes the rule after the run.",
    ),
    Key(
        "vnetCidr", "string", "10.60.0.0/16", "Address space of the virtual network of the Container Apps environment."
    ),
    Key(
        "appSubnetCidr",
        "string",
        "10.60.0.0/23",
        "Subnet of the Container Apps environment, inside `vnetCidr`, /21 to /27; its egress "
        "leaves through a NAT gateway with one static IP that the server firewall admits. A change of "
        "`ingressInternal` replaces the environment and needs a new, non-overlapping range here.",
    ),
    Key(
        "zoneRedundant",
        "boolean",
        False,
        "Spread the Container Apps environment and the egress public IP over the region's availability "
        "zones. Chosen at creation: a change replaces the environment (and needs a new `appSubnetCidr`) "
        "and the egress IP (a new address, which the server firewall follows).",
    ),
    Key(
        "ingressInternal",
        "boolean",
        False,
        "Serve the MCP endpoint only inside the virtual network: an internal Container Apps environment "
        "(no public address at all) and a private DNS zone for its domain, linked to the VNet.",
    ),
    Key(
        "allowedClientCidrs",
        "array",
        [],
        "IPv4 addresses or CIDR ranges admitted by the MCP ingress (an allow-list, also enforced by the apps "
        "subnet's network security group); private ranges only with `ingressInternal`; empty admits any "
        "address, so Entra sign-in or internal ingress must then close the endpoint.",
    ),
    Key(
        "entraAuthClientId",
        "string",
        "",
        "Client ID of the Entra app registration MCP clients get tokens for; when set, the Container App "
        "answers 401 to any caller without a valid token for it.",
    ),
    Key(
        "entraAuthAllowedClientIds",
        "array",
        [],
        "With Entra sign-in: client IDs of the applications allowed to call; empty allows any application "
        "that obtains a token for the app registration.",
    ),
    Key(
        "allowAnonymousPublicAccess",
        "boolean",
        False,
        "DANGER: explicit opt-in to a public MCP endpoint that anyone on the internet can call without "
        "signing in (postgres-mcp has no authentication of its own). For throwaway demos only.",
    ),
    Key(
        "mcpImage",
        "string",
        "docker.io/crystaldba/postgres-mcp:0.3.0",
        "postgres-mcp container image, pinned by tag (not `latest`) or by digest.",
    ),
    Key(
        "mcpAccessMode", "string", "restricted", "postgres-mcp access mode: restricted (read-only SQL) or unrestricted."
    ),
    Key(
        "tokenRefreshMarginSeconds",
        "integer",
        900,
        "Token mode: how long before a token's expiry the sidecar fetches the next one (300 to 3600). With half of "
        "it left the sidecar reports unhealthy and the platform restarts it, minutes before the token expires.",
    ),
    Key(
        "alertEmails",
        "array",
        [],
        "Token mode: e-mail addresses of the action group that the token alerts (token expired, refresher failing, "
        "refresher restarted) notify; empty creates the alert rules without an action group (visible in Azure "
        "Monitor, nobody notified).",
    ),
    Key(
        "keyVaultPurgeProtection",
        "boolean",
        False,
        "Turn on Key Vault purge protection (irreversible: a deleted vault is kept for the whole retention period).",
    ),
    Key("keyVaultSoftDeleteRetentionDays", "integer", 90, "Days a deleted vault or secret can be recovered: 7 to 90."),
    Key(
        "protectResources",
        "boolean",
        False,
        "Set Pulumi `protect` on the server and the vault (on an adopted server: on the database the stack created "
        "there) so that no `pulumi up` or `pulumi destroy` deletes them.",
    ),
    Key("logRetentionDays", "integer", 30, "Log Analytics retention in days: 30 to 730."),
    Key(
        "existingServerId",
        "string",
        "",
        "Adopt an existing Flexible Server by its full resource ID instead of creating one: the program reads it "
        "before declaring anything, declares no server and never changes its server-wide settings; it adds only "
        "its own children (Entra administrator unless `entraAdminExists`, firewall rules named `<namePrefix>-"
        "<stack>-*`, a diagnostic setting, the app's role and grants). The server must have Entra authentication "
        "on, `require_secure_transport` on and PostgreSQL 14 to 17. The server-shaping keys (`postgresVersion`, "
        "`sku*`, `storageSizeGb`, backups, `highAvailability`, `maintenanceWindow`) are then ignored.",
    ),
    Key(
        "existingServerAdminPassword",
        "string",
        "",
        "Password mode on an adopted server: the password of that server's administrator login (read from the "
        "server), set with `pulumi config set --secret`; never stored in Key Vault or exported.",
    ),
    Key(
        "existingDatabase",
        "boolean",
        False,
        "With `existingServerId`: `databaseName` already exists on the server; it is referenced, never created or "
        "dropped.",
    ),
    Key(
        "entraAdminExists",
        "boolean",
        False,
        "With `existingServerId`: the Entra administrator named by the `entraAdmin*` keys is already set on the "
        "server; the program does not declare it, so `pulumi destroy` cannot remove a shared administrator.",
    ),
    Key(
        "existingEnvironmentId",
        "string",
        "",
        "Deploy the app into an existing Container Apps environment (full resource ID) instead of creating the "
        "network and an environment: only a workload profiles environment on a VNet, with a Consumption profile, "
        "in `location`, whose internal/external kind matches `ingressInternal`. The program never changes it; "
        "`vnetCidr`, `appSubnetCidr` and `zoneRedundant` are then ignored, and no token alerts are created (the "
        "app's logs go to the environment's workspace).",
    ),
    Key(
        "appEgressIps",
        "array",
        [],
        "With `existingEnvironmentId`: the public IPv4 addresses the environment's traffic leaves from (its NAT "
        "gateway or firewall), admitted by the server firewall; required unless `allowAzureServices` is the "
        "explicit opt-in. Empty otherwise: the program's own NAT gateway gives the address.",
    ),
    Key(
        "containerAppName",
        "string",
        "",
        "Name of the Container App: 2-32 lowercase letters, digits and single hyphens, starting with a letter; "
        "empty means `<namePrefix>-<stack>-mcp`.",
    ),
)
DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS}


WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # Flexible Server's dayOfWeek: 0 is Sunday
MAINTENANCE_WINDOW = re.compile(r"^(?P<day>[A-Z][a-z]{2}) (?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)$")


@dataclass(frozen=True)
class MaintenanceWindow:
    """A one-hour custom maintenance window of the server, in UTC."""

    day_of_week: int
    """0 is Sunday, as Flexible Server counts."""
    start_hour: int
    start_minute: int


def _maintenance_window(value: str) -> MaintenanceWindow | None:
    match = MAINTENANCE_WINDOW.match(value)
    if not match or match.group("day") not in WEEKDAYS:
        raise ValueError(value)
    return MaintenanceWindow(WEEKDAYS.index(match.group("day")), int(match.group("hour")), int(match.group("minute")))


@dataclass(frozen=True)
class EntraAdmin:
    """The server's Entra administrator. A None field is taken from the deploying principal
    (`with_deployer_defaults`); `load()` returns it complete."""

    object_id: str | None
    principal_name: str | None
    principal_type: PrincipalType | None

    @property
    def complete(self) -> bool:
        return None not in (self.object_id, self.principal_name, self.principal_type)


@dataclass(frozen=True)
class Deployer:
    """Who runs `pulumi`: read from the claims of the Azure token the provider signs in with."""

    object_id: str
    principal_type: Literal["User", "ServicePrincipal"]
    name: str | None
    """A user's UPN; an application's display name when its token carries one."""


FALLBACK_APP_ADMIN_NAME = "pulumi-deployer"
MAX_ROLE_NAME_BYTES = 63


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: we only read our own token to learn who we are."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error) as error:
        raise ConfigError(
            "config key 'entraAdminObjectId' is empty, so the Entra administrator is the deployer, but the "
            f"deployer's Azure token cannot be read ({error}); expected the Azure CLI or an OIDC login, "
            "or set entraAdminObjectId, entraAdminPrincipalName and entraAdminPrincipalType"
        ) from None
    if not isinstance(claims, dict):
        raise ConfigError("config key 'entraAdminObjectId': the deployer's Azure token has no claims object")
    return claims


def deployer_from_claims(claims: Mapping[str, Any]) -> Deployer:
    """User or application, from Entra access token claims.

    `idtyp` is "user" or "app" (Microsoft identity platform access token claims reference); tokens
    without it are delegated (a user's) exactly when they carry `scp`. A user's sign-in name is
    `upn` (v1.0 tokens, also `unique_name`) or `preferred_username` (v2.0); an application's display
    name is `app_displayname` when present. `oid` is the object ID in both cases.
    """
    object_id = str(claims.get("oid") or "")
    if not GUID.match(object_id):
        raise ConfigError(
            f"config key 'entraAdminObjectId' is empty, but the deployer's Azure token carries no object ID "
            f"(oid: {claims.get('oid')!r}); expected a token of a user or a service principal, or set "
            "entraAdminObjectId, entraAdminPrincipalName and entraAdminPrincipalType"
        )
    kind = claims.get("idtyp")
    is_user = kind == "user" if kind in ("user", "app") else "scp" in claims
    if is_user:
        name = next((str(claims[k]) for k in ("upn", "unique_name", "preferred_username") if claims.get(k)), None)
        return Deployer(object_id, "User", name)
    display_name = claims.get("app_displayname")
    return Deployer(object_id, "ServicePrincipal", str(display_name) if display_name else None)


def with_deployer_defaults(admin: EntraAdmin, deployer: Deployer) -> EntraAdmin:
    """Fills the administrator's empty keys from the deployer; refuses what contradicts it."""
    if admin.object_id is not None:
        return admin  # parse() already required name and type with it
    errors: list[str] = []
    principal_type = admin.principal_type or deployer.principal_type
    if admin.principal_type not in (None, deployer.principal_type):
        errors.append(
            f"config key 'entraAdminPrincipalType': {admin.principal_type!r} is not accepted; expected empty or "
            f"{deployer.principal_type!r}: with entraAdminObjectId empty the administrator is the deployer, "
            f"a {deployer.principal_type} (object ID {deployer.object_id}); set entraAdminObjectId for another "
            "principal"
        )
    name = admin.principal_name
    if name is None:
        if deployer.name is None and deployer.principal_type == "User":
            errors.append(
                "config key 'entraAdminPrincipalName' is empty and the deployer's Azure token carries no user "
                "name (upn, unique_name or preferred_username); expected the administrator's UPN"
            )
        name = deployer.name or FALLBACK_APP_ADMIN_NAME
        if len(name.encode()) > MAX_ROLE_NAME_BYTES:
            errors.append(
                f"config key 'entraAdminPrincipalName' is empty and the deployer's name {name!r} is longer than "
                f"{MAX_ROLE_NAME_BYTES} bytes (a PostgreSQL role name); expected a shorter name set explicitly"
            )
    if errors:
        raise ConfigError("the Entra administrator cannot be derived from the deployer:\n  - " + "\n  - ".join(errors))
    return EntraAdmin(deployer.object_id, name, principal_type)


@dataclass(frozen=True)
class ResourceId:
    """An Azure resource ID, split into the parts the program targets."""

    id: str
    subscription_id: str
    resource_group: str
    name: str


# ARM resource IDs: resource group names are 1-90 characters (letters, digits, _ ( ) - . and Unicode
# letters) and never end with a period; provider namespaces and types are case-insensitive.
_RESOURCE_ID = (
    r"^/subscriptions/(?P<subscription>[0-9a-fA-F-]{{36}})/resourceGroups/(?P<group>[^/]{{1,89}}[^/.])"
    r"/providers/{provider}/(?P<name>{name})$"
)
FLEXIBLE_SERVER_ID = re.compile(
    _RESOURCE_ID.format(provider="Microsoft.DBforPostgreSQL/flexibleServers", name=r"[a-z0-9](?:-?[a-z0-9]){2,62}"),
    re.IGNORECASE,
)
ENVIRONMENT_ID = re.compile(
    _RESOURCE_ID.format(provider="Microsoft.App/managedEnvironments", name=r"[a-z][a-z0-9-]{0,58}[a-z0-9]"),
    re.IGNORECASE,
)
CONTAINER_APP_NAME = re.compile(r"^[a-z](?:-?[a-z0-9]){1,31}$")


def resource_id(pattern: re.Pattern[str], text: str) -> ResourceId | None:
    match = pattern.match(text)
    if match is None or not GUID.match(match.group("subscription")):
        return None
    return ResourceId(text, match.group("subscription").lower(), match.group("group"), match.group("name"))


@dataclass(frozen=True)
class Settings:
    stack: str
    auth_mode: AuthMode
    location: str
    name_prefix: str
    owner: str
    postgres_version: str
    sku_tier: str
    sku_name: str
    storage_size_gb: int
    backup_retention_days: int
    geo_redundant_backup: bool
    high_availability: str
    database_name: str
    app_role_name: str
    manage_database_access: bool
    privilege_level: str
    grant_schemas: tuple[str, ...]
    entra_admin: EntraAdmin
    deployer_networks: tuple[ipaddress.IPv4Network, ...]
    allow_azure_services: bool
    ci_runner_ip: str
    vnet_cidr: ipaddress.IPv4Network
    app_subnet_cidr: ipaddress.IPv4Network
    ingress_internal: bool
    allowed_client_networks: tuple[ipaddress.IPv4Network, ...]
    entra_auth_client_id: str
    entra_auth_allowed_client_ids: tuple[str, ...]
    allow_anonymous_public_access: bool
    mcp_image: str
    mcp_access_mode: str
    token_refresh_margin_seconds: int
    alert_emails: tuple[str, ...]
    key_vault_purge_protection: bool
    key_vault_soft_delete_retention_days: int
    protect_resources: bool
    log_retention_days: int
    maintenance_window: MaintenanceWindow | None
    """None: Azure's system-managed window."""
    zone_redundant: bool
    existing_server: ResourceId | None = None
    """An adopted Flexible Server (existingServerId), else None: the program creates its own."""
    existing_server_admin_password: str = dataclasses.field(default="", repr=False)
    existing_database: bool = False
    entra_admin_exists: bool = False
    existing_environment: ResourceId | None = None
    """An existing Container Apps environment (existingEnvironmentId), else None: the program creates one."""
    app_egress_ips: tuple[ipaddress.IPv4Address, ...] = ()
    container_app_name: str = ""
    """Empty: `<base_name>-mcp` (see `app_name`)."""

    @property
    def app_name(self) -> str:
        return self.container_app_name or f"{self.base_name}-mcp"[:32].rstrip("-")

    @property
    def base_name(self) -> str:
        """`<prefix>-<stack>`, lowercased and trimmed to fit Azure's name rules."""
        stack = re.sub(r"[^a-z0-9-]+", "-", self.stack.lower()).strip("-") or "stack"
        return f"{self.name_prefix}-{stack}"[:30].rstrip("-")

    @property
    def admission(self) -> str:
        """How MCP clients are admitted, for outputs and docs: e.g. `entra+allow-list`, `internal`."""
        modes = [
            name
            for name, on in (
                ("internal", self.ingress_internal),
                ("entra", bool(self.entra_auth_client_id)),
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


class _Reader:
    """Reads raw config strings and collects one message per bad key."""

    def __init__(self, raw: Mapping[str, str | None]) -> None:
        self._raw = raw
        self.errors: list[str] = []

    def _text(self, name: str) -> str | None:
        value = self._raw.get(name)
        return None if value is None else str(value)

    def fail(self, name: str, value: object, accepted: str) -> None:
        self.errors.append(f"config key '{name}': {value!r} is not accepted; expected {accepted}")

    def string(self, name: str, accepted: str, check: Callable[[str], bool] | None = None) -> str:
        text = self._text(name)
        value = DEFAULTS[name] if text is None else text.strip()
        if check is not None and not check(value):
            self.fail(name, value, accepted)
        return str(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        return self.string(name, "one of " + ", ".join(choices), lambda value: value in choices)

    def resource_id(self, name: str, pattern: re.Pattern[str], kind: str, shape: str) -> ResourceId | None:
        """An optional Azure resource ID of one kind: None when empty or refused."""
        text = self.string(
            name, f"empty or {kind}'s resource ID: {shape}", lambda v: v == "" or resource_id(pattern, v) is not None
        )
        return resource_id(pattern, text) if text else None

    def integer(self, name: str, accepted: str, check: Callable[[int], bool]) -> int:
        text = self._text(name)
        if text is None:
            return int(DEFAULTS[name])
        try:
            value = int(text.strip())
        except ValueError:
            self.fail(name, text, "a whole number: " + accepted)
            return int(DEFAULTS[name])
        if not check(value):
            self.fail(name, value, accepted)
        return value

    def boolean(self, name: str) -> bool:
        text = self._text(name)
        if text is None:
            return bool(DEFAULTS[name])
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            self.fail(name, text, "true or false")
            return bool(DEFAULTS[name])
        return lowered == "true"

    def string_list(self, name: str, accepted: str) -> list[str] | None:
        """The list, or None when the value is not a list of strings (already reported)."""
        text = self._text(name)
        if text is None:
            return list(DEFAULTS[name])
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            self.fail(name, text, "a list of " + accepted)
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(name, value, "a list of " + accepted)
            return None
        return value


def _ipv4_network(reader: _Reader, name: str, text: str, *, strict: bool) -> ipaddress.IPv4Network | None:
    try:
        network = ipaddress.ip_network(text, strict=strict)
    except ValueError:
        reader.fail(name, text, "an IPv4 address or CIDR range such as 203.0.113.7 or 203.0.113.0/24")
        return None
    if not isinstance(network, ipaddress.IPv4Network):
        reader.fail(name, text, "an IPv4 address or range (the server firewall is IPv4 only)")
        return None
    return network


def _public_ipv4_or_empty(value: str) -> bool:
    if value == "":
        return True
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return address.is_global


def _valid(convert: Callable[[str], object], value: str) -> bool:
    try:
        convert(value)
    except ValueError:
        return False
    return True


def _identifier_check(value: str) -> bool:
    return bool(IDENTIFIER.match(value)) and value not in RESERVED_ROLE_NAMES and not value.startswith("pg_")


def _image_check(value: str) -> bool:
    match = IMAGE.match(value)
    if not match:
        return False
    tag, digest = match.group("tag"), match.group("digest")
    return bool(digest) or (tag is not None and tag != "latest")


def parse(raw: Mapping[str, str | None], stack: str) -> Settings:
    """Builds Settings from raw config strings (as the Pulumi CLI hands them over).

    Missing keys take the defaults declared in KEYS. Raises ConfigError listing every
    invalid key.
    """
    unknown = sorted(set(raw) - set(DEFAULTS))
    reader = _Reader(raw)
    for name in unknown:
        reader.errors.append(
            f"config key '{name}' is not a key of this project; known keys: {', '.join(sorted(DEFAULTS))}"
        )

    auth_mode = reader.choice("authMode", ("token", "password"))
    location = reader.string("location", "an Azure region name such as westeurope", lambda v: bool(LOCATION.match(v)))
    name_prefix = reader.string(
        "namePrefix", "2-10 lowercase letters or digits starting with a letter", lambda v: bool(NAME_PREFIX.match(v))
    )
    owner = reader.string(
        "owner", "1-256 characters without <>%&\\?/", lambda v: 0 < len(v) <= 256 and not re.search(r"[<>%&\\?/]", v)
    )
    postgres_version = reader.choice("postgresVersion", POSTGRES_VERSIONS)
    sku_tier = reader.choice("skuTier", tuple(SKU_TIERS))
    sku_name = reader.string(
        "skuName", "a Flexible Server SKU name", lambda v: bool(re.match(r"^Standard_[A-Za-z0-9_]+$", v))
    )
    if sku_tier in SKU_TIERS and sku_name.startswith("Standard_") and not SKU_TIERS[sku_tier][0].match(sku_name):
        reader.fail(
            "skuName",
            sku_name,
            f"a {sku_tier} size such as {SKU_TIERS[sku_tier][1]} (it must belong to skuTier '{sku_tier}')",
        )
    storage_size_gb = reader.integer(
        "storageSizeGb", "one of " + ", ".join(map(str, STORAGE_SIZES_GB)), lambda v: v in STORAGE_SIZES_GB
    )
    backup_retention_days = reader.integer("backupRetentionDays", "7 to 35", lambda v: 7 <= v <= 35)
    geo_redundant_backup = reader.boolean("geoRedundantBackup")
    high_availability = reader.choice("highAvailability", HIGH_AVAILABILITY_MODES)
    if high_availability != "Disabled" and sku_tier == "Burstable":
        reader.fail(
            "highAvailability",
            high_availability,
            "Disabled on the Burstable tier (choose skuTier GeneralPurpose or MemoryOptimized for a standby)",
        )

    identifier_rule = (
        "a lowercase PostgreSQL identifier: a-z, 0-9 and _, starting with a letter or _, "
        "at most 63 characters, not reserved (postgres, public, azure_*, pg_*)"
    )
    database_name = reader.string("databaseName", identifier_rule, _identifier_check)
    app_role_name = reader.string("appRoleName", identifier_rule, _identifier_check)
    manage_database_access = reader.boolean("manageDatabaseAccess")
    privilege_level = reader.choice("privilegeLevel", PRIVILEGE_LEVELS)
    grant_schemas = reader.string_list("grantSchemas", "schema names")
    if grant_schemas == []:
        reader.fail("grantSchemas", grant_schemas, "at least one schema name")
    grant_schemas = grant_schemas or []
    for schema in grant_schemas:
        if not (IDENTIFIER.match(schema) and not schema.startswith("pg_") and schema != "information_schema"):
            reader.fail("grantSchemas", schema, "lowercase PostgreSQL identifiers (not pg_* or information_schema)")
    if len(set(grant_schemas)) != len(grant_schemas):
        reader.fail("grantSchemas", grant_schemas, "each schema once")

    admin_object_id = reader.string(
        "entraAdminObjectId",
        "empty (the deploying principal) or an object ID (a GUID)",
        lambda v: v == "" or bool(GUID.match(v)),
    )
    admin_name = reader.string(
        "entraAdminPrincipalName",
        "empty or 1-63 characters without : or whitespace other than spaces",
        lambda v: len(v.encode()) <= 63 and not re.search(r"[:\t\r\n\x00]", v),
    )
    if admin_object_id and not admin_name:
        reader.fail(
            "entraAdminPrincipalName",
            admin_name,
            "the administrator's UPN or display name whenever entraAdminObjectId is set",
        )
    admin_type = reader.string(
        "entraAdminPrincipalType",
        "empty (the deployer's own) or one of " + ", ".join(PRINCIPAL_TYPES),
        lambda v: v == "" or v in PRINCIPAL_TYPES,
    )
    if admin_object_id and not admin_type:
        reader.fail(
            "entraAdminPrincipalType",
            admin_type,
            "User, Group or ServicePrincipal whenever entraAdminObjectId is set",
        )

    deployer_networks: list[ipaddress.IPv4Network] = []
    for entry in reader.string_list("deployerCidrs", "IPv4 addresses or CIDR ranges") or []:
        network = _ipv4_network(reader, "deployerCidrs", entry, strict=True)
        if network is None:
            continue
        if network.prefixlen < WIDEST_DEPLOYER_PREFIX:
            reader.fail(
                "deployerCidrs",
                entry,
                f"a range no wider than /{WIDEST_DEPLOYER_PREFIX}; the server must never be open to the internet",
            )
            continue
        deployer_networks.append(network)
    allow_azure_services = reader.boolean("allowAzureServices")
    ci_runner_ip = reader.string("ciRunnerIp", "empty or one public IPv4 address", _public_ipv4_or_empty)

    vnet = _ipv4_network(reader, "vnetCidr", reader.string("vnetCidr", ""), strict=True)
    if vnet is not None and (not vnet.is_private or not 8 <= vnet.prefixlen <= 24):
        reader.fail("vnetCidr", str(vnet), "a private IPv4 range (10/8, 172.16/12, 192.168/16) from /8 to /24")
    subnet = _ipv4_network(reader, "appSubnetCidr", reader.string("appSubnetCidr", ""), strict=True)
    if subnet is not None and not 21 <= subnet.prefixlen <= 27:
        reader.fail(
            "appSubnetCidr",
            str(subnet),
            "a range from /21 to /27 (Container Apps workload profiles need at least a /27)",
        )
    elif subnet is not None and vnet is not None and not subnet.subnet_of(vnet):
        reader.fail("appSubnetCidr", str(subnet), f"a range inside vnetCidr {vnet}")

    ingress_internal = reader.boolean("ingressInternal")
    allowed_client_networks: list[ipaddress.IPv4Network] = []
    for entry in reader.string_list("allowedClientCidrs", "IPv4 addresses or CIDR ranges") or []:
        network = _ipv4_network(reader, "allowedClientCidrs", entry, strict=True)
        if network is not None and network.prefixlen == 0:
            reader.fail(
                "allowedClientCidrs",
                entry,
                "a range narrower than the whole internet (for that, "
                "allowAnonymousPublicAccess is the explicit opt-in)",
            )
        elif network is not None:
            allowed_client_networks.append(network)
    entra_client_id = reader.string(
        "entraAuthClientId",
        "empty or an app registration's client ID (a GUID)",
        lambda v: v == "" or bool(GUID.match(v)),
    )
    allowed_client_ids = reader.string_list("entraAuthAllowedClientIds", "client IDs (GUIDs)") or []
    for client_id in allowed_client_ids:
        if not GUID.match(client_id):
            reader.fail("entraAuthAllowedClientIds", client_id, "client IDs (GUIDs)")
    if allowed_client_ids and not entra_client_id:
        reader.fail("entraAuthAllowedClientIds", allowed_client_ids, "an empty list unless entraAuthClientId is set")
    if ingress_internal:
        # An internal environment has no public address: its IP restrictions take private ranges only
        # (Microsoft Learn, "Set up IP ingress restrictions"; PSRule Azure.ContainerApp.RestrictIngress).
        for network in allowed_client_networks:
            if not any(network.subnet_of(private) for private in RFC1918):
                reader.fail(
                    "allowedClientCidrs",
                    str(network),
                    "private ranges (10/8, 172.16/12, 192.168/16) with ingressInternal: true, where callers "
                    "come from the virtual network and what is peered or connected to it",
                )
    zone_redundant = reader.boolean("zoneRedundant")
    maintenance_text = reader.string(
        "maintenanceWindow",
        "system, or a weekday and a UTC start time such as 'Sun 02:00' (days: " + ", ".join(WEEKDAYS) + ")",
        lambda v: v == "system" or _valid(_maintenance_window, v),
    )
    maintenance_window = (
        None
        if maintenance_text == "system" or not _valid(_maintenance_window, maintenance_text)
        else _maintenance_window(maintenance_text)
    )
    allow_anonymous = reader.boolean("allowAnonymousPublicAccess")
    admitted = ingress_internal or bool(allowed_client_networks) or bool(entra_client_id)
    if not admitted and not allow_anonymous and not any("allowedClientCidrs" in e for e in reader.errors):
        reader.errors.append(
            "the MCP endpoint would be public and anonymous (postgres-mcp has no authentication of its own); "
            "expected at least one of: config key 'allowedClientCidrs' (an IP allow-list), 'entraAuthClientId' "
            "(Entra sign-in), 'ingressInternal: true' (no public endpoint), or the explicit opt-in "
            "'allowAnonymousPublicAccess: true'"
        )

    mcp_image = reader.string(
        "mcpImage",
        "an image pinned by a tag other than latest, or by digest, such as docker.io/crystaldba/postgres-mcp:0.3.0",
        _image_check,
    )
    mcp_access_mode = reader.choice("mcpAccessMode", ACCESS_MODES)
    margin = reader.integer("tokenRefreshMarginSeconds", "300 to 3600", lambda v: 300 <= v <= 3600)
    alert_emails = reader.string_list("alertEmails", "e-mail addresses") or []
    for address in alert_emails:
        if not EMAIL.match(address):
            reader.fail("alertEmails", address, "e-mail addresses such as oncall@example.com")
    if len({address.lower() for address in alert_emails}) != len(alert_emails):
        reader.fail("alertEmails", alert_emails, "each address once")
    purge_protection = reader.boolean("keyVaultPurgeProtection")
    soft_delete_days = reader.integer("keyVaultSoftDeleteRetentionDays", "7 to 90", lambda v: 7 <= v <= 90)
    protect = reader.boolean("protectResources")
    log_retention_days = reader.integer("logRetentionDays", "30 to 730", lambda v: 30 <= v <= 730)

    existing_server = reader.resource_id(
        "existingServerId",
        FLEXIBLE_SERVER_ID,
        "a Flexible Server",
        "/subscriptions/<GUID>/resourceGroups/<group>/providers/Microsoft.DBforPostgreSQL/flexibleServers/<name>",
    )
    server_given = bool(str(raw.get("existingServerId") or "").strip())
    adopted_password = raw.get("existingServerAdminPassword") or ""  # verbatim: never stripped, never echoed
    if adopted_password and not server_given:
        reader.fail("existingServerAdminPassword", "<secret>", "empty unless existingServerId is set")
    elif server_given and auth_mode == "password" and not adopted_password:
        reader.fail(
            "existingServerAdminPassword",
            "",
            "the adopted server's administrator password with authMode 'password' (the role/grant step signs in "
            "with it): pulumi config set --secret existingServerAdminPassword",
        )
    existing_database = reader.boolean("existingDatabase")
    if existing_database and not server_given:
        reader.fail("existingDatabase", True, "false unless existingServerId is set (a new server has no database)")
    entra_admin_exists = reader.boolean("entraAdminExists")
    if entra_admin_exists and not server_given:
        reader.fail("entraAdminExists", True, "false unless existingServerId is set (a new server has no admin)")
    existing_environment = reader.resource_id(
        "existingEnvironmentId",
        ENVIRONMENT_ID,
        "a Container Apps environment",
        "/subscriptions/<GUID>/resourceGroups/<group>/providers/Microsoft.App/managedEnvironments/<name>",
    )
    environment_given = bool(str(raw.get("existingEnvironmentId") or "").strip())
    egress_texts = reader.string_list("appEgressIps", "public IPv4 addresses") or []
    app_egress_ips: list[ipaddress.IPv4Address] = []
    for text in egress_texts:
        if text and _public_ipv4_or_empty(text):
            app_egress_ips.append(ipaddress.IPv4Address(text))
        else:
            reader.fail("appEgressIps", text, "public IPv4 addresses (one address each, no ranges)")
    if len(set(app_egress_ips)) != len(app_egress_ips):
        reader.fail("appEgressIps", egress_texts, "each address once")
    if egress_texts and not environment_given:
        reader.fail(
            "appEgressIps",
            egress_texts,
            "an empty list unless existingEnvironmentId is set (the program's NAT gateway gives the app's address)",
        )
    elif environment_given and not egress_texts and not allow_azure_services:
        reader.fail(
            "appEgressIps",
            [],
            "the public addresses the existing environment's traffic leaves from, for the server firewall (a "
            "Consumption environment's outbound addresses change without notice), or the explicit opt-in "
            "allowAzureServices: true",
        )
    container_app_name = reader.string(
        "containerAppName",
        "empty or 2-32 lowercase letters, digits and single hyphens, starting with a letter, not ending with a hyphen",
        lambda v: v == "" or bool(CONTAINER_APP_NAME.match(v)),
    )

    if reader.errors:
        raise ConfigError(
            f"stack '{stack}' has {len(reader.errors)} invalid config value(s); nothing was deployed:\n  - "
            + "\n  - ".join(reader.errors)
        )
    assert vnet is not None and subnet is not None  # guaranteed by the checks above
    return Settings(
        stack=stack,
        auth_mode=auth_mode,  # type: ignore[arg-type]  # checked by choice()
        location=location,
        name_prefix=name_prefix,
        owner=owner,
        postgres_version=postgres_version,
        sku_tier=sku_tier,
        sku_name=sku_name,
        storage_size_gb=storage_size_gb,
        backup_retention_days=backup_retention_days,
        geo_redundant_backup=geo_redundant_backup,
        high_availability=high_availability,
        database_name=database_name,
        app_role_name=app_role_name,
        manage_database_access=manage_database_access,
        privilege_level=privilege_level,
        grant_schemas=tuple(grant_schemas),
        entra_admin=EntraAdmin(
            object_id=admin_object_id or None,
            principal_name=admin_name or None,
            principal_type=admin_type or None,  # type: ignore[arg-type]  # checked above
        ),
        deployer_networks=tuple(deployer_networks),
        allow_azure_services=allow_azure_services,
        ci_runner_ip=ci_runner_ip,
        vnet_cidr=vnet,
        app_subnet_cidr=subnet,
        ingress_internal=ingress_internal,
        allowed_client_networks=tuple(allowed_client_networks),
        entra_auth_client_id=entra_client_id,
        entra_auth_allowed_client_ids=tuple(allowed_client_ids),
        allow_anonymous_public_access=allow_anonymous,
        mcp_image=mcp_image,
        mcp_access_mode=mcp_access_mode,
        token_refresh_margin_seconds=margin,
        alert_emails=tuple(alert_emails),
        key_vault_purge_protection=purge_protection,
        key_vault_soft_delete_retention_days=soft_delete_days,
        protect_resources=protect,
        log_retention_days=log_retention_days,
        maintenance_window=maintenance_window,
        zone_redundant=zone_redundant,
        existing_server=existing_server,
        existing_server_admin_password=adopted_password,
        existing_database=existing_database,
        entra_admin_exists=entra_admin_exists,
        existing_environment=existing_environment,
        app_egress_ips=tuple(app_egress_ips),
        container_app_name=container_app_name,
    )


def load(earlier_admin_name: Callable[[], str | None] = lambda: None) -> Settings:
    """Reads this stack's project config through the Pulumi SDK and validates it.

    `earlier_admin_name`, asked only once the config is valid and the administrator keys are empty:
    the Entra administrator of a stack last deployed by an earlier version of this program (its
    `entraAdminPrincipalName` output), else None. Those versions filled empty keys with the name
    `pulumi-deployer` and the type ServicePrincipal; such a stack keeps them, so that upgrading never
    renames the administrator the role/grant step signs in as."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    config = pulumi.Config(PROJECT)
    prefix = f"{PROJECT}:"
    # The CLI hands config over either through the runtime map or PULUMI_CONFIG.
    present = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    names = {key[len(prefix) :] for key in present if key.startswith(prefix)} | set(DEFAULTS)
    # Config.get() also resolves keys that were set as secrets.
    raw = {name: config.get(name) for name in sorted(names)}
    parsed = parse({name: value for name, value in raw.items() if value is not None}, pulumi.get_stack())
    password_key = f"{prefix}existingServerAdminPassword"
    if parsed.existing_server_admin_password and not runtime_config.is_config_secret(password_key):
        raise ConfigError(
            f"stack '{parsed.stack}': config key 'existingServerAdminPassword' is set in plain text; expected a "
            "secret: pulumi config set --secret existingServerAdminPassword (then the stack file holds it "
            "encrypted). Nothing was deployed."
        )
    if parsed.entra_admin.complete:
        return parsed
    # Who runs pulumi (a user on a laptop, a service principal in CI): the claims of the token the
    # azure-native provider signs in with, so that the defaults are right in both places.
    from pulumi_azure_native import authorization

    deployer = deployer_from_claims(token_claims(authorization.get_client_token().token))
    admin = parsed.entra_admin
    earlier = earlier_admin_name() if admin.object_id is None else None
    if earlier:
        kept = EntraAdmin(
            deployer.object_id, admin.principal_name or earlier, admin.principal_type or "ServicePrincipal"
        )
        return dataclasses.replace(parsed, entra_admin=kept)
    return dataclasses.replace(parsed, entra_admin=with_deployer_defaults(admin, deployer))
