"""The server keeps its data across config changes: create-only properties never follow `authMode`,
and a change of one stops the run before anything is touched."""

from __future__ import annotations

import functools
from typing import Any

import pulumi
import pytest
from harness import ProgramRun, RecordingMocks, run_program

pytestmark = pytest.mark.program

SERVER = "azure-native:dbforpostgresql:Server"

# Create-only properties of Microsoft.DBforPostgreSQL/flexibleServers, REST API 2025-08-01 (the
# version pulumi-azure-native 3.29 deploys, see the SDK's dbforpostgresql/server.py docstring).
# Source: Azure/azure-rest-api-specs, specification/postgresql/resource-manager/Microsoft.DBforPostgreSQL/
# PostgreSQL/stable/2025-08-01/openapi.json: `x-ms-mutability: ["read", "create"]` (or ["create"]) on
# ServerProperties.administratorLogin, .availabilityZone, .sourceServerResourceId, .pointInTimeUTC and
# Backup.geoRedundantBackup; ServerPropertiesForPatch marks administratorLogin and
# BackupForPatch.geoRedundantBackup readOnly (no PATCH can change them). The name, the resource group
# (URL path parameters) and the location of any ARM resource cannot change either.
CREATE_ONLY = (
    "serverName",
    "resourceGroupName",
    "location",
    "administratorLogin",
    "backup.geoRedundantBackup",
    "availabilityZone",
    "sourceServerResourceId",
    "pointInTimeUTC",
)


@functools.cache
def program(stack: str, mode: str) -> ProgramRun:
    return run_program(stack, {"authMode": mode})


def at(inputs: dict[str, Any], dotted: str) -> Any:
    node: Any = inputs
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return "<absent>"
        node = node[part]
    return node


def test_the_program_knows_the_same_create_only_properties() -> None:
    from preflight.server_record import CREATE_ONLY_PROPERTIES

    assert set(CREATE_ONLY_PROPERTIES) == set(CREATE_ONLY)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_create_only_inputs_do_not_depend_on_the_auth_mode(stack: str) -> None:
    token, password = program(stack, "token").one(SERVER), program(stack, "password").one(SERVER)
    for prop in CREATE_ONLY:
        assert at(token.inputs, prop) == at(password.inputs, prop), prop
    # The login exists in both modes; only passwordAuth (updatable) follows the mode.
    assert token.inputs["administratorLogin"] == password.inputs["administratorLogin"] == "pgadmin"
    assert (token.inputs["authConfig"]["passwordAuth"], password.inputs["authConfig"]["passwordAuth"]) == (
        "Disabled",
        "Enabled",
    )
    assert at(token.inputs, "backup.geoRedundantBackup") == ("Enabled" if stack == "prod" else "Disabled")


def test_each_deployment_records_its_create_only_values() -> None:
    run = program("dev", "token")
    assert run.exports["serverCreateOnly"] == {
        "serverNamePrefix": "pgmcp-dev-pg-",
        "location": "westeurope",
        "administratorLogin": "pgadmin",
        "backup.geoRedundantBackup": "Disabled",
        "postgresVersion": "17",  # not create-only: recorded for the major version guard (test_major_version.py)
    }
    server = run.one(SERVER).inputs
    assert server["serverName"].startswith(run.exports["serverCreateOnly"]["serverNamePrefix"])
    assert server["location"] == "westeurope"
    # The record is read back from the backend: this very stack's outputs.
    assert ("pulumi:pulumi:readStackOutputs", {"name": "organization/postgres-mcp-azure/dev"}) in run.mocks.calls


def rerun(stack: str, previous_mode: str, overrides: dict[str, Any]) -> tuple[RecordingMocks, ProgramRun | None]:
    """`pulumi preview` of a stack whose last update was `program(stack, previous_mode)`."""
    recorded = program(stack, previous_mode).exports["serverCreateOnly"]
    recording = RecordingMocks(stack_outputs={"serverCreateOnly": recorded})
    return recording, run_program(stack, overrides, preview=True, recording=recording)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_switching_the_auth_mode_passes_the_guard(stack: str) -> None:
    _, run = rerun(stack, "token", {"authMode": "password"})
    assert run is not None and run.one(SERVER).inputs["authConfig"]["passwordAuth"] == "Enabled"
    _, run = rerun(stack, "password", {"authMode": "token"})
    assert run is not None and run.one(SERVER).inputs["authConfig"]["passwordAuth"] == "Disabled"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"geoRedundantBackup": True},
            "backup.geoRedundantBackup: 'Disabled' -> 'Enabled' (config key: geoRedundantBackup)",
        ),
        ({"location": "northeurope"}, "location: 'westeurope' -> 'northeurope' (config key: location)"),
        ({"namePrefix": "other"}, "serverNamePrefix: 'pgmcp-dev-pg-' -> 'other-dev-pg-'"),
    ],
)
def test_a_create_only_change_stops_the_preview_before_any_resource(overrides: dict[str, Any], expected: str) -> None:
    recording = RecordingMocks(stack_outputs={"serverCreateOnly": program("dev", "token").exports["serverCreateOnly"]})
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", overrides, preview=True, recording=recording)
    message = str(refused.value)
    assert "would be replaced" in message and expected in message
    # The refusal comes before the program declares anything: not even `up --skip-preview` (as the
    # Automation API behind pulumi/actions runs it) touches a resource.
    assert recording.resources == []


