"""The policy pack, tested twice.

- Through CrossGuard: the pack's own analyzer (built by `policy/__main__.py`, server never
  started) is handed what the engine hands it: `Analyze` requests with each resource's
  inputs, `AnalyzeStack` requests with outputs shaped like azure-native's, both serialized
  by `pulumi.runtime.rpc`, for `pulumi up` and for a first `pulumi preview` (unknowns).
  The program's real resources (dev and prod, token and password mode) pass; a mutated copy
  of a real resource makes each rule fire, naming the resource and what to change.
- Directly: each rule function on small hand-made resources, fast, for the edge cases.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from unittest import mock

import crossguard as cg
import grpc
import pytest
import yaml
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy.proxy import unknown_checking_proxy

from policy import rules
from policy.pack import plain
from policy.rules import Options, Resource, Undecided, Unknown, evaluate

pytestmark = pytest.mark.program

ROOT = Path(__file__).resolve().parent.parent
STACKS = [(stack, mode) for stack in ("dev", "prod") for mode in ("token", "password")]
STACK_IDS = [f"{s}-{m}" for s, m in STACKS]
SECONDS_PER_TEST = 30


@pytest.fixture(autouse=True)
def fail_instead_of_hanging() -> Iterator[None]:
    """A broken rule or a pack that starts serving must turn a test red, not hang the run."""

    def expire(_signal: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"policy test ran past {SECONDS_PER_TEST} s: something blocks")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_TEST)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@functools.cache
def analyzer(config_json: str = "") -> Any:
    servicer = cg.load_analyzer()
    cg.configure(servicer, json.loads(config_json) if config_json else None)
    return servicer


@functools.cache
def deployed(stack: str, mode: str) -> cg.Deployment:
    return cg.deployment(stack, mode)


@functools.cache
def deployed_without_sign_in(stack: str, mode: str) -> cg.Deployment:
    """The stack with `signIn: none`: only its allow-list or internal environment closes the endpoint, which the
    anonymous-endpoint rule's cases about those two examine (behind the gateway, sign-in closes it by itself)."""
    return cg.deployment(stack, mode, signIn="none", replicas=1)


@functools.cache
def previewed(stack: str, mode: str) -> cg.Deployment:
    return cg.first_preview(stack, mode)


def run_pack(deployment: cg.Deployment, servicer: Any = None) -> list[cg.Diagnostic]:
    servicer = servicer or analyzer()
    found = [d for wire in deployment.inputs for d in cg.analyze(servicer, wire)]
    return found + cg.analyze_stack(servicer, deployment.outputs)


# --- the rule functions, directly -----------------------------------------------------------------


