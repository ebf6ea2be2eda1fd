"""The table of Azure clouds (azure_cloud/clouds.py) against its sources, how a stack's cloud is chosen, and every
place that reads it: the provider's scope and diff, the deployer's authority, the ARM endpoints.

Sources: Azure CLI's cloud definitions (Azure/azure-cli, src/azure-cli-core/azure/cli/core/cloud.py:
AZURE_PUBLIC_CLOUD, AZURE_US_GOV_CLOUD, AZURE_CHINA_CLOUD) and azure-native's cloud names
(pulumi/pulumi-azure-native, provider/pkg/azure/cloud/cloud.go, FromName).
"""

from __future__ import annotations

import pytest
from pulumi.dynamic import DiffResult

from azure_cloud import clouds as cloud
from azure_cloud import deployer_credential
from azure_cloud.clouds import CHINA, PUBLIC, US_GOVERNMENT, CloudError, resolve
from azure_cloud.deployer_credential import DefaultChain, GitHubOidc, choose
from components import database_access
from components.database_access import AccessSpec, plan_diff
from preflight import providers
from tools import verify_deployment

pytestmark = pytest.mark.unit

# Azure CLI's cloud.py, copied value by value: (name, active_directory, resource_manager,
# active_directory_resource_id, ossrdbms_resource_id).
AZURE_CLI = {
    "AzureCloud": (
        "https://login.microsoftonline.com",
        "https://management.azure.com/",
        "https://management.core.windows.net/",
        "https://ossrdbms-aad.database.windows.net",
    ),
    "AzureUSGovernment": (
        "https://login.microsoftonline.us",
        "https://management.usgovcloudapi.net/",
        "https://management.core.usgovcloudapi.net/",
        "https://ossrdbms-aad.database.usgovcloudapi.net",
    ),
    "AzureChinaCloud": (
        "https://login.chinacloudapi.cn",
        "https://management.chinacloudapi.cn",
        "https://management.core.chinacloudapi.cn/",
        "https://ossrdbms-aad.database.chinacloudapi.cn",
    ),
}
# FromName's switch: every name azure-native accepts, and the cloud it means.
AZURE_NATIVE = {
    "": "AzureCloud",
    "public": "AzureCloud",
    "azurecloud": "AzureCloud",
    "china": "AzureChinaCloud",
    "azurechinacloud": "AzureChinaCloud",
    "usgov": "AzureUSGovernment",
    "usgovernment": "AzureUSGovernment",
    "azureusgovernment": "AzureUSGovernment",
    "azureusgovernmentcloud": "AzureUSGovernment",
    "usgovernmentl4": "AzureUSGovernment",
}


@pytest.mark.parametrize("name", sorted(AZURE_CLI))
def test_each_cloud_holds_azure_clis_values(name: str) -> None:
    active_directory, resource_manager, management, ossrdbms = AZURE_CLI[name]
    (entry,) = [c for c in cloud.CLOUDS if c.name == name]
    assert entry.active_directory == active_directory
    assert entry.resource_manager == resource_manager.rstrip("/")
    assert set(entry.management_audiences) == {resource_manager.rstrip("/") + "/", management}
    assert entry.ossrdbms_resource_id == ossrdbms
    assert entry.ossrdbms_scope == f"{ossrdbms}/.default"
    assert entry.authority_host == active_directory.removeprefix("https://")
    assert entry.openid_issuer("t") == f"{active_directory}/t/v2.0"


def test_the_config_key_accepts_azure_clis_names() -> None:
    from typing import get_args

    from settings.model import AzureCloudName

    assert set(get_args(AzureCloudName)) == {"", *cloud.CLOUD_NAMES} == {"", *AZURE_CLI}


@pytest.mark.parametrize(("name", "meant"), sorted(AZURE_NATIVE.items()))
def test_arm_environment_means_what_it_means_to_azure_native(name: str, meant: str) -> None:
    assert resolve("", {"ARM_ENVIRONMENT": name}).name == meant
    assert resolve("", {"ARM_ENVIRONMENT": name.upper()}).name == meant  # FromName lowercases


