"""The deployment's rules, as plain functions over a resource's type and properties.

Used twice: by the CrossGuard pack in this folder (`pulumi preview --policy-pack policy`)
and by the tests, which run every rule over every resource the program declares under
mocks, and through the pack's own analyzer.

What the rules read is what CrossGuard hands over, so they hold to three things:

- Properties are any `Mapping`/`Sequence` (CrossGuard passes read-only proxies, not
  `dict`/`list`); a string is never taken for a sequence.
- A resource rule runs on a resource's *inputs* (`Analyze`), a stack rule on every
  resource's *outputs* (`AnalyzeStack`). azure-native outputs lack the input-only keys
  (`configurationName`, `containerAppName`, `resourceUri`...) and carry `id` and `name`:
  a stack rule reads what both have, or falls back from one to the other.
- During a first preview some values are not known yet (IDs, addresses, URIs Azure
  assigns). The pack hands them over as `Unknown`. A rule still reports every violation
  it can prove, and returns an `Undecided` note for what it cannot decide yet; it never
  takes an unknown for a compliant value.
"""

from __future__ import annotations

import ipaddress
import itertools
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
SUBNET = "azure-native:network:Subnet"
PRIVATE_ZONE = "azure-native:privatedns:PrivateZone"
VIRTUAL_NETWORK_LINK = "azure-native:privatedns:VirtualNetworkLink"
CONTAINER_APPS_DELEGATION = "Microsoft.App/environments"

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
# A name that holds a secret. TOKEN only at the name's end (ACCESS_TOKEN, GITHUB_TOKEN): settings
# *about* tokens (TOKEN_RESOURCE, TOKEN_REFRESH_MARGIN_SECONDS) hold no secret.
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|API_?KEY|PRIVATE_?KEY|CONNECTION_?STRING)|TOKEN$", re.IGNORECASE)
# A value that is a secret whatever its name: a JSON Web Token (an Entra access token), header.payload.signature
# in base64url, the header a JSON object (`{"` encodes as `eyJ`; RFC 7519).
JWT_VALUE = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
URI_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]+:[^/@\s]+@", re.IGNORECASE)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
WIDEST_FIREWALL_PREFIX = 16
# An ingress Allow rule wider than this admits a large share of the internet: not an allow-list.
WIDEST_ALLOW_PREFIX = 8
SIGNED_IN_ACTIONS = ("Return401", "Return403", "RedirectToLoginPage")


class Unknown:
    """A value not known yet: Azure assigns it when the deployment runs (a first preview)."""

    __slots__ = ("path",)

    def __init__(self, path: str = "") -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<unknown {self.path}>" if self.path else "<unknown>"


class Undecided(str):
    """A rule's note that it cannot decide yet: a value it needs is unknown until deployment.

    Reported by the pack as an advisory note, not as a violation; the rule runs again on the
    known values when the deployment creates the resource.
    """

    __slots__ = ()


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""


@dataclass(frozen=True)
class Options:
    """The pack's configuration (`pulumi preview --policy-pack-config`), with its defaults."""

    allow_azure_services_rule: bool = False
    required_tags: tuple[str, ...] = ("environment", "owner")
    production_environments: tuple[str, ...] = ("prod", "production")

    def is_production(self, resource: Resource) -> bool | None:
        """None when the `environment` tag is not known yet."""
        environment = get(resource.props, "tags", "environment")
        if isinstance(environment, Unknown):
            return None
        return str(environment or "").lower() in {value.lower() for value in self.production_environments}


