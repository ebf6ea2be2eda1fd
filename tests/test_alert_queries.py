"""The token alerts' KQL, as text: the tables and columns each logs destination writes, the columns a fresh
workspace may lack, and what counts as a refresher restart.

Tables and columns: Azure Monitor Logs table reference, "ContainerAppConsoleLogs" (ContainerAppName,
ContainerName, Log, RevisionName, Stream, ...) and "ContainerAppSystemLogs" (ContainerAppName, ContainerName,
Log, Reason, ReplicaName, RevisionName, Type, ...), written by the `azure-monitor` destination through a
diagnostic setting; the `log-analytics` destination's custom tables carry `_CL` and `_s` (Microsoft Learn,
"Log storage and monitoring options in Azure Container Apps").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from components import alerts
from components.alerts import LEGACY_CUSTOM, RESOURCE_SPECIFIC, refresher_restart_query, token_failure_query

pytestmark = pytest.mark.unit

APP = "pgmcp-dev-mcp"
# Columns that not every event carries (a replica-less event, a console line without a revision): a rule on
# a workspace that has not seen them yet must still be created and evaluated.
OPTIONAL = ("ContainerName", "ReplicaName", "Reason", "RevisionName")


def identifiers(query: str) -> set[str]:
    return set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)))


@pytest.mark.parametrize("build", [token_failure_query, refresher_restart_query])
def test_the_azure_monitor_destination_is_queried_in_its_resource_specific_tables(build: object) -> None:
    query = build(APP)  # type: ignore[operator]
    assert "_CL" not in query and not any(name.endswith("_s") for name in identifiers(query))
    assert f'ContainerAppName == "{APP}"' in query
    table = query.split("\n", 1)[0].removeprefix("let events = ")
    assert table in ("ContainerAppConsoleLogs", "ContainerAppSystemLogs")
    # The columns an event may lack are read through column_ifexists, never by bare name.
    for column in OPTIONAL:
        if column in query:
            assert f'column_ifexists("{column}", "")' in query
            assert column not in identifiers(query.replace(f'column_ifexists("{column}", "")', ""))


@pytest.mark.parametrize("build", [token_failure_query, refresher_restart_query])
def test_an_adopted_log_analytics_environment_is_queried_in_its_custom_tables(build: object) -> None:
    query = build(APP, LEGACY_CUSTOM)  # type: ignore[operator]
    assert query.split("\n", 1)[0].removeprefix("let events = ").endswith("_CL")
    assert f'ContainerAppName_s == "{APP}"' in query and "Log_s" in query
    assert not {"Log", "ContainerAppName"} & identifiers(query)


def test_the_destinations_map_to_their_schemas() -> None:
    assert alerts.SCHEMA_BY_DESTINATION == {"azure-monitor": RESOURCE_SPECIFIC, "log-analytics": LEGACY_CUSTOM}


# --- what counts as a refresher restart ---------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A ContainerAppSystemLogs row, worded as Container Apps and kubelet word them (azureossd.github.io,
    "Container Apps - Backoff restarts and container exits"; "Troubleshooting and configuration with Health
    Probes")."""

    log: str
    reason: str = ""
    container: str = ""
    replica: str = "r1"


def counts_as_restart(event: Event, events: list[Event]) -> bool:
    """The restart query's decision, clause by clause (each clause is asserted in the query text below)."""

    def about(e: Event, name: str) -> bool:
        return e.container == name or name.lower() in e.log.lower()

    def terminated(e: Event) -> bool:
        return alerts.TERMINATED in e.log.lower()

    stopped = {
        e.replica
        for e in events
        if e.replica
        and about(e, "postgres-mcp")
        and (e.reason.lower() == alerts.TERMINATED_REASON.lower() or terminated(e))
    }
    if not about(event, "token-refresher"):
        return False
    if any(marker.lower() in event.log.lower() for marker in alerts.RESTART_MARKERS):
        return True
    if event.reason.lower() in {r.lower() for r in alerts.PROBE_REASONS} and alerts.LIVENESS in event.log.lower():
        return True
    stops = event.reason.lower() in {r.lower() for r in alerts.RESTART_REASONS} or terminated(event)
    return stops and not (event.replica and event.replica in stopped)


