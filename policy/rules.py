"""The deployment's rules, as plain functions over a resource's type and properties.

Used twice: by the CrossGuard pack in this folder (`pulumi preview --policy-pack policy`)
and by the tests, which run every rule over every resource the program declares under
mocks. Properties are Pulumi's input properties (camelCase), as CrossGuard hands them.

A resource rule returns the violations of one resource; a stack rule sees them all
(for what spans resources: the auth mode, diagnostic settings, Entra sign-in).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

SERVER = "azure-native:dbforpostgresql:Server"
CONFIGURATION = "azure-native:dbforpostgresql:Configuration"
FIREWALL_RULE = "azure-native:dbforpostgresql:FirewallRule"
VAULT = "azure-native:keyvault:Vault"
CONTAINER_APP = "azure-native:app:ContainerApp"
MANAGED_ENVIRONMENT = "azure-native:app:ManagedEnvironment"
AUTH_CONFIG = "azure-native:app:ContainerAppsAuthConfig"
DIAGNOSTIC_SETTING = "azure-native:monitor:DiagnosticSetting"

# Types that carry tags in azure-native; others (sub-resources, role assignments) cannot.
TAGGABLE = frozenset(
    {
        "azure-native:resources:ResourceGroup",
        SERVER,
        VAULT,
        CONTAINER_APP,
        MANAGED_ENVIRONMENT,
        "azure-native:managedidentity:UserAssignedIdentity",
        "azure-native:operationalinsights:Workspace",
        "azure-native:network:VirtualNetwork",
        "azure-native:network:NatGateway",
        "azure-native:network:PublicIPAddress",
    }
)
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CONNECTION_?STRING)", re.IGNORECASE)
URI_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]+:[^/@\s]+@", re.IGNORECASE)
WIDEST_FIREWALL_PREFIX = 16


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: Mapping[str, Any]


@dataclass(frozen=True)
class Options:
    """The pack's configuration (`pulumi preview --policy-pack-config`), with its defaults."""

    allow_azure_services_rule: bool = False
    required_tags: tuple[str, ...] = ("environment", "owner")
    production_environments: tuple[str, ...] = ("prod", "production")

    def is_production(self, resource: Resource) -> bool:
        tags = resource.props.get("tags") or {}
        return str(tags.get("environment", "")).lower() in self.production_environments


ResourceCheck = Callable[[Resource, Options], list[str]]
StackCheck = Callable[[Sequence[Resource], Options], list[tuple[str, str]]]  # (resource name, message)


@dataclass(frozen=True)
class Rule:
    name: str
    description: str  # what it checks and why, shown by CrossGuard and in the README
    enforcement: Literal["mandatory", "advisory"]
    check_resource: ResourceCheck | None = None
    check_stack: StackCheck | None = None


@dataclass(frozen=True)
class Violation:
    rule: str
    enforcement: str
    resource: str
    message: str


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _containers(app: Resource) -> list[Mapping[str, Any]]:
    template = app.props.get("template") or {}
    return _list(template.get("containers")) + _list(template.get("initContainers"))


# --- resource rules -------------------------------------------------------------------------


def entra_auth_on(resource: Resource, _: Options) -> list[str]:
    if resource.type != SERVER:
        return []
    auth = resource.props.get("authConfig") or {}
    if auth.get("activeDirectoryAuth") != "Enabled":
        return ["Microsoft Entra authentication must be enabled (authConfig.activeDirectoryAuth: Enabled)"]
    return []