def server(**props: Any) -> Resource:
    base = {
        "authConfig": {"activeDirectoryAuth": "Enabled", "passwordAuth": "Disabled"},
        "backup": {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"},
        "highAvailability": {"mode": "Disabled"},
        "tags": {"environment": "dev", "owner": "team"},
        "id": "/s/server",
    }
    base.update(props)
    return Resource(rules.SERVER, "server", base)


def app(containers: list[dict[str, Any]] | None = None, **props: Any) -> Resource:
    base: dict[str, Any] = {
        "containerAppName": "mcp",
        "id": "/s/apps/mcp",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": ["/id"]},
        "configuration": {
            "ingress": {
                "external": True,
                "ipSecurityRestrictions": [{"action": "Allow", "ipAddressRange": "1.2.3.4/32"}],
            }
        },
        "template": {
            "containers": containers
            or [
                {"name": "postgres-mcp", "image": "crystaldba/postgres-mcp:0.3.0", "args": ["--access-mode=restricted"]}
            ]
        },
        "tags": {"environment": "dev", "owner": "team"},
    }
    base.update(props)
    return Resource(rules.CONTAINER_APP, "app", base)


def public_app(*restrictions: dict[str, Any]) -> Resource:
    return app(configuration={"ingress": {"external": True, "ipSecurityRestrictions": list(restrictions)}})


def gateway_app(
    host: str | None = "127.0.0.1", entra: dict[str, str] | None = None, port: int = 8080, *restrictions: dict[str, Any]
) -> Resource:
    """A public app whose ingress targets the sign-in gateway, postgres-mcp behind it on `host` (None: no
    --sse-host, so the image's entrypoint binds 0.0.0.0)."""
    settings = {"ENTRA_TENANT_ID": "t-1", "ENTRA_CLIENT_ID": "c-1"} if entra is None else entra
    args = ["--transport=sse", "--sse-port=8000", "--access-mode=restricted"]
    if host is not None:
        args.insert(1, f"--sse-host={host}")
    containers: list[dict[str, Any]] = [
        {"name": "postgres-mcp", "image": "crystaldba/postgres-mcp:0.3.0", "args": args},
        {
            "name": "gateway",
            "image": "r.azurecr.io/gw@sha256:" + "a" * 64,
            "command": list(rules.GATEWAY_COMMAND),
            "env": [{"name": name, "value": value} for name, value in settings.items()],
        },
    ]
    ingress = {"external": True, "targetPort": port, "ipSecurityRestrictions": list(restrictions)}
    return app(containers, configuration={"ingress": ingress})


def auth(**props: Any) -> Resource:
    base: dict[str, Any] = {
        "containerAppName": "mcp",
        "platform": {"enabled": True},
        "globalValidation": {"unauthenticatedClientAction": "Return401"},
    }
    base.update(props)
    return Resource(rules.AUTH_CONFIG, "auth", base)


def vault(environment: str = "dev", **properties: Any) -> Resource:
    base = {"enableRbacAuthorization": True, "enableSoftDelete": True}
    base.update(properties)
    return Resource(
        rules.VAULT, "vault", {"properties": base, "tags": {"environment": environment, "owner": "t"}, "id": "/s/vault"}
    )


def firewall(start: str, end: str) -> Resource:
    return Resource(rules.FIREWALL_RULE, "rule", {"startIpAddress": start, "endIpAddress": end})


def configuration(name: str, value: str) -> Resource:
    return Resource(rules.CONFIGURATION, name, {"configurationName": name, "value": value})


def diagnostic(target_id: str, name: str = "diag") -> Resource:
    return Resource(rules.DIAGNOSTIC_SETTING, name, {"resourceUri": target_id, "workspaceId": "/w"})


def environment(destination: str) -> Resource:
    return Resource(
        rules.MANAGED_ENVIRONMENT,
        "env",
        {"appLogsConfiguration": {"destination": destination}, "tags": PROD, "id": "/s/env"},
    )


def diagnostic_output(target_id: str, name: str = "diag") -> Resource:
    setting_id = f"{target_id}/providers/microsoft.insights/diagnosticSettings/{name}"
    return Resource(rules.DIAGNOSTIC_SETTING, name, {"id": setting_id, "name": name, "workspaceId": "/w"})


def apps_subnet(**props: Any) -> Resource:
    base: dict[str, Any] = {
        "delegations": [{"name": "container-apps", "serviceName": "Microsoft.App/environments"}],
        "addressPrefix": "10.0.0.0/23",
    }
    base.update(props)
    return Resource(rules.SUBNET, "apps", base)


def internal_environment(**props: Any) -> Resource:
    base: dict[str, Any] = {
        "vnetConfiguration": {"internal": True, "infrastructureSubnetId": "/s/virtualNetworks/vnet/subnets/apps"},
        "defaultDomain": "env-1a2b.westeurope.azurecontainerapps.io",
        "id": "/s/managedEnvironments/env",
    }
    base.update(props)
    return Resource(rules.MANAGED_ENVIRONMENT, "env", base)


def private_zone(name: str = "env-1a2b.westeurope.azurecontainerapps.io") -> Resource:
    return Resource(rules.PRIVATE_ZONE, "zone", {"name": name, "id": f"/s/privateDnsZones/{name}"})


def dns_link(vnet_id: Any, zone: str = "env-1a2b.westeurope.azurecontainerapps.io") -> Resource:
    link_id = f"/s/privateDnsZones/{zone}/virtualNetworkLinks/link"
    return Resource(rules.VIRTUAL_NETWORK_LINK, "link", {"id": link_id, "virtualNetwork": {"id": vnet_id}})


WINDOW = {"customWindow": "Enabled", "dayOfWeek": 0, "startHour": 2, "startMinute": 0}
TLS = [configuration("require_secure_transport", "on"), configuration("ssl_min_protocol_version", "TLSv1.2")]
PROD = {"environment": "prod", "owner": "team"}
DIGEST = "sha256:" + "a" * 64
# The shape of an Entra access token (header.payload.signature, base64url; the header `{"typ":"JWT",...}`).
ENTRA_JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL29zc3JkYm1zIn0.c2lnbmF0dXJlLWJ5dGVz"

# rule -> (violating stack, compliant stack)
CASES: dict[str, tuple[list[Resource], list[Resource]]] = {
    "entra-auth-on": ([server(authConfig={"activeDirectoryAuth": "Disabled", "passwordAuth": "Enabled"})], [server()]),
    "password-auth-off-in-token-mode": (
        [
            server(authConfig={"activeDirectoryAuth": "Enabled", "passwordAuth": "Enabled"}),
            app([{"name": "postgres-mcp", "image": "i:1"}, {"name": "token-refresher", "image": "i:1"}]),
        ],
        [
            server(authConfig={"activeDirectoryAuth": "Enabled", "passwordAuth": "Enabled"}),
            app([{"name": "postgres-mcp", "image": "i:1"}]),
        ],
    ),
    "tls-enforced": (
        [configuration("require_secure_transport", "off"), configuration("ssl_min_protocol_version", "TLSv1")],
        TLS,
    ),
    "tls-configured": ([server(), TLS[0]], [server(), *TLS]),
    "no-world-open-firewall": (
        [
            firewall("0.0.0.0", "255.255.255.255"),
            firewall("0.0.0.0", "0.0.0.0"),
            firewall("10.0.0.0", "10.1.255.255"),
            firewall("10.0.0.0", "10.1.0.0"),  # one address more than a /16
        ],
        [firewall("203.0.113.7", "203.0.113.7"), firewall("198.51.0.0", "198.51.255.255")],
    ),
    "key-vault-hardened": (
        [
            vault(enableRbacAuthorization=False),
            vault(enableRbacAuthorization=None),  # Azure's default: access policies
            vault(enableSoftDelete=False),
            vault("prod"),
        ],
        [vault(), vault("prod", enablePurgeProtection=True)],
    ),
    "secrets-by-reference": (
        [
            app([{"name": "c", "image": "i:1", "env": [{"name": "DATABASE_URI", "value": "postgresql://u:pw@h/db"}]}]),
            app([{"name": "c", "image": "i:1", "env": [{"name": "ADMIN_PASSWORD", "value": "x"}]}]),
            app(
                configuration={
                    "secrets": [{"name": "database-uri", "value": "postgresql://u:pw@h/db"}],
                    "ingress": {"external": False},
                }
            ),
            app(
                configuration={
                    "secrets": [{"name": "database-uri", "value": "postgresql://u:pw@h/db", "identity": "/id"}],
                    "ingress": {"external": False},
                }
            ),
        ],
        [
            app(
                [
                    {
                        "name": "c",
                        "image": "i:1",
                        "env": [
                            {"name": "DATABASE_URI", "value": "postgresql://u@h/db"},
                            {"name": "DATABASE_URI2", "secretRef": "database-uri"},
                        ],
                    }
                ],
                configuration={
                    "secrets": [{"name": "database-uri", "keyVaultUrl": "https://v/secrets/x", "identity": "/id"}],
                    "ingress": {"external": False},
                },
            )
        ],
    ),
    "images-pinned": (
        [
            app([{"name": "c", "image": "crystaldba/postgres-mcp"}]),
            app([{"name": "c", "image": "crystaldba/postgres-mcp:latest"}]),
            app([{"name": "c", "image": "registry:5000/postgres-mcp"}]),
            app([{"name": "c", "image": "crystaldba/postgres-mcp@sha256:abc"}]),
            app([{"name": "c", "image": "crystaldba/postgres-mcp@" + DIGEST.upper()}]),
        ],
        [
            app([{"name": "c", "image": "registry:5000/postgres-mcp:0.3.0"}]),
            app([{"name": "c", "image": "crystaldba/postgres-mcp@" + DIGEST}]),
            app([{"name": "c", "image": "crystaldba/postgres-mcp:latest@" + DIGEST}]),
        ],
    ),
    "user-assigned-identity": (
        [
            app(identity={"type": "SystemAssigned"}),
            app(identity={"type": "None"}),
            app(identity={"type": "UserAssigned", "userAssignedIdentities": []}),
        ],
        [app()],
    ),
    "not-anonymous-and-public": (
        [
            app(configuration={"ingress": {"external": True}}),
            public_app({"action": "Allow", "ipAddressRange": "0.0.0.0/0"}),
            public_app(
                {"action": "Allow", "ipAddressRange": "1.2.3.4/32"}, {"action": "Allow", "ipAddressRange": "::/0"}
            ),
            public_app({"action": "Deny", "ipAddressRange": "1.2.3.4/32"}),
            gateway_app("0.0.0.0"),  # postgres-mcp reachable around the gateway
            gateway_app(None),  # the same: the image's entrypoint adds --sse-host=0.0.0.0
            gateway_app(entra={"ENTRA_TENANT_ID": "t-1", "ENTRA_CLIENT_ID": ""}),  # a gateway that signs in nobody
            gateway_app(port=8000),  # the ingress reaches postgres-mcp itself, not the gateway
        ],
        [
            app(configuration={"ingress": {"external": False}}),
            public_app({"action": "Allow", "ipAddressRange": "203.0.113.0/24"}),
            gateway_app(),  # public, no allow-list: the gateway signs every caller in
            gateway_app("localhost"),
        ],
    ),
    "backups-kept": (
        [
            server(backup={"backupRetentionDays": 3}),
            server(backup={"backupRetentionDays": 7, "geoRedundantBackup": "Enabled"}, tags=PROD),
            server(backup={"backupRetentionDays": 14, "geoRedundantBackup": "Disabled"}, tags=PROD),
        ],
        [server(), server(backup={"backupRetentionDays": 14, "geoRedundantBackup": "Enabled"}, tags=PROD)],
    ),
    "high-availability-in-production": (
        [server(tags=PROD), server(highAvailability={}, tags=PROD)],
        [server(), server(highAvailability={"mode": "ZoneRedundant"}, tags=PROD)],
    ),
    "app-logs-to-log-analytics": (
        [Resource(rules.MANAGED_ENVIRONMENT, "env", {"tags": PROD, "id": "/s/env"})],
        [environment("azure-monitor"), diagnostic("/s/env")],
    ),
    "diagnostics-to-log-analytics": (
        [server(), vault(), diagnostic("/s/server")],
        [server(), vault(), diagnostic("/s/server"), diagnostic("/S/VAULT", "diag-vault")],
    ),
    "required-tags": (
        [server(tags={"environment": "dev"}), Resource(rules.VAULT, "bare", {})],
        [server(), Resource(rules.FIREWALL_RULE, "untaggable", {})],
    ),
    "restricted-access-mode": (
        [app([{"name": "postgres-mcp", "image": "i:1", "args": ["--access-mode=unrestricted"]}])],
        [app()],
    ),
    "apps-subnet-has-nsg": (
        [apps_subnet(), apps_subnet(networkSecurityGroup={}), apps_subnet(networkSecurityGroup={"id": ""})],
        [
            apps_subnet(networkSecurityGroup={"id": "/s/nsg"}),
            Resource(rules.SUBNET, "other", {"delegations": [], "addressPrefix": "10.0.9.0/24"}),
        ],
    ),
    "private-dns-linked-in-internal-mode": (
        [internal_environment(), private_zone(), dns_link("/s/virtualNetworks/elsewhere")],
        [internal_environment(), private_zone(), dns_link("/S/VIRTUALNETWORKS/VNET")],
    ),
    "maintenance-window-set": (
        [
            server(tags=PROD),
            server(maintenanceWindow={"customWindow": "Disabled"}, tags=PROD),
            server(maintenanceWindow={"customWindow": "Enabled", "dayOfWeek": 7, "startHour": 2}, tags=PROD),
            server(maintenanceWindow={"customWindow": "Enabled", "dayOfWeek": 0}, tags=PROD),
        ],
        [server(), server(maintenanceWindow=WINDOW, tags=PROD)],
    ),
}


def violations_of(rule_name: str, resources: list[Resource], options: Options | None = None) -> list[rules.Violation]:
    return [v for v in evaluate(resources, options).violations if v.rule == rule_name]


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == {rule.name for rule in rules.RULES}


def test_the_pack_has_every_rule_the_docs_list() -> None:
    names = {rule.name for rule in rules.RULES}
    assert len(names) == len(rules.RULES) == 19
    # The three rules issue 19 added are documented in their own page until docs/policy.md takes them in.
    readme = (ROOT / "docs" / "policy.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)` \| (mandatory|advisory) \| (.*) \|$", readme, flags=re.MULTILINE)
    assert rows == [(rule.name, rule.enforcement, rule.description) for rule in rules.RULES]


@pytest.mark.parametrize("rule_name", sorted(CASES))
def test_rule_reports_the_violation_and_passes_the_compliant(rule_name: str) -> None:
    violating, compliant = CASES[rule_name]
    rule = next(rule for rule in rules.RULES if rule.name == rule_name)
    if rule.check_resource is not None:
        for resource in violating:  # each violating resource is reported on its own
            assert violations_of(rule_name, [resource]), f"{rule_name} missed {resource}"
    else:
        assert violations_of(rule_name, violating), f"{rule_name} missed the violation"
    assert violations_of(rule_name, compliant) == []


@pytest.mark.parametrize("rule_name", sorted(CASES))
def test_rules_read_crossguards_proxies_as_they_read_plain_data(rule_name: str) -> None:
    """CrossGuard's lists are `Sequence`s, not `list`s; its dicts `Mapping`s, not `dict`s."""
    for resources in CASES[rule_name]:
        proxied = [Resource(r.type, r.name, unknown_checking_proxy(json.loads(json.dumps(r.props)))) for r in resources]
        assert [v.message for v in violations_of(rule_name, proxied)] == [
            v.message for v in violations_of(rule_name, resources)
        ]


def test_a_public_app_passes_with_working_entra_sign_in_and_not_with_broken_sign_in() -> None:
    public = public_app()
    assert violations_of("not-anonymous-and-public", [public, auth()]) == []
    for broken in (
        auth(platform={"enabled": False}),
        auth(platform={}),
        auth(globalValidation={"unauthenticatedClientAction": "AllowAnonymous"}),
        auth(containerAppName="another-app"),
    ):
        assert violations_of("not-anonymous-and-public", [public, broken]), broken


def test_diagnostic_settings_are_matched_to_their_target_by_id() -> None:
    # Inputs name the target (resourceUri); outputs only carry the setting's own ID under it.
    aimed_twice_at_the_server = [server(), vault(), diagnostic("/s/server"), diagnostic("/s/server", "second")]
    assert [v.resource for v in violations_of("diagnostics-to-log-analytics", aimed_twice_at_the_server)] == ["vault"]
    outputs = [server(), vault(), diagnostic_output("/s/server"), diagnostic_output("/s/vault")]
    assert violations_of("diagnostics-to-log-analytics", outputs) == []
    assert [v.resource for v in violations_of("diagnostics-to-log-analytics", outputs[:3])] == ["vault"]


def test_a_setting_aimed_at_another_resource_does_not_cover_the_vault() -> None:
    elsewhere = diagnostic_output("/s/managedEnvironments/env")
    outputs = [server(), vault(), diagnostic_output("/s/server"), elsewhere]
    report = evaluate(outputs)
    assert [v.resource for v in report.violations if v.rule == "diagnostics-to-log-analytics"] == ["vault"]
    assert report.undecided == []


def test_the_environment_logs_the_current_way_or_is_reported() -> None:
    # The shared-key destination writes through the HTTP Data Collector API (support ended 14 September 2026).
    (retired,) = violations_of("app-logs-to-log-analytics", [environment("log-analytics"), diagnostic("/s/env")])
    assert "14 September 2026" in retired.message and "'azure-monitor'" in retired.message
    # azure-monitor keeps nothing by itself: a diagnostic setting on the environment sends the logs on.
    assert violations_of("app-logs-to-log-analytics", [environment("azure-monitor"), diagnostic("/s/server")])
    assert violations_of("app-logs-to-log-analytics", [environment("azure-monitor"), diagnostic_output("/s/env")]) == []


def test_a_password_in_a_uri_is_reported_even_when_the_variable_name_is_unknown() -> None:
    leaking = app([{"name": "c", "image": "i:1", "env": [{"name": Unknown("n"), "value": "postgresql://u:pw@h/db"}]}])
    assert violations_of("secrets-by-reference", [leaking])
    secret_named = app([{"name": "c", "image": "i:1", "env": [{"name": "DB_PASSWORD", "value": Unknown("v")}]}])
    assert violations_of("secrets-by-reference", [secret_named])


def test_a_name_about_tokens_is_not_a_secret_but_a_token_is() -> None:
    def refresher(*env: dict[str, Any]) -> Resource:
        return app([{"name": "token-refresher", "image": "i:1", "env": list(env)}])

    settings = refresher(
        {"name": "TOKEN_REFRESH_MARGIN_SECONDS", "value": "900"},
        {"name": "TOKEN_RESOURCE", "value": "https://ossrdbms-aad.database.windows.net"},
        {"name": "TOKEN_REFRESHER_HEALTH_PORT", "value": "8081"},
    )
    assert violations_of("secrets-by-reference", [settings]) == []
    for secret in (
        {"name": "TOKEN_RESOURCE", "value": ENTRA_JWT},  # a real token, whatever the name says
        {"name": "LOG_LEVEL", "value": f"Bearer {ENTRA_JWT}"},
        {"name": "ACCESS_TOKEN", "value": "opaque"},
        {"name": "github_token", "value": "opaque"},
        {"name": "ADMIN_PASSWORD", "value": "x"},
    ):
        assert violations_of("secrets-by-reference", [refresher(secret)]), secret


def test_tls_parameters_are_read_from_outputs_by_name() -> None:
    outputs = [
        server(),
        Resource(
            rules.CONFIGURATION,
            "tls",
            {
                "name": "require_secure_transport",
                "value": "on",
                "id": "/s/server/configurations/require_secure_transport",
            },
        ),
        Resource(
            rules.CONFIGURATION,
            "min",
            {
                "name": "ssl_min_protocol_version",
                "value": "TLSv1",
                "id": "/s/server/configurations/ssl_min_protocol_version",
            },
        ),
    ]
    assert violations_of("tls-configured", outputs) == []
    assert [v.resource for v in violations_of("tls-enforced", outputs)] == ["min"]


def test_high_availability_names_the_mode_azure_defaults_to() -> None:
    (found,) = violations_of("high-availability-in-production", [server(highAvailability={}, tags=PROD)])
    assert "highAvailability.mode 'Disabled'" in found.message and "server 'server'" in found.message


def test_unknown_values_are_undecided_never_compliant() -> None:
    unknown = Unknown("x")
    cases = [
        ("entra-auth-on", server(authConfig={"activeDirectoryAuth": unknown})),
        (
            "no-world-open-firewall",
            Resource(rules.FIREWALL_RULE, "rule", {"startIpAddress": "0.0.0.0", "endIpAddress": unknown}),
        ),
        ("images-pinned", app([{"name": "c", "image": unknown}])),
        ("not-anonymous-and-public", public_app({"action": "Allow", "ipAddressRange": unknown})),
        ("key-vault-hardened", vault("prod", enablePurgeProtection=unknown)),
        ("backups-kept", server(tags={"environment": unknown, "owner": "t"})),
        ("apps-subnet-has-nsg", apps_subnet(networkSecurityGroup={"id": unknown})),
        ("apps-subnet-has-nsg", apps_subnet(delegations=unknown)),
        ("maintenance-window-set", server(maintenanceWindow={"customWindow": unknown}, tags=PROD)),
        ("maintenance-window-set", server(tags={"environment": unknown, "owner": "t"})),
    ]
    for rule_name, resource in cases:
        report = evaluate([resource])
        assert [v for v in report.violations if v.rule == rule_name] == [], resource
        undecided = [v for v in report.undecided if v.rule == rule_name]
        assert undecided and all(isinstance(v.message, Undecided) for v in undecided), resource


def test_the_private_dns_rule_waits_for_what_a_first_preview_cannot_know() -> None:
    # The zone is named after the environment's default domain, which Azure assigns.
    for stack in (
        [internal_environment(defaultDomain=Unknown("d")), private_zone(), dns_link("/s/virtualNetworks/vnet")],
        [internal_environment(), Resource(rules.PRIVATE_ZONE, "zone", {"id": Unknown("i"), "name": Unknown("n")})],
        [internal_environment(), private_zone(), dns_link(Unknown("v"))],
    ):
        report = evaluate(stack)
        assert [v for v in report.violations if v.rule == "private-dns-linked-in-internal-mode"] == [], stack
        assert [v for v in report.undecided if v.rule == "private-dns-linked-in-internal-mode"], stack
    # An external environment needs no private zone.
    external = internal_environment(vnetConfiguration={"internal": False})
    assert violations_of("private-dns-linked-in-internal-mode", [external]) == []


def test_plain_turns_crossguards_unknowns_into_unknown_markers() -> None:
    props = unknown_checking_proxy({"a": [{"b": cg.UNKNOWN}, "c"], "d": cg.UNKNOWN})
    converted = plain(props)
    assert isinstance(converted["a"][0]["b"], Unknown) and converted["a"][0]["b"].path == "a[0].b"
    assert converted["a"][1] == "c" and isinstance(converted["d"], Unknown)


def test_azure_services_rule_passes_with_the_packs_opt_in() -> None:
    rule = [firewall("0.0.0.0", "0.0.0.0")]
    assert violations_of("no-world-open-firewall", rule)
    assert violations_of("no-world-open-firewall", rule, Options(allow_azure_services_rule=True)) == []
    assert violations_of(
        "no-world-open-firewall", [firewall("0.0.0.0", "255.255.255.255")], Options(allow_azure_services_rule=True)
    )


# --- the pack as CrossGuard runs it ---------------------------------------------------------------


def test_the_pack_builds_its_analyzer_without_serving_and_importing_it_never_blocks() -> None:
    started = time.monotonic()
    servicer = cg.load_analyzer()
    info = cg.analyzer_info(servicer)
    assert info.name == "postgres-mcp-azure"
    assert [p.name for p in info.policies] == [rule.name for rule in rules.RULES]
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert levels["high-availability-in-production"] == analyzer_pb2.ADVISORY
    assert levels["not-anonymous-and-public"] == analyzer_pb2.MANDATORY
    # A tool or collector importing the module must not start the server (it would serve forever).
    sys.modules.pop("policy.__main__", None)
    with mock.patch.object(grpc, "server", cg.refuse):
        importlib.import_module("policy.__main__")
    assert time.monotonic() - started < 10


def test_the_pack_declares_a_version_and_its_own_dependencies() -> None:
    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(pack["version"]))
    options = pack["runtime"]["options"]
    assert pack["runtime"]["name"] == "python" and options["toolchain"] == "pip"
    # The pack's own virtualenv, inside the pack, filled from the pack's requirements.txt.
    assert options["virtualenv"] == "venv"
    requirements = (ROOT / "policy" / "requirements.txt").read_text()
    assert re.search(r"^pulumi-policy[>=<~]", requirements, flags=re.MULTILINE)
    assert re.search(r"^pulumi[>=<~]", requirements, flags=re.MULTILINE)
    assert "policy/venv/" in (ROOT / ".gitignore").read_text().splitlines()


