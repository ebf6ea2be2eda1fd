"""Where the token alerts watch the logs of an adopted Container Apps environment (existingEnvironmentId).

The stack's own environment sends its logs to the stack's workspace (components/environment.py), so the
alerts need nothing from here. An adopted environment sends them where its owner chose, and the program can
find out only part of that:

- with the `log-analytics` destination the environment names the workspace by its customer ID (a GUID), not
  by its resource ID, which a scheduled query rule's scope needs; no invoke finds a workspace by customer ID
  (that takes an Azure Resource Graph query);
- with `azure-monitor` the logs go where the environment's diagnostic settings say, and azure-native reads a
  diagnostic setting only by its name (`get_diagnostic_setting`; it has no list), which the owner chose.

So the workspace is a config key, `alertWorkspaceId`, and preflight checks what it can: the workspace exists,
and with `log-analytics` its customer ID is the environment's (else the alerts would watch a workspace that
never receives the app's logs, and stay silent). The tables follow the destination (components/alerts.py:
resource-specific with `azure-monitor`, the `_CL` custom tables with `log-analytics`). Without the key, or
with a destination that keeps no logs in a workspace, a warning says that no token alerts are created, and why.

`alert_workspace_decision` decides (pure); `alert_workspace` reads the workspace and hands plain values over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import operationalinsights

from components.alerts import SCHEMA_BY_DESTINATION, LogSchema
from preflight.adoption import AdoptedEnvironment, AdoptionError, _lookup
from settings import ResourceId, Settings

KEY = "alertWorkspaceId"


@dataclass(frozen=True)
class AlertWorkspace:
    """The workspace that receives an adopted environment's logs, and the tables they land in."""

    id: str
    log_schema: LogSchema


@dataclass(frozen=True)
class Decision:
    workspace: AlertWorkspace | None
    warning: str | None = None
    refusal: str | None = None


def alert_workspace_decision(
    environment: AdoptedEnvironment, workspace: ResourceId | None, workspace_customer_id: str | None
) -> Decision:
    """`workspace`: alertWorkspaceId, or None when empty; `workspace_customer_id`: its customer ID as Azure
    answers it (None when it was not read). Pure: every branch is a plain value."""
    destination = environment.logs_destination
    schema = SCHEMA_BY_DESTINATION.get(destination)
    if schema is None:
        return Decision(
            None,
            warning=(
                f"existingEnvironmentId: the environment {environment.id} has the logs destination "
                f"{destination or 'none'!r}, which keeps no logs in a Log Analytics workspace: the token alerts "
                "are not created. Its owner can send them to a workspace ('azure-monitor' with a diagnostic "
                f"setting), then set {KEY} to that workspace's resource ID."
            ),
        )
    if workspace is None:
        where = (
            f"the workspace with customer ID {environment.logs_customer_id}"
            if destination == "log-analytics"
            else "the workspace of its diagnostic setting"
        )
        return Decision(
            None,
            warning=(
                f"existingEnvironmentId: the token alerts are not created: the environment's logs go to {where} "
                f"(destination {destination!r}), which the program cannot find by itself. Set {KEY} to that "
                "workspace's resource ID to create them."
            ),
        )
    if (
        destination == "log-analytics"
        and workspace_customer_id is not None
        and workspace_customer_id.lower() != environment.logs_customer_id.lower()
    ):
        return Decision(
            None,
            refusal=(
                f"config key '{KEY}' ({workspace.id}): its customer ID is {workspace_customer_id}, but the environment "
                f"{environment.id} sends its logs to the workspace with customer ID {environment.logs_customer_id}; "
                "expected that workspace's resource ID (alerts on another workspace would never fire)"
            ),
        )
    return Decision(AlertWorkspace(workspace.id, schema))


def alert_workspace(
    config: Settings, environment: AdoptedEnvironment, warn: Callable[[str], None] | None = None
) -> AlertWorkspace | None:
    """The workspace for an adopted environment's token alerts (token mode), or None with a warning."""
    if config.auth_mode != "token":
        return None
    workspace = config.alert_workspace
    customer_id: str | None = None
    if workspace is not None and environment.logs_destination in SCHEMA_BY_DESTINATION:
        group, name = workspace.resource_group, workspace.name
        found = _lookup(
            lambda: operationalinsights.get_workspace(resource_group_name=group, workspace_name=name),
            KEY,
            f"Log Analytics workspace {workspace.id}",
        )
        if found is None:
            raise AdoptionError(f"config key '{KEY}': no workspace {workspace.id}; expected an existing workspace's ID")
        customer_id = found.customer_id
    decision = alert_workspace_decision(environment, workspace, customer_id)
    if decision.refusal is not None:
        raise AdoptionError(decision.refusal)
    if decision.warning is not None:
        (warn or pulumi.log.warn)(decision.warning)
    return decision.workspace
