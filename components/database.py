"""Azure Database for PostgreSQL Flexible Server with Entra authentication.

Entra authentication is always on and has an administrator (the identity that the
role/grant step signs in as); password authentication is on only in password mode.
TLS is enforced. The firewall admits the configured deployer ranges and the app's
egress IP; the "Azure services" rule exists only when explicitly asked for.

Flexible Server applies one management operation at a time and refuses a second one
while the first runs ("ServerIsBusy"), so the server's children are chained.

Create-only properties never follow `authMode`, and a change of one is refused before
anything happens: the values the server was created with are a stack output
(`serverCreateOnly`), which the next run reads back through a stack reference to its own
stack and compares with what it would declare, before it declares any resource.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import pulumi
from pulumi_azure_native import dbforpostgresql as postgresql

from components.adoption import AdoptedServer
from components.monitoring import DIAGNOSTIC_SETTING_NAME, send_diagnostics
from settings import EntraAdmin, MaintenanceWindow

POSTGRES_PORT = 5432
# The server's password administrator, in both modes (create-only: it cannot follow authMode).
ADMIN_LOGIN = "pgadmin"
TLS_SETTINGS = (("require_secure_transport", "on"), ("ssl_min_protocol_version", "TLSv1.2"))
AZURE_SERVICES_RULE = "AllowAllAzureServicesAndResourcesWithinAzureIps"
CI_RUNNER_RULE = "ci-runner"


# Create-only properties of Microsoft.DBforPostgreSQL/flexibleServers in REST API 2025-08-01 (the
# version pulumi-azure-native 3.x deploys): `x-ms-mutability: [read, create]` in the spec's
# ServerProperties and Backup definitions, plus the resource's name, group and location. A change
# of any of them makes the provider replace the server, and a replaced server starts empty.
CREATE_ONLY_PROPERTIES = (
    "serverName",
    "resourceGroupName",
    "location",
    "administratorLogin",
    "backup.geoRedundantBackup",
    "availabilityZone",
    "sourceServerResourceId",
    "pointInTimeUTC",
)
# Left to Azure (it picks a zone when none is given) and never compared: a zone that Azure chose
# must not read as a change, nor one it moved after a failover.
AZURE_CHOSEN_PROPERTIES = ("availabilityZone", "highAvailability.standbyAvailabilityZone")
# What this program sets among them, with the config key that decides each value. The server's
# name is `<serverNamePrefix><stable random suffix>`, so its prefix stands for the name.
GUARDED_PROPERTIES: dict[str, str] = {
    "serverNamePrefix": "namePrefix (and the stack name)",
    "location": "location",
    "administratorLogin": "none (the program's constant; absent on servers an earlier version made in token mode)",
    "backup.geoRedundantBackup": "geoRedundantBackup",
}
CREATE_ONLY_OUTPUT = "serverCreateOnly"


class CreateOnlyChangeError(pulumi.RunError):
    """A create-only server property would change: the server would be replaced and its data lost."""


def server_name_prefix(base_name: str) -> str:
    return f"{base_name}-pg-"


# What versions of this program from before the record exported: a deployed server, and the mode it
# was deployed in. Those versions gave the server a password administrator in password mode only.
LEGACY_SERVER_OUTPUT = "serverFqdn"
LEGACY_MODE_OUTPUT = "authMode"
NO_LOGIN = ""


def deployed_by_an_earlier_version(outputs: Mapping[str, Any]) -> bool:
    """The stack's last update came from a version of this program from before the record."""
    return CREATE_ONLY_OUTPUT not in outputs and LEGACY_SERVER_OUTPUT in outputs


def earlier_entra_admin(outputs: Mapping[str, Any]) -> str | None:
    """The Entra administrator's name a stack last deployed by an earlier version has, else None."""
    name = outputs.get("entraAdminPrincipalName")
    return str(name) if deployed_by_an_earlier_version(outputs) and name else None