def test_ci_fills_the_packs_virtualenv_before_running_the_pack() -> None:
    virtualenv = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())["runtime"]["options"]["virtualenv"]
    runs = 0
    for workflow in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            steps = list(job.get("steps", []))
            for index, step in enumerate(steps):
                if str(step.get("uses", "")).startswith("pulumi/actions@") and step["with"].get("policyPacks"):
                    runs += 1
                    before = "\n".join(str(s.get("run", "")) for s in steps[:index])
                    assert f"python -m venv policy/{virtualenv}" in before, (workflow.name, step)
                    assert (
                        f"policy/{virtualenv}/bin/pip install --quiet --require-hashes -r policy/requirements.txt"
                        in before
                    )
    assert runs >= 2


@pytest.mark.parametrize(("stack", "mode"), STACKS, ids=STACK_IDS)
def test_shipped_stacks_pass_through_the_analyzer(stack: str, mode: str) -> None:
    assert run_pack(deployed(stack, mode)) == []


@pytest.mark.parametrize(("stack", "mode"), STACKS, ids=STACK_IDS)
def test_a_first_preview_has_no_mandatory_violation_and_says_what_it_cannot_check_yet(stack: str, mode: str) -> None:
    preview = previewed(stack, mode)
    assert any(cg.UNKNOWN in json.dumps(cg.decoded(wire)) for wire in preview.inputs)
    diagnostics = run_pack(preview)
    assert [d for d in diagnostics if d.enforcement == "mandatory"] == []
    for note in diagnostics:
        assert "during preview" in note.message and "is not known before deployment" in note.message, note
    # The egress address of the firewall rule is Azure's to assign: its width is checked at deployment.
    assert any(d.policy == "no-world-open-firewall" and "fw-app-egress" in d.message for d in diagnostics)


