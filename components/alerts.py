"""Azure Monitor alerts on the token path (token mode): know before the users do.

Two Log Analytics scheduled query rules over the Container Apps environment's logs. Where those logs
land depends on the environment's `appLogsConfiguration.destination` (Microsoft Learn, "Log storage and
monitoring options in Azure Container Apps"):

- `azure-monitor` plus a diagnostic setting into a workspace (what this program's environment does,
  components/environment.py): the resource-specific tables `ContainerAppConsoleLogs` and
  `ContainerAppSystemLogs`, whose columns carry no type suffix (Azure Monitor Logs table reference,
  "ContainerAppConsoleLogs": ContainerAppName, ContainerName, Log, RevisionName, Stream, ...;
  "ContainerAppSystemLogs": ContainerAppName, ContainerName, Log, Reason, ReplicaName, RevisionName, Type, ...);
- `log-analytics` (shared key, an adopted environment may still use it): the custom tables
  `ContainerAppConsoleLogs_CL` / `ContainerAppSystemLogs_CL`, written through the HTTP Data Collector API
  (support ended 14 September 2026), whose columns carry the `_s` suffix.

`RESOURCE_SPECIFIC` and `LEGACY_CUSTOM` name both; the queries are the same decisions over either.

- token failures: PostgreSQL's expiry error in postgres-mcp's log, or the refresher's own failure
  lines (an expired last token, a configuration error, several failed refreshes in a row, its
  health endpoint turning unhealthy);
- refresher restarts: every termination of the sidecar (whatever its exit code: a liveness kill
  stops it with SIGTERM and it exits 0), a failed liveness probe, a crash loop; but not the stop of
  the whole replica (a new revision, a scale-in), where postgres-mcp terminates beside it.

A fresh workspace has received nothing yet: a table or column it lacks makes Azure refuse to create a
rule whose query it validates. So every rule sets `skipQueryValidation`, and the columns that not every
event carries are read through `column_ifexists` (DESIGN.md, "Logs").

Both notify an action group whose e-mail receivers come from `alertEmails`; with no address the
rules still fire (Azure Monitor's alert list) but nobody is notified.

The query texts are pure functions of the app's name, tested against what the refresher really
logs (sidecar/tests/test_token_refresher_clock.py runs it), so that a change of wording cannot silence them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import pulumi
from pulumi_azure_native import monitor

from components.mcp_app import MCP_CONTAINER, REFRESHER_CONTAINER


@dataclass(frozen=True)
class LogSchema:
    """The tables and column names the environment's logs destination writes."""

    console_table: str
    system_table: str
    app: str
    container: str
    log: str
    reason: str
    revision: str
    replica: str


RESOURCE_SPECIFIC = LogSchema(
    console_table="ContainerAppConsoleLogs",
    system_table="ContainerAppSystemLogs",
    app="ContainerAppName",
    container="ContainerName",
    log="Log",
    reason="Reason",
    revision="RevisionName",
    replica="ReplicaName",
)
"""The `azure-monitor` destination with a diagnostic setting (logAnalyticsDestinationType Dedicated)."""
LEGACY_CUSTOM = LogSchema(
    console_table="ContainerAppConsoleLogs_CL",
    system_table="ContainerAppSystemLogs_CL",
    app="ContainerAppName_s",
    container="ContainerName_s",
    log="Log_s",
    reason="Reason_s",
    revision="RevisionName_s",
    replica="ReplicaName_s",
)
"""The shared-key `log-analytics` destination (HTTP Data Collector API custom tables)."""
SCHEMA_BY_DESTINATION = {"azure-monitor": RESOURCE_SPECIFIC, "log-analytics": LEGACY_CUSTOM}

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
# The platform's words for a container that stops: Container Apps' "Container 'token-refresher' was
# terminated with exit code '0' and reason 'Completed'" (reason ContainerTerminated), kubelet's "Container
# token-refresher failed liveness probe, will be restarted" (reason ProbeFailed / Unhealthy: "Liveness probe
# failed: ..."), a crash loop ("Persistent Failure to start container", reasons ContainerBackOff / BackOff /
# ContainerCrashing); azureossd.github.io 2024-01-19 "Container Apps - Backoff restarts and container exits"
# and 2023-08-23 "Container Apps: Troubleshooting and configuration with Health Probes".
TERMINATED = "terminated"
RESTART_MARKERS = ("will be restarted", "Persistent Failure")
LIVENESS = "liveness"
TERMINATED_REASON = "ContainerTerminated"
RESTART_REASONS = (TERMINATED_REASON, "ContainerBackOff", "ContainerCrashing", "BackOff")
# A startup probe fails several times on every normal start (the refresher waits for its first token):
# only the liveness probe's failures mean a kill.
PROBE_REASONS = ("ProbeFailed", "Unhealthy")


