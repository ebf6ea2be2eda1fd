"""Sovereign clouds, as the program declares a stack: the provider's PostgreSQL scope, the refresher's
TOKEN_RESOURCE and the sign-in issuer follow the stack's cloud (azure_cloud/clouds.py), and a public-cloud stack is
declared exactly as before (its URNs, the refresher's environment, the issuer).

Values: Azure CLI's cloud definitions (Azure/azure-cli src/azure-cli-core/azure/cli/core/cloud.py,
`ossrdbms_resource_id` and `active_directory` of AZURE_US_GOV_CLOUD and AZURE_CHINA_CLOUD).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import TENANT_ID, ProgramRun, before_the_gateway, run_program

from settings.model import ConfigError

pytestmark = pytest.mark.program

DYNAMIC = "pulumi-python:dynamic:Resource"
CONTAINER_APP = "azure-native:app:ContainerApp"
AUTH_CONFIG = "azure-native:app:ContainerAppsAuthConfig"
CLIENT_APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
# Easy Auth (an authConfig whose issuer names the cloud's authority); the gateway's authority: test_gateway.py.
SIGN_IN = {"allowedClientCidrs": [], "signIn": "easyAuth", "entraAuthClientId": CLIENT_APP}
DEFAULT_URNS = json.loads((Path(__file__).with_name("default_urns.json")).read_text())

US_GOV_SCOPE = "https://ossrdbms-aad.database.usgovcloudapi.net/.default"
US_GOV_RESOURCE = "https://ossrdbms-aad.database.usgovcloudapi.net"
CHINA_RESOURCE = "https://ossrdbms-aad.database.chinacloudapi.cn"


@pytest.fixture(autouse=True)
def no_cloud_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("ARM_ENVIRONMENT", "AZURE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def refresher_env(run: ProgramRun) -> dict[str, Any]:
    template = run.one(CONTAINER_APP).inputs["template"]
    (refresher,) = [container for container in template["containers"] if container["name"] == "token-refresher"]
    return {variable["name"]: variable.get("value") for variable in refresher["env"]}


def issuer(run: ProgramRun) -> str:
    return str(run.one(AUTH_CONFIG).inputs["identityProviders"]["azureActiveDirectory"]["registration"]["openIdIssuer"])


def test_a_us_government_stack_asks_its_own_cloud_for_tokens(no_cloud_in_the_environment: pytest.MonkeyPatch) -> None:
    no_cloud_in_the_environment.setenv("ARM_ENVIRONMENT", "usgovernment")  # what azure-native reads
    run = run_program("dev", {**SIGN_IN, "azureCloud": "AzureUSGovernment"})
    assert run.one(DYNAMIC).inputs["entra_scope"] == US_GOV_SCOPE
    assert refresher_env(run)["TOKEN_RESOURCE"] == US_GOV_RESOURCE
    assert issuer(run) == f"https://login.microsoftonline.us/{TENANT_ID}/v2.0"
    # The cloud changes what is asked for, never which resources exist or their names.
    assert run.urns == run_program("dev", SIGN_IN).urns


@pytest.mark.parametrize(
    ("overrides", "environment", "resource", "authority"),
    [
        ({}, {"ARM_ENVIRONMENT": "usgovernment"}, US_GOV_RESOURCE, "https://login.microsoftonline.us"),
        ({"azure-native:environment": "china"}, {}, CHINA_RESOURCE, "https://login.chinacloudapi.cn"),
        ({"azure-native:environment": "china", "azureCloud": "AzureChinaCloud"}, {}, CHINA_RESOURCE, None),
        ({}, {"AZURE_ENVIRONMENT": "AzureUSGovernment"}, US_GOV_RESOURCE, None),
    ],
)
def test_the_cloud_comes_from_azure_natives_setting_without_the_key(
    no_cloud_in_the_environment: pytest.MonkeyPatch,
    overrides: dict[str, str],
    environment: dict[str, str],
    resource: str,
    authority: str | None,
) -> None:
    for name, value in environment.items():
        no_cloud_in_the_environment.setenv(name, value)
    run = run_program("dev", {**SIGN_IN, **overrides})
    assert run.one(DYNAMIC).inputs["entra_scope"] == f"{resource}/.default"
    assert refresher_env(run)["TOKEN_RESOURCE"] == resource
    if authority is not None:
        assert issuer(run) == f"{authority}/{TENANT_ID}/v2.0"


def test_a_public_cloud_stack_is_declared_as_before() -> None:
    run = run_program("dev", SIGN_IN)
    # The provider's input shows the public scope, which its diff takes as equal to an absent one (a state
    # written before the input existed): see tests/test_cloud.py and the engine test.
    assert run.one(DYNAMIC).inputs["entra_scope"] == "https://ossrdbms-aad.database.windows.net/.default"
    # The refresher's default is the public audience: no new variable, so no new revision of the app.
    assert "TOKEN_RESOURCE" not in refresher_env(run)
    assert issuer(run) == f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
    # The snapshot of the shipped stack's URNs (test_adoption.py holds the default path to it) also holds with
    # the public cloud pinned.
    pinned = run_program("dev", {"authMode": "token", "azureCloud": "AzureCloud"})
    assert before_the_gateway(pinned.urns.values()) == DEFAULT_URNS["dev-token"]


def test_an_explicit_public_cloud_key_declares_the_same_stack() -> None:
    plain, pinned = run_program("dev", SIGN_IN), run_program("dev", {**SIGN_IN, "azureCloud": "AzureCloud"})
    assert plain.one(CONTAINER_APP).inputs == pinned.one(CONTAINER_APP).inputs
    assert plain.one(DYNAMIC).inputs == pinned.one(DYNAMIC).inputs
    assert issuer(plain) == issuer(pinned)


@pytest.mark.parametrize(
    ("overrides", "environment", "expected"),
    [
        (
            {"azureCloud": "AzureUSGovernment"},
            {},
            "config key 'azureCloud': azureCloud is 'AzureUSGovernment' (AzureUSGovernment) but neither "
            "azure-native:environment nor ARM_ENVIRONMENT is set",
        ),
        (
            {"azureCloud": "AzureUSGovernment"},
            {"ARM_ENVIRONMENT": "china"},
            "ARM_ENVIRONMENT is 'china' (AzureChinaCloud), so azure-native deploys to AzureChinaCloud",
        ),
        (
            {"azureCloud": "AzureCloud", "azure-native:environment": "usgovernment"},
            {},
            "azure-native:environment is 'usgovernment' (AzureUSGovernment)",
        ),
        ({}, {"ARM_ENVIRONMENT": "germany"}, "ARM_ENVIRONMENT is 'germany', not an Azure cloud this program knows"),
    ],
)
def test_two_settings_that_name_different_clouds_stop_the_run_naming_both(
    no_cloud_in_the_environment: pytest.MonkeyPatch,
    overrides: dict[str, str],
    environment: dict[str, str],
    expected: str,
) -> None:
    for name, value in environment.items():
        no_cloud_in_the_environment.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        run_program("dev", overrides)
    assert expected in str(refused.value)


def test_an_unknown_azure_cloud_value_is_refused_by_its_key() -> None:
    with pytest.raises(ConfigError) as refused:
        run_program("dev", {"azureCloud": "AzureGermanCloud"})
    message = str(refused.value)
    assert "'azureCloud'" in message and "'AzureGermanCloud'" in message
    for name in ("AzureCloud", "AzureUSGovernment", "AzureChinaCloud"):
        assert name in message