def test_the_program_opened_up_is_refused_through_the_analyzer() -> None:
    opened = cg.deployment(
        "dev",
        "token",
        signIn="none",
        allowedClientCidrs=[],
        allowAnonymousPublicAccess=True,
        allowAzureServices=True,
        mcpAccessMode="unrestricted",
    )
    diagnostics = run_pack(opened)
    assert {d.policy for d in diagnostics if d.enforcement == "mandatory"} == {
        "not-anonymous-and-public",
        "no-world-open-firewall",
    }
    assert {d.policy for d in diagnostics if d.enforcement == "advisory"} == {"restricted-access-mode"}


def _by_type(deployment: cg.Deployment, resource_type: str, which: str = "inputs") -> cg.Wire:
    wires: list[cg.Wire] = [w for w in getattr(deployment, which) if w.type == resource_type]
    assert len(wires) == 1, [w.name for w in wires]
    return wires[0]


def _replace(wires: tuple[cg.Wire, ...], new: cg.Wire) -> list[cg.Wire]:
    return [new if w.urn == new.urn else w for w in wires]


def _container(properties: dict[str, Any], name: str = "postgres-mcp") -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in properties["template"]["containers"] if c["name"] == name)
    return found


def _ingress(properties: dict[str, Any]) -> dict[str, Any]:
    ingress: dict[str, Any] = properties["configuration"]["ingress"]
    return ingress


