"""The sign-in gateway as the program declares it (issue 18): the container, its keys, its store, the image
check, the outputs and the admission it combines with. Under mocks, through `run_program`."""

from __future__ import annotations

import functools
import json
from typing import Any
from unittest import mock

import pulumi
import pytest
from harness import (
    CREATED_APP_CLIENT_ID,
    PIPELINE_GATEWAY_DIGEST,
    TENANT_ID,
    ProgramRun,
    RecordingMocks,
    is_secret_at,
    run_program,
)

from components import mcp_app
from preflight.gateway_image import PLACEHOLDER_DIGEST

pytestmark = pytest.mark.program

CONTAINER_APP = "azure-native:app:ContainerApp"
AUTH_CONFIG = "azure-native:app:ContainerAppsAuthConfig"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
TABLE = "azure-native:storage:Table"
SECRET = "azure-native:keyvault:Secret"
IDENTITY_CLIENT_ID = "11111111-1111-1111-1111-111111111111"
IDENTITY_PRINCIPAL_ID = "22222222-2222-2222-2222-222222222222"
CLIENT_APP = "00000000-0000-0000-0000-0000000000ee"
AGENT = "00000000-0000-0000-0000-0000000000cc"
PREBUILT = "myregistry.azurecr.io/postgres-mcp-gateway@sha256:" + "c" * 64
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
# learn.microsoft.com/azure/container-apps/containers#allocations (Consumption): the app's total is one of these.
CONSUMPTION_PAIRS = {(0.25 * n, 0.5 * n) for n in range(1, 17)}


@functools.cache
def shipped(stack: str, mode: str = "token") -> ProgramRun:
    return run_program(stack, {"authMode": mode})


def containers(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in run.one(CONTAINER_APP).inputs["template"]["containers"]}


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def values(container: dict[str, Any]) -> dict[str, Any]:
    return {name: variable.get("value") for name, variable in env(container).items()}


def fqdn(run: ProgramRun) -> str:
    return str(run.one(CONTAINER_APP).outputs["configuration"]["ingress"]["fqdn"])


# --- the container ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_gateway_takes_the_ingress_and_postgres_mcp_listens_on_loopback_only(stack: str) -> None:
    run = shipped(stack)
    app = run.one(CONTAINER_APP).inputs
    by_name = containers(run)
    gateway, mcp = by_name["gateway"], by_name["postgres-mcp"]
    # The ingress reaches the gateway, never postgres-mcp's port (Microsoft Learn, "Ingress in Azure Container
    # Apps": the ingress forwards to targetPort of the app's containers, which share the replica's network).
    assert app["configuration"]["ingress"]["targetPort"] == mcp_app.GATEWAY_PORT == 8080
    assert app["configuration"]["ingress"]["transport"] == "auto" and app["configuration"]["ingress"]["external"]
    # No session affinity: the gateway is stateless (Streamable HTTP, sign-ins in the shared store).
    assert "stickySessions" not in app["configuration"]["ingress"]
    # postgres-mcp binds 127.0.0.1: its one --sse-host, so the image's entrypoint adds no 0.0.0.0
    # (crystaldba/postgres-mcp docker-entrypoint.sh, v0.3.0: it appends --sse-host=0.0.0.0 only when no argument
    # starts with --sse-host).
    hosts = [arg for arg in mcp["args"] if arg.startswith("--sse-host")]
    assert hosts == ["--sse-host=127.0.0.1"]
    assert "--transport=sse" in mcp["args"] and "--sse-port=8000" in mcp["args"]
    assert values(gateway)["GATEWAY_BACKEND_URL"] == "http://127.0.0.1:8000/sse"
    # The gateway is the project's program, its image pinned by digest (the pipeline's, in the stand-in).
    assert gateway["command"] == ["python", "-m", "gateway"] == list(mcp_app.GATEWAY_COMMAND)
    assert gateway["image"].endswith(f"@{PIPELINE_GATEWAY_DIGEST}")
    # No Easy Auth in front of the gateway: it answers the MCP authorization flow itself.
    assert run.of_type(AUTH_CONFIG) == []


