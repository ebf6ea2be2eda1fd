"""Adopting what exists (existingServerId, existingEnvironmentId): the program declares only its own children
on it, refuses what it cannot serve before declaring anything, and leaves the default path as it was.

The lookups are answered as the azure-native provider answers them (a GET, `properties` flattened, camelCase;
a missing resource is ARM's 404): REST API 2025-08-01 for Microsoft.DBforPostgreSQL (servers, configurations,
databases, administrators) and 2025-02-02-preview for Microsoft.App managed environments, the versions the
installed SDK's get_server / get_configuration / get_database / get_administrators_microsoft_entra /
get_managed_environment call.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import pytest
from harness import (
    DEPLOYER_OBJECT_ID,
    SUBSCRIPTION_ID,
    TENANT_ID,
    ProgramRun,
    RecordingMocks,
    before_the_gateway,
    environment_id,
    is_secret_at,
    run_program,
    server_id,
)

pytestmark = pytest.mark.program

SERVER = "azure-native:dbforpostgresql:Server"
DATABASE = "azure-native:dbforpostgresql:Database"
CONFIGURATION = "azure-native:dbforpostgresql:Configuration"
ENTRA_ADMIN = "azure-native:dbforpostgresql:AdministratorsMicrosoftEntra"
FIREWALL_RULE = "azure-native:dbforpostgresql:FirewallRule"
DIAGNOSTIC_SETTING = "azure-native:monitor:DiagnosticSetting"
CONTAINER_APP = "azure-native:app:ContainerApp"
ENVIRONMENT = "azure-native:app:ManagedEnvironment"
DYNAMIC = "pulumi-python:dynamic:Resource"
NETWORK_TYPES = (
    "azure-native:network:VirtualNetwork",
    "azure-native:network:Subnet",
    "azure-native:network:NatGateway",
    "azure-native:network:PublicIPAddress",
    "azure-native:network:NetworkSecurityGroup",
    ENVIRONMENT,
    "azure-native:privatedns:PrivateZone",
)

# The manual setup the issue starts from: a server full of data in its own resource group.
DATA_GROUP = "data-rg"
LEGACY_SERVER = "legacy-pg"
LEGACY_ID = server_id(DATA_GROUP, LEGACY_SERVER)
LEGACY_FQDN = f"{LEGACY_SERVER}.postgres.database.azure.com"
LEGACY_LOGIN = "legacyadmin"
LEGACY_PASSWORD = "Legacy-Adm1n-pw~secret"
APPS_GROUP = "apps-rg"
SHARED_ENV = "shared-env"
SHARED_ENV_ID = environment_id(APPS_GROUP, SHARED_ENV)
SHARED_ENV_SUBNET = (
    f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/hub"
    "/subnets/aca"
)
SHARED_ENV_DOMAIN = "kindwater-1a2b3c4d.westeurope.azurecontainerapps.io"
NAT_ADDRESSES = ["20.61.7.8", "20.61.7.9"]
ADMIN_NAME = "pgmcp-deploy"  # the CI deployer's display name (harness.CI_APP_CLAIMS)


def azure_estate(
    *,
    entra_auth: str = "Enabled",
    password_auth: str = "Enabled",  # noqa: S107 (a setting's state, not a password)
    version: str = "16",
    secure_transport: str = "on",
    administrator_login: str | None = LEGACY_LOGIN,
    database: bool = True,
    admin_name: str | None = ADMIN_NAME,
    environment: dict[str, Any] | None = None,
) -> RecordingMocks:
    """What exists in Azure before the stack: the legacy server (with its database and Entra admin unless told
    otherwise) and a shared workload profiles environment on a VNet."""
    recording = RecordingMocks()
    server: dict[str, Any] = {
        "location": "West Europe",
        "type": "Microsoft.DBforPostgreSQL/flexibleServers",
        "version": version,
        "state": "Ready",
        "fullyQualifiedDomainName": LEGACY_FQDN,
        "authConfig": {"activeDirectoryAuth": entra_auth, "passwordAuth": password_auth, "tenantId": TENANT_ID},
        "sku": {"name": "Standard_D2ds_v5", "tier": "GeneralPurpose"},
        "storage": {"storageSizeGB": 128, "autoGrow": "Enabled"},
        "network": {"publicNetworkAccess": "Enabled"},
    }
    if administrator_login is not None:
        server["administratorLogin"] = administrator_login
    recording.add_existing(LEGACY_ID, server)
    recording.add_existing(
        f"{LEGACY_ID}/configurations/require_secure_transport",
        {"value": secure_transport, "defaultValue": "on", "source": "system-default", "dataType": "Boolean"},
    )
    if database:
        recording.add_existing(f"{LEGACY_ID}/databases/app", {"charset": "UTF8", "collation": "en_US.utf8"})
    if admin_name is not None:
        recording.add_existing(
            f"{LEGACY_ID}/administrators/{DEPLOYER_OBJECT_ID}",
            {
                "objectId": DEPLOYER_OBJECT_ID,
                "principalName": admin_name,
                "principalType": "ServicePrincipal",
                "tenantId": TENANT_ID,
            },
        )
    recording.add_existing(
        SHARED_ENV_ID,
        environment
        if environment is not None
        else {
            "location": "West Europe",
            "provisioningState": "Succeeded",
            "workloadProfiles": [
                {"name": "Consumption", "workloadProfileType": "Consumption"},
                {"name": "d4", "workloadProfileType": "D4", "minimumCount": 1, "maximumCount": 3},
            ],
            "vnetConfiguration": {
                "infrastructureSubnetId": SHARED_ENV_SUBNET,
                "internal": False,
            },
            "defaultDomain": SHARED_ENV_DOMAIN,
            "staticIp": "20.61.7.100",
            "zoneRedundant": True,
        },
    )
    return recording


ADOPT_ALL: dict[str, Any] = {"existingServerId": LEGACY_ID, "existingDatabase": True, "entraAdminExists": True}
IN_SHARED_ENV: dict[str, Any] = {"existingEnvironmentId": SHARED_ENV_ID, "appEgressIps": NAT_ADDRESSES}


def adopt(overrides: dict[str, Any], recording: RecordingMocks | None = None, **kw: Any) -> ProgramRun:
    return run_program("dev", overrides, recording=recording or azure_estate(), **kw)


@functools.cache
def adopted_server_run() -> ProgramRun:
    return adopt(ADOPT_ALL)


# --- the default path ---------------------------------------------------------------------------

# The URNs main declared before adoption existed (commit 0110f08), for the shipped stacks in both modes; since
# then the environment moved to its own component, by alias (test_urn_moves.py).
URNS_BEFORE = json.loads((Path(__file__).with_name("default_urns.json")).read_text())


@pytest.mark.parametrize("case", sorted(URNS_BEFORE))
def test_the_default_path_declares_the_same_resources_with_the_same_urns(case: str) -> None:
    stack, mode = case.split("-")
    run = run_program(stack, {"authMode": mode})
    # The sign-in gateway (signIn: gateway, the default) only adds resources, under its own components.
    assert before_the_gateway(run.urns.values()) == URNS_BEFORE[case]
    # Nothing is looked up when nothing is adopted.
    assert not [token for token, _ in run.mocks.calls if token.split(":")[-1].startswith(("getServer", "getManaged"))]


def test_the_new_keys_at_their_defaults_change_nothing() -> None:
    defaults = {
        "existingServerId": "",
        "existingServerAdminPassword": "",
        "existingDatabase": False,
        "entraAdminExists": False,
        "existingEnvironmentId": "",
        "appEgressIps": [],
        "containerAppName": "",
        "releaseCreatedDatabase": False,
        "allowMajorVersionUpgrade": False,
    }
    plain, explicit = run_program("dev", {}), run_program("dev", defaults)
    assert plain.urns == explicit.urns
    # Keyed by type and name: a component and its child may share a name (the Environment and the McpApp do).
    assert {(r.type, r.name): r.inputs for r in plain.resources} == {
        (r.type, r.name): r.inputs for r in explicit.resources
    }
    assert len(plain.resources) == len(explicit.resources)


# --- an adopted server --------------------------------------------------------------------------


def test_an_adopted_server_is_referenced_never_declared() -> None:
    run = adopted_server_run()
    assert run.of_type(SERVER) == [] and run.of_type(DATABASE) == [] and run.of_type(ENTRA_ADMIN) == []
    # Its parameters are its owner's: no Configuration is written (the lookup checked require_secure_transport).
    assert run.of_type(CONFIGURATION) == []
    # The only random string is the vault's suffix: none names a server.
    assert all(not r.inputs.get("serverName", "").startswith("pgmcp-dev-pg-") for r in run.resources)
    assert run.exports["serverFqdn"] == LEGACY_FQDN
    assert run.exports["databaseName"] == "app"
    assert run.exports["serverCreateOnly"] == {"existingServerId": LEGACY_ID}
    looked_up = {token.rsplit(":", 1)[-1] for token, _ in run.mocks.calls}
    assert {"getServer", "getConfiguration", "getDatabase", "getAdministratorsMicrosoftEntra"} <= looked_up


def test_the_programs_children_target_the_adopted_server_and_carry_the_stacks_prefix() -> None:
    run = adopted_server_run()
    for child in run.of_type(FIREWALL_RULE):
        assert (child.inputs["resourceGroupName"], child.inputs["serverName"]) == (DATA_GROUP, LEGACY_SERVER)
        assert child.inputs["firewallRuleName"].startswith("pgmcp-dev-")
    rules = {r.inputs["firewallRuleName"]: r.inputs["startIpAddress"] for r in run.of_type(FIREWALL_RULE)}
    assert rules == {"pgmcp-dev-app-egress": "20.50.60.70"}  # the NAT gateway of the program's own network
    server_settings = [d for d in run.of_type(DIAGNOSTIC_SETTING) if d.inputs["resourceUri"] == LEGACY_ID]
    assert [d.inputs["name"] for d in server_settings] == ["pgmcp-dev-to-log-analytics"]
    access = run.one(DYNAMIC).inputs
    assert (access["host"], access["database"], access["admin_user"]) == (LEGACY_FQDN, "app", ADMIN_NAME)
    containers = {c["name"]: c for c in run.one(CONTAINER_APP).inputs["template"]["containers"]}
    uri = {e["name"]: e.get("value") for e in containers["postgres-mcp"]["env"]}["DATABASE_URI"]
    assert uri.startswith(f"postgresql://postgres_mcp@{LEGACY_FQDN}:5432/app?")
    # No administrator password is generated for a server the program did not create, nor stored (the vault
    # holds only the sign-in gateway's own keys).
    assert [r.name for r in run.of_type("random:index/randomPassword:RandomPassword")] == [
        "pgmcp-dev-gateway-signing-key",
        "pgmcp-dev-gateway-store-key",
    ]
    assert {s.inputs["secretName"] for s in run.of_type("azure-native:keyvault:Secret")} == {
        "gateway-signing-key",
        "gateway-store-key",
    }


def test_allow_azure_services_on_an_adopted_server_never_overwrites_the_owners_rule() -> None:
    run = adopt({**ADOPT_ALL, "allowAzureServices": True, "ciRunnerIp": "20.1.2.3"})
    rules = {r.name: r.inputs["firewallRuleName"] for r in run.of_type(FIREWALL_RULE)}
    assert rules == {
        "pgmcp-dev-database-fw-app-egress": "pgmcp-dev-app-egress",
        "pgmcp-dev-database-fw-AllowAllAzureServicesAndResourcesWithinAzureIps": "pgmcp-dev-azure-services",
        "pgmcp-dev-database-fw-ci-runner": "pgmcp-dev-ci-runner",  # the deploy workflow's target URN is unchanged
    }


def test_what_does_not_exist_yet_is_created_on_the_adopted_server() -> None:
    run = adopt({"existingServerId": LEGACY_ID}, azure_estate(database=False, admin_name=None))
    database, admin = run.one(DATABASE).inputs, run.one(ENTRA_ADMIN).inputs
    for child in (database, admin):
        assert (child["resourceGroupName"], child["serverName"]) == (DATA_GROUP, LEGACY_SERVER)
    assert database["databaseName"] == "app"
    assert (admin["objectId"], admin["principalName"]) == (DEPLOYER_OBJECT_ID, ADMIN_NAME)
    waits_for = run.depends_on(run.one(DYNAMIC).name)
    assert run.one(DATABASE).name in waits_for and run.one(ENTRA_ADMIN).name in waits_for
    assert run.of_type(SERVER) == [] and run.of_type(CONFIGURATION) == []


def test_the_next_update_keeps_what_the_stack_created_on_the_adopted_server() -> None:
    first = adopt({"existingServerId": LEGACY_ID}, azure_estate(database=False, admin_name=None))
    record = first.exports["serverCreateOnly"]
    assert record == {
        "existingServerId": LEGACY_ID,
        "createdDatabase": "app",
        "createdEntraAdminObjectId": DEPLOYER_OBJECT_ID,
    }
    # Now they exist, because the stack created them: that is no take-over, and the same config deploys again.
    recording = azure_estate()
    recording.stack_outputs = {"serverCreateOnly": record}
    again = adopt({"existingServerId": LEGACY_ID}, recording)
    assert again.urns == first.urns
    assert again.exports["serverCreateOnly"] == record


def test_protect_resources_covers_the_database_the_stack_created_on_an_adopted_server() -> None:
    estate = {"existingServerId": LEGACY_ID}
    protected = adopt({**estate, "protectResources": True}, azure_estate(database=False, admin_name=None))
    assert protected.options[protected.one(DATABASE).name].protect is True
    unprotected = adopt(estate, azure_estate(database=False, admin_name=None))
    assert not unprotected.options[unprotected.one(DATABASE).name].protect


@pytest.mark.parametrize("key", ["existingDatabase", "entraAdminExists"])
def test_saying_that_what_the_stack_created_exists_is_refused_since_pulumi_would_delete_it(key: str) -> None:
    record = adopt({"existingServerId": LEGACY_ID}, azure_estate(database=False, admin_name=None)).exports
    recording = azure_estate()
    recording.stack_outputs = {"serverCreateOnly": record["serverCreateOnly"]}
    with pytest.raises(pulumi.RunError, match=rf"config key '{key}' is true, but this stack created .*would delete"):
        adopt({"existingServerId": LEGACY_ID, key: True}, recording)
    assert recording.resources == []


def test_password_mode_signs_in_as_the_adopted_servers_administrator_with_the_secret_password() -> None:
    run = adopt(
        {**ADOPT_ALL, "authMode": "password", "existingServerAdminPassword": LEGACY_PASSWORD},
        secret_keys=("existingServerAdminPassword",),
    )
    access = run.one(DYNAMIC)
    assert access.inputs["admin_user"] == LEGACY_LOGIN  # the login the server answers with
    assert access.inputs["admin_password"] == LEGACY_PASSWORD
    assert is_secret_at(access.raw_inputs, "admin_password")
    # Never exported, never copied into the vault (only the app's own password and URI are stored there).
    assert LEGACY_PASSWORD not in json.dumps(run.exports)
    stored = {s.inputs["secretName"] for s in run.of_type("azure-native:keyvault:Secret")}
    assert stored == {"app-database-password", "database-uri", "gateway-signing-key", "gateway-store-key"}


def test_the_adopted_servers_password_must_be_a_secret() -> None:
    recording = azure_estate()
    with pytest.raises(pulumi.RunError) as refused:
        adopt({**ADOPT_ALL, "authMode": "password", "existingServerAdminPassword": LEGACY_PASSWORD}, recording)
    message = str(refused.value)
    assert "'existingServerAdminPassword'" in message and "--secret" in message
    assert LEGACY_PASSWORD not in message
    assert recording.resources == []


def test_a_stack_that_created_its_server_cannot_start_adopting_another() -> None:
    # Pulumi deletes what a program stops declaring: the stack's own server, and its data, would go.
    own = run_program("dev", {}).exports["serverCreateOnly"]
    recording = azure_estate()
    recording.stack_outputs = {"serverCreateOnly": own}
    with pytest.raises(pulumi.RunError, match=r"config key 'existingServerId'.*delete that server"):
        adopt(ADOPT_ALL, recording)
    assert recording.resources == []


def test_an_adopting_stack_keeps_adopting_and_may_go_back_to_a_server_of_its_own() -> None:
    record = adopted_server_run().exports["serverCreateOnly"]
    recording = azure_estate()
    recording.stack_outputs = {"serverCreateOnly": record}
    assert adopt(ADOPT_ALL, recording).of_type(SERVER) == []
    # Dropping existingServerId creates the stack's own server (the adopted one was never the stack's), with
    # the program's login: the adoption record is not read as "a server created without a login".
    own = run_program("dev", {}, recording=RecordingMocks(stack_outputs={"serverCreateOnly": record}))
    assert own.one(SERVER).inputs["administratorLogin"] == "pgadmin"


# --- refusals: each names its key and comes before any resource --------------------------------

REFUSALS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("entra-off", {}, {"entra_auth": "Disabled"}, "config key 'existingServerId'.*Entra authentication.*restarts"),
    ("tls-off", {}, {"secure_transport": "off"}, "config key 'existingServerId'.*require_secure_transport.*'off'"),
    ("version", {}, {"version": "13"}, "config key 'existingServerId'.*PostgreSQL 13 is not supported"),
    ("db-taken-over", {"existingDatabase": False}, {}, "config key 'existingDatabase' is false.*already exists"),
    ("db-missing", {}, {"database": False}, "config key 'existingDatabase' is true.*does not exist"),
    ("admin-taken-over", {"entraAdminExists": False}, {}, "config key 'entraAdminExists' is false.*already exists"),
    ("admin-missing", {}, {"admin_name": None}, "config key 'entraAdminExists' is true.*does not exist"),
    ("admin-name", {}, {"admin_name": "dba-team"}, "config key 'entraAdminPrincipalName'.*expected 'dba-team'"),
    (
        "password-off",
        {"authMode": "password", "existingServerAdminPassword": LEGACY_PASSWORD},
        {"password_auth": "Disabled"},
        "config key 'authMode'.*password authentication on the adopted server",
    ),
    (
        "no-login",
        {"authMode": "password", "existingServerAdminPassword": LEGACY_PASSWORD},
        {"administrator_login": None},
        "config key 'authMode'.*created without one",
    ),
    (
        "no-server",
        {"existingServerId": server_id(DATA_GROUP, "gone-pg")},
        {},
        "config key 'existingServerId': no Flexible Server",
    ),
    (
        "other-subscription",
        {"existingServerId": server_id(DATA_GROUP, LEGACY_SERVER, "00000000-0000-0000-0000-0000000000dd")},
        {},
        "config key 'existingServerId'.*expected the subscription this stack deploys to",
    ),
]


@pytest.mark.parametrize(("overrides", "estate", "expected"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_an_adopted_server_that_cannot_be_served_is_refused_before_any_resource(
    overrides: dict[str, Any], estate: dict[str, Any], expected: str
) -> None:
    recording = azure_estate(**estate)
    with pytest.raises(pulumi.RunError) as refused:
        adopt({**ADOPT_ALL, **overrides}, recording, secret_keys=("existingServerAdminPassword",))
    message = str(refused.value)
    assert re.search(expected, message, flags=re.DOTALL), message
    assert "nothing was changed" in message.lower()
    assert LEGACY_PASSWORD not in message
    assert recording.resources == []


def test_a_lookup_that_fails_for_another_reason_than_absence_is_never_taken_for_absence() -> None:
    # Read as "no database", a 403 would make the program create-or-update the database, i.e. take it over.
    recording = azure_estate()
    database_id = f"{LEGACY_ID}/databases/app"
    recording.azure_errors[database_id.lower()] = (
        'Status=403 Code="AuthorizationFailed" Message="The client does not have authorization to perform action '
        f"'Microsoft.DBforPostgreSQL/flexibleServers/databases/read' over scope '{database_id}'.\""
    )
    with pytest.raises(pulumi.RunError) as refused:
        adopt({**ADOPT_ALL, "existingDatabase": False}, recording)
    message = str(refused.value)
    assert "config key 'existingDatabase': cannot read database 'app'" in message and "AuthorizationFailed" in message
    assert recording.resources == []


def test_every_problem_of_an_adopted_server_is_reported_at_once() -> None:
    recording = azure_estate(entra_auth="Disabled", secure_transport="OFF", version="12")
    with pytest.raises(pulumi.RunError, match=r"3 problem\(s\)"):
        adopt(ADOPT_ALL, recording)
    assert recording.resources == []


# --- an existing Container Apps environment -----------------------------------------------------


def test_the_app_joins_the_existing_environment_and_no_network_is_declared() -> None:
    warnings: list[str] = []
    with mock.patch.object(pulumi.log, "warn", lambda message, *a, **kw: warnings.append(message)):
        run = run_program("dev", IN_SHARED_ENV, recording=azure_estate())
    # The subnet is its owner's: the warning says what the store's rule needs from them.
    (store_warning,) = [w for w in warnings if "gateway's store" in w]
    assert SHARED_ENV_SUBNET in store_warning and "--service-endpoints Microsoft.Storage" in store_warning
    for resource_type in NETWORK_TYPES:
        assert run.of_type(resource_type) == [], resource_type
    app = run.one(CONTAINER_APP).inputs
    assert (app["managedEnvironmentId"], app["workloadProfileName"]) == (SHARED_ENV_ID, "Consumption")
    assert app["containerAppName"] == "pgmcp-dev-mcp"
    # Behind the gateway (the default) clients call /mcp, at the name the environment's domain gives the app.
    assert run.exports["mcpUrl"] == f"https://pgmcp-dev-mcp.{SHARED_ENV_DOMAIN}/mcp"
    gateway = {c["name"]: c for c in app["template"]["containers"]}["gateway"]
    public_url = {e["name"]: e.get("value") for e in gateway["env"]}["GATEWAY_PUBLIC_URL"]
    assert public_url == f"https://pgmcp-dev-mcp.{SHARED_ENV_DOMAIN}"
    # The gateway's store admits the environment's own subnet (IP rules would be ignored: Azure Storage does not
    # apply them to requests from its own region, and an adopted environment is in the stack's).
    rules = run.one("azure-native:storage:StorageAccount").inputs["networkRuleSet"]
    assert rules["defaultAction"] == "Deny" and "ipRules" not in rules
    assert [rule["virtualNetworkResourceId"] for rule in rules["virtualNetworkRules"]] == [SHARED_ENV_SUBNET]
    assert run.exports["environmentCreateOnly"] == {"existingEnvironmentId": SHARED_ENV_ID}
    assert run.exports["appEgressIps"] == NAT_ADDRESSES and "appEgressIp" not in run.exports
    # The environment's NAT addresses are what the server firewall admits, one rule each.
    rules = {
        r.inputs["firewallRuleName"]: (r.inputs["startIpAddress"], r.inputs["endIpAddress"])
        for r in run.of_type(FIREWALL_RULE)
    }
    assert rules == {f"app-egress-{i}": (ip, ip) for i, ip in enumerate(NAT_ADDRESSES)}
    # Its logs go to the environment's own workspace: without alertWorkspaceId the token alerts cannot watch them
    # (tests/test_alert_workspace.py).
    assert run.of_type("azure-native:monitor:ScheduledQueryRule") == []


def test_an_existing_environment_with_azure_services_as_the_explicit_opt_in() -> None:
    run = run_program(
        "dev", {"existingEnvironmentId": SHARED_ENV_ID, "allowAzureServices": True}, recording=azure_estate()
    )
    rules = [r.inputs["firewallRuleName"] for r in run.of_type(FIREWALL_RULE)]
    assert rules == ["AllowAllAzureServicesAndResourcesWithinAzureIps"]


def test_both_adopted_a_named_app_in_the_shared_environment_on_the_legacy_server() -> None:
    run = adopt({**ADOPT_ALL, **IN_SHARED_ENV, "containerAppName": "postgres-mcp-v2"})
    assert run.of_type(SERVER) == [] and run.of_type(ENVIRONMENT) == []
    assert run.one(CONTAINER_APP).inputs["containerAppName"] == "postgres-mcp-v2"
    rules = {r.inputs["firewallRuleName"] for r in run.of_type(FIREWALL_RULE)}
    assert rules == {"pgmcp-dev-app-egress-0", "pgmcp-dev-app-egress-1"}


def consumption_only() -> dict[str, Any]:
    # A Consumption-only environment: no workloadProfiles, and (here) Azure's own network.
    return {"location": "westeurope", "defaultDomain": SHARED_ENV_DOMAIN, "staticIp": "20.61.7.100"}


ENVIRONMENT_REFUSALS: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("consumption-only", {}, consumption_only(), "config key 'existingEnvironmentId'.*Consumption-only.*notice"),
    (
        "no-vnet",
        {},
        {"location": "westeurope", "workloadProfiles": [{"name": "Consumption", "workloadProfileType": "Consumption"}]},
        "config key 'existingEnvironmentId'.*not on a virtual network",
    ),
    ("region", {"location": "northeurope"}, None, "config key 'location'.*region 'West Europe'"),
    ("kind", {"ingressInternal": True, "allowedClientCidrs": []}, None, "config key 'ingressInternal'.*external"),
    ("missing", {"existingEnvironmentId": environment_id(APPS_GROUP, "gone")}, None, "existingEnvironmentId': no"),
]


@pytest.mark.parametrize(
    ("overrides", "environment", "expected"),
    [r[1:] for r in ENVIRONMENT_REFUSALS],
    ids=[r[0] for r in ENVIRONMENT_REFUSALS],
)
def test_an_environment_whose_egress_cannot_be_named_is_refused_before_any_resource(
    overrides: dict[str, Any], environment: dict[str, Any] | None, expected: str
) -> None:
    recording = azure_estate(environment=environment)
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", {**IN_SHARED_ENV, **overrides}, recording=recording)
    assert re.search(expected, str(refused.value), flags=re.DOTALL), str(refused.value)
    assert recording.resources == []