# rule -> (stack, mode, type, change) for a resource rule (Analyze, the resource's inputs), and the
# texts its message must hold (besides the resource's name).
ResourceCase = tuple[str, str, str, Callable[[dict[str, Any]], None], tuple[str, ...]]
RESOURCE_CASES: dict[str, list[ResourceCase]] = {
    "entra-auth-on": [
        (
            "dev",
            "token",
            rules.SERVER,
            lambda p: p["authConfig"].update(activeDirectoryAuth="Disabled"),
            ("'Disabled'", "'Enabled'"),
        ),
    ],
    "tls-enforced": [
        ("prod", "token", "require-secure-transport", lambda p: p.update(value="off"), ("'off'", "'on'")),
        ("prod", "token", "ssl-min-protocol-version", lambda p: p.update(value="TLSv1.1"), ("'TLSv1.1'", "TLSv1.2")),
    ],
    "no-world-open-firewall": [
        (
            "dev",
            "token",
            rules.FIREWALL_RULE,
            lambda p: p.update(startIpAddress="0.0.0.0", endIpAddress="255.255.255.255"),
            ("0.0.0.0-255.255.255.255", "/16"),
        ),
        (
            "dev",
            "password",
            rules.FIREWALL_RULE,
            lambda p: p.update(startIpAddress="0.0.0.0", endIpAddress="0.0.0.0"),
            ("'Azure services'", "allowAzureServicesRule"),
        ),
    ],
    "key-vault-hardened": [
        (
            "prod",
            "token",
            rules.VAULT,
            lambda p: p["properties"].update(enablePurgeProtection=False),
            ("enablePurgeProtection False", "set it to true"),
        ),
        (
            "dev",
            "token",
            rules.VAULT,
            lambda p: p["properties"].update(enableRbacAuthorization=False),
            ("enableRbacAuthorization False", "set it to true"),
        ),
    ],
    "secrets-by-reference": [
        (
            "dev",
            "password",
            rules.CONTAINER_APP,
            lambda p: _container(p)["env"].append({"name": "DATABASE_URI", "value": "postgresql://mcp:S3cret@db/app"}),
            ("DATABASE_URI", "password", "secretRef"),
        ),
        (
            "dev",
            "password",
            rules.CONTAINER_APP,
            lambda p: p["configuration"]["secrets"].append({"name": "admin-password", "value": "S3cret"}),
            ("'admin-password'", "keyVaultUrl"),
        ),
        (
            "dev",
            "token",
            rules.CONTAINER_APP,
            lambda p: _container(p, "token-refresher")["env"].append({"name": "TOKEN_RESOURCE", "value": ENTRA_JWT}),
            ("'token-refresher'", "TOKEN_RESOURCE", "JSON Web Token", "secretRef"),
        ),
        (
            "prod",
            "token",
            rules.CONTAINER_APP,
            lambda p: _container(p, "token-refresher")["env"].append({"name": "ACCESS_TOKEN", "value": "opaque"}),
            ("'token-refresher'", "ACCESS_TOKEN", "secretRef"),
        ),
    ],
    "images-pinned": [
        (
            "prod",
            "token",
            rules.CONTAINER_APP,
            lambda p: _container(p).update(image="docker.io/crystaldba/postgres-mcp:latest"),
            ("'docker.io/crystaldba/postgres-mcp:latest'", "pin a tag"),
        ),
        (
            "prod",
            "token",
            rules.CONTAINER_APP,
            lambda p: _container(p, "token-refresher").update(image="docker.io/crystaldba/postgres-mcp@sha256:abc"),
            ("'token-refresher'", "@sha256:abc", "64 hex"),
        ),
    ],
    "user-assigned-identity": [
        (
            "dev",
            "token",
            rules.CONTAINER_APP,
            lambda p: p.update(identity={"type": "SystemAssigned"}),
            ("'SystemAssigned'", "'UserAssigned'"),
        ),
    ],
    "backups-kept": [
        ("prod", "password", rules.SERVER, lambda p: p["backup"].update(backupRetentionDays=7), ("7 days", "14")),
        (
            "prod",
            "password",
            rules.SERVER,
            lambda p: p["backup"].update(geoRedundantBackup="Disabled"),
            ("geoRedundantBackup 'Disabled'", "'Enabled'"),
        ),
    ],
    "high-availability-in-production": [
        ("prod", "token", rules.SERVER, lambda p: p.pop("highAvailability"), ("'Disabled'", "'ZoneRedundant'")),
    ],
    "required-tags": [
        ("dev", "token", "azure-native:resources:ResourceGroup", lambda p: p["tags"].pop("owner"), ("owner",)),
    ],
    "restricted-access-mode": [
        (
            "dev",
            "token",
            rules.CONTAINER_APP,
            lambda p: _container(p).update(args=[*_container(p)["args"][:-1], "--access-mode=unrestricted"]),
            ("unrestricted", "--access-mode=restricted"),
        ),
    ],
    "apps-subnet-has-nsg": [
        ("dev", "token", rules.SUBNET, lambda p: p.pop("networkSecurityGroup"), ("Microsoft.App/environments",)),
        ("prod", "password", rules.SUBNET, lambda p: p.pop("networkSecurityGroup"), ("networkSecurityGroup.id",)),
    ],
    "maintenance-window-set": [
        (
            "prod",
            "token",
            rules.SERVER,
            lambda p: p["maintenanceWindow"].update(customWindow="Disabled"),
            ("customWindow 'Disabled'", "dayOfWeek 0-6", "maintenanceWindow"),
        ),
        ("prod", "password", rules.SERVER, lambda p: p.pop("maintenanceWindow"), ("customWindow None",)),
    ],
}