def recorded_create_only_values(outputs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The create-only values the server was created with, from the last update's outputs: the record,
    or, for a stack last deployed by a version from before the record, what its outputs tell (whether
    the server has a password administrator). None before the first deployment."""
    record = outputs.get(CREATE_ONLY_OUTPUT)
    if isinstance(record, Mapping):
        return record
    if LEGACY_SERVER_OUTPUT not in outputs:
        return None
    mode = outputs.get(LEGACY_MODE_OUTPUT)
    if mode not in ("token", "password"):
        raise CreateOnlyChangeError(
            f"this stack's server ({outputs[LEGACY_SERVER_OUTPUT]}) was deployed by an earlier version of this "
            f"program, and its output '{LEGACY_MODE_OUTPUT}' ({mode!r}) does not say whether the server has a "
            "password administrator, which Azure sets only when a server is created. Nothing was changed: run "
            "`pulumi up` once with the version that deployed it, then this one."
        )
    return {"administratorLogin": ADMIN_LOGIN if mode == "password" else NO_LOGIN}


def administrator_login(recorded: Mapping[str, Any] | None) -> str:
    """The password administrator to declare: the program's, unless the server was created without one
    (token mode, before the login existed in both modes). Azure sets the login only at creation, so
    such a server keeps having none: declaring one would replace it."""
    if recorded is not None and recorded.get("administratorLogin") == NO_LOGIN:
        return NO_LOGIN
    return ADMIN_LOGIN


def refuse_password_mode_without_login(login: str, auth_mode: str) -> None:
    if auth_mode == "password" and login == NO_LOGIN:
        raise CreateOnlyChangeError(
            "config key 'authMode': 'password' needs the server's password administrator, and this server was "
            "created without one (in token mode, by an earlier version of this program). Azure sets the "
            "administrator login only when a server is created, so adding it would replace the server, and a "
            "new server starts empty. Nothing was changed. Keep authMode 'token'; to move to password mode on "
            "purpose, dump the data, deploy a new stack and restore it there."
        )


def create_only_values(
    base_name: str, location: str, geo_redundant_backup: bool, login: str = ADMIN_LOGIN
) -> dict[str, str]:
    """The guarded create-only values this program declares for the server."""
    return {
        "serverNamePrefix": server_name_prefix(base_name),
        "location": location,
        "administratorLogin": login,
        "backup.geoRedundantBackup": "Enabled" if geo_redundant_backup else "Disabled",
    }


def create_only_changes(recorded: Mapping[str, Any] | None, declared: Mapping[str, Any]) -> list[str]:
    """The guarded properties whose declared value differs from the one the server was created with."""
    if not isinstance(recorded, Mapping):
        return []  # the first deployment, or a stack from before the record existed
    return [
        f"{key}: {recorded[key]!r} -> {declared[key]!r} (config key: {GUARDED_PROPERTIES[key]})"
        for key in GUARDED_PROPERTIES
        if key in recorded and key in declared and recorded[key] != declared[key]
    ]


def refuse_create_only_changes(recorded: Mapping[str, Any] | None, declared: Mapping[str, Any]) -> dict[str, Any]:
    """Returns `declared`, or raises when the server would be replaced."""
    changes = create_only_changes(recorded, declared)
    if changes:
        raise CreateOnlyChangeError(
            "the PostgreSQL Flexible Server would be replaced, and a new server starts empty: "
            "these properties can only be chosen when the server is created, and they differ from the "
            f"values recorded in this stack's output '{CREATE_ONLY_OUTPUT}':\n  - "
            + "\n  - ".join(changes)
            + "\nNothing was changed. Set the config back to the recorded values; to move to a new server on "
            "purpose, dump the data, deploy the new server in a new stack and restore it there."
        )
    return dict(declared)


def maintenance_window_args(window: MaintenanceWindow | None) -> postgresql.MaintenanceWindowArgs:
    if window is None:
        return postgresql.MaintenanceWindowArgs(custom_window="Disabled")
    return postgresql.MaintenanceWindowArgs(
        custom_window="Enabled",
        day_of_week=window.day_of_week,
        start_hour=window.start_hour,
        start_minute=window.start_minute,
    )


@dataclass(frozen=True)
class FirewallRange:
    name: str
    start: str
    end: str


def deployer_firewall_ranges(networks: tuple[ipaddress.IPv4Network, ...]) -> list[FirewallRange]:
    """One rule per configured deployer range, named after its position."""
    return [
        FirewallRange(f"deployer-{index}", str(network.network_address), str(network.broadcast_address))
        for index, network in enumerate(networks)
    ]


def adopted_rule_name(prefix: str, rule_name: str) -> str:
    """The name of one of the program's firewall rules on an adopted server: its stack's prefix, so that
    the server's own rules (the owner's AllowAllAzureServices... among them) are never overwritten."""
    return prefix + ("azure-services" if rule_name == AZURE_SERVICES_RULE else rule_name)


class DatabaseArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    server_name: pulumi.Input[str]
    tenant_id: pulumi.Input[str]
    entra_admin: EntraAdmin
    """Complete: settings.load() fills what config left empty from the deploying principal."""
    password_auth: bool
    administrator_login: str
    """ADMIN_LOGIN, or NO_LOGIN for a server created without one (see administrator_login)."""
    administrator_password: pulumi.Input[str]
    """The password of ADMIN_LOGIN, kept in Key Vault; usable only while password auth is on."""
    version: str
    sku_name: str
    sku_tier: str
    storage_size_gb: int
    backup_retention_days: int
    geo_redundant_backup: bool
    high_availability: str
    maintenance_window: MaintenanceWindow | None
    """A custom one-hour window (UTC), or None for Azure's system-managed one."""
    database_name: str
    deployer_networks: tuple[ipaddress.IPv4Network, ...]
    app_egress_ip: pulumi.Input[str] | tuple[str, ...]
    """The NAT gateway's address, or the addresses an existing environment's traffic leaves from."""
    allow_azure_services: bool
    ci_runner_ip: str
    """The deploy pipeline's runner, admitted for one run (the pipeline removes the rule after)."""
    protect: bool
    tags: dict[str, str]
    workspace_id: pulumi.Input[str]
    adopted: NotRequired[AdoptedServer | None]
    """An existing server (existingServerId): no Server, no server parameters; only the program's own children,
    named with `owned_prefix` so that the server's own firewall rules and settings stay untouched."""
    owned_prefix: NotRequired[str]
    existing_database: NotRequired[bool]
    entra_admin_exists: NotRequired[bool]