def kql_string(value: str) -> str:
    """A KQL string literal (double-quoted, JSON escapes are KQL escapes)."""
    return json.dumps(value)


def optional_column(name: str) -> str:
    """A string column that not every event (nor a fresh workspace) has: empty where it is missing."""
    return f'column_ifexists({kql_string(name)}, "")'


def token_failure_query(app_name: str, schema: LogSchema = RESOURCE_SPECIFIC) -> str:
    log, container = schema.log, "container"
    markers = " or ".join(f"{log} contains_cs {kql_string(marker)}" for marker in REFRESHER_FAILURE_MARKERS)
    return "\n".join(
        (
            schema.console_table,
            f"| where {schema.app} == {kql_string(app_name)}",
            f"| extend {container} = tostring({optional_column(schema.container)})",
            f'| extend failed_in_a_row = toint(extract(@"{REFRESH_FAILED_PATTERN}", 1, {log}))',
            f"| where ({container} == {kql_string(MCP_CONTAINER)} and {log} contains {kql_string(EXPIRY_ERROR)})",
            f"    or ({container} == {kql_string(REFRESHER_CONTAINER)} and ({markers}"
            f" or failed_in_a_row >= {FAILURES_IN_A_ROW_TO_ALERT}"
            f" or ({log} contains_cs {kql_string(REFRESHER_UNHEALTHY)}"
            f" and not({log} has {kql_string(STARTING_REASON_WORD)}))))",
            f"| project TimeGenerated, revision = tostring({optional_column(schema.revision)}), {container}, {log}",
        )
    )


def refresher_restart_query(app_name: str, schema: LogSchema = RESOURCE_SPECIFIC) -> str:
    """Every termination of the refresher, whatever its exit code, and every failed liveness probe of it;
    a termination in a replica whose postgres-mcp terminated too is the replica stopping, not a restart."""
    log = schema.log
    markers = " or ".join(f"{log} contains {kql_string(marker)}" for marker in RESTART_MARKERS)
    reasons = ", ".join(kql_string(reason) for reason in RESTART_REASONS)
    probes = ", ".join(kql_string(reason) for reason in PROBE_REASONS)
    terminated = f"{log} contains {kql_string(TERMINATED)}"

    def about(container: str) -> str:
        # Some events name the container in a column, others only in their text.
        return f"(container == {kql_string(container)} or {log} contains {kql_string(container)})"

    return "\n".join(
        (
            "let events = " + schema.system_table,
            f"| where {schema.app} == {kql_string(app_name)}",
            f"| extend container = tostring({optional_column(schema.container)}),"
            f" replica = tostring({optional_column(schema.replica)}),"
            f" reason = tostring({optional_column(schema.reason)});",
            "let stopped_replicas = events",
            f"| where isnotempty(replica) and {about(MCP_CONTAINER)}",
            f"    and (reason =~ {kql_string(TERMINATED_REASON)} or {terminated})",
            "| distinct replica;",
            "events",
            f"| where {about(REFRESHER_CONTAINER)}",
            f"| where {markers}",
            f"    or (reason in~ ({probes}) and {log} contains {kql_string(LIVENESS)})",
            f"    or ((reason in~ ({reasons}) or {terminated})",
            "        and not(isnotempty(replica) and replica in (stopped_replicas)))",
            f"| project TimeGenerated, revision = tostring({optional_column(schema.revision)}), replica, reason, {log}",
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
    log_schema: NotRequired[LogSchema]
    """Where the environment writes its logs; RESOURCE_SPECIFIC (the azure-monitor destination) by default."""


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
        schema = args.get("log_schema", RESOURCE_SPECIFIC)
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
                "query": app_name.apply(lambda app: token_failure_query(app, schema)),
            },
            {
                "suffix": "refresher-restarts",
                "display_name": f"{base_name}: token-refresher restarted",
                "description": (
                    "The token-refresher sidecar terminated (a liveness kill, which exits 0, included), failed its "
                    "liveness probe or is crash-looping. The replica is not ready until it runs again; postgres-mcp "
                    "keeps the last good token meanwhile. Look at the refresher's console log for the reason."
                ),
                "severity": 2,
                "query": app_name.apply(lambda app: refresher_restart_query(app, schema)),
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
                # A workspace that has received nothing yet lacks the tables: Azure would refuse the rule.
                skip_query_validation=True,
                actions=monitor.ActionsArgs(action_groups=action_groups) if action_groups else None,
                resource_group_name=args["resource_group_name"],
                location=args["location"],
                tags=args["tags"],
                opts=child,
            )
        self.register_outputs({})