def _wire_of(deployment: cg.Deployment, selector: str, which: str = "inputs") -> cg.Wire:
    if ":" in selector:
        return _by_type(deployment, selector, which)
    wires: list[cg.Wire] = [w for w in getattr(deployment, which) if w.name.endswith(selector)]
    assert len(wires) == 1, selector
    return wires[0]


def _level(rule_name: str) -> str:
    return next(rule.enforcement for rule in rules.RULES if rule.name == rule_name)


@pytest.mark.parametrize(
    ("rule_name", "case"),
    [(name, index) for name, cases in RESOURCE_CASES.items() for index in range(len(cases))],
)
def test_each_resource_rule_fires_through_the_analyzer_on_a_mutated_real_resource(rule_name: str, case: int) -> None:
    stack, mode, selector, change, expected = RESOURCE_CASES[rule_name][case]
    deployment = deployed(stack, mode)
    bad = cg.mutated(_wire_of(deployment, selector), change)
    diagnostics = cg.analyze(analyzer(), bad)
    fired = [d for d in diagnostics if d.policy == rule_name]
    assert fired, f"{rule_name} did not fire on {bad.name}: {diagnostics}"
    assert {d.enforcement for d in fired} == {_level(rule_name)}
    assert {d.policy for d in diagnostics} == {rule_name}, diagnostics
    message = fired[0].message
    assert bad.name in message
    for text in expected:
        assert text in message, message


def _app_outputs(change: Callable[[dict[str, Any]], None], **overrides: Any) -> Callable[[], list[cg.Wire]]:
    def build() -> list[cg.Wire]:
        deployment = cg.deployment("dev", "token", **overrides) if overrides else deployed("dev", "token")
        app = cg.mutated(_by_type(deployment, rules.CONTAINER_APP, "outputs"), change)
        return _replace(deployment.outputs, app)

    return build


def _auth_outputs(change: Callable[[dict[str, Any]], None]) -> Callable[[], list[cg.Wire]]:
    def build() -> list[cg.Wire]:
        deployment = signed_in_public()
        app = cg.mutated(
            _by_type(deployment, rules.CONTAINER_APP, "outputs"), lambda p: _ingress(p).pop("ipSecurityRestrictions")
        )
        auth = cg.mutated(_by_type(deployment, rules.AUTH_CONFIG, "outputs"), change)
        return _replace(tuple(_replace(deployment.outputs, app)), auth)

    return build


@functools.cache
def signed_in_public() -> cg.Deployment:
    # Easy Auth (an authConfig); the gateway's sign-in has cases of its own.
    return cg.deployment("dev", "token", signIn="easyAuth", entraAuthClientId="00000000-0000-0000-0000-0000000000ee")


def _without(selector: str) -> Callable[[], list[cg.Wire]]:
    def build() -> list[cg.Wire]:
        outputs = deployed("prod", "token").outputs
        gone = _wire_of(deployed("prod", "token"), selector, "outputs")
        return [w for w in outputs if w.urn != gone.urn]

    return build


def _environment_outputs(change: Callable[[dict[str, Any]], None]) -> Callable[[], list[cg.Wire]]:
    def build() -> list[cg.Wire]:
        deployment = deployed("prod", "token")
        environment = cg.mutated(_by_type(deployment, rules.MANAGED_ENVIRONMENT, "outputs"), change)
        return _replace(deployment.outputs, environment)

    return build


def _vault_setting_aimed_at_the_server() -> list[cg.Wire]:
    deployment = deployed("prod", "token")
    server_id = cg.decoded(_by_type(deployment, rules.SERVER, "outputs"))["id"]
    setting = cg.mutated(
        _wire_of(deployment, "identity-vault-diagnostics", "outputs"),
        lambda p: p.update(id=f"{server_id}/providers/Microsoft.Insights/diagnosticSettings/to-log-analytics-2"),
    )
    return _replace(deployment.outputs, setting)


def _password_auth_on() -> list[cg.Wire]:
    deployment = deployed("dev", "token")
    server = cg.mutated(
        _by_type(deployment, rules.SERVER, "outputs"), lambda p: p["authConfig"].update(passwordAuth="Enabled")
    )
    return _replace(deployment.outputs, server)


# rule -> (stack outputs builder, resource the message names, texts it holds): AnalyzeStack.
StackCase = tuple[Callable[[], list[cg.Wire]], str, tuple[str, ...]]


def _prod_outputs(selector: str, change: Callable[[dict[str, Any]], None]) -> Callable[[], list[cg.Wire]]:
    def build() -> list[cg.Wire]:
        deployment = deployed("prod", "token")
        return _replace(deployment.outputs, cg.mutated(_wire_of(deployment, selector, "outputs"), change))

    return build


HUB_VNET = "/subscriptions/00000000-0000-0000-0000-0000000000bb/resourceGroups/hub/providers/" + (
    "Microsoft.Network/virtualNetworks/hub"
)


def _without_private_dns() -> list[cg.Wire]:
    return [w for w in deployed("prod", "token").outputs if not w.type.startswith("azure-native:privatedns:")]