def test_azure_natives_config_comes_before_arm_environment_then_azure_environment() -> None:
    # azure-native: getConfig("environment", "ARM_ENVIRONMENT") -- the provider config first.
    assert resolve("", {"ARM_ENVIRONMENT": "china"}, provider_environment="usgovernment") is US_GOVERNMENT
    assert resolve("", {"ARM_ENVIRONMENT": "china", "AZURE_ENVIRONMENT": "AzureUSGovernment"}) is CHINA
    assert resolve("", {"AZURE_ENVIRONMENT": "AzureUSGovernment"}) is US_GOVERNMENT
    assert resolve("", {}) is PUBLIC


def test_the_key_must_agree_with_the_cloud_azure_native_deploys_to() -> None:
    assert resolve("AzureUSGovernment", {"ARM_ENVIRONMENT": "usgovernment"}) is US_GOVERNMENT
    assert resolve("AzureCloud", {}) is PUBLIC  # azure-native's default is the public cloud
    with pytest.raises(CloudError, match="neither azure-native:environment nor ARM_ENVIRONMENT is set"):
        resolve("AzureChinaCloud", {})
    with pytest.raises(CloudError, match=r"ARM_ENVIRONMENT is 'public' \(AzureCloud\)"):
        resolve("AzureChinaCloud", {"ARM_ENVIRONMENT": "public"})
    with pytest.raises(CloudError, match="azureCloud is 'Mars', not an Azure cloud"):
        resolve("Mars", {})


def test_scopes_and_audiences_lead_back_to_their_cloud() -> None:
    for entry in cloud.CLOUDS:
        assert cloud.by_ossrdbms_scope(entry.ossrdbms_scope) is entry
        assert cloud.by_ossrdbms_scope(entry.ossrdbms_resource_id + "/") is entry
        for audience in entry.management_audiences:
            assert cloud.by_management_audience(audience.rstrip("/")) is entry
    assert cloud.by_ossrdbms_scope("api://something/.default") is None
    assert cloud.by_management_audience("797f4846-ba00-4fd7-ba43-dac1f8f63013") is None


# --- the provider: its input, its diff ------------------------------------------------------------------------------

OLDS = {
    "host": "db.postgres.database.azure.com",
    "port": 5432,
    "admin_user": "admins",
    "auth_mode": "token",
    "database": "app",
    "role": "postgres_mcp",
    "schemas": ["public"],
    "privilege_level": "read_only",
    "principal_id": "00000000-0000-0000-0000-000000000001",
}


def state(props: dict[str, object]) -> dict[str, object]:
    return {**props, "grants": database_access.expected_grants(AccessSpec.from_props(props))}


def test_a_state_without_the_scope_is_the_public_cloud_and_adding_it_changes_nothing() -> None:
    assert AccessSpec.from_props(OLDS).entra_scope == PUBLIC.ossrdbms_scope == database_access.ENTRA_SCOPE
    unchanged = plan_diff(state(OLDS), {**OLDS, "entra_scope": PUBLIC.ossrdbms_scope})
    assert unchanged.changes is False and unchanged.replaces == []
    back = plan_diff(state({**OLDS, "entra_scope": PUBLIC.ossrdbms_scope}), OLDS)
    assert back.changes is False


def test_another_clouds_scope_is_an_update_not_a_new_role() -> None:
    moved: DiffResult = plan_diff(state(OLDS), {**OLDS, "entra_scope": US_GOVERNMENT.ossrdbms_scope})
    assert moved.changes is True and moved.replaces == []
    assert AccessSpec.from_props({**OLDS, "entra_scope": US_GOVERNMENT.ossrdbms_scope}).entra_scope == (
        "https://ossrdbms-aad.database.usgovcloudapi.net/.default"
    )


