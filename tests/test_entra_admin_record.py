"""The server's Entra administrator is pinned: a stack deployed from a laptop and then from CI keeps its
administrator, unless the `entraAdmin*` keys change it on purpose.

Who deploys is read from the claims of the ARM token the provider signs in with (harness.CI_APP_CLAIMS,
LAPTOP_USER_CLAIMS); the record is fed as the last update's outputs (`pulumi:pulumi:readStackOutputs`)."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from harness import CI_APP_CLAIMS, DEPLOYER_OBJECT_ID, LAPTOP_USER_CLAIMS, ProgramRun, RecordingMocks, run_program

pytestmark = pytest.mark.program

ADMIN = "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra"
DYNAMIC = "pulumi-python:dynamic:Resource"
PIPELINE_OBJECT_ID = "7d0c1f2e-3333-4b4b-9c9c-0123456789ab"
# The pipeline's application: another principal than the user who deployed first.
PIPELINE_CLAIMS = {**CI_APP_CLAIMS, "oid": PIPELINE_OBJECT_ID, "sub": PIPELINE_OBJECT_ID}
ALICE = {"objectId": DEPLOYER_OBJECT_ID, "principalName": "alice@contoso.example", "principalType": "User"}
PINNED = {
    "entraAdminObjectId": DEPLOYER_OBJECT_ID,
    "entraAdminPrincipalName": "alice@contoso.example",
    "entraAdminPrincipalType": "User",
}


def deploy(
    claims: dict[str, Any], outputs: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> tuple[RecordingMocks, ProgramRun]:
    recording = RecordingMocks(stack_outputs=outputs, deployer_claims=claims)
    return recording, run_program("dev", overrides, preview=True, recording=recording)


def admin_of(run: ProgramRun) -> tuple[str, str, str]:
    admin = run.one(ADMIN).inputs
    return admin["objectId"], admin["principalName"], admin["principalType"]


def laptop_outputs() -> dict[str, Any]:
    _, run = deploy(LAPTOP_USER_CLAIMS)
    return run.exports


def test_every_update_records_the_administrator_it_declares() -> None:
    assert laptop_outputs()["entraAdminRecord"] == ALICE


def test_the_same_deployer_passes() -> None:
    _, run = deploy(LAPTOP_USER_CLAIMS, laptop_outputs())
    assert admin_of(run) == (DEPLOYER_OBJECT_ID, "alice@contoso.example", "User")


def test_a_deployment_from_ci_does_not_silently_replace_the_administrator() -> None:
    recording = RecordingMocks(stack_outputs=laptop_outputs(), deployer_claims=PIPELINE_CLAIMS)
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", {}, preview=True, recording=recording)
    message = str(refused.value)
    assert f"objectId: '{DEPLOYER_OBJECT_ID}' -> '{PIPELINE_OBJECT_ID}'" in message
    assert "principalName: 'alice@contoso.example' -> 'pgmcp-deploy'" in message
    assert "principalType: 'User' -> 'ServicePrincipal'" in message
    # The message names the keys, with the values that keep the administrator.
    for key, value in PINNED.items():
        assert f"{key}='{value}'" in message
    assert recording.resources == []


def test_the_keys_pin_the_administrator_wherever_the_stack_is_deployed() -> None:
    _, run = deploy(PIPELINE_CLAIMS, laptop_outputs(), PINNED)
    assert admin_of(run) == (DEPLOYER_OBJECT_ID, "alice@contoso.example", "User")
    assert run.one(DYNAMIC).inputs["admin_user"] == "alice@contoso.example"


def test_an_explicit_change_of_the_keys_is_allowed_and_recorded() -> None:
    new = {
        "entraAdminObjectId": PIPELINE_OBJECT_ID,
        "entraAdminPrincipalName": "dba-team",
        "entraAdminPrincipalType": "Group",
    }
    _, run = deploy(LAPTOP_USER_CLAIMS, laptop_outputs(), new)
    assert admin_of(run) == (PIPELINE_OBJECT_ID, "dba-team", "Group")
    assert run.exports["entraAdminRecord"] == {
        "objectId": PIPELINE_OBJECT_ID,
        "principalName": "dba-team",
        "principalType": "Group",
    }


def test_a_renamed_role_set_by_its_key_alone_is_allowed_but_not_a_new_principal() -> None:
    # The name key set: the name may change; the object ID still follows the deployer and may not.
    _, run = deploy(LAPTOP_USER_CLAIMS, laptop_outputs(), {"entraAdminPrincipalName": "alice"})
    assert admin_of(run) == (DEPLOYER_OBJECT_ID, "alice", "User")
    with pytest.raises(pulumi.RunError, match=r"objectId: .*config key entraAdminObjectId is empty"):
        deploy(PIPELINE_CLAIMS, laptop_outputs(), {"entraAdminPrincipalName": "alice@contoso.example"})


def test_a_stack_from_before_the_record_is_pinned_by_its_principal_name_output() -> None:
    outputs = {k: v for k, v in laptop_outputs().items() if k != "entraAdminRecord"}
    with pytest.raises(pulumi.RunError, match=r"principalName: 'alice@contoso.example' -> 'pgmcp-deploy'"):
        deploy(PIPELINE_CLAIMS, outputs)


def test_the_earlier_version_fallback_keeps_working() -> None:
    # Versions from before the create-only record named the default administrator `pulumi-deployer`; such a
    # stack keeps that name (settings.deployer.complete_entra_admin), so its record is no change.
    legacy = {
        "serverFqdn": "pgmcp-dev-pg-a1b2c3.postgres.database.azure.com",
        "authMode": "token",
        "entraAdminPrincipalName": "pulumi-deployer",
    }
    # Such a stack predates the sign-in gateway too: it chooses signIn (preflight/sign_in_upgrade.py).
    _, run = deploy(CI_APP_CLAIMS, legacy, {"signIn": "gateway"})
    assert admin_of(run) == (DEPLOYER_OBJECT_ID, "pulumi-deployer", "ServicePrincipal")
    assert run.exports["entraAdminRecord"]["principalName"] == "pulumi-deployer"
    # ...and the next run from the same pipeline passes on that record.
    _, again = deploy(CI_APP_CLAIMS, run.exports)
    assert admin_of(again) == (DEPLOYER_OBJECT_ID, "pulumi-deployer", "ServicePrincipal")


def test_the_same_principal_keeps_its_role_name_when_its_token_names_it_differently() -> None:
    # A renamed UPN: the server knows the administrator by the role name it was created with.
    renamed = {**LAPTOP_USER_CLAIMS, "upn": "alice.smith@contoso.example", "unique_name": "alice.smith@contoso.example"}
    _, run = deploy(renamed, laptop_outputs())
    assert admin_of(run) == (DEPLOYER_OBJECT_ID, "alice@contoso.example", "User")
    assert run.one(DYNAMIC).inputs["admin_user"] == "alice@contoso.example"
