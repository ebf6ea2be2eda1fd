"""The whole program under mocks: dev and prod, each in token and password mode."""

from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import (
    DEPLOYER_OBJECT_ID,
    EGRESS_IP,
    LOG_ANALYTICS_SHARED_KEY,
    ROOT,
    SUBSCRIPTION_ID,
    TENANT_ID,
    ProgramRun,
    is_secret_at,
    run_program,
)

pytestmark = pytest.mark.program

CONTAINER_APP = "azure-native:app:ContainerApp"
SERVER = "azure-native:dbforpostgresql:Server"
VAULT = "azure-native:keyvault:Vault"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
FIREWALL_RULE = "azure-native:dbforpostgresql:FirewallRule"
DYNAMIC = "pulumi-python:dynamic:Resource"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
STORAGE_TABLE = "azure-native:storage:Table"
WAIT = "pulumi-python:dynamic:RolePropagationWait"
# The secrets the sign-in gateway adds to the vault in both modes (shipped stacks: signIn gateway).
GATEWAY_SECRETS = {"gateway-signing-key", "gateway-store-key"}
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"  # Learn, "Azure built-in roles for Containers": AcrPull

STACKS = [(stack, mode) for stack in ("dev", "prod") for mode in ("token", "password")]


@functools.cache
def program(stack: str, mode: str) -> ProgramRun:
    return run_program(stack, {"authMode": mode})


@pytest.fixture(params=STACKS, ids=[f"{s}-{m}" for s, m in STACKS])
def deployed(request: pytest.FixtureRequest) -> tuple[str, str, ProgramRun]:
    stack, mode = request.param
    return stack, mode, program(stack, mode)


@pytest.fixture(params=["dev", "prod"])
def token_mode(request: pytest.FixtureRequest) -> ProgramRun:
    return program(request.param, "token")


@pytest.fixture(params=["dev", "prod"])
def password_mode(request: pytest.FixtureRequest) -> ProgramRun:
    return program(request.param, "password")


