"""Azure Monitor alerts on the token path (token mode): know before the users do.

Two Log Analytics scheduled query rules over the Container Apps environment's tables, which
the `log-analytics` logs destination writes as the custom tables `ContainerAppConsoleLogs_CL`
(each container's stdout/stderr: `ContainerAppName_s`, `ContainerName_s`, `Log_s`) and
`ContainerAppSystemLogs_CL` (the platform's events: `Reason_s`, `Log_s`)
(learn.microsoft.com/azure/container-apps/log-monitoring; with the `azure-monitor`
destination the tables would be `ContainerAppConsoleLogs` / `ContainerAppSystemLogs`):

- token failures: PostgreSQL's expiry error in postgres-mcp's log, or the refresher's own failure
  lines (an expired last token, a configuration error, several failed refreshes in a row, its
  health endpoint turning unhealthy);
- refresher restarts: the platform killing the sidecar after failed probes, or the sidecar exiting
  with an error or crash-looping.

Both notify an action group whose e-mail receivers come from `alertEmails`; with no address the
rules still fire (Azure Monitor's alert list) but nobody is notified.

The query texts are pure functions of the app's name, tested against what the refresher really
logs (sidecar/tests/test_token_refresher_clock.py runs it), so that a change of wording cannot silence them.
"""

from __future__ import annotations

import json
from typing import TypedDict

import pulumi
from pulumi_azure_native import monitor

from components.mcp_app import MCP_CONTAINER, REFRESHER_CONTAINER

# What PostgreSQL on Flexible Server answers a login with an expired Entra token; postgres-mcp logs it.
EXPIRY_ERROR = "The access token has expired"
# The refresher's lines (sidecar/token_refresher.py) that mean trouble, matched case-sensitively.
REFRESHER_FAILURE_MARKERS = ("EXPIRED", "configuration error")
REFRESHER_UNHEALTHY = "health: UNHEALTHY"
# Unhealthy reasons that are normal for a few seconds after a start: "no password file at ... yet",
# "no token written by this refresher yet". The startup probe covers them; they do not alert.
STARTING_REASON_WORD = "yet"
REFRESH_FAILED_PATTERN = r"refresh failed \((\d+) in a row\)"
# One failure is a blip the backoff absorbs; five in a row is about 15 s of a failing endpoint.
FAILURES_IN_A_ROW_TO_ALERT = 5
# kubelet's words when a probe makes it kill a container ("Container token-refresher failed
# liveness probe, will be restarted"), and Container Apps' for a container that exits
# ("Container 'token-refresher' was terminated with exit code '1'") or cannot start
# ("Persistent Failure to start container"); azureossd.github.io/2024/01/19/
# Container-Apps-Backoff-restarts-and-container-exits. Exit code 0 is a clean stop (a new revision).
RESTART_MARKERS = ("will be restarted", "Persistent Failure")
RESTART_REASONS = ("ContainerBackOff", "ContainerCrashing", "BackOff")


def kql_string(value: str) -> str:
    """A KQL string literal (double-quoted, JSON escapes are KQL escapes)."""
    return json.dumps(value)


def token_failure_query(app_name: str) -> str:
    markers = " or ".join(f"Log_s contains_cs {kql_string(marker)}" for marker in REFRESHER_FAILURE_MARKERS)
    return "\n".join(
        (
            "ContainerAppConsoleLogs_CL",
            f"| where ContainerAppName_s == {kql_string(app_name)}",
            f'| extend failed_in_a_row = toint(extract(@"{REFRESH_FAILED_PATTERN}", 1, Log_s))',
            f"| where (ContainerName_s == {kql_string(MCP_CONTAINER)} and Log_s contains {kql_string(EXPIRY_ERROR)})",
            f"    or (ContainerName_s == {kql_string(REFRESHER_CONTAINER)} and ({markers}"
            f" or failed_in_a_row >= {FAILURES_IN_A_ROW_TO_ALERT}"
            f" or (Log_s contains_cs {kql_string(REFRESHER_UNHEALTHY)}"
            f" and not(Log_s has {kql_string(STARTING_REASON_WORD)}))))",
            "| project TimeGenerated, RevisionName_s, ContainerName_s, Log_s",
        )
    )