def test_the_gateways_environment_is_the_contract() -> None:
    run = shipped("dev")
    gateway = containers(run)["gateway"]
    plain = values(gateway)
    public_url = f"https://{fqdn(run)}"
    assert plain == {
        "GATEWAY_PORT": "8080",
        "GATEWAY_PUBLIC_URL": public_url,
        "GATEWAY_BACKEND_URL": "http://127.0.0.1:8000/sse",
        "ENTRA_TENANT_ID": TENANT_ID,
        "ENTRA_CLIENT_ID": CREATED_APP_CLIENT_ID,  # the app registration the stack created (pulumi-azuread)
        "ENTRA_AUTHORITY_HOST": "login.microsoftonline.com",
        "ENTRA_CREDENTIAL": "federated",
        "ENTRA_FEDERATION_AUDIENCE": "api://AzureADTokenExchange",
        "AZURE_CLIENT_ID": IDENTITY_CLIENT_ID,
        "ENTRA_ALLOWED_AGENT_CLIENT_IDS": "",
        "GATEWAY_SIGNING_KEY": None,
        "GATEWAY_STORE_KEY": None,
        "GATEWAY_STORE_ENDPOINT": f"https://{run.one(STORAGE_ACCOUNT).inputs['accountName']}.table.core.windows.net",
        "GATEWAY_STORE_TABLE": run.one(TABLE).inputs["tableName"],
    }
    # The keys are Key Vault references read by the app's identity, never values.
    assert env(gateway)["GATEWAY_SIGNING_KEY"] == {"name": "GATEWAY_SIGNING_KEY", "secretRef": "gateway-signing-key"}
    assert env(gateway)["GATEWAY_STORE_KEY"] == {"name": "GATEWAY_STORE_KEY", "secretRef": "gateway-store-key"}
    assert "ENTRA_CLIENT_SECRET" not in plain
    # The public URL is known before the app exists: <app name>.<environment default domain>.
    assert run.exports["mcpUrl"] == f"{public_url}/mcp"


def test_an_adopted_registration_and_its_agents_reach_the_gateway() -> None:
    run = run_program("dev", {"entraAuthClientId": CLIENT_APP, "entraAuthAllowedClientIds": [AGENT, CLIENT_APP]})
    plain = values(containers(run)["gateway"])
    assert plain["ENTRA_CLIENT_ID"] == CLIENT_APP
    assert plain["ENTRA_ALLOWED_AGENT_CLIENT_IDS"] == f"{AGENT},{CLIENT_APP}"
    # Agents ask Entra for the API's scope (client credentials).
    assert run.exports["mcpEntraScope"] == f"api://{CLIENT_APP}/.default"