def containers(run: ProgramRun) -> dict[str, dict[str, Any]]:
    template = run.one(CONTAINER_APP).inputs["template"]
    return {container["name"]: container for container in template["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def identity_id(run: ProgramRun) -> str:
    return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg/providers/{IDENTITY}/{run.one(IDENTITY).name}"


def test_app_runs_as_the_user_assigned_identity(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    app = run.one(CONTAINER_APP).inputs
    assert app["identity"]["type"] == "UserAssigned"
    assert app["identity"]["userAssignedIdentities"] == [identity_id(run)]


def test_identity_holds_secrets_user_on_the_vault_before_the_app_exists(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    assignments = run.of_type(ROLE_ASSIGNMENT)
    app_identity = run.one(IDENTITY)
    secrets_user = [a for a in assignments if a.inputs["roleDefinitionId"].endswith(KEY_VAULT_SECRETS_USER)]
    assert len(secrets_user) == 1
    assert secrets_user[0].inputs["principalId"] == "22222222-2222-2222-2222-222222222222"
    assert secrets_user[0].inputs["principalType"] == "ServicePrincipal"
    assert secrets_user[0].inputs["scope"].endswith(run.one(VAULT).name)
    assert app_identity is not None
    # The deployer gets no data-plane role: secrets are written through ARM (a control-plane PUT of
    # Microsoft.KeyVault/vaults/secrets), and Secrets Officer would let CI read every password back. The app's
    # identity holds two more with the sign-in gateway (the default): its table
    # (test_the_gateways_store_is_a_locked_table) and its image in the stack's own registry (AcrPull).
    roles = sorted(a.inputs["roleDefinitionId"].rsplit("/", 1)[-1] for a in assignments)
    assert roles == sorted([KEY_VAULT_SECRETS_USER, STORAGE_TABLE_DATA_CONTRIBUTOR, ACR_PULL])
    assert not [a for a in assignments if a.inputs["principalId"] == DEPLOYER_OBJECT_ID]
    assert not [a for a in assignments if a.inputs["roleDefinitionId"].endswith(KEY_VAULT_SECRETS_OFFICER)]
    # Mocks register resources in dependency order: the role exists before the app.
    names = [r.name for r in run.resources]
    assert names.index(secrets_user[0].name) < names.index(run.one(CONTAINER_APP).name)


def test_vault_uses_rbac_and_soft_delete(deployed: tuple[str, str, ProgramRun]) -> None:
    stack, _, run = deployed
    properties = run.one(VAULT).inputs["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["tenantId"] == TENANT_ID
    if stack == "prod":
        assert properties["enablePurgeProtection"] is True
        assert properties["softDeleteRetentionInDays"] == 90
    else:
        assert "enablePurgeProtection" not in properties


def test_token_mode_sidecar_shares_a_fresh_password_file(token_mode: ProgramRun) -> None:
    run = token_mode
    app = run.one(CONTAINER_APP).inputs
    by_name = containers(run)
    assert set(by_name) == {"postgres-mcp", "token-refresher", "gateway"}
    assert app["template"]["volumes"] == [{"name": "pgpass", "storageType": "EmptyDir"}]
    mcp_env, refresher_env = env_of(by_name["postgres-mcp"]), env_of(by_name["token-refresher"])
    fqdn = run.exports["serverFqdn"]
    assert (
        mcp_env["DATABASE_URI"]["value"]
        == f"postgresql://postgres_mcp@{fqdn}:5432/app?sslmode=verify-full&sslrootcert=system"
    )
    assert mcp_env["PGPASSFILE"]["value"] == "/var/run/pgpass/pgpass"
    assert refresher_env["PGPASSFILE"]["value"] == "/var/run/pgpass/pgpass"
    assert {k: refresher_env[k]["value"] for k in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")} == {
        "PGHOST": fqdn,
        "PGPORT": "5432",
        "PGDATABASE": "app",
        "PGUSER": "postgres_mcp",
    }
    assert refresher_env["AZURE_CLIENT_ID"]["value"] == run.exports["appIdentityClientId"]
    for name in ("postgres-mcp", "token-refresher"):  # the gateway has no business with the database password
        assert by_name[name]["volumeMounts"] == [{"volumeName": "pgpass", "mountPath": "/var/run/pgpass"}]
    assert "volumeMounts" not in by_name["gateway"]
    # The sidecar is the project's refresher, its code shipped and named by digest, in the server's own image.
    from components.mcp_app import refresher_digest, refresher_source

    command = by_name["token-refresher"]["command"]
    assert command[:2] == ["python", "-c"] and command[2] == refresher_source()
    assert refresher_env["REFRESHER_DIGEST"]["value"] == refresher_digest()
    assert command[3] == "--margin-seconds=900"
    assert by_name["token-refresher"]["image"] == by_name["postgres-mcp"]["image"]
    # No password for the app: its only secrets are the gateway's keys, no password auth on the server. The
    # server's administrator login exists in both modes (create-only); its password waits in Key Vault.
    assert {secret["name"] for secret in app["configuration"]["secrets"]} == GATEWAY_SECRETS
    server = run.one(SERVER)
    assert server.inputs["authConfig"]["passwordAuth"] == "Disabled"
    assert server.inputs["administratorLogin"] == "pgadmin"
    assert is_secret_at(server.raw_inputs, "administratorLoginPassword")
    (admin_password,) = [
        r for r in run.of_type("random:index/randomPassword:RandomPassword") if r.name.endswith("-admin-password")
    ]
    (stored,) = [
        r for r in run.of_type("azure-native:keyvault:Secret") if r.inputs["secretName"] not in GATEWAY_SECRETS
    ]
    assert stored.inputs["secretName"] == "postgres-admin-password"
    assert stored.inputs["properties"]["value"] == admin_password.outputs["result"]
    assert server.inputs["administratorLoginPassword"] == admin_password.outputs["result"]


def test_password_mode_uri_is_a_key_vault_reference(password_mode: ProgramRun) -> None:
    run = password_mode
    app = run.one(CONTAINER_APP).inputs
    by_name = containers(run)
    assert set(by_name) == {"postgres-mcp", "gateway"}
    assert env_of(by_name["postgres-mcp"])["DATABASE_URI"] == {"name": "DATABASE_URI", "secretRef": "database-uri"}
    (secret,) = [s for s in app["configuration"]["secrets"] if s["name"] not in GATEWAY_SECRETS]
    assert secret["name"] == "database-uri"
    assert secret["identity"] == identity_id(run)
    assert secret["keyVaultUrl"].startswith(run.exports["keyVaultUri"] + "secrets/database-uri")
    assert "value" not in secret
    stored = {s.inputs["secretName"]: s for s in run.of_type("azure-native:keyvault:Secret")}
    assert set(stored) == {"postgres-admin-password", "app-database-password", "database-uri", *GATEWAY_SECRETS}
    for secret_resource in stored.values():
        assert is_secret_at(secret_resource.raw_inputs, "properties", "value"), secret_resource.name
    app_password = stored["app-database-password"].inputs["properties"]["value"]
    assert stored["database-uri"].inputs["properties"]["value"] == (
        f"postgresql://postgres_mcp:{app_password}@{run.exports['serverFqdn']}:5432/app?sslmode=verify-full&sslrootcert=system"
    )
    server = run.one(SERVER)
    assert server.inputs["authConfig"]["passwordAuth"] == "Enabled"
    assert is_secret_at(server.raw_inputs, "administratorLoginPassword")


def test_entra_auth_is_always_on_with_an_administrator(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    auth = run.one(SERVER).inputs["authConfig"]
    assert auth["activeDirectoryAuth"] == "Enabled" and auth["tenantId"] == TENANT_ID
    admin = run.one("azure-native:dbforpostgresql:AdministratorsMicrosoftEntra").inputs
    # The CI deployer (an application's token) administers the server by default.
    assert admin["objectId"] == DEPLOYER_OBJECT_ID
    assert admin["principalName"] == "pgmcp-deploy"
    assert admin["principalType"] == "ServicePrincipal"


def test_tls_is_enforced(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    settings = {
        c.inputs["configurationName"]: c.inputs["value"]
        for c in run.of_type("azure-native:dbforpostgresql:Configuration")
    }
    assert settings == {"require_secure_transport": "on", "ssl_min_protocol_version": "TLSv1.2"}


def test_firewall_admits_only_the_app_egress_by_default(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    rules = {
        r.inputs["firewallRuleName"]: (r.inputs["startIpAddress"], r.inputs["endIpAddress"])
        for r in run.of_type(FIREWALL_RULE)
    }
    assert rules == {"app-egress": (EGRESS_IP, EGRESS_IP)}
    subnet = run.one("azure-native:network:Subnet").inputs
    assert subnet["natGateway"]["id"].endswith(run.one("azure-native:network:NatGateway").name)
    assert subnet["delegations"][0]["serviceName"] == "Microsoft.App/environments"


def test_stack_shapes(deployed: tuple[str, str, ProgramRun]) -> None:
    stack, _, run = deployed
    server = run.one(SERVER)
    if stack == "dev":
        assert server.inputs["sku"] == {"name": "Standard_B1ms", "tier": "Burstable"}
        assert server.inputs["backup"] == {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"}
        assert server.inputs["highAvailability"]["mode"] == "Disabled"
    else:
        assert server.inputs["sku"]["tier"] == "GeneralPurpose"
        assert server.inputs["backup"]["backupRetentionDays"] >= 14
        assert server.inputs["backup"]["geoRedundantBackup"] == "Enabled"
        assert server.inputs["highAvailability"]["mode"] == "ZoneRedundant"
    assert server.inputs["version"] == "17"


# REST API (Microsoft.App ContainerAppProbe, as the azure-native SDK documents it in app/_inputs.py):
# failureThreshold 1-10, periodSeconds 1-240, initialDelaySeconds 1-60. ARM refuses a revision outside them.
PROBE_BOUNDS = {"failureThreshold": (1, 10), "periodSeconds": (1, 240), "initialDelaySeconds": (1, 60)}


def test_every_probe_stays_within_what_the_api_accepts(deployed: tuple[str, str, ProgramRun]) -> None:
    stack, mode, run = deployed
    bare = run_program(stack, {"authMode": mode, "signIn": "none", "allowAnonymousPublicAccess": True, "replicas": 1})
    for each in (run, bare):  # behind the gateway (shipped) and without it (postgres-mcp's own probes)
        probes = [
            (name, probe) for name, container in containers(each).items() for probe in container.get("probes", [])
        ]
        assert probes
        for name, probe in probes:
            for field, (low, high) in PROBE_BOUNDS.items():
                assert low <= probe.get(field, low) <= high, (name, probe["type"], field, probe.get(field))
    startup = next(p for n, p in probes if n == "postgres-mcp" and p["type"] == "Startup")
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # room for a slow first connect


def test_app_container_shape(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    app = run.one(CONTAINER_APP).inputs
    mcp = containers(run)["postgres-mcp"]
    assert mcp["image"] == "docker.io/crystaldba/postgres-mcp:0.3.0"
    assert "--transport=sse" in mcp["args"] and "--access-mode=restricted" in mcp["args"]
    # The shipped stacks sign in through the gateway: the ingress targets it (test_the_gateway_takes_the_ingress).
    assert app["configuration"]["ingress"]["targetPort"] == 8080
    assert app["configuration"]["ingress"]["allowInsecure"] is False
    environment = run.one("azure-native:app:ManagedEnvironment").inputs
    # Logs through a diagnostic setting (test_server_vault_and_apps_log_to_one_workspace), not the shared-key
    # HTTP Data Collector API (support ended 14 September 2026).
    assert environment["appLogsConfiguration"] == {"destination": "azure-monitor"}
    assert environment["vnetConfiguration"]["infrastructureSubnetId"].endswith(
        run.one("azure-native:network:Subnet").name
    )


def test_no_secret_value_in_plain_env_or_outputs(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    secret_values = [*run.mocks.generated_secrets, LOG_ANALYTICS_SHARED_KEY]
    for container in containers(run).values():
        for variable in container.get("env", []):
            plain = str(variable.get("value", ""))
            assert not any(secret in plain for secret in secret_values), variable["name"]
            if variable["name"] == "DATABASE_URI" and "value" in variable:
                assert "@" in plain and ":" not in plain.split("//", 1)[1].split("@", 1)[0]
    rendered = json.dumps(run.exports)
    assert not any(secret in rendered for secret in secret_values)
    # The workspace's shared key is neither read nor handed to the environment: its logs need none.
    environment = run.one("azure-native:app:ManagedEnvironment")
    assert "logAnalyticsConfiguration" not in environment.inputs["appLogsConfiguration"]
    assert LOG_ANALYTICS_SHARED_KEY not in json.dumps([r.inputs for r in run.resources])
    assert "azure-native:operationalinsights:getSharedKeys" not in [token for token, _ in run.mocks.calls]


def test_outputs(deployed: tuple[str, str, ProgramRun]) -> None:
    stack, mode, run = deployed
    exports = run.exports
    assert exports["authMode"] == mode
    # Behind the gateway clients call https://<fqdn>/mcp; the SSE URL is postgres-mcp's, which the ingress no
    # longer reaches (test_without_the_gateway_the_outputs_are_as_before keeps it meaningful without the gateway).
    fqdn = run.one(CONTAINER_APP).outputs["configuration"]["ingress"]["fqdn"]
    assert exports["mcpUrl"] == f"https://{fqdn}/mcp"
    assert exports["mcpSseUrl"] == ""
    assert exports["serverFqdn"].endswith(".postgres.database.azure.com")
    assert exports["databaseName"] == "app"
    assert exports["appRoleName"] == "postgres_mcp"
    assert exports["appIdentityClientId"] == "11111111-1111-1111-1111-111111111111"
    assert exports["keyVaultUri"].startswith("https://") and exports["keyVaultUri"].endswith(".vault.azure.net/")
    client = json.loads(exports["mcpClientConfig"])
    assert client == {"mcpServers": {f"postgres-{stack}": {"type": "http", "url": exports["mcpUrl"]}}}


def test_prod_protects_the_server_and_the_vault() -> None:
    prod, dev = program("prod", "token"), program("dev", "token")
    for resource_type in (SERVER, VAULT):
        assert prod.options[prod.one(resource_type).name].protect is True
        assert not dev.options[dev.one(resource_type).name].protect


def test_app_waits_for_its_key_vault_role_and_the_database(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    waits_for = run.depends_on(run.one(CONTAINER_APP).name)
    (secrets_user,) = [
        a.name for a in run.of_type(ROLE_ASSIGNMENT) if a.inputs["roleDefinitionId"].endswith(KEY_VAULT_SECRETS_USER)
    ]
    assert secrets_user in waits_for
    assert run.one("azure-native:dbforpostgresql:Database").name in waits_for
    assert all(rule.name in waits_for for rule in run.of_type(FIREWALL_RULE))


def test_server_changes_are_serialized(deployed: tuple[str, str, ProgramRun]) -> None:
    # Flexible Server refuses concurrent operations: each child waits for the one before.
    _, _, run = deployed
    chain = [r.name for r in run.resources if r.type.startswith("azure-native:dbforpostgresql:") and r.type != SERVER]
    server = run.one(SERVER).name
    ordered = sorted(chain, key=lambda name: len(_ancestors(run, name)))
    assert run.depends_on(ordered[0]) == [server]
    for before, after in itertools.pairwise(ordered):
        assert run.depends_on(after) == [before]


def _ancestors(run: ProgramRun, name: str) -> list[str]:
    found: list[str] = []
    while name in run.options and run.depends_on(name):
        name = run.depends_on(name)[0]
        found.append(name)
    return found


def test_overrides_reach_the_resources() -> None:
    run = run_program(
        "dev",
        {
            "deployerCidrs": ["203.0.113.7", "198.51.100.0/24"],
            "allowAzureServices": True,
            "entraAdminObjectId": "5f2b2d3e-1111-4c4c-8d8d-0123456789ab",
            "entraAdminPrincipalName": "dba-team",
            "entraAdminPrincipalType": "Group",
            "mcpAccessMode": "unrestricted",
            "tokenRefreshMarginSeconds": 600,
            "appRoleName": "mcp_reader",
            "databaseName": "sales",
        },
    )
    rules = {
        r.inputs["firewallRuleName"]: (r.inputs["startIpAddress"], r.inputs["endIpAddress"])
        for r in run.of_type(FIREWALL_RULE)
    }
    assert rules == {
        "deployer-0": ("203.0.113.7", "203.0.113.7"),
        "deployer-1": ("198.51.100.0", "198.51.100.255"),
        "app-egress": (EGRESS_IP, EGRESS_IP),
        "AllowAllAzureServicesAndResourcesWithinAzureIps": ("0.0.0.0", "0.0.0.0"),
    }
    admin = run.one("azure-native:dbforpostgresql:AdministratorsMicrosoftEntra").inputs
    assert (admin["objectId"], admin["principalName"], admin["principalType"]) == (
        "5f2b2d3e-1111-4c4c-8d8d-0123456789ab",
        "dba-team",
        "Group",
    )
    by_name = containers(run)
    assert "--access-mode=unrestricted" in by_name["postgres-mcp"]["args"]
    assert by_name["token-refresher"]["command"][3::2] == ["--margin-seconds=600", "--health-min-validity-seconds=300"]
    assert env_of(by_name["postgres-mcp"])["DATABASE_URI"]["value"].endswith(
        "postgres.database.azure.com:5432/sales?sslmode=verify-full&sslrootcert=system"
    )
    assert env_of(by_name["token-refresher"])["PGUSER"]["value"] == "mcp_reader"
    assert run.one("azure-native:dbforpostgresql:Database").inputs["databaseName"] == "sales"


def test_every_resource_is_tagged() -> None:
    run = run_program("dev")
    untaggable = {
        "Subnet",
        "RoleAssignment",
        "AdministratorsMicrosoftEntra",
        "Configuration",
        "Database",
        "FirewallRule",
        "RandomString",
        "RandomPassword",
        "RandomUuid",
        "RolePropagationWait",
        "Secret",
        "DiagnosticSetting",
        "ContainerAppsAuthConfig",
        "Table",  # a table and the table service are parts of the storage account, which carries the tags
        "TableServiceProperties",
    }
    for resource in run.resources:
        # Entra objects (pulumi-azuread) and their provider carry no Azure resource tags.
        entra = resource.type.startswith(("azuread:", "pulumi:providers:azuread"))
        if (
            entra
            or resource.type.rsplit(":", 1)[-1] in untaggable
            or resource.type.startswith(("postgresmcp:", DYNAMIC))
        ):
            continue
        tags = resource.inputs.get("tags")
        assert tags and tags["environment"] == "dev" and tags["owner"] == "platform-team", resource.name


def test_preview_declares_the_same_graph() -> None:
    # `pulumi preview` in PR pipelines: the program must run with engine-side unknowns.
    previewed = run_program("prod", {"authMode": "password"}, preview=True)
    deployed = program("prod", "password")
    assert sorted((r.type, r.name) for r in previewed.resources) == sorted((r.type, r.name) for r in deployed.resources)


def test_role_and_grants_are_declared_after_the_server_and_before_the_app(
    deployed: tuple[str, str, ProgramRun],
) -> None:
    _, mode, run = deployed
    access = run.one(DYNAMIC)
    inputs = access.inputs
    assert (inputs["role"], inputs["database"], inputs["auth_mode"]) == ("postgres_mcp", "app", mode)
    assert inputs["host"] == run.exports["serverFqdn"]
    assert inputs["schemas"] == ["public"] and inputs["privilege_level"] == "read_only"
    assert (inputs["sslmode"], inputs["sslrootcert"]) == ("verify-full", "certifi")  # the server is verified
    if mode == "token":
        assert inputs["admin_user"] == "pgmcp-deploy"
        assert inputs["principal_id"] == run.exports["appIdentityPrincipalId"]
        assert "admin_password" not in inputs and "role_password" not in inputs
    else:
        assert inputs["admin_user"] == "pgadmin"
        assert inputs["role_password"] in run.mocks.generated_secrets
        assert is_secret_at(access.raw_inputs, "admin_password") and is_secret_at(access.raw_inputs, "role_password")
        assert set(run.options[access.name].additional_secret_outputs or []) >= {"admin_password", "role_password"}
    waits_for = run.depends_on(access.name)
    assert run.one("azure-native:dbforpostgresql:AdministratorsMicrosoftEntra").name in waits_for
    assert run.one("azure-native:dbforpostgresql:Database").name in waits_for
    assert all(rule.name in waits_for for rule in run.of_type(FIREWALL_RULE))
    assert access.name in run.depends_on(run.one(CONTAINER_APP).name)


def test_database_access_follows_config() -> None:
    run = run_program("dev", {"privilegeLevel": "read_write", "grantSchemas": ["public", "reports"]})
    inputs = run.one(DYNAMIC).inputs
    assert inputs["privilege_level"] == "read_write" and inputs["schemas"] == ["public", "reports"]
    assert "owner_roles" not in inputs  # no owners: the provider's inputs are exactly as before the key existed
    owners = run_program("dev", {"grantOnObjectsOwnedBy": ["app_owner", "Flyway"]}).one(DYNAMIC).inputs
    assert owners["owner_roles"] == ["app_owner", "Flyway"]  # exact, case-sensitive role names
    assert run_program("dev", {"manageDatabaseAccess": False}).of_type(DYNAMIC) == []


def test_dynamic_provider_is_pickled_by_reference_and_loads_in_a_fresh_process(tmp_path: Path) -> None:
    # The engine's provider process re-imports components.database_access from the program's
    # directory; a provider pickled by value would drag a copy of the code (and its globals) into state.
    run = program("dev", "token")
    serialized = run.one(DYNAMIC).inputs["__provider"]
    pickled = base64.b64decode(serialized)
    assert b"components.database_access" in pickled and len(pickled) < 2000
    script = tmp_path / "load.py"
    script.write_text(
        "import base64, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "print(type(provider).__module__, type(provider).__name__)\n"
    )
    loaded = subprocess.run(
        [sys.executable, str(script)],
        input=serialized,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == "components.database_access DatabaseAccessProvider"


# --- who may reach the MCP endpoint ----------------------------------------------------------

AUTH_CONFIG = "azure-native:app:ContainerAppsAuthConfig"
CLIENT_APP = "5f2b2d3e-1111-4c4c-8d8d-0123456789ab"
CALLER_APP = "6a3c3e4f-2222-4d4d-9e9e-123456789abc"


def ingress_of(run: ProgramRun) -> dict[str, Any]:
    return dict(run.one(CONTAINER_APP).inputs["configuration"]["ingress"])


def test_shipped_stacks_admit_no_anonymous_caller_from_the_internet() -> None:
    for mode in ("token", "password"):
        dev, prod = program("dev", mode), program("prod", mode)
        dev_ingress = ingress_of(dev)
        assert dev_ingress["external"] is True
        assert [r["ipAddressRange"] for r in dev_ingress["ipSecurityRestrictions"]] == ["198.51.100.0/24"]
        assert all(r["action"] == "Allow" for r in dev_ingress["ipSecurityRestrictions"])
        # Both close it: the gateway signs callers in, the allow-list admits only the clients' range.
        assert dev.exports["mcpAdmission"] == "entra-gateway+allow-list"
        # prod: an internal environment (no public address); `external` there means the VNet.
        assert prod.one("azure-native:app:ManagedEnvironment").inputs["vnetConfiguration"]["internal"] is True
        assert ingress_of(prod)["external"] is True
        assert prod.exports["mcpAdmission"].startswith("internal")


def test_allow_list_admission() -> None:
    run = run_program("dev", {"allowedClientCidrs": ["203.0.113.7", "192.0.2.0/28"]})
    rules = ingress_of(run)["ipSecurityRestrictions"]
    assert [(r["name"], r["ipAddressRange"], r["action"]) for r in rules] == [
        ("client-0", "203.0.113.7/32", "Allow"),
        ("client-1", "192.0.2.0/28", "Allow"),
    ]
    assert run.of_type(AUTH_CONFIG) == []
    assert "headers" not in json.loads(run.exports["mcpClientConfig"])["mcpServers"]["postgres-dev"]


def test_entra_sign_in_admission_rejects_anonymous_callers() -> None:
    run = run_program(
        "dev",
        {
            "signIn": "easyAuth",  # Container Apps authentication, the pasted-token option
            "allowedClientCidrs": [],
            "entraAuthClientId": CLIENT_APP,
            "entraAuthAllowedClientIds": [CALLER_APP],
        },
    )
    auth = run.one(AUTH_CONFIG).inputs
    assert auth["authConfigName"] == "current"
    assert auth["containerAppName"] == run.one(CONTAINER_APP).inputs["containerAppName"]
    assert auth["platform"]["enabled"] is True
    assert auth["globalValidation"]["unauthenticatedClientAction"] == "Return401"
    aad = auth["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True and aad["registration"]["clientId"] == CLIENT_APP
    assert aad["registration"]["openIdIssuer"] == f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
    assert set(aad["validation"]["allowedAudiences"]) == {f"api://{CLIENT_APP}", CLIENT_APP}
    assert aad["validation"]["defaultAuthorizationPolicy"]["allowedApplications"] == [CALLER_APP]
    assert "clientSecretSettingName" not in aad["registration"]  # bearer tokens only: no client secret to keep
    assert ingress_of(run)["external"] is True and "ipSecurityRestrictions" not in ingress_of(run)
    assert run.exports["mcpAdmission"] == "entra"
    assert run.exports["mcpEntraScope"] == f"api://{CLIENT_APP}/.default"
    entry = json.loads(run.exports["mcpClientConfig"])["mcpServers"]["postgres-dev"]
    assert entry["headers"] == {"Authorization": "Bearer ${MCP_ENTRA_TOKEN}"}


def test_internal_only_admission_has_no_public_endpoint() -> None:
    run = run_program("dev", {"allowedClientCidrs": [], "ingressInternal": True, "signIn": "none"})
    assert run.one("azure-native:app:ManagedEnvironment").inputs["vnetConfiguration"]["internal"] is True
    assert run.exports["mcpEnvironmentIp"] == "10.60.0.100"  # an address of the apps subnet, not a public one
    assert run.exports["mcpAdmission"] == "internal"


def test_anonymous_public_endpoint_only_with_the_loud_opt_in() -> None:
    run = run_program("dev", {"allowedClientCidrs": [], "allowAnonymousPublicAccess": True, "signIn": "none"})
    assert ingress_of(run)["external"] is True and "ipSecurityRestrictions" not in ingress_of(run)
    assert run.of_type(AUTH_CONFIG) == []
    assert run.exports["mcpAdmission"] == "anonymous-public"


def test_server_vault_and_apps_log_to_one_workspace(deployed: tuple[str, str, ProgramRun]) -> None:
    _, _, run = deployed
    workspace = run.one("azure-native:operationalinsights:Workspace").name
    settings = {
        d.inputs["resourceUri"].rsplit("/", 1)[-1]: d.inputs
        for d in run.of_type("azure-native:monitor:DiagnosticSetting")
    }
    environment = run.one("azure-native:app:ManagedEnvironment").name
    table_service = run.one("azure-native:storage:TableServiceProperties").name  # the gateway's store
    assert set(settings) == {run.one(SERVER).name, run.one(VAULT).name, environment, table_service}
    for setting in settings.values():
        assert setting["workspaceId"].endswith(workspace)
        assert setting["metrics"] == [{"category": "AllMetrics", "enabled": True}]
    for target in (run.one(SERVER).name, run.one(VAULT).name, table_service):
        assert settings[target]["logs"] == [{"categoryGroup": "allLogs", "enabled": True}]
    # The Container Apps environment: `azure-monitor` plus this setting, into the resource-specific tables the
    # token alerts query (Microsoft Learn, "Log storage and monitoring options in Azure Container Apps";
    # Azure Monitor, "Diagnostic settings": logAnalyticsDestinationType Dedicated).
    apps = settings[environment]
    assert apps["logAnalyticsDestinationType"] == "Dedicated"
    assert apps["logs"] == [
        {"category": "ContainerAppConsoleLogs", "enabled": True},
        {"category": "ContainerAppSystemLogs", "enabled": True},
    ]
    assert run.one("azure-native:app:ManagedEnvironment").inputs["appLogsConfiguration"] == {
        "destination": "azure-monitor"
    }


def test_ci_runner_is_admitted_for_one_run_and_the_access_step_waits_for_it() -> None:
    run = run_program("dev", {"ciRunnerIp": "20.1.2.3"})
    (rule,) = [r for r in run.of_type(FIREWALL_RULE) if r.inputs["firewallRuleName"] == "ci-runner"]
    assert (rule.inputs["startIpAddress"], rule.inputs["endIpAddress"]) == ("20.1.2.3", "20.1.2.3")
    assert rule.name == "pgmcp-dev-database-fw-ci-runner"  # the deploy workflow targets its URN to remove it
    assert rule.name in run.depends_on(run.one(DYNAMIC).name)
    assert not [
        r for r in program("dev", "token").of_type(FIREWALL_RULE) if r.inputs["firewallRuleName"] == "ci-runner"
    ]


# --- the refresher's health, the app's size, the token alerts --------------------------------

SCHEDULED_QUERY_RULE = "azure-native:monitor:ScheduledQueryRule"
ACTION_GROUP = "azure-native:monitor:ActionGroup"
# learn.microsoft.com/azure/container-apps/containers#allocations: in the Consumption plan and
# profile the app's containers must add up to one of these (vCPU, GiB) pairs.
CONSUMPTION_PAIRS = {(0.25 * n, 0.5 * n) for n in range(1, 17)}


def gib(memory: str) -> float:
    assert memory.endswith("Gi"), memory
    return float(memory.removesuffix("Gi"))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_sidecar_is_probed_on_its_health_endpoint_and_postgres_mcp_keeps_its_own(stack: str) -> None:
    by_name = containers(program(stack, "token"))
    refresher, mcp = by_name["token-refresher"], by_name["postgres-mcp"]
    probes = {probe["type"]: probe for probe in refresher["probes"]}
    # No readiness probe on the sidecar: the replica is ready only when all its containers are,
    # and a refresher that is retrying must not take postgres-mcp out of the ingress's rotation.
    assert set(probes) == {"Startup", "Liveness"}
    # Startup on the whole verdict (a token to sign in with); liveness only on a stalled loop, since
    # a restart takes the replica out of rotation and cures nothing else (issue 19, item 7).
    assert probes["Startup"]["httpGet"] == {"path": "/healthz", "port": 8081}
    assert probes["Liveness"]["httpGet"] == {"path": "/livez", "port": 8081}
    for probe in probes.values():
        assert 1 <= probe["failureThreshold"] <= 10 and probe["timeoutSeconds"] >= 1
    assert refresher["command"][3:] == [
        "--margin-seconds=900",
        "--health-port=8081",
        "--health-min-validity-seconds=450",
    ]
    # Behind the gateway postgres-mcp listens on loopback, where no platform probe reaches: the gateway's
    # readiness (/healthz asks postgres-mcp) stands for it (test_the_gateways_probes_use_its_own_routes).
    assert "probes" not in mcp
    # Without the gateway postgres-mcp's probes, readiness included, stay on its own port.
    bare = containers(run_program(stack, {"signIn": "none", "allowAnonymousPublicAccess": True, "replicas": 1}))[
        "postgres-mcp"
    ]
    assert {p["type"] for p in bare["probes"]} == {"Startup", "Liveness", "Readiness"}
    assert all(p["tcpSocket"] == {"port": 8000} and "httpGet" not in p for p in bare["probes"])


def test_a_stuck_refresher_is_restarted_well_before_its_last_token_expires() -> None:
    from components import mcp_app

    for margin in range(300, 3601):  # every value tokenRefreshMarginSeconds accepts
        validity = mcp_app.refresher_min_validity(margin)
        assert 0 < validity < margin  # a healthy refresher never reports unhealthy before a refresh
        lead = mcp_app.restart_lead_seconds(margin)
        # The restarted process gets its whole startup window before the token expires, with room left.
        assert lead - mcp_app.REFRESHER_STARTUP.window_seconds >= 60, margin
    assert mcp_app.restart_lead_seconds(900) >= 5 * 60  # the default: minutes, not seconds


def test_token_mode_costs_what_password_mode_costs(deployed: tuple[str, str, ProgramRun]) -> None:
    _, mode, run = deployed
    shares = {
        name: (container["resources"]["cpu"], gib(container["resources"]["memory"]))
        for name, container in containers(run).items()
    }
    total = (round(sum(cpu for cpu, _ in shares.values()), 2), round(sum(mem for _, mem in shares.values()), 2))
    assert total == (0.5, 1.0) and total in CONSUMPTION_PAIRS
    # The gateway (0.15 vCPU / 0.25 GiB: it idles at ~100 MiB RSS) is carved out of the same total.
    if mode == "token":
        assert shares == {"postgres-mcp": (0.3, 0.65), "token-refresher": (0.05, 0.1), "gateway": (0.15, 0.25)}
    else:
        assert shares == {"postgres-mcp": (0.35, 0.75), "gateway": (0.15, 0.25)}
    for cpu, memory in shares.values():  # each container: two decimals at most
        assert round(cpu, 2) == cpu and round(memory, 2) == memory


def rules_of(run: ProgramRun) -> dict[str, dict[str, Any]]:
    """The token alert rules by kind: `<base name>-token-failures` -> `token-failures`."""
    rules = run.of_type(SCHEDULED_QUERY_RULE)
    return {"-".join(rule.inputs["ruleName"].split("-")[-2:]): rule.inputs for rule in rules}


def test_token_alerts_watch_the_apps_logs_in_each_stack(token_mode: ProgramRun) -> None:
    run = token_mode
    workspace = run.one("azure-native:operationalinsights:Workspace").name
    app_name = run.one(CONTAINER_APP).inputs["containerAppName"]
    rules = rules_of(run)
    assert set(rules) == {"token-failures", "refresher-restarts"}
    for rule in rules.values():
        assert rule["enabled"] is True and rule["kind"] == "LogAlert"
        assert rule["scopes"] == [
            f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg/providers/"
            f"azure-native:operationalinsights:Workspace/{workspace}"
        ]
        assert (rule["evaluationFrequency"], rule["windowSize"]) == ("PT5M", "PT5M")
        (condition,) = rule["criteria"]["allOf"]
        assert (condition["timeAggregation"], condition["operator"], condition["threshold"]) == (
            "Count",
            "GreaterThan",
            0,
        )
        assert f'ContainerAppName == "{app_name}"' in condition["query"]
        assert "_CL" not in condition["query"] and "_s " not in condition["query"]
        assert rule["autoMitigate"] is True
        # A fresh workspace has none of the tables yet: Azure must not validate the query against it.
        assert rule["skipQueryValidation"] is True
    failures = rules["token-failures"]["criteria"]["allOf"][0]["query"]
    assert failures.startswith("ContainerAppConsoleLogs\n")
    assert 'container == "postgres-mcp" and Log contains "The access token has expired"' in failures
    assert 'container == "token-refresher"' in failures and "failed_in_a_row >= 5" in failures
    restarts = rules["refresher-restarts"]["criteria"]["allOf"][0]["query"]
    assert restarts.startswith("let events = ContainerAppSystemLogs\n")
    assert 'Log contains "token-refresher"' in restarts and 'Log contains "will be restarted"' in restarts
    assert rules["token-failures"]["severity"] < rules["refresher-restarts"]["severity"]


def test_alert_e_mails_come_from_config() -> None:
    dev, prod = program("dev", "token"), program("prod", "token")
    # dev ships quiet: the rules exist, nobody is e-mailed.
    assert dev.of_type(ACTION_GROUP) == []
    assert all("actions" not in rule for rule in rules_of(dev).values())
    # prod ships with an on-call placeholder address to replace.
    group = prod.one(ACTION_GROUP)
    assert [r["emailAddress"] for r in group.inputs["emailReceivers"]] == ["platform-oncall@example.com"]
    group_id = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg/providers/{ACTION_GROUP}/{group.name}"
    assert all(rule["actions"]["actionGroups"] == [group_id] for rule in rules_of(prod).values())
    run = run_program("dev", {"alertEmails": ["dba@example.com", "ops@example.org"]})
    inputs = run.one(ACTION_GROUP).inputs
    assert inputs["enabled"] is True and inputs["location"] == "Global" and len(inputs["groupShortName"]) <= 12
    assert [(r["name"], r["emailAddress"], r["useCommonAlertSchema"]) for r in inputs["emailReceivers"]] == [
        ("email-0", "dba@example.com", True),
        ("email-1", "ops@example.org", True),
    ]
    assert run_program("prod", {"alertEmails": []}).of_type(ACTION_GROUP) == []


def test_password_mode_has_no_token_alerts(password_mode: ProgramRun) -> None:
    assert password_mode.of_type(SCHEDULED_QUERY_RULE) == [] and password_mode.of_type(ACTION_GROUP) == []