STACK_CASES: dict[str, list[StackCase]] = {
    "private-dns-linked-in-internal-mode": [
        (_without("mcp-private-dns-link"), "mcp-env", ("not linked to the VNet", "network-vnet", "VirtualNetworkLink")),
        (
            _prod_outputs("mcp-private-dns-link", lambda p: p["virtualNetwork"].update(id=HUB_VNET)),
            "mcp-env",
            ("not linked to the VNet", "pgmcp-prod-network-vnet)"),
        ),
        (
            _prod_outputs(rules.PRIVATE_ZONE, lambda p: p.update(name="privatelink.example.com")),
            "mcp-env",
            ("no private DNS zone is named after its default domain", "privatelink.example.com"),
        ),
        (_without_private_dns, "mcp-env", ("declares no private DNS zone", "`*` A record")),
    ],
    "password-auth-off-in-token-mode": [(_password_auth_on, "database-server", ("'Enabled'", "'Disabled'"))],
    "tls-configured": [
        (_without("ssl-min-protocol-version"), "database-server", ("ssl_min_protocol_version", "Configuration")),
    ],
    "app-logs-to-log-analytics": [
        (_without("mcp-env-diagnostics"), "mcp-env", ("no diagnostic setting", "resourceUri")),
        (_environment_outputs(lambda p: p.pop("appLogsConfiguration")), "mcp-env", ("None", "'azure-monitor'")),
        (
            _environment_outputs(
                lambda p: p.update(
                    appLogsConfiguration={"destination": "log-analytics", "logAnalyticsConfiguration": {}}
                )
            ),
            "mcp-env",
            ("'log-analytics'", "14 September 2026", "'azure-monitor'"),
        ),
    ],
    "diagnostics-to-log-analytics": [
        (_without("identity-vault-diagnostics"), "identity-vault", ("Key Vault", "resourceUri")),
        (_vault_setting_aimed_at_the_server, "identity-vault", ("Key Vault", "resourceUri")),
    ],
    "not-anonymous-and-public": [
        # The allow-list alone (signIn none: no gateway, no Easy Auth).
        (
            _app_outputs(
                lambda p: _ingress(p)["ipSecurityRestrictions"].append(
                    {"action": "Allow", "ipAddressRange": "0.0.0.0/0", "name": "everyone"}
                ),
                signIn="none",
            ),
            "mcp-app",
            ("0.0.0.0/0",),
        ),
        (
            _app_outputs(lambda p: _ingress(p)["ipSecurityRestrictions"][0].update(action="Deny"), signIn="none"),
            "mcp-app",
            ("no Allow rule",),
        ),
        (
            _app_outputs(lambda p: _ingress(p).pop("ipSecurityRestrictions"), signIn="none"),
            "mcp-app",
            ("no IP allow-list",),
        ),
        (_auth_outputs(lambda p: p["platform"].update(enabled=False)), "mcp-app", ("platform.enabled False",)),
        (
            _auth_outputs(lambda p: p["globalValidation"].update(unauthenticatedClientAction="AllowAnonymous")),
            "mcp-app",
            ("'AllowAnonymous'",),
        ),
    ],
}


@pytest.mark.parametrize(
    ("rule_name", "case"),
    [(name, index) for name, cases in STACK_CASES.items() for index in range(len(cases))],
)
def test_each_stack_rule_fires_through_the_analyzer_on_mutated_real_outputs(rule_name: str, case: int) -> None:
    build, named, expected = STACK_CASES[rule_name][case]
    diagnostics = cg.analyze_stack(analyzer(), build())
    fired = [d for d in diagnostics if d.policy == rule_name]
    assert fired, f"{rule_name} did not fire: {diagnostics}"
    assert {d.policy for d in diagnostics} == {rule_name}, diagnostics
    assert len(fired) == 1 and fired[0].enforcement == "mandatory"
    assert named in fired[0].message and fired[0].urn.endswith(named)
    for text in expected:
        assert text in fired[0].message, fired[0].message


@pytest.mark.parametrize(("stack", "mode"), [("dev", "token"), ("prod", "token")])
def test_settings_about_tokens_in_the_real_refresher_pass_through_the_analyzer(stack: str, mode: str) -> None:
    settings = [
        {"name": "TOKEN_REFRESH_MARGIN_SECONDS", "value": "900"},
        {"name": "TOKEN_RESOURCE", "value": "https://ossrdbms-aad.database.usgovcloudapi.net"},
    ]
    refresher = cg.mutated(
        _by_type(deployed(stack, mode), rules.CONTAINER_APP),
        lambda p: _container(p, "token-refresher")["env"].extend(settings),
    )
    assert cg.analyze(analyzer(), refresher) == []


def test_an_internal_dev_stack_passes_and_each_new_rule_reads_its_outputs() -> None:
    internal = cg.deployment("dev", "token", ingressInternal=True, allowedClientCidrs=[], appSubnetCidr="10.60.2.0/23")
    assert run_pack(internal) == []
    assert any(w.type == rules.VIRTUAL_NETWORK_LINK for w in internal.outputs)


def test_every_rule_fires_through_the_analyzer() -> None:
    assert set(RESOURCE_CASES) | set(STACK_CASES) == {rule.name for rule in rules.RULES}


def test_a_public_endpoint_with_entra_sign_in_and_no_allow_list_passes() -> None:
    outputs = _auth_outputs(lambda p: None)()
    app = next(cg.decoded(w) for w in outputs if w.type == rules.CONTAINER_APP)
    assert _ingress(app)["external"] is True and "ipSecurityRestrictions" not in _ingress(app)
    assert any(w.type == rules.AUTH_CONFIG for w in outputs)
    assert cg.analyze_stack(analyzer(), outputs) == []


def test_an_anonymous_endpoint_in_an_internal_environment_is_not_public() -> None:
    # prod: internal environment, so `external` ingress reaches the VNet only (Container Apps networking).
    deployment = deployed_without_sign_in("prod", "token")
    app = cg.mutated(
        _by_type(deployment, rules.CONTAINER_APP, "outputs"), lambda p: _ingress(p).pop("ipSecurityRestrictions")
    )
    without_allow_list = _replace(deployment.outputs, app)
    assert not any(w.type == rules.AUTH_CONFIG for w in without_allow_list)
    assert cg.analyze_stack(analyzer(), without_allow_list) == []
    environment = cg.mutated(
        _by_type(deployment, rules.MANAGED_ENVIRONMENT, "outputs"),
        lambda p: p["vnetConfiguration"].update(internal=False),
    )
    public = _replace(tuple(without_allow_list), environment)
    fired = [d for d in cg.analyze_stack(analyzer(), public) if d.policy == "not-anonymous-and-public"]
    assert [d.enforcement for d in fired] == ["mandatory"] and "no IP allow-list" in fired[0].message


def test_known_bad_values_are_reported_in_a_first_preview_despite_unknowns() -> None:
    preview = previewed("dev", "token")
    app = _by_type(preview, rules.CONTAINER_APP)
    # The DATABASE_URI is unknown in a first preview; the :latest image next to it is still known-bad.
    assert cg.UNKNOWN in json.dumps(_container(cg.decoded(app))["env"])
    bad = cg.mutated(app, lambda p: _container(p).update(image="crystaldba/postgres-mcp"))
    fired = [d for d in cg.analyze(analyzer(), bad) if d.policy == "images-pinned"]
    assert [d.enforcement for d in fired] == ["mandatory", "advisory"] and "'crystaldba/postgres-mcp'" in fired[
        0
    ].message
    # The gateway's image names the stack's registry, whose login server a first preview does not know yet.
    assert "image of container 'gateway' is not known before deployment" in fired[1].message
    # The outputs a preview reports: the app's ID is unknown, its allow-list known (without sign-in, where the
    # allow-list is what closes the endpoint).
    open_preview = cg.first_preview("dev", "token", signIn="none")
    outputs = _replace(
        open_preview.outputs,
        cg.mutated(
            _by_type(open_preview, rules.CONTAINER_APP, "outputs"),
            lambda p: _ingress(p)["ipSecurityRestrictions"][0].update(ipAddressRange="0.0.0.0/0"),
        ),
    )
    fired = [d for d in cg.analyze_stack(analyzer(), outputs) if d.policy == "not-anonymous-and-public"]
    assert [d.enforcement for d in fired] == ["mandatory"] and "0.0.0.0/0" in fired[0].message


