"""The policy pack: every rule reports a violating resource and passes a compliant one, and
every resource the program declares (dev and prod, both auth modes) passes every mandatory rule."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
from harness import ProgramRun, run_program
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import rules
from policy.pack import policies
from policy.rules import Options, Resource, evaluate

STACKS = [(stack, mode) for stack in ("dev", "prod") for mode in ("token", "password")]


def declared(stack: str, mode: str, **overrides: Any) -> tuple[Resource, ...]:
    run: ProgramRun = run_program(stack, {"authMode": mode, **overrides})
    return tuple(Resource(r.type, r.name, r.inputs) for r in run.resources if not r.type.startswith("postgresmcp:"))


@functools.cache
def shipped(stack: str, mode: str) -> tuple[Resource, ...]:
    return declared(stack, mode)


@pytest.mark.parametrize(("stack", "mode"), STACKS, ids=[f"{s}-{m}" for s, m in STACKS])
def test_shipped_stacks_pass_every_mandatory_rule(stack: str, mode: str) -> None:
    report = evaluate(shipped(stack, mode))
    assert report.mandatory == []
    advisories = {(v.rule, v.resource) for v in report.violations}
    assert advisories == set()  # prod has its standby; both run restricted mode


def test_the_pack_has_every_rule_the_readme_lists() -> None:
    names = {rule.name for rule in rules.RULES}
    assert len(names) == len(rules.RULES) == 16
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in names)


# --- each rule: a violating resource it reports, a compliant one it passes ------------------------


def server(**props: Any) -> Resource:
    base = {
        "authConfig": {"activeDirectoryAuth": "Enabled", "passwordAuth": "Disabled"},
        "backup": {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"},
        "highAvailability": {"mode": "Disabled"},
        "tags": {"environment": "dev", "owner": "team"},
    }
    base.update(props)
    return Resource(rules.SERVER, "server", base)


def app(containers: list[dict[str, Any]] | None = None, **props: Any) -> Resource:
    base: dict[str, Any] = {
        "containerAppName": "mcp",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": ["/id"]},
        "configuration": {"ingress": {"external": True, "ipSecurityRestrictions": [{"ipAddressRange": "1.2.3.4/32"}]}},
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


def vault(environment: str = "dev", **properties: Any) -> Resource:
    base = {"enableRbacAuthorization": True, "enableSoftDelete": True}
    base.update(properties)
    return Resource(rules.VAULT, "vault", {"properties": base, "tags": {"environment": environment, "owner": "t"}})


def firewall(start: str, end: str) -> Resource:
    return Resource(rules.FIREWALL_RULE, "rule", {"startIpAddress": start, "endIpAddress": end})


def configuration(name: str, value: str) -> Resource:
    return Resource(rules.CONFIGURATION, name, {"configurationName": name, "value": value})


def diagnostic(target: str) -> Resource:
    return Resource(rules.DIAGNOSTIC_SETTING, f"diag-{target}", {"resourceUri": f"/x/{target}", "workspaceId": "/w"})


TLS = [configuration("require_secure_transport", "on"), configuration("ssl_min_protocol_version", "TLSv1.2")]
PROD = {"environment": "prod", "owner": "team"}

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
        [firewall("0.0.0.0", "255.255.255.255"), firewall("0.0.0.0", "0.0.0.0"), firewall("10.0.0.0", "10.1.255.255")],
        [firewall("203.0.113.7", "203.0.113.7"), firewall("198.51.0.0", "198.51.255.255")],
    ),
    "key-vault-hardened": (
        [vault(enableRbacAuthorization=False), vault(enableSoftDelete=False), vault("prod")],
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
        ],
        [
            app([{"name": "c", "image": "registry:5000/postgres-mcp:0.3.0"}]),
            app([{"name": "c", "image": "crystaldba/postgres-mcp@sha256:" + "a" * 64}]),
        ],
    ),
    "user-assigned-identity": ([app(identity={"type": "SystemAssigned"}), app(identity={"type": "None"})], [app()]),
    "not-anonymous-and-public": (
        [app(configuration={"ingress": {"external": True}})],
        [
            app(configuration={"ingress": {"external": False}}),
            app(configuration={"ingress": {"external": True}}),
            Resource(
                rules.AUTH_CONFIG,
                "auth",
                {"containerAppName": "mcp", "globalValidation": {"unauthenticatedClientAction": "Return401"}},
            ),
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
        [server(tags=PROD)],
        [server(), server(highAvailability={"mode": "ZoneRedundant"}, tags=PROD)],
    ),
    "app-logs-to-log-analytics": (
        [Resource(rules.MANAGED_ENVIRONMENT, "env", {"tags": PROD})],
        [
            Resource(
                rules.MANAGED_ENVIRONMENT,
                "env",
                {"appLogsConfiguration": {"destination": "log-analytics"}, "tags": PROD},
            )
        ],
    ),
    "diagnostics-to-log-analytics": (
        [server(), vault(), diagnostic("server")],
        [server(), vault(), diagnostic("server"), diagnostic("vault")],
    ),
    "required-tags": (
        [server(tags={"environment": "dev"}), Resource(rules.VAULT, "bare", {})],
        [server(), Resource(rules.FIREWALL_RULE, "untaggable", {})],
    ),
    "restricted-access-mode": (
        [app([{"name": "postgres-mcp", "image": "i:1", "args": ["--access-mode=unrestricted"]}])],
        [app()],
    ),
}


def violations_of(rule_name: str, resources: list[Resource], options: Options | None = None) -> list[rules.Violation]:
    return [v for v in evaluate(resources, options).violations if v.rule == rule_name]


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == {rule.name for rule in rules.RULES}


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


def test_azure_services_rule_passes_with_the_packs_opt_in() -> None:
    rule = [firewall("0.0.0.0", "0.0.0.0")]
    assert violations_of("no-world-open-firewall", rule)
    assert violations_of("no-world-open-firewall", rule, Options(allow_azure_services_rule=True)) == []
    assert violations_of(
        "no-world-open-firewall", [firewall("0.0.0.0", "255.255.255.255")], Options(allow_azure_services_rule=True)
    )


def test_the_program_itself_is_flagged_when_it_is_opened_up() -> None:
    opened = declared(
        "dev",
        "token",
        allowedClientCidrs=[],
        allowAnonymousPublicAccess=True,
        allowAzureServices=True,
        mcpAccessMode="unrestricted",
    )
    report = evaluate(opened)
    assert {v.rule for v in report.mandatory} == {"not-anonymous-and-public", "no-world-open-firewall"}
    assert {v.rule for v in report.violations if v.enforcement == "advisory"} == {"restricted-access-mode"}


def test_a_mutated_program_resource_is_caught() -> None:
    resources = [copy.deepcopy(r) for r in shipped("prod", "password")]
    mutated = []
    for resource in resources:
        props = copy.deepcopy(dict(resource.props))
        if resource.type == rules.VAULT:
            props["properties"] = {**props["properties"], "enablePurgeProtection": None}
        mutated.append(Resource(resource.type, resource.name, props))
    assert [v.rule for v in evaluate(mutated).mandatory] == ["key-vault-hardened"]


# --- the CrossGuard wiring: call each policy's validate directly ---------------------------------


OPTIONS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def crossguard(resources: tuple[Resource, ...], config: dict[str, Any] | None = None) -> dict[str, list[str]]:
    reported: dict[str, list[str]] = {}
    for policy in policies():
        messages: list[str] = []

        def report(message: str, urn: str | None = None, sink: list[str] = messages) -> None:
            sink.append(message)

        assert isinstance(policy, (ResourceValidationPolicy, StackValidationPolicy))
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                policy.validate(
                    ResourceValidationArgs(r.type, r.props, f"urn:{r.name}", r.name, OPTIONS, None, config or {}),
                    report,
                )
        else:
            stack = [
                PolicyResource(r.type, r.props, f"urn:{r.name}", r.name, OPTIONS, None, None, [], {}) for r in resources
            ]
            policy.validate(StackValidationArgs(stack, config or {}), report)
        if messages:
            reported[policy.name] = messages
    return reported


def test_crossguard_policies_report_what_the_rules_report() -> None:
    assert crossguard(shipped("prod", "token")) == {}
    opened = declared("dev", "token", allowedClientCidrs=[], allowAnonymousPublicAccess=True, allowAzureServices=True)
    reported = crossguard(opened)
    assert set(reported) == {"not-anonymous-and-public", "no-world-open-firewall"}
    assert set(crossguard(opened, {"allowAzureServicesRule": True})) == {"not-anonymous-and-public"}
    enforcement = {policy.name: getattr(policy.enforcement_level, "value", None) for policy in policies()}
    assert enforcement["high-availability-in-production"] == "advisory"
    assert enforcement["not-anonymous-and-public"] == "mandatory"