def tls_enforced(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONFIGURATION:
        return []
    name, value = resource.props.get("configurationName"), str(resource.props.get("value", ""))
    if name == "require_secure_transport" and value.lower() != "on":
        return [f"require_secure_transport must be on, not {value!r}"]
    if name == "ssl_min_protocol_version" and value not in ("TLSv1.2", "TLSv1.3"):
        return [f"ssl_min_protocol_version must be TLSv1.2 or TLSv1.3, not {value!r}"]
    return []


def no_world_open_firewall(resource: Resource, options: Options) -> list[str]:
    if resource.type != FIREWALL_RULE:
        return []
    start, end = resource.props.get("startIpAddress"), resource.props.get("endIpAddress")
    try:
        first, last = ipaddress.IPv4Address(str(start)), ipaddress.IPv4Address(str(end))
    except ValueError:
        return [f"firewall rule addresses {start!r}-{end!r} are not IPv4 addresses"]
    if int(first) == 0 and int(last) == 0:
        if options.allow_azure_services_rule:
            return []
        return [
            "the 'Azure services' rule (0.0.0.0-0.0.0.0) admits every Azure tenant's resources; it needs the "
            "pack's explicit opt-in allowAzureServicesRule"
        ]
    if int(last) - int(first) + 1 > 2 ** (32 - WIDEST_FIREWALL_PREFIX):
        return [
            f"firewall rule {first}-{last} admits {int(last) - int(first) + 1:,} addresses; at most a "
            f"/{WIDEST_FIREWALL_PREFIX} ({2 ** (32 - WIDEST_FIREWALL_PREFIX):,}) is allowed"
        ]
    return []


def key_vault_hardened(resource: Resource, options: Options) -> list[str]:
    if resource.type != VAULT:
        return []
    properties = resource.props.get("properties") or {}
    problems = []
    if properties.get("enableRbacAuthorization") is not True:
        problems.append("Key Vault must use RBAC authorization (properties.enableRbacAuthorization: true)")
    if properties.get("enableSoftDelete") is False:
        problems.append("Key Vault soft delete must stay on")
    if options.is_production(resource) and properties.get("enablePurgeProtection") is not True:
        problems.append("a production Key Vault needs purge protection (properties.enablePurgeProtection: true)")
    return problems


def secrets_only_by_reference(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONTAINER_APP:
        return []
    problems = []
    for secret in _list((resource.props.get("configuration") or {}).get("secrets")):
        if secret.get("value") is not None and not secret.get("keyVaultUrl"):
            problems.append(
                f"Container Apps secret {secret.get('name')!r} holds its value inline; "
                "reference Key Vault (keyVaultUrl + identity) instead"
            )
    for container in _containers(resource):
        for variable in _list(container.get("env")):
            value = variable.get("value")
            if value is None:
                continue
            name = str(variable.get("name", ""))
            if SECRET_NAME.search(name) or URI_WITH_PASSWORD.search(str(value)):
                problems.append(
                    f"container {container.get('name')!r} sets {name} as a plain value; "
                    "secrets reach containers only through secretRef to a Key Vault reference"
                )
    return problems


def images_pinned(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONTAINER_APP:
        return []
    problems = []
    for container in _containers(resource):
        image = str(container.get("image", ""))
        reference = image.rsplit("/", 1)[-1]
        if "@sha256:" in image:
            continue
        if ":" not in reference or reference.endswith(":latest"):
            problems.append(
                f"container {container.get('name')!r} runs {image!r}: pin a tag other than latest, or a digest"
            )
    return problems


def user_assigned_identity(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONTAINER_APP:
        return []
    identity = resource.props.get("identity") or {}
    if identity.get("type") != "UserAssigned" or not identity.get("userAssignedIdentities"):
        return [
            "the app must run as a user-assigned identity (it holds its Key Vault role before the first "
            "revision; a system-assigned one does not exist yet)"
        ]
    return []


def backups_kept(resource: Resource, options: Options) -> list[str]:
    if resource.type != SERVER:
        return []
    backup = resource.props.get("backup") or {}
    days = int(backup.get("backupRetentionDays") or 7)
    if options.is_production(resource):
        problems = []
        if days < 14:
            problems.append(f"production backups must be kept at least 14 days, not {days}")
        if backup.get("geoRedundantBackup") != "Enabled":
            problems.append("production backups must be geo-redundant (backup.geoRedundantBackup: Enabled)")
        return problems
    return [] if days >= 7 else [f"backups must be kept at least 7 days, not {days}"]


def high_availability_in_production(resource: Resource, options: Options) -> list[str]:
    if resource.type != SERVER or not options.is_production(resource):
        return []
    mode = (resource.props.get("highAvailability") or {}).get("mode", "Disabled")
    return (
        []
        if mode in ("ZoneRedundant", "SameZone")
        else ["a production server should have a standby (highAvailability.mode: ZoneRedundant)"]
    )


def app_logs_to_log_analytics(resource: Resource, _: Options) -> list[str]:
    if resource.type != MANAGED_ENVIRONMENT:
        return []
    logs = resource.props.get("appLogsConfiguration") or {}
    if logs.get("destination") not in ("log-analytics", "azure-monitor"):
        return ["the Container Apps environment must send its logs to Log Analytics (appLogsConfiguration.destination)"]
    return []


def required_tags(resource: Resource, options: Options) -> list[str]:
    if resource.type not in TAGGABLE:
        return []
    tags = resource.props.get("tags") or {}
    missing = [tag for tag in options.required_tags if not tags.get(tag)]
    return [f"missing required tag(s): {', '.join(missing)}"] if missing else []


def restricted_access_mode(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONTAINER_APP:
        return []
    for container in _containers(resource):
        arguments = [str(argument) for argument in _list(container.get("args"))]
        if "--access-mode=unrestricted" in arguments or "unrestricted" in arguments:
            return [
                f"container {container.get('name')!r} runs postgres-mcp in unrestricted mode: its tools can change data"
            ]
    return []


# --- stack rules ----------------------------------------------------------------------------


def _of_type(resources: Iterable[Resource], resource_type: str) -> list[Resource]:
    return [r for r in resources if r.type == resource_type]


def password_auth_off_in_token_mode(resources: Sequence[Resource], _: Options) -> list[tuple[str, str]]:
    token_mode = any(
        container.get("name") == "token-refresher"
        for app in _of_type(resources, CONTAINER_APP)
        for container in _containers(app)
    )
    if not token_mode:
        return []
    return [
        (
            server.name,
            "token mode (a token-refresher sidecar is deployed) needs password authentication off "
            "on the server (authConfig.passwordAuth: Disabled)",
        )
        for server in _of_type(resources, SERVER)
        if (server.props.get("authConfig") or {}).get("passwordAuth") != "Disabled"
    ]


def tls_configured(resources: Sequence[Resource], _: Options) -> list[tuple[str, str]]:
    configured = {r.props.get("configurationName") for r in _of_type(resources, CONFIGURATION)}
    missing = [name for name in ("require_secure_transport", "ssl_min_protocol_version") if name not in configured]
    return [
        (server.name, f"the stack does not set {', '.join(missing)} on the server")
        for server in _of_type(resources, SERVER)
        if missing
    ]


def diagnostics_to_log_analytics(resources: Sequence[Resource], _: Options) -> list[tuple[str, str]]:
    settings = [d for d in _of_type(resources, DIAGNOSTIC_SETTING) if d.props.get("workspaceId")]
    targets = [str(d.props.get("resourceUri", "")) for d in settings]
    problems = []
    for resource_type, label in ((SERVER, "server"), (VAULT, "Key Vault")):
        for resource in _of_type(resources, resource_type):
            # Known IDs end with the resource's name; during a first preview they are unknown: count instead.
            named = any(target.endswith("/" + resource.name) for target in targets)
            if not named and len(settings) < len(_of_type(resources, SERVER)) + len(_of_type(resources, VAULT)):
                problems.append(
                    (resource.name, f"the {label} has no diagnostic setting sending its logs to Log Analytics")
                )
    return problems


def not_anonymous_and_public(resources: Sequence[Resource], _: Options) -> list[tuple[str, str]]:
    signed_in = [
        a
        for a in _of_type(resources, AUTH_CONFIG)
        if (a.props.get("globalValidation") or {}).get("unauthenticatedClientAction") in ("Return401", "Return403")
    ]
    environments = _of_type(resources, MANAGED_ENVIRONMENT)
    # An internal environment has no public address: `external` ingress there reaches the VNet only.
    if environments and all((e.props.get("vnetConfiguration") or {}).get("internal") is True for e in environments):
        return []
    problems = []
    for app in _of_type(resources, CONTAINER_APP):
        ingress = (app.props.get("configuration") or {}).get("ingress") or {}
        if not ingress or ingress.get("external") is not True or _list(ingress.get("ipSecurityRestrictions")):
            continue
        app_name = app.props.get("containerAppName")
        if any(a.props.get("containerAppName") in (app_name, None) for a in signed_in):
            continue
        problems.append(
            (
                app.name,
                "the MCP endpoint is public with no IP allow-list and no Entra sign-in: anyone "
                "who finds the URL can use the database's tools",
            )
        )
    return problems


RULES: tuple[Rule, ...] = (
    Rule(
        "entra-auth-on",
        "Flexible Server has Microsoft Entra authentication on, so that identities, not shared passwords, sign in.",
        "mandatory",
        check_resource=entra_auth_on,
    ),
    Rule(
        "password-auth-off-in-token-mode",
        "In token mode the server refuses passwords: no password can leak into use.",
        "mandatory",
        check_stack=password_auth_off_in_token_mode,
    ),
    Rule(
        "tls-enforced",
        "require_secure_transport is on and the minimum TLS version is 1.2: no plaintext connections, no legacy TLS.",
        "mandatory",
        check_resource=tls_enforced,
    ),
    Rule(
        "tls-configured",
        "The stack sets both TLS server parameters explicitly rather than trusting defaults.",
        "mandatory",
        check_stack=tls_configured,
    ),
    Rule(
        "no-world-open-firewall",
        "No server firewall rule admits the internet (nothing wider than a /16), and "
        "the 'Azure services' rule only with the pack's opt-in allowAzureServicesRule.",
        "mandatory",
        check_resource=no_world_open_firewall,
    ),
    Rule(
        "key-vault-hardened",
        "Key Vault uses RBAC authorization and soft delete, and purge protection in "
        "production, so that secrets cannot be read by access policies or destroyed for good.",
        "mandatory",
        check_resource=key_vault_hardened,
    ),
    Rule(
        "secrets-by-reference",
        "Secrets reach containers only through secretRef to Key Vault references, "
        "never as plain env values or inline secrets that land in the app's configuration.",
        "mandatory",
        check_resource=secrets_only_by_reference,
    ),
    Rule(
        "images-pinned",
        "Container images are pinned by tag or digest, never latest: a deployment runs the image that was reviewed.",
        "mandatory",
        check_resource=images_pinned,
    ),
    Rule(
        "user-assigned-identity",
        "The app runs as a user-assigned identity, which can hold its Key Vault role before the first revision.",
        "mandatory",
        check_resource=user_assigned_identity,
    ),
    Rule(
        "not-anonymous-and-public",
        "The MCP ingress is not public and anonymous at once: postgres-mcp authenticates nobody.",
        "mandatory",
        check_stack=not_anonymous_and_public,
    ),
    Rule(
        "backups-kept",
        "Backups are kept at least 7 days; in production at least 14 days and geo-redundant.",
        "mandatory",
        check_resource=backups_kept,
    ),
    Rule(
        "high-availability-in-production",
        "A production server has a standby (zone-redundant HA).",
        "advisory",
        check_resource=high_availability_in_production,
    ),
    Rule(
        "app-logs-to-log-analytics",
        "The Container Apps environment sends its logs to Log Analytics.",
        "mandatory",
        check_resource=app_logs_to_log_analytics,
    ),
    Rule(
        "diagnostics-to-log-analytics",
        "The server and the Key Vault send their logs and metrics to Log Analytics through diagnostic settings.",
        "mandatory",
        check_stack=diagnostics_to_log_analytics,
    ),
    Rule(
        "required-tags",
        "Every taggable resource carries the `environment` and `owner` tags (configurable: "
        "requiredTags), for cost and ownership.",
        "mandatory",
        check_resource=required_tags,
    ),
    Rule(
        "restricted-access-mode",
        "postgres-mcp runs in restricted (read-only) mode unless unrestricted was chosen explicitly.",
        "advisory",
        check_resource=restricted_access_mode,
    ),
)


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == "mandatory"]


def evaluate(resources: Sequence[Resource], options: Options | None = None) -> Report:
    """Every rule over every resource, as the pack would run them."""
    options = options or Options()
    report = Report()
    for rule in RULES:
        if rule.check_resource is not None:
            for resource in resources:
                report.violations += [
                    Violation(rule.name, rule.enforcement, resource.name, message)
                    for message in rule.check_resource(resource, options)
                ]
        if rule.check_stack is not None:
            report.violations += [
                Violation(rule.name, rule.enforcement, name, message)
                for name, message in rule.check_stack(resources, options)
            ]
    return report