class Database(pulumi.ComponentResource):
    server_id: pulumi.Output[str]
    server_name: pulumi.Output[str]
    fqdn: pulumi.Output[str]
    database_name: pulumi.Output[str]
    entra_admin_object_id: pulumi.Output[str]
    entra_admin_principal_name: pulumi.Output[str]
    entra_admin_principal_type: pulumi.Output[str]
    ready: list[pulumi.Resource]
    """Everything the role/grant step must wait for: admin, TLS, database, firewall."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("postgresmcp:database:Database", name, None, opts)
        admin = args["entra_admin"]
        if admin.object_id is None or admin.principal_name is None or admin.principal_type is None:
            raise ValueError(f"the Entra administrator must be complete, not {admin}")
        adopted = args.get("adopted")
        previous: pulumi.Resource | None = None
        if adopted is None:
            server = self._server(name, args)
            previous = server
            server_id: pulumi.Output[str] = server.id
            server_name: pulumi.Output[str] = server.name
            fqdn = server.fully_qualified_domain_name.apply(lambda fqdn: fqdn or "")
            resource_group_name: pulumi.Input[str] = args["resource_group_name"]
            prefix = ""
        else:
            server_id = pulumi.Output.from_input(adopted.id)
            server_name = pulumi.Output.from_input(adopted.name)
            fqdn = pulumi.Output.from_input(adopted.fqdn)
            resource_group_name = adopted.resource_group
            prefix = args.get("owned_prefix", "")
            if not prefix:
                raise ValueError("an adopted server's children need the stack's prefix (owned_prefix)")

        def serialized() -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[previous] if previous is not None else None)

        ready: list[pulumi.Resource] = []
        if not args.get("entra_admin_exists", False):
            entra_admin = postgresql.AdministratorsMicrosoftEntra(
                f"{name}-entra-admin",
                resource_group_name=resource_group_name,
                server_name=server_name,
                object_id=admin.object_id,
                principal_name=admin.principal_name,
                principal_type=admin.principal_type,
                tenant_id=args["tenant_id"],
                opts=serialized(),
            )
            previous = entra_admin
            ready.append(entra_admin)
        if adopted is None:  # an adopted server's parameters are its owner's (adopt_server checked TLS)
            for setting, value in TLS_SETTINGS:
                previous = postgresql.Configuration(
                    f"{name}-{setting.replace('_', '-')}",
                    resource_group_name=resource_group_name,
                    server_name=server_name,
                    configuration_name=setting,
                    value=value,
                    source="user-override",
                    opts=serialized(),
                )
        if args.get("existing_database", False):
            database_name: pulumi.Output[str] = pulumi.Output.from_input(args["database_name"])
        else:
            database = postgresql.Database(
                f"{name}-db",
                resource_group_name=resource_group_name,
                server_name=server_name,
                database_name=args["database_name"],
                charset="UTF8",
                collation="en_US.utf8",
                # On an adopted server the database is the most valuable thing the stack owns: protectResources
                # covers it there (on the stack's own server, the protected server stands for it).
                opts=pulumi.ResourceOptions.merge(
                    serialized(), pulumi.ResourceOptions(protect=True if adopted and args["protect"] else None)
                ),
            )
            previous = database
            ready.append(database)
            database_name = database.name

        ranges: list[tuple[str, pulumi.Input[str], pulumi.Input[str]]] = [
            (rule.name, rule.start, rule.end) for rule in deployer_firewall_ranges(args["deployer_networks"])
        ]
        egress = args["app_egress_ip"]
        if isinstance(egress, (list, tuple)):  # an existing environment's addresses (appEgressIps)
            ranges += [(f"app-egress-{index}", address, address) for index, address in enumerate(egress)]
        else:
            ranges.append(("app-egress", egress, egress))
        if args["allow_azure_services"]:
            ranges.append((AZURE_SERVICES_RULE, "0.0.0.0", "0.0.0.0"))
        if args["ci_runner_ip"]:
            ranges.append((CI_RUNNER_RULE, args["ci_runner_ip"], args["ci_runner_ip"]))
        for rule_name, start, end in ranges:
            previous = postgresql.FirewallRule(
                f"{name}-fw-{rule_name}",
                firewall_rule_name=adopted_rule_name(prefix, rule_name) if prefix else rule_name,
                resource_group_name=resource_group_name,
                server_name=server_name,
                start_ip_address=start,
                end_ip_address=end,
                opts=serialized(),
            )
            ready.append(previous)
        self.ready = ready
        send_diagnostics(
            f"{name}-diagnostics", server_id, args["workspace_id"], self, setting_name=prefix + DIAGNOSTIC_SETTING_NAME
        )

        self.server_id = server_id
        self.server_name = server_name
        self.fqdn = fqdn
        self.database_name = database_name
        self.entra_admin_object_id = pulumi.Output.from_input(admin.object_id)
        self.entra_admin_principal_name = pulumi.Output.from_input(admin.principal_name)
        self.entra_admin_principal_type = pulumi.Output.from_input(admin.principal_type)
        self.register_outputs(
            {
                "server_id": self.server_id,
                "fqdn": self.fqdn,
                "database_name": self.database_name,
                "entra_admin_object_id": self.entra_admin_object_id,
                "entra_admin_principal_name": self.entra_admin_principal_name,
            }
        )

    def _server(self, name: str, args: DatabaseArgs) -> postgresql.Server:
        geo_redundant_backup = "Enabled" if args["geo_redundant_backup"] else "Disabled"
        return postgresql.Server(
            f"{name}-server",
            server_name=args["server_name"],
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            version=args["version"],
            sku=postgresql.SkuArgs(name=args["sku_name"], tier=args["sku_tier"]),
            storage=postgresql.StorageArgs(storage_size_gb=args["storage_size_gb"], auto_grow="Enabled"),
            backup=postgresql.BackupArgs(
                backup_retention_days=args["backup_retention_days"], geo_redundant_backup=geo_redundant_backup
            ),
            high_availability=postgresql.HighAvailabilityArgs(mode=args["high_availability"]),
            maintenance_window=maintenance_window_args(args["maintenance_window"]),
            auth_config=postgresql.AuthConfigArgs(
                active_directory_auth="Enabled",
                password_auth="Enabled" if args["password_auth"] else "Disabled",
                tenant_id=args["tenant_id"],
            ),
            # Both modes: switching authMode flips passwordAuth (updatable), never the login (create-only).
            # A server that an earlier version created in token mode has none and keeps none.
            administrator_login=args["administrator_login"] or None,
            administrator_login_password=(
                pulumi.Output.secret(args["administrator_password"]) if args["administrator_login"] else None
            ),
            network=postgresql.NetworkArgs(public_network_access="Enabled"),
            tags=args["tags"],
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args["protect"],
                additional_secret_outputs=["administratorLoginPassword"],
                # The password is generated once; Azure never returns it, so never diff on it. The zones
                # are Azure's choice (see AZURE_CHOSEN_PROPERTIES); a refresh must not turn them into a diff.
                ignore_changes=["administratorLoginPassword", *AZURE_CHOSEN_PROPERTIES],
            ),
        )