def refresher_restart_query(app_name: str) -> str:
    markers = " or ".join(f"Log_s contains {kql_string(marker)}" for marker in RESTART_MARKERS)
    reasons = ", ".join(kql_string(reason) for reason in RESTART_REASONS)
    return "\n".join(
        (
            "ContainerAppSystemLogs_CL",
            f"| where ContainerAppName_s == {kql_string(app_name)}",
            f"| where Log_s contains {kql_string(REFRESHER_CONTAINER)}",
            f"| where {markers}",
            f"    or Reason_s in~ ({reasons})",
            '    or (Log_s contains "terminated with exit code" and not(Log_s contains "exit code \'0\'"))',
            "| project TimeGenerated, RevisionName_s, Reason_s, Log_s",
        )
    )


class AlertRule(TypedDict):
    suffix: str
    display_name: str
    description: str
    severity: int
    query: pulumi.Output[str]


class TokenAlertsArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    base_name: str
    workspace_id: pulumi.Input[str]
    container_app_name: pulumi.Input[str]
    emails: tuple[str, ...]
    tags: dict[str, str]


class TokenAlerts(pulumi.ComponentResource):
    def __init__(self, name: str, args: TokenAlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("postgresmcp:monitoring:TokenAlerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base_name = args["base_name"]
        action_groups: list[pulumi.Input[str]] = []
        if args["emails"]:
            group = monitor.ActionGroup(
                f"{name}-action-group",
                action_group_name=f"{base_name}-token-alerts",
                group_short_name=base_name.replace("-", "")[:12],  # at most 12 characters (SMS, e-mail subject)
                location="Global",  # action groups are global resources
                enabled=True,
                email_receivers=[
                    monitor.MicrosoftCommonEmailReceiverArgs(
                        name=f"email-{index}", email_address=address, use_common_alert_schema=True
                    )
                    for index, address in enumerate(args["emails"])
                ],
                resource_group_name=args["resource_group_name"],
                tags=args["tags"],
                opts=child,
            )
            action_groups.append(group.id)

        app_name = pulumi.Output.from_input(args["container_app_name"])
        rules: list[AlertRule] = [
            {
                "suffix": "token-failures",
                "display_name": f"{base_name}: token expired or refresher failing",
                "description": (
                    "postgres-mcp met an expired Entra token, or the token-refresher sidecar logged failures "
                    "(an expired last token, a configuration error, repeated failed refreshes, or an unhealthy "
                    "health endpoint). New database connections fail once the last good token expires."
                ),
                "severity": 1,
                "query": app_name.apply(token_failure_query),
            },
            {
                "suffix": "refresher-restarts",
                "display_name": f"{base_name}: token-refresher restarted",
                "description": (
                    "The platform restarted the token-refresher sidecar (failed startup or liveness probe) or it "
                    "exited with an error. postgres-mcp keeps running on the last good token meanwhile; look at "
                    "the refresher's console log for the reason."
                ),
                "severity": 2,
                "query": app_name.apply(refresher_restart_query),
            },
        ]
        for rule in rules:
            monitor.ScheduledQueryRule(
                f"{name}-{rule['suffix']}",
                rule_name=f"{base_name}-{rule['suffix']}",
                display_name=rule["display_name"],
                description=rule["description"],
                kind="LogAlert",
                enabled=True,
                severity=rule["severity"],
                scopes=[args["workspace_id"]],
                evaluation_frequency="PT5M",
                window_size="PT5M",
                criteria=monitor.ScheduledQueryRuleCriteriaArgs(
                    all_of=[
                        monitor.ConditionArgs(
                            query=rule["query"],
                            time_aggregation="Count",
                            operator="GreaterThan",
                            threshold=0,
                            failing_periods=monitor.ConditionFailingPeriodsArgs(
                                number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                            ),
                        )
                    ]
                ),
                auto_mitigate=True,
                actions=monitor.ActionsArgs(action_groups=action_groups) if action_groups else None,
                resource_group_name=args["resource_group_name"],
                location=args["location"],
                tags=args["tags"],
                opts=child,
            )
        self.register_outputs({})
