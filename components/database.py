"""Azure Database for PostgreSQL Flexible Server with Entra authentication.

Entra authentication is always on and has an administrator (the identity that the
role/grant step signs in as); password authentication is on only in password mode.
TLS is enforced. The firewall admits the configured deployer ranges and the app's
egress IP; the "Azure services" rule exists only when explicitly asked for.

Flexible Server applies one management operation at a time and refuses a second one
while the first runs ("ServerIsBusy"), so the server's children are chained.

Create-only properties never follow `authMode`: preflight/server_record.py refuses a change
of one before any resource is declared, and decides the administrator login this component
receives.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict

import pulumi
from pulumi_azure_native import dbforpostgresql as postgresql

from components.monitoring import DIAGNOSTIC_SETTING_NAME, send_diagnostics
from settings import EntraAdmin, MaintenanceWindow

if TYPE_CHECKING:  # a plain value: what preflight read of an adopted server
    from preflight.adoption import AdoptedServer

POSTGRES_PORT = 5432
TLS_SETTINGS = (("require_secure_transport", "on"), ("ssl_min_protocol_version", "TLSv1.2"))
AZURE_SERVICES_RULE = "AllowAllAzureServicesAndResourcesWithinAzureIps"
CI_RUNNER_RULE = "ci-runner"


# Left to Azure (it picks a zone when none is given) and never compared: a zone that Azure chose
# must not read as a change, nor one it moved after a failover.
AZURE_CHOSEN_PROPERTIES = ("availabilityZone", "highAvailability.standbyAvailabilityZone")


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
    """Complete: preflight.run fills what config left empty from the deploying principal."""
    password_auth: bool
    administrator_login: str
    """ADMIN_LOGIN, or NO_LOGIN for a server created without one (preflight.server_record.administrator_login)."""
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
    retain_database: NotRequired[bool]
    """Declare the database with `retainOnDelete` (releaseCreatedDatabase): when the stack stops declaring it,
    Pulumi forgets it instead of dropping it (preflight/created_database.py)."""


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
                    serialized(),
                    pulumi.ResourceOptions(
                        protect=True if adopted and args["protect"] else None,
                        retain_on_delete=True if args.get("retain_database", False) else None,
                    ),
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
