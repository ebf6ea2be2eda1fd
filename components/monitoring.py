"""Log Analytics for the whole stack, and the diagnostic settings that feed it.

Created first so that the server, the vault and the Container Apps environment can all
send their logs to one workspace, each through a diagnostic setting (no shared key is read: the
environment's `azure-monitor` logs destination needs none).
"""

from __future__ import annotations

from typing import TypedDict

import pulumi
from pulumi_azure_native import monitor, operationalinsights


class MonitoringArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    retention_days: int
    tags: dict[str, str]


class Monitoring(pulumi.ComponentResource):
    workspace_id: pulumi.Output[str]
    customer_id: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("postgresmcp:monitoring:Monitoring", name, None, opts)
        workspace = operationalinsights.Workspace(
            f"{name}-logs",
            sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=args["retention_days"],
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.workspace_id = workspace.id
        self.customer_id = workspace.customer_id
        self.register_outputs({"workspace_id": self.workspace_id, "customer_id": self.customer_id})


DIAGNOSTIC_SETTING_NAME = "to-log-analytics"


def send_diagnostics(
    name: str,
    resource_id: pulumi.Input[str],
    workspace_id: pulumi.Input[str],
    parent: pulumi.Resource,
    setting_name: str = DIAGNOSTIC_SETTING_NAME,
) -> monitor.DiagnosticSetting:
    """Every log category and every metric of `resource_id` to the workspace."""
    return monitor.DiagnosticSetting(
        name,
        name=setting_name,
        resource_uri=resource_id,
        workspace_id=workspace_id,
        logs=[monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)],
        metrics=[monitor.DiagnosticsMetricSettingsArgs(category="AllMetrics", enabled=True)],
        opts=pulumi.ResourceOptions(parent=parent),
    )