def test_a_us_government_gateway_signs_in_at_its_own_authority(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ARM_ENVIRONMENT", "AZURE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARM_ENVIRONMENT", "usgovernment")
    plain = values(containers(run_program("dev", {"azureCloud": "AzureUSGovernment"}))["gateway"])
    assert plain["ENTRA_AUTHORITY_HOST"] == "login.microsoftonline.us"
    assert plain["ENTRA_FEDERATION_AUDIENCE"] == "api://AzureADTokenExchangeUSGov"


def test_the_gateways_probes_use_its_own_routes() -> None:
    gateway = containers(shipped("prod"))["gateway"]
    probes = {probe["type"]: probe for probe in gateway["probes"]}
    assert set(probes) == {"Startup", "Liveness", "Readiness"}
    # Startup and liveness: the process and its event loop; readiness: the backend session answers (/healthz
    # 503 otherwise), which takes the replica out of rotation without restarting anything.
    assert probes["Startup"]["httpGet"] == {"path": "/livez", "port": 8080}
    assert probes["Liveness"]["httpGet"] == {"path": "/livez", "port": 8080}
    assert probes["Readiness"]["httpGet"] == {"path": "/healthz", "port": 8080}
    for probe in probes.values():  # the REST spec's bounds (see test_program.PROBE_BOUNDS)
        assert 1 <= probe["failureThreshold"] <= 10 and 1 <= probe["periodSeconds"] <= 240
        assert 1 <= probe["initialDelaySeconds"] <= 60 and probe["timeoutSeconds"] >= 1


@pytest.mark.parametrize(("stack", "replicas"), [("dev", 1), ("prod", 2)])
def test_replicas_are_fixed_and_prod_runs_two_across_its_zones(stack: str, replicas: int) -> None:
    run = shipped(stack)
    assert run.one(CONTAINER_APP).inputs["template"]["scale"] == {"minReplicas": replicas, "maxReplicas": replicas}
    if stack == "prod":
        environment = run.one("azure-native:app:ManagedEnvironment").inputs
        assert environment["zoneRedundant"] is True
    assert run_program("dev", {"replicas": 3}).one(CONTAINER_APP).inputs["template"]["scale"] == {
        "minReplicas": 3,
        "maxReplicas": 3,
    }


@pytest.mark.parametrize("mode", ["token", "password"])
def test_the_gateway_is_carved_out_of_the_same_allocation(mode: str) -> None:
    run = shipped("dev", mode)
    shares = {
        name: (c["resources"]["cpu"], float(c["resources"]["memory"].removesuffix("Gi")))
        for name, c in containers(run).items()
    }
    total = (round(sum(c for c, _ in shares.values()), 2), round(sum(m for _, m in shares.values()), 2))
    assert total == (0.5, 1.0) and total in CONSUMPTION_PAIRS  # what a stack without the gateway pays
    # ~100 MiB RSS idle (measured with the gateway): 0.25 GiB leaves 2.5x.
    assert shares["gateway"] == (0.15, 0.25) and shares["gateway"][1] * 1024 >= 2 * 100


# --- Easy Auth and none: as before -----------------------------------------------------------------------------


def test_easy_auth_keeps_postgres_mcp_on_the_ingress_and_its_authconfig() -> None:
    run = run_program("dev", {"signIn": "easyAuth", "entraAuthClientId": CLIENT_APP, "allowedClientCidrs": []})
    by_name = containers(run)
    assert set(by_name) == {"postgres-mcp", "token-refresher"}
    assert run.one(CONTAINER_APP).inputs["configuration"]["ingress"]["targetPort"] == 8000
    assert "--sse-host=0.0.0.0" in by_name["postgres-mcp"]["args"]
    assert run.one(AUTH_CONFIG).inputs["identityProviders"]["azureActiveDirectory"]["registration"]["clientId"] == (
        CLIENT_APP
    )
    assert run.of_type(STORAGE_ACCOUNT) == [] and run.exports["mcpAdmission"] == "entra"
    assert run.one(CONTAINER_APP).inputs["template"]["scale"] == {"minReplicas": 1, "maxReplicas": 1}


def test_without_the_gateway_the_outputs_are_as_before() -> None:
    run = run_program("dev", {"signIn": "easyAuth", "entraAuthClientId": CLIENT_APP})
    sse = f"https://{fqdn(run)}/sse"
    assert run.exports["mcpUrl"] == run.exports["mcpSseUrl"] == sse
    entry = json.loads(run.exports["mcpClientConfig"])["mcpServers"]["postgres-dev"]
    assert entry == {"type": "sse", "url": sse, "headers": {"Authorization": "Bearer ${MCP_ENTRA_TOKEN}"}}
    configs = run.exports["mcpClientConfigs"]
    assert json.loads(configs["vscode"])["servers"]["postgres-dev"]["type"] == "sse"
    assert "pythonSdk" not in configs  # OAuthClientProvider needs the gateway's OAuth endpoints
    none = run_program("dev", {"signIn": "none"})
    assert json.loads(none.exports["mcpClientConfig"]) == {
        "mcpServers": {"postgres-dev": {"type": "sse", "url": none.exports["mcpSseUrl"]}}
    }


# --- Key Vault --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["token", "password"])
def test_the_gateways_keys_are_generated_secrets_in_key_vault(mode: str) -> None:
    run = shipped("prod", mode)
    stored = {s.inputs["secretName"]: s for s in run.of_type(SECRET)}
    passwords = {p.name: p for p in run.of_type("random:index/randomPassword:RandomPassword")}
    app_secrets = {s["name"]: s for s in run.one(CONTAINER_APP).inputs["configuration"]["secrets"]}
    for name in ("gateway-signing-key", "gateway-store-key"):
        generated = passwords[f"pgmcp-prod-{name}"]
        assert generated.inputs["length"] >= 32 and generated.inputs["special"] is False
        assert stored[name].inputs["properties"]["value"] == generated.outputs["result"]
        assert is_secret_at(stored[name].raw_inputs, "properties", "value")
        # The app reads it by reference (versionless: a rotation reaches the next revision), as its identity.
        assert app_secrets[name]["keyVaultUrl"] == f"{run.exports['keyVaultUri']}secrets/{name}"
        assert (
            app_secrets[name]["identity"].endswith("pgmcp-prod-identity-app-identity")
            and "value" not in (app_secrets[name])
        )
    # Nothing secret in plain sight: not in env values, not in outputs.
    rendered = json.dumps([containers(run), run.exports])
    assert not any(secret in rendered for secret in run.mocks.generated_secrets)


def test_the_client_secret_of_an_adopted_registration_is_a_key_vault_reference() -> None:
    secret = "an-adopted-client-secret~value"
    run = run_program(
        "dev",
        {
            "entraAuthClientId": CLIENT_APP,
            "gatewayCredential": "secret",
            "gatewayClientSecret": secret,
        },
        secret_keys=("gatewayClientSecret",),
    )
    gateway = containers(run)["gateway"]
    assert values(gateway)["ENTRA_CREDENTIAL"] == "secret" and "ENTRA_FEDERATION_AUDIENCE" not in values(gateway)
    assert env(gateway)["ENTRA_CLIENT_SECRET"] == {"name": "ENTRA_CLIENT_SECRET", "secretRef": "entra-client-secret"}
    (stored,) = [s for s in run.of_type(SECRET) if s.inputs["secretName"] == "entra-client-secret"]
    assert stored.inputs["properties"]["value"] == secret
    assert is_secret_at(stored.raw_inputs, "properties", "value")
    (reference,) = [
        s for s in run.one(CONTAINER_APP).inputs["configuration"]["secrets"] if s["name"] == "entra-client-secret"
    ]
    assert reference["keyVaultUrl"].endswith("/secrets/entra-client-secret") and "value" not in reference
    assert secret not in json.dumps([containers(run), run.exports])


# --- the shared store -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_gateways_store_is_a_locked_table(stack: str) -> None:
    run = shipped(stack)
    account = run.one(STORAGE_ACCOUNT)
    inputs = account.inputs
    assert inputs["kind"] == "StorageV2"
    assert inputs["allowSharedKeyAccess"] is False and inputs["defaultToOAuthAuthentication"] is True
    assert inputs["minimumTlsVersion"] == "TLS1_2" and inputs["enableHttpsTrafficOnly"] is True
    assert inputs["allowBlobPublicAccess"] is False and inputs["allowCrossTenantReplication"] is False
    assert inputs["sku"]["name"] == ("Standard_ZRS" if stack == "prod" else "Standard_LRS")
    assert 3 <= len(inputs["accountName"]) <= 24 and inputs["accountName"].isalnum()
    assert inputs["tags"]["environment"] == stack
    # Deny by default; the apps subnet admitted through its Microsoft.Storage service endpoint.
    rules = inputs["networkRuleSet"]
    subnet = run.one("azure-native:network:Subnet")
    assert rules["defaultAction"] == "Deny" and rules["bypass"] == "None" and "ipRules" not in rules
    assert [rule["virtualNetworkResourceId"] for rule in rules["virtualNetworkRules"]] == [
        f"/subscriptions/{run_subscription(run)}/resourceGroups/rg/providers/azure-native:network:Subnet/{subnet.name}"
    ]
    assert subnet.inputs["serviceEndpoints"] == [{"service": "Microsoft.Storage"}]
    # The identity may read and write the gateway's table, and nothing else of the account.
    table = run.one(TABLE)
    (role,) = [
        r for r in run.of_type(ROLE_ASSIGNMENT) if r.inputs["roleDefinitionId"].endswith(STORAGE_TABLE_DATA_CONTRIBUTOR)
    ]
    assert role.inputs["scope"].endswith(f"/{TABLE}/{table.name}")
    assert (role.inputs["principalId"], role.inputs["principalType"]) == (IDENTITY_PRINCIPAL_ID, "ServicePrincipal")
    # The first revision waits until the role applies.
    app_waits_for = run.depends_on(run.one(CONTAINER_APP).name)
    assert role.name in app_waits_for and f"{role.name}-propagation" in app_waits_for
    # Logs like the vault's and the server's.
    service = run.one("azure-native:storage:TableServiceProperties")
    (setting,) = [
        d
        for d in run.of_type("azure-native:monitor:DiagnosticSetting")
        if d.inputs["resourceUri"].endswith(service.name)
    ]
    assert setting.inputs["logs"] == [{"categoryGroup": "allLogs", "enabled": True}]


def run_subscription(run: ProgramRun) -> str:
    return str(run.one(CONTAINER_APP).inputs["managedEnvironmentId"].split("/")[2])


def test_without_the_gateway_there_is_no_store_and_no_service_endpoint() -> None:
    run = run_program("dev", {"signIn": "none"})
    assert run.of_type(STORAGE_ACCOUNT) == [] and run.of_type(TABLE) == []
    assert "serviceEndpoints" not in run.one("azure-native:network:Subnet").inputs


# --- the image, before anything is declared --------------------------------------------------------------------


def test_up_without_a_gateway_image_stops_before_declaring_anything() -> None:
    recording = RecordingMocks()
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", {"gatewayImageDigest": None}, recording=recording)
    message = str(refused.value)
    assert "gatewayImageDigest" in message and "gatewayImage" in message
    assert "docs/sign-in.md#the-gateway-image" in message
    assert recording.resources == []


def test_a_preview_without_a_gateway_image_warns_and_shows_a_placeholder() -> None:
    warnings: list[str] = []
    with mock.patch.object(pulumi.log, "warn", lambda message, *a, **kw: warnings.append(message)):
        run = run_program("dev", {"gatewayImageDigest": None}, preview=True)
    assert containers(run)["gateway"]["image"].endswith(f"@{PLACEHOLDER_DIGEST}")
    (warning,) = [w for w in warnings if "gatewayImageDigest" in w]
    assert "placeholder" in warning and "docs/sign-in.md#the-gateway-image" in warning


def test_a_prebuilt_image_is_used_as_given() -> None:
    run = run_program("dev", {"gatewayImage": PREBUILT})
    assert containers(run)["gateway"]["image"] == PREBUILT
    # Easy Auth and none need no gateway image.
    assert run_program("dev", {"signIn": "none", "gatewayImageDigest": None}).of_type(STORAGE_ACCOUNT) == []


# --- outputs ----------------------------------------------------------------------------------------------------


def test_the_client_configurations_point_at_mcp_and_carry_no_token() -> None:
    run = shipped("dev")
    url = run.exports["mcpUrl"]
    assert url == f"https://{fqdn(run)}/mcp"
    configs = run.exports["mcpClientConfigs"]
    assert set(configs) == {
        "vscode",
        "claudeCode",
        "claudeCodeProjectFile",
        "cursor",
        "mcpRemote",
        "claudeDesktopViaMcpRemote",
        "pythonSdk",
    }
    assert json.loads(configs["vscode"]) == {"servers": {"postgres-dev": {"type": "http", "url": url}}}
    assert configs["claudeCode"] == f"claude mcp add --transport http postgres-dev {url}"
    assert json.loads(configs["claudeCodeProjectFile"]) == {
        "mcpServers": {"postgres-dev": {"type": "http", "url": url}}
    }
    assert json.loads(configs["cursor"]) == {"mcpServers": {"postgres-dev": {"url": url}}}
    assert configs["mcpRemote"] == f"npx mcp-remote {url}"
    assert json.loads(configs["claudeDesktopViaMcpRemote"]) == {
        "mcpServers": {"postgres-dev": {"command": "npx", "args": ["mcp-remote", url]}}
    }
    snippet = configs["pythonSdk"]
    compile(snippet, "snippet.py", "exec")  # valid Python
    assert "streamablehttp_client(URL, auth=auth)" in snippet and "OAuthClientProvider(" in snippet
    assert f"URL = {url!r}" in snippet
    rendered = json.dumps(configs)
    for forbidden in ("Bearer", "Authorization", "token=", *run.mocks.generated_secrets):
        assert forbidden not in rendered, forbidden


# --- admission combines with sign-in -----------------------------------------------------------------------------


def test_the_allow_list_and_internal_ingress_combine_with_the_gateway() -> None:
    dev, prod = shipped("dev"), shipped("prod")
    # dev: the gateway signs callers in, and the ingress still admits only the allow-list.
    assert [
        r["ipAddressRange"] for r in dev.one(CONTAINER_APP).inputs["configuration"]["ingress"]["ipSecurityRestrictions"]
    ] == ["198.51.100.0/24"]
    assert dev.exports["mcpAdmission"] == "entra-gateway+allow-list"
    # prod: internal environment, the NSG admits the clients' range on 443, allow-list on the ingress, and sign-in.
    assert prod.exports["mcpAdmission"] == "internal+entra-gateway+allow-list"
    nsg = prod.one("azure-native:network:NetworkSecurityGroup").inputs["securityRules"]
    https = next(rule for rule in nsg if rule["name"] == "allow-mcp-clients-https")
    assert https["sourceAddressPrefix"] == "10.61.8.0/24" and https["destinationPortRanges"] == ["443", "31443"]
    assert [
        r["ipAddressRange"]
        for r in prod.one(CONTAINER_APP).inputs["configuration"]["ingress"]["ipSecurityRestrictions"]
    ] == ["10.61.8.0/24"]