def test_an_unknown_value_is_never_taken_for_a_compliant_one() -> None:
    app = _by_type(deployed_without_sign_in("dev", "token"), rules.CONTAINER_APP, "outputs")
    unknown_list = cg.mutated(app, lambda p: _ingress(p).update(ipSecurityRestrictions=cg.UNKNOWN))
    diagnostics = cg.analyze_stack(analyzer(), _replace(deployed_without_sign_in("dev", "token").outputs, unknown_list))
    assert [(d.policy, d.enforcement) for d in diagnostics] == [("not-anonymous-and-public", "advisory")]
    assert "pgmcp-dev-mcp-app" in diagnostics[0].message and "during preview" in diagnostics[0].message


# --- the configuration file the policy page shows --------------------------------------------------


def readme_policy_config() -> dict[str, Any]:
    section = (ROOT / "docs" / "policy.md").read_text()
    block = re.search(r"```json\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None, "docs/policy.md shows no JSON config file"
    config: dict[str, Any] = json.loads(block.group(1))
    return config


def test_the_readme_config_file_is_keyed_as_the_cli_keys_it_and_takes_effect() -> None:
    config = readme_policy_config()
    assert cg.reconcile(analyzer(), config)  # every key names a policy (or "all"), every property is declared
    assert config["no-world-open-firewall"]["allowAzureServicesRule"] is True
    configured = analyzer(json.dumps(config))
    # allowAzureServicesRule lets the 0.0.0.0 rule through...
    azure_services = cg.mutated(
        _by_type(deployed("dev", "token"), rules.FIREWALL_RULE),
        lambda p: p.update(startIpAddress="0.0.0.0", endIpAddress="0.0.0.0"),
    )
    assert [d.policy for d in cg.analyze(analyzer(), azure_services)] == ["no-world-open-firewall"]
    assert cg.analyze(configured, azure_services) == []
    # ...and productionEnvironments decides which `environment` tags get the production rules.
    production = config["key-vault-hardened"]["productionEnvironments"]
    assert config["backups-kept"]["productionEnvironments"] == production
    staging = cg.mutated(
        _by_type(deployed("dev", "token"), rules.VAULT), lambda p: p["tags"].update(environment="staging")
    )
    assert ("staging" in production) == bool(cg.analyze(configured, staging))
    assert cg.analyze(analyzer(), staging) == []


def test_a_setting_given_to_a_policy_that_does_not_read_it_stops_the_pack() -> None:
    servicer = cg.load_analyzer()
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    request.policyConfig["backups-kept"].properties.update({"allowAzureServicesRule": True})
    servicer.Configure(request, None)  # the CLI sends it: its schema check ignores undeclared keys
    server_inputs = _by_type(deployed("prod", "token"), rules.SERVER)
    with pytest.raises(ValueError, match=r"'backups-kept' sets allowAzureServicesRule.*productionEnvironments"):
        cg.analyze(servicer, server_inputs)


def test_enforcement_levels_come_from_the_config_file_too() -> None:
    relaxed = analyzer(json.dumps({"all": "advisory"}))
    app = cg.mutated(_by_type(deployed("dev", "token"), rules.CONTAINER_APP), lambda p: _container(p).update(image="x"))
    assert {d.enforcement for d in cg.analyze(relaxed, app)} == {"advisory"}
    off = analyzer(json.dumps({"images-pinned": {"enforcementLevel": "disabled"}}))
    assert cg.analyze(off, app) == []


# --- the sign-in gateway, through the analyzer on the program's own app ----------------------------------------

GATEWAY_CLIENT_ID = "00000000-0000-0000-0000-0000000000ee"


@functools.cache
def gateway_public() -> cg.Deployment:
    """dev behind the gateway with no allow-list: only the gateway's sign-in closes the endpoint."""
    return cg.deployment("dev", "token", allowedClientCidrs=[], entraAuthClientId=GATEWAY_CLIENT_ID)


def test_the_gateway_is_signed_in_and_its_constants_are_the_programs() -> None:
    from components import mcp_app

    assert rules.GATEWAY_COMMAND == mcp_app.GATEWAY_COMMAND and rules.GATEWAY_PORT == mcp_app.GATEWAY_PORT
    deployment = gateway_public()
    app = cg.decoded(_by_type(deployment, rules.CONTAINER_APP, "outputs"))
    assert _ingress(app)["targetPort"] == 8080 and "ipSecurityRestrictions" not in _ingress(app)
    assert not any(w.type == rules.AUTH_CONFIG for w in deployment.outputs)
    assert run_pack(deployment) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: _container(p)["args"].__setitem__(1, "--sse-host=0.0.0.0"), "listens on 0.0.0.0"),
        (lambda p: _container(p)["args"].pop(1), "listens on 0.0.0.0"),  # the entrypoint's default
        (
            lambda p: next(v for v in _container(p, "gateway")["env"] if v["name"] == "ENTRA_CLIENT_ID").update(
                value=""
            ),
            "no Entra settings (ENTRA_CLIENT_ID",
        ),
        (lambda p: _ingress(p).update(targetPort=8000), "no Entra sign-in"),
    ],
    ids=["postgres-mcp-on-all-addresses", "no-sse-host", "no-client-id", "ingress-around-the-gateway"],
)
def test_a_gateway_that_leaves_postgres_mcp_open_is_refused(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    deployment = gateway_public()
    assert _container(cg.decoded(_by_type(deployment, rules.CONTAINER_APP, "outputs")))["args"][1] == (
        "--sse-host=127.0.0.1"
    )
    app = cg.mutated(_by_type(deployment, rules.CONTAINER_APP, "outputs"), change)
    diagnostics = cg.analyze_stack(analyzer(), _replace(deployment.outputs, app))
    assert [(d.policy, d.enforcement) for d in diagnostics] == [("not-anonymous-and-public", "mandatory")]
    assert expected in diagnostics[0].message, diagnostics[0].message


def test_postgres_mcp_on_all_addresses_behind_the_gateway_is_refused_in_an_internal_environment_too() -> None:
    prod = cg.deployment("prod", "token", entraAuthClientId=GATEWAY_CLIENT_ID)
    assert run_pack(prod) == []
    app = cg.mutated(
        _by_type(prod, rules.CONTAINER_APP, "outputs"),
        lambda p: _container(p)["args"].__setitem__(1, "--sse-host=0.0.0.0"),
    )
    diagnostics = cg.analyze_stack(analyzer(), _replace(prod.outputs, app))
    assert [d.policy for d in diagnostics] == ["not-anonymous-and-public"]
    assert "listens on 0.0.0.0" in diagnostics[0].message
