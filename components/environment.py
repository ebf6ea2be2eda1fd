"""The Container Apps environment the app runs in, on the stack's VNet subnet.

Reachable inside the VNet only (`internal`): an internal environment (no public address at
all) whose apps keep `external: true` ingress, which there means "the VNet", plus a private
DNS zone named after the environment's default domain, linked to the VNet, with a `*` A record
to its static IP (Microsoft Learn, "Provide a virtual network to an internal Azure Container
Apps environment", deploy with a private DNS: zone, VNet link, `*` record). The `@` record this
component adds as well is optional: apps are served at `<app>.<default domain>`, which `*`
resolves; the apex only answers for the bare domain. `internal` and `zoneRedundant` are
create-only: changing one replaces the environment, which needs a new subnet
(preflight/environment_record.py).

The app receives the environment by ID (Azure Verified Modules' `environmentResourceId`), so
an environment this component creates and one the stack adopts (existingEnvironmentId) take
the same path. This component's attributes mirror `preflight.adoption.AdoptedEnvironment`.

These resources were children of McpApp before the environment was a component of its own:
each carries an alias to its URN there, so an existing stack moves them without replacing them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

import pulumi
from pulumi_azure_native import app, monitor, privatedns

from components.monitoring import DIAGNOSTIC_SETTING_NAME

WORKLOAD_PROFILE = "Consumption"
# Microsoft Learn, "Log storage and monitoring options in Azure Container Apps": with `azure-monitor` the
# environment's logs go to the destinations of its diagnostic settings; with logAnalyticsDestinationType
# `Dedicated` into one resource-specific table per category (Azure Monitor, "Diagnostic settings"), named
# after the category: ContainerAppConsoleLogs (the containers' stdout/stderr), ContainerAppSystemLogs (the
# platform's events).
LOGS_DESTINATION = "azure-monitor"
LOG_CATEGORIES = ("ContainerAppConsoleLogs", "ContainerAppSystemLogs")
# The component the environment's resources were declared under until it became its own component.
FORMER_PARENT_TYPE = "postgresmcp:app:McpApp"


def with_last_type(urn: str, type_: str) -> str:
    """`urn` with its own type (the last of its qualified type) replaced by `type_`."""
    head, name = urn.rsplit("::", 1)
    prefix, qualified_type = head.rsplit("::", 1)
    parents, _, _ = qualified_type.rpartition("$")
    return f"{prefix}::{parents + '$' if parents else ''}{type_}::{name}"


class EnvironmentArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    """The infrastructure subnet (delegated to Microsoft.App/environments)."""
    vnet_id: pulumi.Input[str]
    """The VNet the private DNS zone is linked to (internal environments)."""
    internal: bool
    """No public address: reachable from the VNet only (create-only)."""
    zone_redundant: bool
    """Spread the environment over the region's availability zones (create-only)."""
    workspace_id: pulumi.Input[str]
    """The Log Analytics workspace (resource ID) the environment's diagnostic setting sends its logs to."""
    tags: dict[str, str]


class Environment(pulumi.ComponentResource):
    id: pulumi.Output[str]
    static_ip: pulumi.Output[str]
    """Public for an external environment, in the subnet for an internal one."""
    default_domain: pulumi.Output[str]
    workload_profile_name: str
    """The profile the app runs in."""

    def __init__(self, name: str, args: EnvironmentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """`name`: the app's component name (`<base>-mcp`), so that the resources keep the names, and with
        them the Azure names, they had under McpApp."""
        super().__init__("postgresmcp:app:Environment", name, None, opts)
        # The URN McpApp had: the same name under the same parent, so only the last type differs.
        former_parent = self.urn.apply(lambda urn: with_last_type(urn, FORMER_PARENT_TYPE))

        def child(replace_on_changes: list[str] | None = None) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, aliases=[pulumi.Alias(parent=former_parent)], replace_on_changes=replace_on_changes
            )

        environment = app.ManagedEnvironment(
            f"{name}-env",
            # Logs go where the environment's diagnostic settings say (below), not through the shared-key
            # `log-analytics` destination, whose HTTP Data Collector API lost support on 14 September 2026.
            app_logs_configuration=app.AppLogsConfigurationArgs(destination=LOGS_DESTINATION),
            vnet_configuration=app.VnetConfigurationArgs(
                infrastructure_subnet_id=args["subnet_id"], internal=args["internal"]
            ),
            workload_profiles=[app.WorkloadProfileArgs(name=WORKLOAD_PROFILE, workload_profile_type=WORKLOAD_PROFILE)],
            zone_redundant=args["zone_redundant"],
            # Create-only in Azure: say so, so that a change replaces the environment (a new one, on
            # the new subnet, before the old one goes) instead of failing as an update.
            opts=child(replace_on_changes=["vnetConfiguration", "zoneRedundant"]),
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
        )
        # Into resource-specific tables (ContainerAppConsoleLogs, ContainerAppSystemLogs), which the token alerts
        # query (components/alerts.py RESOURCE_SPECIFIC). New: it carries no alias.
        monitor.DiagnosticSetting(
            f"{name}-env-diagnostics",
            name=DIAGNOSTIC_SETTING_NAME,
            resource_uri=environment.id,
            workspace_id=args["workspace_id"],
            log_analytics_destination_type="Dedicated",
            logs=[monitor.DiagnosticsLogSettingsArgs(category=category, enabled=True) for category in LOG_CATEGORIES],
            metrics=[monitor.DiagnosticsMetricSettingsArgs(category="AllMetrics", enabled=True)],
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args["internal"]:
            self._private_dns(name, environment, args, child)

        self.id = environment.id
        self.static_ip = environment.static_ip
        self.default_domain = environment.default_domain
        self.workload_profile_name = WORKLOAD_PROFILE
        self.register_outputs({"id": self.id, "static_ip": self.static_ip, "default_domain": self.default_domain})

    def _private_dns(
        self,
        name: str,
        environment: app.ManagedEnvironment,
        args: EnvironmentArgs,
        child: Callable[..., pulumi.ResourceOptions],
    ) -> None:
        """Resolves the internal environment's names inside the VNet: `<app>.<default domain>` (the `*` record
        Microsoft's guide creates) and, optionally, the apex (`@`)."""
        zone = privatedns.PrivateZone(
            f"{name}-private-dns",
            private_zone_name=environment.default_domain,
            location="Global",
            resource_group_name=args["resource_group_name"],
            tags=args["tags"],
            opts=child(),
        )
        for record, label in (("*", "wildcard"), ("@", "apex")):
            privatedns.PrivateRecordSet(
                f"{name}-private-dns-{label}",
                private_zone_name=zone.name,
                record_type="A",
                relative_record_set_name=record,
                a_records=[privatedns.ARecordArgs(ipv4_address=environment.static_ip)],
                ttl=300,
                resource_group_name=args["resource_group_name"],
                opts=child(),
            )
        privatedns.VirtualNetworkLink(
            f"{name}-private-dns-link",
            private_zone_name=zone.name,
            virtual_network=privatedns.SubResourceArgs(id=args["vnet_id"]),
            registration_enabled=False,
            location="Global",
            resource_group_name=args["resource_group_name"],
            tags=args["tags"],
            opts=child(),
        )
