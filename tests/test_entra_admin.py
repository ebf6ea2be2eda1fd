"""The server's Entra administrator defaults to whoever deploys: a user on a laptop, an application in CI."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from harness import CI_APP_CLAIMS, DEPLOYER_OBJECT_ID, LAPTOP_USER_CLAIMS, ProgramRun, RecordingMocks, run_program

from settings import ConfigError, Deployer, EntraAdmin, deployer_from_claims, token_claims, with_deployer_defaults

pytestmark = pytest.mark.program

ADMIN = "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra"
DYNAMIC = "pulumi-python:dynamic:Resource"
OTHER_OBJECT_ID = "5f2b2d3e-1111-4c4c-8d8d-0123456789ab"


def deployed_by(claims: dict[str, Any], overrides: dict[str, Any] | None = None) -> ProgramRun:
    return run_program("dev", overrides, recording=RecordingMocks(deployer_claims=claims))


def admin_of(run: ProgramRun) -> tuple[str, str, str]:
    admin = run.one(ADMIN).inputs
    return admin["objectId"], admin["principalName"], admin["principalType"]


def test_a_user_on_a_laptop_becomes_a_user_administrator_named_by_upn() -> None:
    run = deployed_by(LAPTOP_USER_CLAIMS)
    assert admin_of(run) == (DEPLOYER_OBJECT_ID, "alice@contoso.example", "User")
    # The role/grant step signs in as that administrator, under the same role name.
    assert run.one(DYNAMIC).inputs["admin_user"] == "alice@contoso.example"
    assert run.exports["entraAdminPrincipalName"] == "alice@contoso.example"


def test_an_application_in_ci_becomes_a_service_principal_administrator() -> None:
    run = deployed_by(CI_APP_CLAIMS)
    assert admin_of(run) == (DEPLOYER_OBJECT_ID, "pgmcp-deploy", "ServicePrincipal")
    assert run.one(DYNAMIC).inputs["admin_user"] == "pgmcp-deploy"


def test_a_managed_identity_without_a_display_name_gets_the_fallback_name() -> None:
    claims = {k: v for k, v in CI_APP_CLAIMS.items() if k != "app_displayname"}
    assert admin_of(deployed_by(claims)) == (DEPLOYER_OBJECT_ID, "pulumi-deployer", "ServicePrincipal")


def test_v2_and_idtyp_less_tokens_are_read_too() -> None:
    # v2.0 tokens name the user in preferred_username; tokens without idtyp are a user's exactly when
    # they carry scp (delegated permissions).
    v2_user = {"oid": DEPLOYER_OBJECT_ID, "scp": "user_impersonation", "preferred_username": "bob@contoso.example"}
    assert deployer_from_claims(v2_user) == Deployer(DEPLOYER_OBJECT_ID, "User", "bob@contoso.example")
    v1_user = {"oid": DEPLOYER_OBJECT_ID, "scp": "user_impersonation", "unique_name": "carol@contoso.example"}
    assert deployer_from_claims(v1_user).name == "carol@contoso.example"
    app = {"oid": DEPLOYER_OBJECT_ID, "roles": ["x"], "appid": "44444444-4444-4444-4444-444444444444"}
    assert deployer_from_claims(app) == Deployer(DEPLOYER_OBJECT_ID, "ServicePrincipal", None)


def test_configured_keys_win_over_the_deployer() -> None:
    run = deployed_by(LAPTOP_USER_CLAIMS, {"entraAdminPrincipalName": "alice"})
    assert admin_of(run) == (DEPLOYER_OBJECT_ID, "alice", "User")
    run = deployed_by(
        LAPTOP_USER_CLAIMS,
        {
            "entraAdminObjectId": OTHER_OBJECT_ID,
            "entraAdminPrincipalName": "dba-team",
            "entraAdminPrincipalType": "Group",
        },
    )
    assert admin_of(run) == (OTHER_OBJECT_ID, "dba-team", "Group")
    # A complete administrator needs no token: the only one asked for is the resource provider check's
    # (preflight/providers.py), which it sends to Resource Manager with its GETs.
    tokens = [t for t, _ in run.mocks.calls if t == "azure-native:authorization:getClientToken"]
    assert len(tokens) == 1 and run.mocks.arm_gets
    assert len([t for t, _ in deployed_by(LAPTOP_USER_CLAIMS, {}).mocks.calls if t in tokens]) == 2


@pytest.mark.parametrize(
    ("claims", "overrides", "key", "fragment"),
    [
        ({**LAPTOP_USER_CLAIMS, "upn": None, "unique_name": None}, {}, "entraAdminPrincipalName", "no user name"),
        ({**LAPTOP_USER_CLAIMS, "upn": "a" * 60 + "@contoso.example"}, {}, "entraAdminPrincipalName", "longer than 63"),
        (LAPTOP_USER_CLAIMS, {"entraAdminPrincipalType": "ServicePrincipal"}, "entraAdminPrincipalType", "a User"),
        (CI_APP_CLAIMS, {"entraAdminPrincipalType": "Group"}, "entraAdminPrincipalType", "a ServicePrincipal"),
        ({**CI_APP_CLAIMS, "oid": None}, {}, "entraAdminObjectId", "no object ID"),
    ],
)
def test_what_cannot_be_derived_is_a_clean_error_naming_the_key(
    claims: dict[str, Any], overrides: dict[str, Any], key: str, fragment: str
) -> None:
    recording = RecordingMocks(deployer_claims={k: v for k, v in claims.items() if v is not None})
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", overrides, recording=recording)
    message = str(refused.value)
    assert f"config key '{key}'" in message and fragment in message and "expected" in message
    assert recording.resources == []


def test_an_unreadable_token_is_a_clean_error() -> None:
    with pytest.raises(ConfigError, match=r"config key 'entraAdminObjectId'.*cannot be read"):
        token_claims("not-a-jwt")
    with pytest.raises(ConfigError, match=r"config key 'entraAdminObjectId'"):
        token_claims("a.bm90IGpzb24.c2ln")  # a payload that is not JSON


def test_an_explicit_object_id_is_kept_whoever_deploys() -> None:
    admin = EntraAdmin(OTHER_OBJECT_ID, "dba-team", "Group")
    assert with_deployer_defaults(admin, Deployer(DEPLOYER_OBJECT_ID, "User", "alice@contoso.example")) == admin
