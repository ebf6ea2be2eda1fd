"""Config validation: every bad value is refused by name, before any resource exists."""

from __future__ import annotations

import ipaddress
from typing import Any

import pulumi
import pytest
from harness import RecordingMocks, layered_config, run_program

import settings
from settings import ConfigError, EntraAdmin, parse

pytestmark = pytest.mark.program

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
FLEXIBLE_SERVERS = "Microsoft.DBforPostgreSQL/flexibleServers"
# key -> values that must be refused, each with a fragment the message must contain.
BAD_VALUES: dict[str, list[tuple[Any, str]]] = {
    "authMode": [("tokens", "one of token, password"), ("", "one of token, password"), ("Token", "one of token")],
    "location": [("West Europe", "Azure region"), ("", "Azure region")],
    "azureCloud": [("usgovernment", "AzureUSGovernment"), ("AzureGermanCloud", "AzureCloud")],
    "namePrefix": [("PG", "lowercase"), ("1abc", "starting with a letter"), ("averyveryverylongprefix", "2-10")],
    "owner": [("", "1-256 characters"), ("a/b", "without")],
    "postgresVersion": [("13", "one of 14, 15, 16, 17"), ("16.2", "one of 14"), ("latest", "one of 14")],
    "skuTier": [("Basic", "one of Burstable, GeneralPurpose, MemoryOptimized")],
    "skuName": [("Standard_D2s_v3", "must belong to skuTier 'Burstable'"), ("B1ms", "SKU name")],
    "storageSizeGb": [(33, "one of 32, 64"), ("lots", "a whole number"), (0, "one of 32")],
    "backupRetentionDays": [(3, "7 to 35"), (36, "7 to 35"), ("week", "a whole number")],
    "geoRedundantBackup": [("yes", "true or false")],
    "allowMajorVersionUpgrade": [("yes", "true or false")],
    "releaseCreatedDatabase": [("yes", "true or false")],
    "keyVaultRoleWaitSeconds": [(-1, "0 to 1800"), (1801, "0 to 1800"), ("ten", "whole number")],
    "highAvailability": [
        ("Enabled", "one of Disabled, ZoneRedundant, SameZone"),
        ("ZoneRedundant", "Disabled on the Burstable tier"),
    ],
    "maintenanceWindow": [
        ("Sunday 02:00", "a weekday and a UTC start time such as 'Sun 02:00'"),
        ("Sun 24:00", "UTC start time"),
        ("Sun 2:00", "UTC start time"),
        ("sun 02:00", "days: Sun, Mon"),
        ("Sun 02:60", "UTC start time"),
        ("", "system, or a weekday"),
    ],
    "zoneRedundant": [("zonal", "true or false")],
    "databaseName": [
        ("My-DB", "lowercase PostgreSQL identifier"),
        ("a;drop table x", "identifier"),
        ("postgres", "not reserved"),
        ("pg_stat", "pg_*"),
        ("x" * 64, "at most 63"),
        ("名前", "a-z"),
    ],
    "appRoleName": [
        ('mcp"role', "identifier"),
        ("azure_pg_admin", "not reserved"),
        ("", "identifier"),
        ("1role", "starting with a letter"),
    ],
    "manageDatabaseAccess": [("no", "true or false")],
    "privilegeLevel": [("admin", "one of read_only, read_write"), ("readonly", "one of read_only")],
    "grantOnObjectsOwnedBy": [
        (["pg_read_all_data"], "not PUBLIC, NONE"),
        (["app_owner", "app_owner"], "distinct role names"),
        ([""], "1-63 bytes"),
        (["postgres_mcp"], "other than appRoleName"),
        ("app_owner", "a list of role names"),
    ],
    "grantSchemas": [
        ([], "at least one schema name"),
        (["Sales"], "lowercase PostgreSQL identifiers"),
        (["pg_catalog"], "not pg_*"),
        (["public", "public"], "each schema once"),
        ("public", "a list of"),
        (['a"b'], "identifiers"),
    ],
    "entraAdminObjectId": [("not-a-guid", "a GUID"), ("12345678-1234-1234-1234-12345678901", "a GUID")],
    "entraAdminPrincipalName": [("a:b", "without :"), ("x" * 64, "1-63 characters")],
    "entraAdminPrincipalType": [("Application", "one of User, Group, ServicePrincipal"), ("user", "one of User")],
    "deployerCidrs": [
        (["0.0.0.0/0"], "no wider than /16"),
        (["10.0.0.0/8"], "no wider than /16"),
        (["203.0.113.0/33"], "IPv4 address or CIDR"),
        (["203.0.113.7/24"], "IPv4 address or CIDR"),
        (["2001:db8::1"], "IPv4 only"),
        (["example.com"], "IPv4 address"),
        ("203.0.113.7", "a list of"),
        ([7], "a list of"),
    ],
    "allowAzureServices": [("sure", "true or false")],
    "ciRunnerIp": [("10.1.2.3", "public IPv4"), ("203.0.113.0/24", "one public IPv4"), ("runner", "IPv4")],
    "vnetCidr": [("10.60.0.0/33", "CIDR"), ("8.8.0.0/16", "private IPv4 range"), ("10.0.0.0/28", "/8 to /24")],
    "appSubnetCidr": [("10.60.0.0/28", "/21 to /27"), ("10.99.0.0/23", "inside vnetCidr"), ("x", "CIDR")],
    "ingressInternal": [("maybe", "true or false")],
    "allowedClientCidrs": [
        (["0.0.0.0/0"], "narrower than the whole internet"),
        (["300.1.1.1"], "IPv4 address or CIDR"),
        (["10.0.0.1/8"], "IPv4 address or CIDR"),
        ("10.0.0.0/8", "a list of"),
    ],
    "signIn": [("entra", "one of gateway, easyAuth, none"), ("EasyAuth", "one of gateway, easyAuth, none")],
    "entraAuthClientId": [
        ("my-app", "a GUID"),
        ("api://5f2b2d3e-1111-4c4c-8d8d-0123456789ab", "a GUID"),
    ],
    "entraAuthAllowedClientIds": [
        (["nope"], "client IDs (GUIDs)"),
        ("5f2b2d3e-1111-4c4c-8d8d-0123456789ab", "a list of"),
    ],
    "gatewayCredential": [
        ("managed-identity", "one of federated, secret"),
        ("secret", "or secret with entraAuthClientId set to an adopted registration"),
    ],
    "gatewayClientSecret": [
        ("s3cret-not-echoed", "empty unless signIn is 'gateway' and gatewayCredential is 'secret'")
    ],
    "gatewayImage": [
        ("myregistry.azurecr.io/gateway:1.0", "pinned by digest"),
        ("myregistry.azurecr.io/gateway@sha256:abc", "pinned by digest"),
    ],
    "gatewayImageDigest": [("abc123", "sha256:<64 lowercase hex digits>"), ("sha256:" + "A" * 64, "lowercase")],
    "replicas": [(0, "1 to 10"), (11, "1 to 10"), ("two", "a whole number")],
    "allowAnonymousPublicAccess": [("yes please", "true or false")],
    "mcpImage": [
        ("crystaldba/postgres-mcp", "pinned by a tag"),
        ("crystaldba/postgres-mcp:latest", "other than latest"),
        ("Crystal DBA/image:1", "pinned"),
        ("crystaldba/postgres-mcp@sha256:abc", "digest"),
    ],
    "mcpAccessMode": [("readonly", "one of restricted, unrestricted")],
    "tokenRefreshMarginSeconds": [(299, "300 to 3600"), (7200, "300 to 3600"), ("15m", "a whole number")],
    "alertEmails": [
        (["oncall"], "e-mail addresses such as"),
        (["on call@example.com"], "e-mail addresses"),
        (["a@b.com,c@d.com"], "e-mail addresses"),
        (["Ops@example.com", "ops@example.com"], "each address once"),
        ("ops@example.com", "a list of"),
    ],
    "keyVaultPurgeProtection": [("on", "true or false")],
    "keyVaultSoftDeleteRetentionDays": [(5, "7 to 90"), (91, "7 to 90")],
    "protectResources": [("1", "true or false")],
    "logRetentionDays": [(7, "30 to 730"), (731, "30 to 730")],
    "existingServerId": [
        ("pgmcp-dev-pg-a1b2c3", "a Flexible Server's resource ID"),
        (f"/subscriptions/not-a-guid/resourceGroups/data/providers/{FLEXIBLE_SERVERS}/legacy-pg", "resource ID"),
        (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/data/providers/Microsoft.Sql/servers/legacy",
            "flexibleServers",
        ),
        (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/data/providers/{FLEXIBLE_SERVERS}/Legacy_PG", "resource ID"),
    ],
    "existingServerAdminPassword": [("Adm1n-Pw-not-echoed", "empty unless existingServerId is set")],
    "existingDatabase": [("yes", "true or false"), (True, "false unless existingServerId")],
    "entraAdminExists": [("y", "true or false"), (True, "false unless existingServerId")],
    "existingEnvironmentId": [
        ("shared-env", "a Container Apps environment's resource ID"),
        (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/apps/providers/{FLEXIBLE_SERVERS}/legacy-pg", "managedEnv"),
    ],
    "alertWorkspaceId": [
        ("logs", "a Log Analytics workspace's resource ID"),
        (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/ops/providers/Microsoft.OperationalInsights/workspaces/ops-logs",
            "empty unless existingEnvironmentId is set",
        ),
        (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/ops/providers/Microsoft.Insights/components/x", "workspaces"),
    ],
    "appEgressIps": [
        (["20.1.2.3"], "unless existingEnvironmentId is set"),
        ("20.1.2.3", "a list of"),
    ],
    "containerAppName": [
        ("Postgres-MCP", "lowercase letters"),
        ("m", "2-32"),
        ("mcp-", "not ending with a hyphen"),
        ("postgres--mcp", "single hyphens"),
        ("x" * 33, "2-32"),
        ("1mcp", "starting with a letter"),
    ],
}

# Parsing with no config at all is refused (anonymous public endpoint): close it for unit tests.
CLOSED = {"ingressInternal": "true"}

CASES = [(key, value, fragment) for key, values in BAD_VALUES.items() for value, fragment in values]


def test_every_key_has_bad_value_cases() -> None:
    assert set(BAD_VALUES) == set(settings.DEFAULTS)


@pytest.mark.parametrize(("key", "value", "fragment"), CASES, ids=[f"{k}={v!r}"[:60] for k, v, _ in CASES])
def test_bad_value_is_refused_by_name_and_nothing_is_declared(key: str, value: Any, fragment: str) -> None:
    recording = RecordingMocks()
    with pytest.raises(ConfigError) as refused:
        run_program("dev", {key: value}, recording=recording)
    # A RunError: Pulumi ends the run with the message alone, no Python traceback (pulumi/errors.py).
    assert isinstance(refused.value, pulumi.RunError)
    message = str(refused.value)
    assert f"config key '{key}'" in message
    assert fragment in message
    assert "expected" in message
    assert recording.resources == [] and recording.calls == []


def test_all_errors_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        parse({**CLOSED, "authMode": "tokens", "postgresVersion": "9", "deployerCidrs": '["0.0.0.0/0"]'}, "dev")
    message = str(refused.value)
    assert "3 invalid config value(s)" in message
    assert all(f"'{key}'" in message for key in ("authMode", "postgresVersion", "deployerCidrs"))


def test_a_misspelled_key_is_refused_with_the_key_it_resembles() -> None:
    # Issue 21: a suggestion, not the list of every key.
    recording = RecordingMocks()
    with pytest.raises(ConfigError) as refused:
        run_program("dev", {"authmode": "password"}, recording=recording)
    message = str(refused.value)
    assert "config key 'authmode' is not a key of this project; did you mean 'authMode'?" in message
    assert "backupRetentionDays" not in message
    assert recording.resources == []


def test_entra_admin_object_id_needs_a_name() -> None:
    with pytest.raises(ConfigError, match=r"'entraAdminPrincipalName'.*whenever entraAdminObjectId is set"):
        parse({**CLOSED, "entraAdminObjectId": "5f2b2d3e-1111-4c4c-8d8d-0123456789ab"}, "dev")


def test_an_internal_endpoint_takes_private_client_ranges_only() -> None:
    # An internal environment's IP restrictions admit private addresses only (PSRule
    # Azure.ContainerApp.RestrictIngress; Microsoft Learn, Container Apps IP ingress restrictions).
    with pytest.raises(ConfigError, match=r"config key 'allowedClientCidrs': '203.0.113.0/24'.*private ranges"):
        parse({"ingressInternal": "true", "allowedClientCidrs": '["203.0.113.0/24"]'}, "prod")
    parsed = parse({"ingressInternal": "true", "allowedClientCidrs": '["10.61.8.0/24"]'}, "prod")
    assert parsed.mcp_client_sources == ("10.61.8.0/24",)
    assert parse(CLOSED, "dev").mcp_client_sources == ("VirtualNetwork",)
    assert parse({"allowAnonymousPublicAccess": "true"}, "dev").mcp_client_sources == ("Internet",)


def test_maintenance_window_is_parsed_as_flexible_server_counts_days() -> None:
    from settings import MaintenanceWindow

    assert parse({**CLOSED, "maintenanceWindow": "Sun 02:00"}, "x").maintenance_window == MaintenanceWindow(0, 2, 0)
    assert parse({**CLOSED, "maintenanceWindow": "Sat 23:30"}, "x").maintenance_window == MaintenanceWindow(6, 23, 30)
    assert parse({**CLOSED, "maintenanceWindow": "system"}, "x").maintenance_window is None


def test_entra_admin_object_id_needs_a_type() -> None:
    with pytest.raises(ConfigError, match=r"'entraAdminPrincipalType'.*whenever entraAdminObjectId is set"):
        parse(
            {**CLOSED, "entraAdminObjectId": "5f2b2d3e-1111-4c4c-8d8d-0123456789ab", "entraAdminPrincipalName": "dba"},
            "dev",
        )


def test_defaults_parse_to_secure_settings() -> None:
    parsed = parse(CLOSED, "dev")
    assert parsed.auth_mode == "token"
    assert parsed.deployer_networks == () and parsed.allow_azure_services is False
    assert parsed.mcp_access_mode == "restricted"
    # The Entra administrator is the deployer, whoever it is: load() fills it from the deployer's token.
    assert parsed.entra_admin == EntraAdmin(object_id=None, principal_name=None, principal_type=None)


def test_stack_files_parse() -> None:
    for stack in ("dev", "prod"):
        raw = {key.split(":", 1)[1]: value for key, value in layered_config(stack).items()}
        parsed = parse(raw, stack)
        assert parsed.stack == stack


def test_good_values_are_accepted() -> None:
    parsed = parse(
        {
            **CLOSED,
            "deployerCidrs": '["203.0.113.7", "198.51.100.0/24"]',
            "mcpImage": "crystaldba/postgres-mcp@sha256:" + "a" * 64,
            "skuTier": "MemoryOptimized",
            "skuName": "Standard_E4ads_v5",
            "highAvailability": "SameZone",
            "storageSizeGb": "32767",
            "geoRedundantBackup": "TRUE",
        },
        "prod",
    )
    assert parsed.deployer_networks == (ipaddress.ip_network("203.0.113.7/32"), ipaddress.ip_network("198.51.100.0/24"))
    assert parsed.geo_redundant_backup is True and parsed.storage_size_gb == 32767


def test_base_name_is_azure_safe() -> None:
    assert parse(CLOSED, "Feature_Branch.42").base_name == "pgmcp-feature-branch-42"
    assert len(parse(CLOSED, "x" * 80).base_name) <= 30


def test_an_anonymous_public_endpoint_needs_the_explicit_opt_in() -> None:
    recording = RecordingMocks()
    with pytest.raises(ConfigError) as refused:
        run_program("dev", {"allowedClientCidrs": [], "signIn": "none"}, recording=recording)
    message = str(refused.value)
    assert "would be public and anonymous" in message
    for key in (
        "'allowedClientCidrs'",
        "'signIn' 'gateway' or 'easyAuth'",
        "'ingressInternal: true'",
        "'allowAnonymousPublicAccess: true'",
    ):
        assert key in message
    assert recording.resources == []
    opted_in = parse({"allowAnonymousPublicAccess": "true", "signIn": "none"}, "demo")
    assert opted_in.admission == "anonymous-public"
    # The sign-in gateway (the default) closes the endpoint by itself: no opt-in, no allow-list needed.
    assert parse({}, "x").admission == "entra-gateway"
    assert (
        parse(
            {
                "signIn": "easyAuth",
                "entraAuthClientId": "5f2b2d3e-1111-4c4c-8d8d-0123456789ab",
                "allowedClientCidrs": '["198.51.100.7"]',
            },
            "x",
        ).admission
        == "entra+allow-list"
    )


GUID_A = "5f2b2d3e-1111-4c4c-8d8d-0123456789ab"


@pytest.mark.parametrize(
    ("config", "key", "fragment"),
    [
        ({"signIn": "easyAuth"}, "entraAuthClientId", "client ID with signIn 'easyAuth'"),
        ({**CLOSED, "signIn": "none", "entraAuthClientId": GUID_A}, "entraAuthClientId", "empty with signIn 'none'"),
        (
            {**CLOSED, "signIn": "none", "entraAuthAllowedClientIds": f'["{GUID_A}"]'},
            "entraAuthAllowedClientIds",
            "empty list with signIn 'none'",
        ),
        (
            {"gatewayCredential": "secret", "entraAuthClientId": GUID_A},
            "gatewayClientSecret",
            "pulumi config set --secret gatewayClientSecret",
        ),
        (
            {"gatewayImage": f"r.azurecr.io/g@sha256:{'a' * 64}", "gatewayImageDigest": f"sha256:{'b' * 64}"},
            "gatewayImageDigest",
            "one image source",
        ),
        ({**CLOSED, "signIn": "easyAuth", "entraAuthClientId": GUID_A, "replicas": "2"}, "replicas", "SSE sessions"),
    ],
)
def test_sign_in_keys_fit_together(config: dict[str, str], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(config, "x")
    message = str(refused.value)
    assert f"config key '{key}'" in message and fragment in message
    assert "s3cret" not in message


def test_an_adopted_registration_with_a_secret_is_accepted_and_the_secret_kept_verbatim() -> None:
    parsed = parse(
        {"entraAuthClientId": GUID_A, "gatewayCredential": "secret", "gatewayClientSecret": " s3cret~x "}, "x"
    )
    assert parsed.gateway_client_secret_value == " s3cret~x "
    assert "s3cret" not in repr(parsed)
    assert parse({"replicas": "2"}, "x").replicas == 2


# --- adopting what exists ----------------------------------------------------------------------

LEGACY_SERVER_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/Data.RG(1)/providers/{FLEXIBLE_SERVERS}/legacy-pg"
SHARED_ENV_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/apps-rg/providers/Microsoft.App/managedEnvironments/env"


def test_resource_ids_are_split_into_what_the_children_target() -> None:
    parsed = parse({**CLOSED, "existingServerId": LEGACY_SERVER_ID.replace("DBforPostgreSQL", "dbforpostgresql")}, "x")
    assert parsed.existing_server is not None
    assert (parsed.existing_server.resource_group, parsed.existing_server.name) == ("Data.RG(1)", "legacy-pg")
    assert parsed.existing_server.subscription_id == SUBSCRIPTION
    assert parse(CLOSED, "x").existing_server is None and parse(CLOSED, "x").existing_environment is None
    with pytest.raises(ConfigError, match=r"config key 'existingServerId'.*expected empty or a Flexible Server"):
        parse({**CLOSED, "existingServerId": LEGACY_SERVER_ID + "/databases/app"}, "x")


def test_an_existing_environment_needs_its_egress_addresses_or_the_explicit_opt_in() -> None:
    with pytest.raises(ConfigError, match=r"config key 'appEgressIps'.*change without notice.*allowAzureServices"):
        parse({**CLOSED, "existingEnvironmentId": SHARED_ENV_ID}, "x")
    with pytest.raises(ConfigError, match=r"config key 'appEgressIps': '10.1.2.3'.*public IPv4 addresses"):
        parse({**CLOSED, "existingEnvironmentId": SHARED_ENV_ID, "appEgressIps": '["10.1.2.3"]'}, "x")
    with pytest.raises(ConfigError, match=r"config key 'appEgressIps'.*each address once"):
        parse({**CLOSED, "existingEnvironmentId": SHARED_ENV_ID, "appEgressIps": '["20.1.2.3", "20.1.2.3"]'}, "x")
    given = parse({**CLOSED, "existingEnvironmentId": SHARED_ENV_ID, "appEgressIps": '["20.1.2.3"]'}, "x")
    assert given.app_egress_ips == (ipaddress.IPv4Address("20.1.2.3"),)
    opted_in = parse({**CLOSED, "existingEnvironmentId": SHARED_ENV_ID, "allowAzureServices": "true"}, "x")
    assert opted_in.existing_environment is not None and opted_in.existing_environment.name == "env"


def test_password_mode_on_an_adopted_server_needs_its_password_and_never_shows_it() -> None:
    with pytest.raises(ConfigError, match=r"config key 'existingServerAdminPassword'.*--secret"):
        parse({**CLOSED, "existingServerId": LEGACY_SERVER_ID, "authMode": "password"}, "x")
    password = " Adm1n pw with spaces "
    parsed = parse(
        {
            **CLOSED,
            "existingServerId": LEGACY_SERVER_ID,
            "authMode": "password",
            "existingServerAdminPassword": password,
        },
        "x",
    )
    assert parsed.existing_server_admin_password == password  # verbatim
    assert password not in repr(parsed)
    with pytest.raises(ConfigError) as refused:
        parse({**CLOSED, "existingServerAdminPassword": password}, "x")
    assert password not in str(refused.value) and "'<secret>'" in str(refused.value)


def test_the_container_app_name_defaults_to_the_one_before() -> None:
    assert parse(CLOSED, "dev").app_name == "pgmcp-dev-mcp"
    assert parse({**CLOSED, "containerAppName": "postgres-mcp-v2"}, "dev").app_name == "postgres-mcp-v2"