LIVENESS_KILL_EXIT_0 = Event(
    "Container 'token-refresher' was terminated with exit code '0' and reason 'Completed'", "ContainerTerminated"
)
RESTART_EVENTS = {
    "a liveness kill, which exits 0": LIVENESS_KILL_EXIT_0,
    "a crash": Event(
        "Container 'token-refresher' was terminated with exit code '1' and reason 'Error'", "ContainerTerminated"
    ),
    "kubelet's liveness kill": Event("Container token-refresher failed liveness probe, will be restarted", "Killing"),
    "a failed liveness probe": Event(
        "Liveness probe failed: HTTP probe failed with statuscode: 503", "ProbeFailed", container="token-refresher"
    ),
    "a crash loop": Event("Persistent Failure to start container 'token-refresher'", "ContainerBackOff"),
}
QUIET_EVENTS = {
    "a failing startup probe while the first token comes": Event(
        "Startup probe failed: HTTP probe failed with statuscode: 503", "ProbeFailed", container="token-refresher"
    ),
    "postgres-mcp stopping": Event("Container 'postgres-mcp' was terminated with exit code '1'", "ContainerTerminated"),
}


@pytest.mark.parametrize("what", sorted(RESTART_EVENTS))
def test_every_refresher_termination_alerts_whatever_its_exit_code(what: str) -> None:
    assert counts_as_restart(RESTART_EVENTS[what], [RESTART_EVENTS[what]])


@pytest.mark.parametrize("what", sorted(QUIET_EVENTS))
def test_what_is_no_refresher_restart_stays_quiet(what: str) -> None:
    assert not counts_as_restart(QUIET_EVENTS[what], [QUIET_EVENTS[what]])


def test_a_replica_that_stops_as_a_whole_is_no_refresher_restart() -> None:
    # A new revision or a scale-in stops every container of the replica: postgres-mcp terminates beside it.
    replica_stops = [
        Event(
            "Container 'postgres-mcp' was terminated with exit code '0' and reason 'Completed'",
            "ContainerTerminated",
            replica="r2",
        ),
        Event(
            "Container 'token-refresher' was terminated with exit code '0' and reason 'Completed'",
            "ContainerTerminated",
            replica="r2",
        ),
    ]
    assert not counts_as_restart(replica_stops[1], replica_stops)
    # The same termination in another replica, where postgres-mcp runs on, still alerts.
    assert counts_as_restart(LIVENESS_KILL_EXIT_0, [*replica_stops, LIVENESS_KILL_EXIT_0])


def test_the_restart_query_holds_each_clause_and_no_exit_code_exclusion() -> None:
    query = refresher_restart_query(APP)
    # Today's fix: a termination with exit code 0 is not excluded (a liveness kill sends SIGTERM; it exits 0).
    assert "exit code" not in query
    assert '(container == "token-refresher" or Log contains "token-refresher")' in query
    assert 'Log contains "will be restarted" or Log contains "Persistent Failure"' in query
    assert 'reason in~ ("ProbeFailed", "Unhealthy") and Log contains "liveness"' in query
    stops = '("ContainerTerminated", "ContainerBackOff", "ContainerCrashing", "BackOff")'
    assert f'((reason in~ {stops} or Log contains "terminated")' in query
    assert "and not(isnotempty(replica) and replica in (stopped_replicas))" in query
    stopped = query[query.index("let stopped_replicas") : query.index("| distinct replica;")]
    assert '(container == "postgres-mcp" or Log contains "postgres-mcp")' in stopped
    assert 'reason =~ "ContainerTerminated" or Log contains "terminated"' in stopped


def test_the_token_failure_query_keeps_its_decisions_over_the_new_columns() -> None:
    query = token_failure_query(APP)
    assert query.startswith("ContainerAppConsoleLogs\n")
    assert 'container == "postgres-mcp" and Log contains "The access token has expired"' in query
    assert 'Log contains_cs "EXPIRED" or Log contains_cs "configuration error"' in query
    assert "failed_in_a_row >= 5" in query and 'not(Log has "yet")' in query