def test_a_stack_without_a_record_deploys() -> None:
    # The first deployment (or one from before the record existed) has nothing to compare with.
    run = run_program("dev", {"geoRedundantBackup": True}, preview=True)
    assert run.one(SERVER).inputs["backup"]["geoRedundantBackup"] == "Enabled"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_azure_chooses_the_zones_without_a_diff(stack: str) -> None:
    # The REST API defaults availabilityZone to "" (Azure picks one) and answers with the zone it chose;
    # the program pins none and ignores both zones, so a refresh that reads them back shows no diff.
    run = program(stack, "token")
    server = run.one(SERVER)
    assert server.inputs.get("availabilityZone", "") == ""
    assert server.inputs["highAvailability"].get("standbyAvailabilityZone", "") == ""
    assert server.outputs["availabilityZone"] == "1"
    if stack == "prod":  # a zone-redundant standby
        assert server.outputs["highAvailability"]["standbyAvailabilityZone"] == "2"
    ignored = set(run.options[server.name].ignore_changes or [])
    assert {"availabilityZone", "highAvailability.standbyAvailabilityZone"} <= ignored


# --- stacks deployed before the record existed -------------------------------------------------

LEGACY_FQDN = "pgmcp-dev-pg-a1b2c3.postgres.database.azure.com"
# Such a stack predates the sign-in gateway too, so its config chooses signIn (preflight/sign_in_upgrade.py).
CHOSEN = {"signIn": "gateway"}


def legacy(mode: str | None) -> RecordingMocks:
    """The outputs an earlier version of this program left: no record, but the server and its mode."""
    outputs: dict[str, Any] = {
        "serverFqdn": LEGACY_FQDN,
        "appRoleName": "postgres_mcp",
        "entraAdminPrincipalName": "pulumi-deployer",
    }
    if mode is not None:
        outputs["authMode"] = mode
    return RecordingMocks(stack_outputs=outputs)


def test_a_token_mode_server_from_an_earlier_version_keeps_having_no_login() -> None:
    # Earlier versions set administratorLogin in password mode only; adding it now would replace the server.
    run = run_program("dev", {**CHOSEN, "authMode": "token"}, preview=True, recording=legacy("token"))
    server = run.one(SERVER).inputs
    assert "administratorLogin" not in server and "administratorLoginPassword" not in server
    assert run.exports["serverCreateOnly"]["administratorLogin"] == ""
    # The next run reads that record and still declares no login.
    again = RecordingMocks(stack_outputs={"serverCreateOnly": run.exports["serverCreateOnly"]})
    assert "administratorLogin" not in run_program("dev", {}, preview=True, recording=again).one(SERVER).inputs


def test_a_password_mode_server_from_an_earlier_version_keeps_its_login() -> None:
    run = run_program("dev", {**CHOSEN, "authMode": "password"}, preview=True, recording=legacy("password"))
    assert run.one(SERVER).inputs["administratorLogin"] == "pgadmin"
    assert run.exports["serverCreateOnly"]["administratorLogin"] == "pgadmin"


def test_password_mode_on_a_server_made_without_a_login_is_refused_before_any_resource() -> None:
    recording = legacy("token")
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", {"authMode": "password"}, preview=True, recording=recording)
    message = str(refused.value)
    assert "'authMode'" in message and "created without one" in message and "replace the server" in message
    assert recording.resources == []


def test_an_earlier_stack_that_does_not_say_its_mode_is_refused() -> None:
    recording = legacy(None)
    with pytest.raises(pulumi.RunError, match=f"{LEGACY_FQDN}.*'authMode'"):
        run_program("dev", {}, preview=True, recording=recording)
    assert recording.resources == []


ENTRA_ADMIN = "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra"
DYNAMIC = "pulumi-python:dynamic:Resource"


def test_an_earlier_stack_keeps_its_entra_administrator_when_the_keys_are_empty() -> None:
    # Earlier versions named the default administrator `pulumi-deployer`, a ServicePrincipal; deriving it
    # from the deployer's token now would rename the role the role/grant step signs in as.
    run = run_program("dev", {**CHOSEN, "authMode": "token"}, preview=True, recording=legacy("token"))
    admin = run.one(ENTRA_ADMIN).inputs
    assert (admin["principalName"], admin["principalType"]) == ("pulumi-deployer", "ServicePrincipal")
    assert run.one(DYNAMIC).inputs["admin_user"] == "pulumi-deployer"
    fresh = run_program("dev", {"authMode": "token"}, preview=True).one(ENTRA_ADMIN).inputs
    assert fresh["principalName"] != "pulumi-deployer"  # a new stack takes the deployer's own name
    named = run_program(
        "dev", {**CHOSEN, "entraAdminPrincipalName": "ops-admin"}, preview=True, recording=legacy("token")
    ).one(ENTRA_ADMIN)
    assert named.inputs["principalName"] == "ops-admin"  # the keys still win