def test_the_provider_asks_for_its_inputs_scope_at_that_clouds_authority(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, object]] = []

    def get_token(scope: str, environ: object = None, cloud: object = None) -> str:
        asked.append((scope, cloud))
        return "t"

    monkeypatch.setattr(deployer_credential, "get_token", get_token)
    spec = AccessSpec.from_props({**OLDS, "entra_scope": US_GOVERNMENT.ossrdbms_scope})
    assert database_access.Connector(spec, None).password() == "t"
    assert database_access.Connector(AccessSpec.from_props(OLDS), None).password() == "t"
    assert asked == [(US_GOVERNMENT.ossrdbms_scope, US_GOVERNMENT), (PUBLIC.ossrdbms_scope, PUBLIC)]


# --- the deployer's sign-in -----------------------------------------------------------------------------------------

ACTIONS_OIDC = {
    "ARM_USE_OIDC": "true",
    "ARM_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
    "ARM_TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://pipelines.actions.githubusercontent.com/x/idtoken?api-version=2.0",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-token",
}


def test_the_stacks_cloud_chooses_the_authority_unless_azure_authority_host_is_set() -> None:
    choice = choose(ACTIONS_OIDC, US_GOVERNMENT)
    assert isinstance(choice, GitHubOidc) and choice.authority == "login.microsoftonline.us"
    explicit = choose({**ACTIONS_OIDC, "AZURE_AUTHORITY_HOST": "https://127.0.0.1:8443"}, US_GOVERNMENT)
    assert isinstance(explicit, GitHubOidc) and explicit.authority == "https://127.0.0.1:8443"


def test_default_azure_credential_is_told_a_sovereign_authority() -> None:
    # Microsoft Learn, "Multi-cloud: Connect to all regions with the Azure libraries for Python":
    # DefaultAzureCredential(authority=AzureAuthorityHosts.AZURE_GOVERNMENT) in a sovereign cloud.
    assert choose({}, US_GOVERNMENT) == DefaultChain(authority="login.microsoftonline.us")
    assert choose({"ARM_ENVIRONMENT": "china"}) == DefaultChain(authority="login.chinacloudapi.cn")
    assert choose({}) == DefaultChain() == choose({}, PUBLIC)  # the public cloud: exactly as before
    assert choose({"AZURE_AUTHORITY_HOST": "login.microsoftonline.us"}, CHINA) == DefaultChain()  # azure-identity's
    signed_in = deployer_credential.credential(choose({}, US_GOVERNMENT))
    try:
        assert type(signed_in).__name__ == "DefaultAzureCredential"
    finally:
        signed_in.close()


# --- Resource Manager -----------------------------------------------------------------------------------------------


def test_the_deploy_verification_reads_arm_in_the_jobs_cloud() -> None:
    assert verify_deployment.arm_endpoint({}) == "https://management.azure.com"
    assert verify_deployment.arm_endpoint({"ARM_ENVIRONMENT": "usgovernment"}) == "https://management.usgovcloudapi.net"
    assert (
        verify_deployment.arm_endpoint({"AZURE_ENVIRONMENT": "AzureChinaCloud"})
        == "https://management.chinacloudapi.cn"
    )
    with pytest.raises(SystemExit, match="ARM_ENVIRONMENT is 'mars'"):
        verify_deployment.arm_endpoint({"ARM_ENVIRONMENT": "mars"})


def test_the_provider_check_falls_back_to_the_stacks_cloud() -> None:
    from harness import jwt

    v2 = jwt({"aud": "797f4846-ba00-4fd7-ba43-dac1f8f63013"})
    assert providers.arm_endpoint(v2, CHINA) == "https://management.chinacloudapi.cn"
    # The token's own audience wins: it says which cloud issued it.
    assert providers.arm_endpoint(jwt({"aud": "https://management.core.usgovcloudapi.net/"}), PUBLIC) == (
        "https://management.usgovcloudapi.net"
    )
