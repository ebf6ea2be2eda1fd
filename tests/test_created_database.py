"""The database a stack created on an adopted server is never dropped as a side effect of a config change:
`existingServerId` changed or removed, or `databaseName` changed, is refused before any resource unless the
last update released the database (`releaseCreatedDatabase`, which declares it with `retainOnDelete`).

Pulumi reads `retainOnDelete` from the state a delete starts from (pulumi/pulumi pkg/resource/deploy/step.go,
DeleteStep.Apply), so the release must be one update before the change: these tests feed each run the record
the previous one exported, as the engine would (`pulumi:pulumi:readStackOutputs`)."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from harness import ProgramRun, RecordingMocks, server_id
from test_adoption import DATA_GROUP, LEGACY_ID, LEGACY_SERVER, adopt, azure_estate

pytestmark = pytest.mark.program

DATABASE = "azure-native:dbforpostgresql:Database"
SERVER = "azure-native:dbforpostgresql:Server"
OTHER_SERVER = "other-pg"
OTHER_ID = server_id(DATA_GROUP, OTHER_SERVER)
ON_LEGACY: dict[str, Any] = {"existingServerId": LEGACY_ID}


def estate(record: dict[str, Any] | None = None, *, created: bool = True) -> RecordingMocks:
    """The legacy server (with the database the stack created, once it did) and an empty second server."""
    recording = azure_estate(database=created, admin_name=None)
    legacy = {k: v for k, v in recording.azure[LEGACY_ID.lower()].items() if k not in ("id", "name")}
    recording.add_existing(
        OTHER_ID, {**legacy, "fullyQualifiedDomainName": f"{OTHER_SERVER}.postgres.database.azure.com"}
    )
    recording.add_existing(f"{OTHER_ID}/configurations/require_secure_transport", {"value": "on"})
    recording.stack_outputs = {"serverCreateOnly": record} if record is not None else {}
    return recording


def first_deployment() -> dict[str, Any]:
    """The stack adopts the legacy server and creates its database there."""
    record = adopt(ON_LEGACY, estate(created=False)).exports["serverCreateOnly"]
    assert record["createdDatabase"] == "app"
    return dict(record)


CHANGES = [
    ("moved", {"existingServerId": OTHER_ID}, f"config key 'existingServerId' is now {OTHER_ID}"),
    ("removed", {"existingServerId": ""}, "config key 'existingServerId' is now empty"),
    ("renamed", {**ON_LEGACY, "databaseName": "app2"}, "config key 'databaseName' is now 'app2'"),
]


@pytest.mark.parametrize(("case", "overrides", "expected"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_that_would_drop_the_created_database_is_refused_before_any_resource(
    case: str, overrides: dict[str, Any], expected: str
) -> None:
    recording = estate(first_deployment())
    with pytest.raises(pulumi.RunError) as refused:
        adopt(overrides, recording, preview=True)
    message = str(refused.value)
    assert expected in message
    assert f"database 'app' on server {LEGACY_ID}" in message and "releaseCreatedDatabase" in message
    assert recording.resources == []


def test_the_same_config_keeps_deploying() -> None:
    again = adopt(ON_LEGACY, estate(first_deployment()), preview=True)
    assert again.one(DATABASE).inputs["serverName"] == LEGACY_SERVER
    assert not again.options[again.one(DATABASE).name].retain_on_delete


def release() -> ProgramRun:
    return adopt({**ON_LEGACY, "releaseCreatedDatabase": True}, estate(first_deployment()))


def test_the_release_run_changes_nothing_in_azure_and_marks_the_database_retained() -> None:
    released = release()
    database = released.one(DATABASE)
    assert (database.inputs["serverName"], database.inputs["databaseName"]) == (LEGACY_SERVER, "app")
    assert released.options[database.name].retain_on_delete is True
    assert released.exports["serverCreateOnly"]["createdDatabaseRetained"] == "true"


def test_releasing_and_moving_in_one_run_is_still_refused() -> None:
    # retainOnDelete must be in the state before the delete: a release in the same run comes too late.
    recording = estate(first_deployment())
    with pytest.raises(pulumi.RunError, match="first run `pulumi up` once with releaseCreatedDatabase"):
        adopt({"existingServerId": OTHER_ID, "releaseCreatedDatabase": True}, recording, preview=True)
    assert recording.resources == []


@pytest.mark.parametrize(("case", "overrides", "expected"), CHANGES, ids=[c[0] for c in CHANGES])
def test_after_the_release_the_change_goes_through(case: str, overrides: dict[str, Any], expected: str) -> None:
    record = dict(release().exports["serverCreateOnly"])
    run = adopt(overrides, estate(record), preview=True)
    if case == "moved":
        assert run.one(DATABASE).inputs["serverName"] == OTHER_SERVER
    elif case == "removed":
        assert run.one(SERVER).inputs["serverName"].startswith("pgmcp-dev-pg-")
    else:
        assert run.one(DATABASE).inputs["databaseName"] == "app2"
