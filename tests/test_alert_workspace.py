"""Token alerts in an adopted Container Apps environment (existingEnvironmentId): on the workspace that
receives its logs, `alertWorkspaceId`, in the tables its logs destination writes.

The environment is answered as azure-native's get_managed_environment answers it (REST 2025-02-02-preview,
`properties` flattened): `appLogsConfiguration.destination` and, for `log-analytics`, the workspace's
`customerId`. The workspace as get_workspace answers it (Microsoft.OperationalInsights): its `customerId`.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pulumi
import pytest
from harness import ProgramRun, RecordingMocks, run_program, workspace_id
from test_adoption import IN_SHARED_ENV, SHARED_ENV_ID, azure_estate

pytestmark = pytest.mark.program

RULE = "azure-native:monitor:ScheduledQueryRule"
OPS_WORKSPACE = workspace_id("ops-rg", "ops-logs")
OPS_CUSTOMER_ID = "55555555-5555-5555-5555-555555555555"


def estate(logs: dict[str, Any] | None, workspace_customer_id: str | None = OPS_CUSTOMER_ID) -> RecordingMocks:
    recording = azure_estate()
    environment = recording.azure[SHARED_ENV_ID.lower()]
    if logs is not None:
        environment["appLogsConfiguration"] = logs
    if workspace_customer_id is not None:
        recording.add_existing(
            OPS_WORKSPACE,
            {"location": "westeurope", "customerId": workspace_customer_id, "sku": {"name": "PerGB2018"}},
        )
    return recording


AZURE_MONITOR = {"destination": "azure-monitor"}
LOG_ANALYTICS = {"destination": "log-analytics", "logAnalyticsConfiguration": {"customerId": OPS_CUSTOMER_ID}}


def adopted(recording: RecordingMocks, **overrides: Any) -> tuple[ProgramRun, list[str]]:
    warnings: list[str] = []
    with mock.patch.object(pulumi.log, "warn", lambda message, *a, **kw: warnings.append(message)):
        run = run_program("dev", {**IN_SHARED_ENV, **overrides}, recording=recording)
    return run, warnings


def queries(run: ProgramRun) -> list[str]:
    return [rule.inputs["criteria"]["allOf"][0]["query"] for rule in run.of_type(RULE)]


def test_an_azure_monitor_environment_gets_its_alerts_on_the_named_workspace_in_resource_specific_tables() -> None:
    run, warnings = adopted(estate(AZURE_MONITOR), alertWorkspaceId=OPS_WORKSPACE)
    rules = run.of_type(RULE)
    assert len(rules) == 2 and not [w for w in warnings if "token alerts" in w]
    for rule in rules:
        assert rule.inputs["scopes"] == [OPS_WORKSPACE] and rule.inputs["skipQueryValidation"] is True
    assert all("_CL" not in query and 'ContainerAppName == "pgmcp-dev-mcp"' in query for query in queries(run))


def test_a_log_analytics_environment_gets_its_alerts_in_the_custom_tables_of_its_own_workspace() -> None:
    run, _ = adopted(estate(LOG_ANALYTICS), alertWorkspaceId=OPS_WORKSPACE)
    assert sorted(q.split("\n", 1)[0] for q in queries(run)) == [
        "ContainerAppConsoleLogs_CL",
        "let events = ContainerAppSystemLogs_CL",
    ]
    assert all(rule.inputs["scopes"] == [OPS_WORKSPACE] for rule in run.of_type(RULE))


def test_a_workspace_that_is_not_the_environments_is_refused_before_any_resource() -> None:
    recording = estate(LOG_ANALYTICS, workspace_customer_id="66666666-6666-6666-6666-666666666666")
    with pytest.raises(pulumi.RunError, match=r"config key 'alertWorkspaceId'.*customer ID") as refused:
        adopted(recording, alertWorkspaceId=OPS_WORKSPACE)
    assert OPS_CUSTOMER_ID in str(refused.value) and recording.resources == []


def test_a_workspace_that_does_not_exist_is_refused_before_any_resource() -> None:
    recording = estate(AZURE_MONITOR, workspace_customer_id=None)
    with pytest.raises(pulumi.RunError, match=r"config key 'alertWorkspaceId': no workspace"):
        adopted(recording, alertWorkspaceId=OPS_WORKSPACE)
    assert recording.resources == []


@pytest.mark.parametrize(
    ("logs", "said"),
    [
        (AZURE_MONITOR, "the workspace of its diagnostic setting"),
        (LOG_ANALYTICS, f"the workspace with customer ID {OPS_CUSTOMER_ID}"),
        ({"destination": "none"}, "keeps no logs in a Log Analytics workspace"),
        (None, "keeps no logs in a Log Analytics workspace"),
    ],
)
def test_without_the_workspace_no_alerts_are_created_and_a_warning_says_what_to_set(
    logs: dict[str, Any] | None, said: str
) -> None:
    run, warnings = adopted(estate(logs))
    assert run.of_type(RULE) == []
    (warning,) = [w for w in warnings if "token alerts are not created" in w]
    assert said in warning and "alertWorkspaceId" in warning


def test_password_mode_has_no_token_alerts_and_reads_no_workspace() -> None:
    run, warnings = adopted(estate(AZURE_MONITOR), authMode="password", alertWorkspaceId=OPS_WORKSPACE)
    assert run.of_type(RULE) == [] and not [w for w in warnings if "token alerts" in w]
    assert "azure-native:operationalinsights:getWorkspace" not in [token for token, _ in run.mocks.calls]