ResourceCheck = Callable[[Resource, Options], list[str]]
StackCheck = Callable[[Sequence[Resource], Options], list[tuple[Resource, str]]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str  # what it checks and why, shown by CrossGuard and in docs/policy.md
    enforcement: Literal["mandatory", "advisory"]
    check_resource: ResourceCheck | None = None
    check_stack: StackCheck | None = None
    config: tuple[str, ...] = ()  # the pack configuration keys this rule reads


@dataclass(frozen=True)
class Violation:
    rule: str
    enforcement: str
    resource: str
    message: str


# --- reading properties ------------------------------------------------------------------------


def get(value: Any, *path: str) -> Any:
    """The value at `path` in nested mappings; None where a key is missing, Unknown where unknown."""
    for key in path:
        if isinstance(value, Unknown):
            return value
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def items(value: Any) -> list[Any]:
    """A sequence property as a list (a string is not a sequence); [] when absent."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    return []


def _label(resource: Resource) -> str:
    kind = {
        SERVER: "server",
        CONFIGURATION: "server parameter",
        FIREWALL_RULE: "firewall rule",
        VAULT: "Key Vault",
        CONTAINER_APP: "container app",
        MANAGED_ENVIRONMENT: "Container Apps environment",
        AUTH_CONFIG: "auth config",
        DIAGNOSTIC_SETTING: "diagnostic setting",
        SUBNET: "subnet",
        PRIVATE_ZONE: "private DNS zone",
        VIRTUAL_NETWORK_LINK: "private DNS link",
    }.get(resource.type, resource.type.rsplit(":", 1)[-1])
    return f"{kind} '{resource.name}'"


def _undecided(resource: Resource, path: str, rule_needs: str) -> Undecided:
    return Undecided(f"{_label(resource)}: {path} is not known before deployment, so {rule_needs} is checked then")


def _containers(app: Resource) -> tuple[list[Any], list[str]]:
    """The app's containers and init containers, and the paths that are not known yet."""
    found: list[Any] = []
    unknown: list[str] = []
    for key in ("containers", "initContainers"):
        value = get(app.props, "template", key)
        if isinstance(value, Unknown):
            unknown.append(f"template.{key}")
        found += items(value)
    return found, unknown


def _container_name(container: Any) -> str:
    name = get(container, "name")
    return "?" if isinstance(name, Unknown) or name is None else str(name)


def _same_id(left: Any, right: Any) -> bool:
    return isinstance(left, str) and isinstance(right, str) and left.lower() == right.lower()


def _id_under(child_id: Any, parent_id: Any, segment: str) -> bool | None:
    """Whether an ARM ID names a child of `parent_id` (`<parent>/<segment>/...`); None if either is unknown."""
    if not isinstance(child_id, str) or not isinstance(parent_id, str) or not child_id or not parent_id:
        return None
    return child_id.lower().startswith(f"{parent_id.rstrip('/')}/{segment}/".lower())


# --- resource rules (inputs, `Analyze`) ------------------------------------------------------


def entra_auth_on(resource: Resource, _: Options) -> list[str]:
    if resource.type != SERVER:
        return []
    state = get(resource.props, "authConfig", "activeDirectoryAuth")
    if isinstance(state, Unknown):
        return [_undecided(resource, "authConfig.activeDirectoryAuth", "Entra authentication")]
    if state != "Enabled":
        return [
            f"{_label(resource)} has authConfig.activeDirectoryAuth {state!r}: set it to 'Enabled' so that "
            "Microsoft Entra identities sign in"
        ]
    return []


def tls_enforced(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONFIGURATION:
        return []
    # Inputs name the parameter `configurationName`; azure-native outputs only have `name`.
    name = get(resource.props, "configurationName")
    if name is None:
        name = get(resource.props, "name")
    value = get(resource.props, "value")
    if name not in ("require_secure_transport", "ssl_min_protocol_version"):
        if isinstance(name, Unknown):
            return [_undecided(resource, "configurationName", "TLS enforcement")]
        return []
    if isinstance(value, Unknown):
        return [_undecided(resource, "value", f"{name}")]
    if name == "require_secure_transport" and str(value).lower() != "on":
        return [f"{_label(resource)} sets require_secure_transport to {value!r}: set it to 'on'"]
    if name == "ssl_min_protocol_version" and value not in ("TLSv1.2", "TLSv1.3"):
        return [f"{_label(resource)} sets ssl_min_protocol_version to {value!r}: set it to 'TLSv1.2' or 'TLSv1.3'"]
    return []


def no_world_open_firewall(resource: Resource, options: Options) -> list[str]:
    if resource.type != FIREWALL_RULE:
        return []
    start, end = get(resource.props, "startIpAddress"), get(resource.props, "endIpAddress")
    if isinstance(start, Unknown) or isinstance(end, Unknown):
        return [_undecided(resource, "startIpAddress/endIpAddress", "the width of the rule")]
    try:
        first, last = ipaddress.IPv4Address(str(start)), ipaddress.IPv4Address(str(end))
    except ValueError:
        return [f"{_label(resource)} has addresses {start!r}-{end!r}, which are not IPv4 addresses: use IPv4 addresses"]
    if int(first) == 0 and int(last) == 0:
        if options.allow_azure_services_rule:
            return []
        return [
            f"{_label(resource)} is the 'Azure services' rule (0.0.0.0-0.0.0.0), which admits every Azure "
            "tenant's resources: remove it, or opt in with the pack's allowAzureServicesRule"
        ]
    width = int(last) - int(first) + 1
    if width > 2 ** (32 - WIDEST_FIREWALL_PREFIX):
        return [
            f"{_label(resource)} admits {first}-{last} ({width:,} addresses): narrow it to at most a "
            f"/{WIDEST_FIREWALL_PREFIX} ({2 ** (32 - WIDEST_FIREWALL_PREFIX):,} addresses)"
        ]
    return []


def key_vault_hardened(resource: Resource, options: Options) -> list[str]:
    if resource.type != VAULT:
        return []
    problems: list[str] = []
    rbac = get(resource.props, "properties", "enableRbacAuthorization")
    if isinstance(rbac, Unknown):
        problems.append(_undecided(resource, "properties.enableRbacAuthorization", "RBAC authorization"))
    elif rbac is not True:
        problems.append(
            f"{_label(resource)} has properties.enableRbacAuthorization {rbac!r}: set it to true "
            "(access policies would let readers bypass role assignments)"
        )
    soft_delete = get(resource.props, "properties", "enableSoftDelete")
    if isinstance(soft_delete, Unknown):
        problems.append(_undecided(resource, "properties.enableSoftDelete", "soft delete"))
    elif soft_delete is False:
        problems.append(f"{_label(resource)} has properties.enableSoftDelete false: leave soft delete on")
    purge_protection = get(resource.props, "properties", "enablePurgeProtection")
    production = options.is_production(resource)
    if purge_protection is True or production is False:
        return problems
    if production is None:
        problems.append(_undecided(resource, "tags.environment", "purge protection in production"))
    elif isinstance(purge_protection, Unknown):
        problems.append(_undecided(resource, "properties.enablePurgeProtection", "purge protection"))
    else:
        problems.append(
            f"{_label(resource)} is production and has properties.enablePurgeProtection {purge_protection!r}: "
            "set it to true"
        )
    return problems


def secrets_only_by_reference(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONTAINER_APP:
        return []
    problems: list[str] = []
    secrets = get(resource.props, "configuration", "secrets")
    if isinstance(secrets, Unknown):
        problems.append(_undecided(resource, "configuration.secrets", "whether secrets are Key Vault references"))
    for index, secret in enumerate(items(secrets)):
        if isinstance(secret, Unknown):
            problems.append(_undecided(resource, f"configuration.secrets[{index}]", "that secret"))
            continue
        # An inline value is a violation even while the value itself is unknown.
        if get(secret, "value") is not None and not get(secret, "keyVaultUrl"):
            problems.append(
                f"{_label(resource)} holds secret {get(secret, 'name')!r} inline (configuration.secrets[].value): "
                "reference Key Vault instead (keyVaultUrl + identity)"
            )
    containers, unknown = _containers(resource)
    problems += [_undecided(resource, path, "its env values") for path in unknown]
    for container in containers:
        env = get(container, "env")
        if isinstance(env, Unknown) or isinstance(container, Unknown):
            problems.append(_undecided(resource, f"env of container {_container_name(container)!r}", "its values"))
            continue
        for variable in items(env):
            name, value = get(variable, "name"), get(variable, "value")
            if value is None:
                continue
            where = f"container {_container_name(container)!r} of {_label(resource)}"
            if isinstance(value, str) and URI_WITH_PASSWORD.search(value):
                problems.append(
                    f"{where} sets {name} to a URI with a password in it: drop the password (token mode) "
                    "or pass the URI with secretRef to a Key Vault reference"
                )
            elif isinstance(value, str) and JWT_VALUE.search(value):
                problems.append(
                    f"{where} sets {name} to a token (a JSON Web Token) as a plain value: pass it with secretRef "
                    "to a Key Vault reference, or let the app fetch it with its managed identity"
                )
            elif isinstance(name, str) and SECRET_NAME.search(name):
                # A plain value for a secret's name is a violation even while the value is unknown.
                problems.append(
                    f"{where} sets {name} as a plain value: pass it with secretRef to a Key Vault reference"
                )
            elif isinstance(value, Unknown) or isinstance(name, Unknown):
                problems.append(
                    _undecided(
                        resource,
                        f"env {name!r} of container {_container_name(container)!r}",
                        "whether it carries a password",
                    )
                )
    return problems


def image_is_pinned(image: str) -> bool:
    """A digest (`@sha256:<64 hex>`), or a tag other than latest."""
    if "@" in image:
        return DIGEST.fullmatch(image.rsplit("@", 1)[1]) is not None
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return tag not in ("", "latest")


def images_pinned(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONTAINER_APP:
        return []
    containers, unknown = _containers(resource)
    problems: list[str] = [_undecided(resource, path, "image pinning") for path in unknown]
    for container in containers:
        image = get(container, "image")
        if isinstance(image, Unknown) or isinstance(container, Unknown):
            problems.append(_undecided(resource, f"image of container {_container_name(container)!r}", "pinning"))
        elif not isinstance(image, str) or not image_is_pinned(image):
            problems.append(
                f"container {_container_name(container)!r} of {_label(resource)} runs image {image!r}: pin a tag "
                "other than latest (e.g. :0.3.0) or a digest (@sha256:<64 hex digits>)"
            )
    return problems


def user_assigned_identity(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONTAINER_APP:
        return []
    kind = get(resource.props, "identity", "type")
    # Inputs give a list of identity IDs, outputs a map keyed by ID: either way, not empty.
    identities = get(resource.props, "identity", "userAssignedIdentities")
    if isinstance(kind, Unknown) or isinstance(identities, Unknown):
        return [_undecided(resource, "identity", "its user-assigned identity")]
    if kind not in ("UserAssigned", "SystemAssigned,UserAssigned") or not identities:
        return [
            f"{_label(resource)} has identity type {kind!r} with {len(identities or ())} user-assigned "
            "identities: give it type 'UserAssigned' and its identity's ID (it holds its Key Vault role before "
            "the first revision; a system-assigned one does not exist yet)"
        ]
    return []


def backups_kept(resource: Resource, options: Options) -> list[str]:
    if resource.type != SERVER:
        return []
    days = get(resource.props, "backup", "backupRetentionDays")
    geo = get(resource.props, "backup", "geoRedundantBackup")
    production = options.is_production(resource)
    problems: list[str] = []
    if isinstance(days, Unknown):
        problems.append(_undecided(resource, "backup.backupRetentionDays", "backup retention"))
        days = None
    elif days is None:
        days = 7  # Azure's default
    wanted = 14 if production else 7
    if production is None and days is not None and 7 <= int(days) < 14:
        problems.append(_undecided(resource, "tags.environment", "the production retention of 14 days"))
    elif days is not None and int(days) < wanted:
        problems.append(
            f"{_label(resource)} keeps backups {int(days)} days: set backup.backupRetentionDays to at least {wanted}"
            + (" in production" if production else "")
        )
    if production is None and geo != "Enabled":
        problems.append(_undecided(resource, "tags.environment", "geo-redundant backups in production"))
    elif production and isinstance(geo, Unknown):
        problems.append(_undecided(resource, "backup.geoRedundantBackup", "geo-redundant backups"))
    elif production and geo != "Enabled":
        problems.append(
            f"{_label(resource)} is production and has backup.geoRedundantBackup {geo!r}: set it to 'Enabled' "
            "(create-only: it replaces the server)"
        )
    return problems


def high_availability_in_production(resource: Resource, options: Options) -> list[str]:
    if resource.type != SERVER:
        return []
    production = options.is_production(resource)
    if production is False:
        return []
    mode = get(resource.props, "highAvailability", "mode")
    if mode is None:
        mode = "Disabled"  # Azure's default: no standby
    if isinstance(mode, Unknown):
        return [_undecided(resource, "highAvailability.mode", "high availability")]
    if mode in ("ZoneRedundant", "SameZone"):
        return []
    if production is None:
        return [_undecided(resource, "tags.environment", "high availability in production")]
    return [f"{_label(resource)} is production and has highAvailability.mode {mode!r}: set it to 'ZoneRedundant'"]


def _aimed_at(setting: Resource, target: Resource) -> bool | None:
    """Whether a diagnostic setting sends `target`'s logs: inputs name the target (`resourceUri`), outputs only
    carry the setting's own ID under it. None when that cannot be known yet."""
    target_id = get(target.props, "id")
    target_uri, setting_id = get(setting.props, "resourceUri"), get(setting.props, "id")
    if _same_id(target_uri, target_id) or _id_under(
        setting_id, target_id, "providers/Microsoft.Insights/diagnosticSettings"
    ):
        return True
    if isinstance(target_id, Unknown) or not (isinstance(target_uri, str) or isinstance(setting_id, str)):
        return None
    return False


def app_logs_to_log_analytics(resources: Sequence[Resource], _: Options) -> list[tuple[Resource, str]]:
    """The environment's logs reach Log Analytics the current way: the `azure-monitor` destination plus a
    diagnostic setting on the environment with a workspace (Microsoft Learn, "Log storage and monitoring options
    in Azure Container Apps"). The shared-key `log-analytics` destination writes through the HTTP Data Collector
    API, whose support ended on 14 September 2026."""
    settings = [s for s in _of_type(resources, DIAGNOSTIC_SETTING) if get(s.props, "workspaceId")]
    findings: list[tuple[Resource, str]] = []
    for environment in _of_type(resources, MANAGED_ENVIRONMENT):
        destination = get(environment.props, "appLogsConfiguration", "destination")
        if isinstance(destination, Unknown):
            findings.append(
                (environment, _undecided(environment, "appLogsConfiguration.destination", "where its logs go"))
            )
            continue
        if destination != "azure-monitor":
            retired = (
                " (the shared-key destination, through the HTTP Data Collector API: support ended 14 September 2026)"
                if destination == "log-analytics"
                else ""
            )
            findings.append(
                (
                    environment,
                    f"{_label(environment)} has appLogsConfiguration.destination {destination!r}{retired}: set it to "
                    "'azure-monitor' and add a DiagnosticSetting on the environment with workspaceId set to the "
                    "workspace (logAnalyticsDestinationType 'Dedicated')",
                )
            )
            continue
        aimed = [_aimed_at(setting, environment) for setting in settings]
        if True in aimed:
            continue
        if None in aimed or isinstance(get(environment.props, "id"), Unknown):
            findings.append((environment, _undecided(environment, "its ID or its settings' targets", "its log route")))
        else:
            findings.append(
                (
                    environment,
                    f"{_label(environment)} sends its logs to 'azure-monitor', but no diagnostic setting sends them to "
                    "Log Analytics: add a DiagnosticSetting with resourceUri set to its ID and workspaceId set to the "
                    "workspace (logAnalyticsDestinationType 'Dedicated')",
                )
            )
    return findings


def required_tags(resource: Resource, options: Options) -> list[str]:
    if resource.type not in TAGGABLE:
        return []
    tags = get(resource.props, "tags")
    if isinstance(tags, Unknown):
        return [_undecided(resource, "tags", "its required tags")]
    missing = [tag for tag in options.required_tags if get(tags, tag) in (None, "")]
    if missing:
        return [f"{_label(resource)} lacks the tag(s) {', '.join(missing)}: add them (configurable: requiredTags)"]
    return []


def restricted_access_mode(resource: Resource, _: Options) -> list[str]:
    if resource.type != CONTAINER_APP:
        return []
    containers, unknown = _containers(resource)
    problems: list[str] = [_undecided(resource, path, "the access mode") for path in unknown]
    for container in containers:
        arguments = get(container, "args")
        if isinstance(arguments, Unknown) or isinstance(container, Unknown):
            problems.append(_undecided(resource, f"args of container {_container_name(container)!r}", "its mode"))
            continue
        values = [argument for argument in items(arguments) if not isinstance(argument, Unknown)]
        if "--access-mode=unrestricted" in values or "unrestricted" in values:
            problems.append(
                f"container {_container_name(container)!r} of {_label(resource)} runs postgres-mcp with "
                "--access-mode=unrestricted, so its tools can change data: use --access-mode=restricted "
                "unless writes are intended (config mcpAccessMode)"
            )
        elif len(values) < len(items(arguments)):
            problems.append(_undecided(resource, f"args of container {_container_name(container)!r}", "its mode"))
    return problems


def apps_subnet_has_nsg(resource: Resource, _: Options) -> list[str]:
    """A subnet delegated to Container Apps has a network security group (PSRule Azure.VNET.UseNSGs)."""
    if resource.type != SUBNET:
        return []
    delegations = get(resource.props, "delegations")
    if isinstance(delegations, Unknown):
        return [_undecided(resource, "delegations", "whether it needs a network security group")]
    services = [get(delegation, "serviceName") for delegation in items(delegations)]
    if any(isinstance(service, Unknown) for service in services):
        return [_undecided(resource, "delegations[].serviceName", "whether it needs a network security group")]
    if not any(str(service).lower() == CONTAINER_APPS_DELEGATION.lower() for service in services):
        return []
    group = get(resource.props, "networkSecurityGroup")
    group_id = get(group, "id")
    if isinstance(group_id, Unknown):
        return [_undecided(resource, "networkSecurityGroup.id", "its network security group")]
    if not group_id:
        return [
            f"{_label(resource)} is delegated to {CONTAINER_APPS_DELEGATION} and has no network security group: "
            "set networkSecurityGroup.id (components/network.py builds one from Microsoft's workload-profiles rules)"
        ]
    return []


def maintenance_window_set(resource: Resource, options: Options) -> list[str]:
    """A production server is patched in a window the team chose (PSRule Azure.PostgreSQL.MaintenanceWindow):
    `customWindow` Enabled with a day (0 = Sunday ... 6) and an hour (0-23), REST API MaintenanceWindow."""
    if resource.type != SERVER:
        return []
    production = options.is_production(resource)
    if production is False:
        return []
    window = get(resource.props, "maintenanceWindow")
    fields = {key: get(window, key) for key in ("customWindow", "dayOfWeek", "startHour")}
    unknown = [key for key, value in fields.items() if isinstance(value, Unknown)]
    if isinstance(window, Unknown) or unknown:
        return [_undecided(resource, "maintenanceWindow", "its maintenance window")]
    custom, day, hour = fields["customWindow"], fields["dayOfWeek"], fields["startHour"]
    if custom == "Enabled" and isinstance(day, (int, float)) and isinstance(hour, (int, float)):
        if 0 <= day <= 6 and 0 <= hour <= 23:
            return []
    if production is None:
        return [_undecided(resource, "tags.environment", "a custom maintenance window in production")]
    return [
        f"{_label(resource)} is production and has no custom maintenance window (maintenanceWindow "
        f"customWindow {custom!r}, dayOfWeek {day!r}, startHour {hour!r}): set customWindow 'Enabled' with "
        "dayOfWeek 0-6 (0 = Sunday) and startHour 0-23 (config maintenanceWindow, e.g. 'Sun 02:00')"
    ]


# --- stack rules (outputs, `AnalyzeStack`) ---------------------------------------------------


def _of_type(resources: Iterable[Resource], resource_type: str) -> list[Resource]:
    return [r for r in resources if r.type == resource_type]


def _belongs(
    child: Resource, parent: Resource, parents: Sequence[Resource], segment: str, name_key: str
) -> bool | None:
    """Whether `child` (a sub-resource) belongs to `parent`: by ARM ID (outputs), else by the
    parent's name input (inputs), else - with one candidate parent - to that one. None: cannot tell."""
    by_id = _id_under(get(child.props, "id"), get(parent.props, "id"), segment)
    if by_id is not None:
        return by_id
    child_names = get(child.props, name_key)
    parent_name = get(parent.props, name_key)
    if parent_name is None:
        parent_name = get(parent.props, "name")
    if isinstance(child_names, str) and isinstance(parent_name, str):
        return child_names == parent_name
    if len(parents) == 1:
        return True
    return None


def password_auth_off_in_token_mode(resources: Sequence[Resource], _: Options) -> list[tuple[Resource, str]]:
    findings: list[tuple[Resource, str]] = []
    token_mode = False
    for app in _of_type(resources, CONTAINER_APP):
        containers, unknown = _containers(app)
        findings += [(app, _undecided(app, path, "whether the stack runs in token mode")) for path in unknown]
        token_mode = token_mode or any(get(container, "name") == "token-refresher" for container in containers)
    if not token_mode:
        return findings
    for server in _of_type(resources, SERVER):
        state = get(server.props, "authConfig", "passwordAuth")
        if isinstance(state, Unknown):
            findings.append((server, _undecided(server, "authConfig.passwordAuth", "password authentication")))
        elif state != "Disabled":
            findings.append(
                (
                    server,
                    f"{_label(server)} has authConfig.passwordAuth {state!r} although the stack runs in token "
                    "mode (a token-refresher sidecar is deployed): set it to 'Disabled'",
                )
            )
    return findings


def tls_configured(resources: Sequence[Resource], _: Options) -> list[tuple[Resource, str]]:
    servers = _of_type(resources, SERVER)
    findings: list[tuple[Resource, str]] = []
    for server in servers:
        names: set[str] = set()
        undecided = False
        for parameter in _of_type(resources, CONFIGURATION):
            belongs = _belongs(parameter, server, servers, "configurations", "serverName")
            name = get(parameter.props, "configurationName")
            if name is None:
                name = get(parameter.props, "name")  # outputs carry only the name
            if belongs is None or isinstance(name, Unknown):
                undecided = True
            elif belongs and isinstance(name, str):
                names.add(name)
        missing = [name for name in ("require_secure_transport", "ssl_min_protocol_version") if name not in names]
        if missing and undecided:
            findings.append((server, _undecided(server, "its parameters' names or IDs", "the TLS parameters")))
        elif missing:
            findings.append(
                (
                    server,
                    f"the stack does not set {', '.join(missing)} on {_label(server)}: declare a "
                    "Configuration for each (require_secure_transport 'on', ssl_min_protocol_version 'TLSv1.2')",
                )
            )
    return findings


def diagnostics_to_log_analytics(resources: Sequence[Resource], _: Options) -> list[tuple[Resource, str]]:
    """Each server and Key Vault has a diagnostic setting with a workspace, matched by the target's ID:
    inputs name it (`resourceUri`), outputs only carry the setting's own ID (`<target>/providers/...`)."""
    settings = [s for s in _of_type(resources, DIAGNOSTIC_SETTING) if get(s.props, "workspaceId")]
    targets = _of_type(resources, SERVER) + _of_type(resources, VAULT)
    unresolved = 0  # settings whose target cannot be known yet
    covered: list[Resource] = []
    for setting in settings:
        target_uri = get(setting.props, "resourceUri")
        setting_id = get(setting.props, "id")
        matched = False
        for target in targets:
            target_id = get(target.props, "id")
            if _same_id(target_uri, target_id) or _id_under(
                setting_id, target_id, "providers/Microsoft.Insights/diagnosticSettings"
            ):
                covered.append(target)
                matched = True
        known = isinstance(target_uri, str) or isinstance(setting_id, str)
        if not matched and not known and (isinstance(target_uri, Unknown) or isinstance(setting_id, Unknown)):
            unresolved += 1
    uncovered = [t for t in targets if t not in covered]
    findings: list[tuple[Resource, str]] = []
    for target in uncovered:
        if unresolved >= len(uncovered) or isinstance(get(target.props, "id"), Unknown):
            findings.append((target, _undecided(target, "its ID or its settings' targets", "its diagnostic setting")))
        else:
            findings.append(
                (
                    target,
                    f"no diagnostic setting sends the logs of {_label(target)} to Log Analytics: add a "
                    "DiagnosticSetting with resourceUri set to its ID and workspaceId set to the workspace",
                )
            )
    return findings


def _allow_list_problem(restrictions: Any) -> str | None:
    """None if `restrictions` is an allow-list that keeps the internet out; else what is wrong."""
    if isinstance(restrictions, Unknown):
        return Undecided("ipSecurityRestrictions")
    rules = items(restrictions)
    allowed = []
    for index, rule in enumerate(rules):
        action = get(rule, "action")
        if isinstance(action, Unknown) or isinstance(rule, Unknown):
            return Undecided(f"ipSecurityRestrictions[{index}]")
        if action != "Allow":
            continue
        cidr = get(rule, "ipAddressRange")
        if isinstance(cidr, Unknown):
            return Undecided(f"ipSecurityRestrictions[{index}].ipAddressRange")
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            return f"its allow-list has an Allow rule for {cidr!r}, which is not an address range"
        if network.prefixlen < WIDEST_ALLOW_PREFIX:
            return f"its allow-list has an Allow rule for {cidr}, which admits the whole internet or most of it"
        allowed.append(network)
    if not allowed:
        if rules:
            return "its ipSecurityRestrictions hold no Allow rule (Deny rules alone admit everyone else)"
        return "it has no IP allow-list (configuration.ingress.ipSecurityRestrictions)"
    return None


def _sign_in_problem(auth: Resource) -> str | None:
    """None if this auth config makes callers sign in; else what is wrong."""
    enabled = get(auth.props, "platform", "enabled")
    action = get(auth.props, "globalValidation", "unauthenticatedClientAction")
    if isinstance(enabled, Unknown) or isinstance(action, Unknown):
        return Undecided("platform.enabled/globalValidation.unauthenticatedClientAction")
    if enabled is not True:
        return f"{_label(auth)} has platform.enabled {enabled!r}, so sign-in is off"
    if action not in SIGNED_IN_ACTIONS:
        return f"{_label(auth)} lets unauthenticated callers through (unauthenticatedClientAction {action!r})"
    return None


# The sign-in gateway (gateway/ in the repository; components/mcp_app.py declares it): the container that runs
# this command and listens on this port signs callers in with Entra (an OAuth proxy) before anything reaches
# postgres-mcp, which then listens on loopback only. The pack runs in its own virtualenv and imports nothing of
# the program: tests/test_policy.py checks that these values are the program's.
GATEWAY_COMMAND = ("python", "-m", "gateway")
GATEWAY_PORT = 8080
GATEWAY_ENTRA_SETTINGS = ("ENTRA_TENANT_ID", "ENTRA_CLIENT_ID")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NOT_A_GATEWAY = "not a gateway"


def _env_value(container: Any, name: str) -> Any:
    """A plain environment variable's value (None when absent or a secretRef; Unknown when unknown)."""
    env = get(container, "env")
    if isinstance(env, Unknown):
        return env
    for variable in items(env):
        if get(variable, "name") == name:
            return get(variable, "value")
    return None


def _sse_host(container: Any) -> Any:
    """The host a postgres-mcp container's SSE server binds: its --sse-host, or 0.0.0.0, which the image's
    docker-entrypoint.sh adds to an SSE server that names none (crystaldba/postgres-mcp v0.3.0). None: no SSE."""
    args = get(container, "args")
    if isinstance(args, Unknown):
        return args
    values = [str(arg) for arg in items(args) if not isinstance(arg, Unknown)]
    if "--transport=sse" not in values and not any(
        a == "--transport" and b == "sse" for a, b in itertools.pairwise(values)
    ):
        return None
    host: Any = "0.0.0.0"
    for index, value in enumerate(values):
        if value.startswith("--sse-host="):
            host = value.split("=", 1)[1]
        elif value == "--sse-host" and index + 1 < len(values):
            host = values[index + 1]
    return host


def _gateway_containers(app: Resource) -> list[Any] | Undecided | None:
    """The gateway containers the app's ingress targets; None when it targets no gateway."""
    target = get(app.props, "configuration", "ingress", "targetPort")
    containers, unknown = _containers(app)
    if isinstance(target, Unknown) or unknown:
        return _undecided(app, "its ingress's target port or containers", "whether a sign-in gateway fronts it")
    gateways = [c for c in containers if tuple(str(part) for part in items(get(c, "command"))) == GATEWAY_COMMAND]
    return gateways if target == GATEWAY_PORT and gateways else None


def _gateway_sign_in(app: Resource, gateways: list[Any]) -> str | None:
    """None when the gateway has its Entra settings; else what is missing (or Undecided)."""
    missing: list[str] = []
    for name in GATEWAY_ENTRA_SETTINGS:
        value = _env_value(gateways[0], name)
        if isinstance(value, Unknown):
            return _undecided(app, f"the gateway's {name}", "its sign-in")
        if not value:
            missing.append(name)
    return f"its sign-in gateway has no Entra settings ({', '.join(missing)} empty or absent)" if missing else None


def _backend_exposed(app: Resource, gateways: list[Any]) -> str | None:
    """None when every SSE server behind the gateway listens on loopback; else which does not (or Undecided)."""
    containers, _ = _containers(app)
    for container in containers:
        if any(container is gateway for gateway in gateways):
            continue
        host = _sse_host(container)
        if isinstance(host, Unknown):
            return _undecided(app, f"the args of container '{_container_name(container)}'", "where it listens")
        if host is not None and host not in LOOPBACK_HOSTS:
            return (
                f"{_label(app)}: container '{_container_name(container)}' listens on {host} behind the sign-in "
                "gateway, so anything that reaches the replica reaches postgres-mcp without signing in: set "
                "--sse-host=127.0.0.1"
            )
    return None


def not_anonymous_and_public(resources: Sequence[Resource], _: Options) -> list[tuple[Resource, str]]:
    apps = _of_type(resources, CONTAINER_APP)
    findings: list[tuple[Resource, str]] = []
    gateways = {app.name: _gateway_containers(app) for app in apps}
    # Behind the sign-in gateway postgres-mcp must listen on loopback, in every environment: bound to all
    # addresses it is reachable around the gateway (from the VNet, or the environment's other apps).
    exposed: set[str] = set()
    for app in apps:
        found = gateways[app.name]
        if isinstance(found, list):
            problem = _backend_exposed(app, found)
            if problem is not None:
                findings.append((app, problem))
                exposed.add(app.name)
    # An internal environment has no public address: `external` ingress there reaches the VNet only
    # (Microsoft Learn, Container Apps "Networking": internal environments, ingress "Limited to VNet").
    environments = _of_type(resources, MANAGED_ENVIRONMENT)
    if environments and all(get(e.props, "vnetConfiguration", "internal") is True for e in environments):
        return findings
    for app in apps:
        if app.name in exposed:
            continue
        external = get(app.props, "configuration", "ingress", "external")
        if isinstance(external, Unknown):
            findings.append((app, _undecided(app, "configuration.ingress.external", "whether it is public")))
            continue
        if external is not True:
            continue
        allow_list = _allow_list_problem(get(app.props, "configuration", "ingress", "ipSecurityRestrictions"))
        if allow_list is None:
            continue
        found = gateways[app.name]
        if isinstance(found, Undecided):
            findings.append((app, found))
            continue
        if found is not None:
            gateway = _gateway_sign_in(app, found)
            if gateway is None:
                continue  # the ingress reaches only the gateway, which signs every caller in
            if isinstance(gateway, Undecided) or isinstance(allow_list, Undecided):
                findings.append((app, _undecided(app, "its allow-list or gateway settings", "anonymous public access")))
                continue
            findings.append(
                (
                    app,
                    f"{_label(app)} is public (ingress external) and anonymous: {allow_list}, and {gateway}. Set the "
                    "gateway's ENTRA_TENANT_ID and ENTRA_CLIENT_ID (signIn: gateway), or an allow-list",
                )
            )
            continue
        sign_in: list[str | None] = []
        for auth in _of_type(resources, AUTH_CONFIG):
            belongs = _belongs(auth, app, apps, "authConfigs", "containerAppName")
            if belongs is None:
                sign_in.append(Undecided("the auth config's app"))
            elif belongs:
                sign_in.append(_sign_in_problem(auth))
        if None in sign_in:
            continue
        if isinstance(allow_list, Undecided) or any(isinstance(problem, Undecided) for problem in sign_in):
            findings.append((app, _undecided(app, "its allow-list or sign-in settings", "anonymous public access")))
            continue
        why_not_signed_in = "; ".join(p for p in sign_in if p) or "no Entra sign-in (ContainerAppsAuthConfig)"
        findings.append(
            (
                app,
                f"{_label(app)} is public (ingress external) and anonymous: {allow_list}, and {why_not_signed_in}. "
                "postgres-mcp authenticates nobody: set allowedClientCidrs to your clients' ranges, or configure "
                "Entra sign-in (entraClientId) with unauthenticatedClientAction Return401",
            )
        )
    return findings


def _zone_name(zone: Resource) -> Any:
    """A private DNS zone's name: `name` in outputs, `privateZoneName` in inputs."""
    name = get(zone.props, "name")
    return get(zone.props, "privateZoneName") if name is None else name


def _vnet_of_subnet(subnet_id: Any) -> str | None:
    """The VNet's ARM ID from a subnet's (`<vnet>/subnets/<name>`); None when it is not in that form."""
    if not isinstance(subnet_id, str) or "/subnets/" not in subnet_id.lower():
        return None
    return subnet_id[: subnet_id.lower().rindex("/subnets/")]


def private_dns_linked_in_internal_mode(resources: Sequence[Resource], _: Options) -> list[tuple[Resource, str]]:
    """An internal environment has no public name: its apps resolve inside the VNet only through a private DNS
    zone named after its default domain and linked to the VNet (Microsoft Learn, "Provide a virtual network to
    an internal Azure Container Apps environment")."""
    zones = _of_type(resources, PRIVATE_ZONE)
    links = _of_type(resources, VIRTUAL_NETWORK_LINK)
    findings: list[tuple[Resource, str]] = []
    for environment in _of_type(resources, MANAGED_ENVIRONMENT):
        internal = get(environment.props, "vnetConfiguration", "internal")
        if isinstance(internal, Unknown):
            findings.append((environment, _undecided(environment, "vnetConfiguration.internal", "its private DNS")))
            continue
        if internal is not True:
            continue
        domain = get(environment.props, "defaultDomain")
        names = [_zone_name(zone) for zone in zones]
        if not zones:
            findings.append(
                (
                    environment,
                    f"{_label(environment)} is internal and the stack declares no private DNS zone: its apps "
                    "resolve nowhere. Add a PrivateZone named after its defaultDomain with a `*` A record to its "
                    "staticIp, and a VirtualNetworkLink to the VNet",
                )
            )
            continue
        if not isinstance(domain, str) or any(not isinstance(name, str) for name in names):
            findings.append((environment, _undecided(environment, "defaultDomain", "its private DNS zone")))
            continue
        matching = [z for z, n in zip(zones, names, strict=True) if str(n).lower().rstrip(".") == domain.lower()]
        if not matching:
            findings.append(
                (
                    environment,
                    f"{_label(environment)} is internal and no private DNS zone is named after its default domain "
                    f"{domain} (the stack has {', '.join(sorted(map(str, names)))}): name the zone after it",
                )
            )
            continue
        wanted_vnet = _vnet_of_subnet(get(environment.props, "vnetConfiguration", "infrastructureSubnetId"))
        undecided = False
        linked = False
        for zone in matching:
            for link in links:
                belongs = _belongs(link, zone, zones, "virtualNetworkLinks", "privateZoneName")
                vnet = get(link.props, "virtualNetwork", "id")
                if belongs is None or (belongs and isinstance(vnet, Unknown)):
                    undecided = True
                elif belongs and isinstance(vnet, str) and vnet:
                    linked = linked or wanted_vnet is None or _same_id(vnet, wanted_vnet)
        if linked:
            continue
        if undecided:
            findings.append((environment, _undecided(environment, "its private DNS links", "its private DNS link")))
            continue
        findings.append(
            (
                environment,
                f"{_label(environment)} is internal and its private DNS zone {domain} is not linked to the VNet "
                f"of its subnet{f' ({wanted_vnet})' if wanted_vnet else ''}: add a VirtualNetworkLink from the "
                "zone to that VNet, or the apps' names do not resolve there",
            )
        )
    return findings


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
        config=("allowAzureServicesRule",),
    ),
    Rule(
        "key-vault-hardened",
        "Key Vault uses RBAC authorization and soft delete, and purge protection in "
        "production, so that secrets cannot be read by access policies or destroyed for good.",
        "mandatory",
        check_resource=key_vault_hardened,
        config=("productionEnvironments",),
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
        "The MCP ingress is not public and anonymous at once (postgres-mcp authenticates nobody): a public "
        "ingress needs an allow-list of Allow rules none of which admits the internet (0.0.0.0/0), the sign-in "
        "gateway (the ingress targets its container, with its Entra settings), or Easy Auth sign-in that is enabled "
        "(platform.enabled) and refuses anonymous callers (not AllowAnonymous). Behind the gateway postgres-mcp "
        "listens on 127.0.0.1 only, in any environment.",
        "mandatory",
        check_stack=not_anonymous_and_public,
    ),
    Rule(
        "backups-kept",
        "Backups are kept at least 7 days; in production at least 14 days and geo-redundant.",
        "mandatory",
        check_resource=backups_kept,
        config=("productionEnvironments",),
    ),
    Rule(
        "high-availability-in-production",
        "A production server has a standby (zone-redundant HA).",
        "advisory",
        check_resource=high_availability_in_production,
        config=("productionEnvironments",),
    ),
    Rule(
        "app-logs-to-log-analytics",
        "The Container Apps environment sends its logs to Log Analytics.",
        "mandatory",
        check_stack=app_logs_to_log_analytics,
    ),
    Rule(
        "diagnostics-to-log-analytics",
        "The server and the Key Vault send their logs and metrics to Log Analytics through diagnostic "
        "settings, each matched to its target by the target's ID.",
        "mandatory",
        check_stack=diagnostics_to_log_analytics,
    ),
    Rule(
        "required-tags",
        "Every taggable resource carries the `environment` and `owner` tags (configurable: "
        "requiredTags), for cost and ownership.",
        "mandatory",
        check_resource=required_tags,
        config=("requiredTags",),
    ),
    Rule(
        "restricted-access-mode",
        "postgres-mcp runs in restricted (read-only) mode unless unrestricted was chosen explicitly.",
        "advisory",
        check_resource=restricted_access_mode,
    ),
    Rule(
        "apps-subnet-has-nsg",
        "The subnet delegated to Container Apps has a network security group, so that inbound traffic through "
        "the VNet meets Microsoft's workload-profiles rules.",
        "mandatory",
        check_resource=apps_subnet_has_nsg,
    ),
    Rule(
        "private-dns-linked-in-internal-mode",
        "An internal Container Apps environment has a private DNS zone named after its default domain, linked "
        "to the VNet of its subnet: without it the app's name resolves nowhere.",
        "mandatory",
        check_stack=private_dns_linked_in_internal_mode,
    ),
    Rule(
        "maintenance-window-set",
        "A production server has a custom maintenance window (day and hour), so that patches and their "
        "restart or failover come when the team chose.",
        "mandatory",
        check_resource=maintenance_window_set,
        config=("productionEnvironments",),
    ),
)


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    undecided: list[Violation] = field(default_factory=list)

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == "mandatory"]


def evaluate(resources: Sequence[Resource], options: Options | None = None) -> Report:
    """Every rule over every resource, as the pack would run them (without CrossGuard)."""
    options = options or Options()
    report = Report()

    def add(rule: Rule, resource: Resource, message: str) -> None:
        found = Violation(rule.name, rule.enforcement, resource.name, message)
        (report.undecided if isinstance(message, Undecided) else report.violations).append(found)

    for rule in RULES:
        if rule.check_resource is not None:
            for resource in resources:
                for message in rule.check_resource(resource, options):
                    add(rule, resource, message)
        if rule.check_stack is not None:
            for resource, message in rule.check_stack(resources, options):
                add(rule, resource, message)
    return report
