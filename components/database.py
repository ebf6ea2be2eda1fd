"""Azure Database for PostgreSQL Flexible Server with Entra authentication.

Entra authentication is always on and has an administrator (the identity that the
role/grant step signs in as); password authentication is on only in password mode.
TLS is enforced. The firewall admits the configured deployer ranges and the app's
egress IP; the "Azure services" rule exists only when explicitly asked for.

Flexible Server applies one management operation at a time and refuses a second one
while the first runs ("ServerIsBusy"), so the server's children are chained.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypedDict

import pulumi
from pulumi_azure_native import dbforpostgresql as postgresql

from components.monitoring import send_diagnostics
from settings import EntraAdmin

POSTGRES_PORT = 5432
ADMIN_LOGIN = "pgadmin"  # password mode only: the server administrator
TLS_SETTINGS = (("require_secure_transport", "on"), ("ssl_min_protocol_version", "TLSv1.2"))
AZURE_SERVICES_RULE = "AllowAllAzureServicesAndResourcesWithinAzureIps"
CI_RUNNER_RULE = "ci-runner"


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


class DatabaseArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    server_name: pulumi.Input[str]
    tenant_id: pulumi.Input[str]
    entra_admin: EntraAdmin
    entra_admin_object_id: pulumi.Input[str]
    """The resolved object ID: the configured one, or the deploying principal's."""
    password_auth: bool
    administrator_login: str | None
    administrator_password: pulumi.Input[str] | None
    version: str
    sku_name: str
    sku_tier: str
    storage_size_gb: int
    backup_retention_days: int
    geo_redundant_backup: bool
    high_availability: str
    database_name: str
    deployer_networks: tuple[ipaddress.IPv4Network, ...]
    app_egress_ip: pulumi.Input[str]
    allow_azure_services: bool
    ci_runner_ip: str
    """The deploy pipeline's runner, admitted for one run (the pipeline removes the rule after)."""
    protect: bool
    tags: dict[str, str]
    workspace_id: pulumi.Input[str]


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

        server = postgresql.Server(
            f"{name}-server",
            server_name=args["server_name"],
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            version=args["version"],
            sku=postgresql.SkuArgs(name=args["sku_name"], tier=args["sku_tier"]),
            storage=postgresql.StorageArgs(storage_size_gb=args["storage_size_gb"], auto_grow="Enabled"),
            backup=postgresql.BackupArgs(
                backup_retention_days=args["backup_retention_days"],
                geo_redundant_backup="Enabled" if args["geo_redundant_backup"] else "Disabled",
            ),
            high_availability=postgresql.HighAvailabilityArgs(mode=args["high_availability"]),
            auth_config=postgresql.AuthConfigArgs(
                active_directory_auth="Enabled",
                password_auth="Enabled" if args["password_auth"] else "Disabled",
                tenant_id=args["tenant_id"],
            ),
            administrator_login=args["administrator_login"] if args["password_auth"] else None,
            administrator_login_password=(
                pulumi.Output.secret(args["administrator_password"])
                if args["password_auth"] and args["administrator_password"] is not None
                else None
            ),
            network=postgresql.NetworkArgs(public_network_access="Enabled"),
            tags=args["tags"],
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args["protect"],
                additional_secret_outputs=["administratorLoginPassword"],
                # The password is generated once; Azure never returns it, so never diff on it.
                ignore_changes=["administratorLoginPassword"],
            ),
        )

        previous: pulumi.Resource = server

        def serialized() -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[previous])

        entra_admin = postgresql.AdministratorsMicrosoftEntra(
            f"{name}-entra-admin",
            resource_group_name=args["resource_group_name"],
            server_name=server.name,
            object_id=args["entra_admin_object_id"],
            principal_name=admin.principal_name,
            principal_type=admin.principal_type,
            tenant_id=args["tenant_id"],
            opts=serialized(),
        )
        previous = entra_admin
        for setting, value in TLS_SETTINGS:
            previous = postgresql.Configuration(
                f"{name}-{setting.replace('_', '-')}",
                resource_group_name=args["resource_group_name"],
                server_name=server.name,
                configuration_name=setting,
                value=value,
                source="user-override",
                opts=serialized(),
            )
        database = postgresql.Database(
            f"{name}-db",
            resource_group_name=args["resource_group_name"],
            server_name=server.name,
            database_name=args["database_name"],
            charset="UTF8",
            collation="en_US.utf8",
            opts=serialized(),
        )
        previous = database

        ready: list[pulumi.Resource] = [entra_admin, database]
        ranges: list[tuple[str, pulumi.Input[str], pulumi.Input[str]]] = [
            (rule.name, rule.start, rule.end) for rule in deployer_firewall_ranges(args["deployer_networks"])
        ]
        ranges.append(("app-egress", args["app_egress_ip"], args["app_egress_ip"]))
        if args["allow_azure_services"]:
            ranges.append((AZURE_SERVICES_RULE, "0.0.0.0", "0.0.0.0"))
        if args["ci_runner_ip"]:
            ranges.append((CI_RUNNER_RULE, args["ci_runner_ip"], args["ci_runner_ip"]))
        for rule_name, start, end in ranges:
            previous = postgresql.FirewallRule(
                f"{name}-fw-{rule_name}",
                firewall_rule_name=rule_name,
                resource_group_name=args["resource_group_name"],
                server_name=server.name,
                start_ip_address=start,
                end_ip_address=end,
                opts=serialized(),
            )
            ready.append(previous)
        self.ready = ready
        send_diagnostics(f"{name}-diagnostics", server.id, args["workspace_id"], self)

        self.server_id = server.id
        self.server_name = server.name
        self.fqdn = server.fully_qualified_domain_name.apply(lambda fqdn: fqdn or "")
        self.database_name = database.name
        self.entra_admin_object_id = pulumi.Output.from_input(args["entra_admin_object_id"])
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
