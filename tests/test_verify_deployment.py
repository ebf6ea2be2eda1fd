"""tools/verify_deployment.py's decisions, fed with ARM's answers as the REST spec shows them.

The bodies below are azure-rest-api-specs specification/app/resource-manager/Microsoft.App/stable/2025-01-01/examples
ContainerApps_Get.json, Revisions_Get.json and Replicas_List.json, with this project's names (components/mcp_app.py)
and the read-only properties those examples leave out (`latestRevisionName` on the app; `healthState`,
`provisioningState`, `provisioningError` on the revision) set to values of the spec's enums.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tools.verify_deployment as verify_deployment
from tools.verify_deployment import (
    Report,
    Verdict,
    admission_plan,
    nsg_admits,
    replica_verdict,
    restart_counts,
    restarts_verdict,
    revision_verdict,
    verify,
)

pytestmark = pytest.mark.unit

APP_ID = (
    "/subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourceGroups/rg/providers/Microsoft.App/containerApps/"
    "pgmcp-dev-mcp"
)
REVISION = "pgmcp-dev-mcp--pjxhsye"

# ContainerApps_Get.json, trimmed to what the checks read.
APP: dict[str, Any] = {
    "id": APP_ID,
    "name": "pgmcp-dev-mcp",
    "type": "Microsoft.App/containerApps",
    "location": "East US",
    "properties": {
        "provisioningState": "Succeeded",
        "latestRevisionName": REVISION,
        "latestRevisionFqdn": "pgmcp-dev-mcp--pjxhsye.demokube-t24clv0g.eastus.azurecontainerapps.io",
        "latestReadyRevisionName": REVISION,
        "configuration": {
            "ingress": {
                "fqdn": "pgmcp-dev-mcp.demokube-t24clv0g.eastus.azurecontainerapps.io",
                "external": True,
                "targetPort": 8000,
                "transport": "auto",
                "ipSecurityRestrictions": [
                    {
                        "name": "client-0",
                        "description": "allowedClientCidrs",
                        "ipAddressRange": "192.168.1.1/32",
                        "action": "Allow",
                    },
                    {
                        "name": "client-1",
                        "description": "allowedClientCidrs",
                        "ipAddressRange": "20.1.0.0/16",
                        "action": "Allow",
                    },
                ],
            },
        },
    },
}

# Revisions_Get.json.
REVISION_BODY: dict[str, Any] = {
    "id": f"{APP_ID}/revisions/{REVISION}",
    "name": REVISION,
    "type": "Microsoft.App/containerApps/revisions",
    "properties": {
        "createdTime": "2021-05-24T21:24:22+00:00",
        "lastActiveTime": "2021-05-24T21:24:22+00:00",
        "fqdn": "pgmcp-dev-mcp--pjxhsye.politehill-ab123456.eastus.azurecontainerapps.io",
        "template": {"containers": [{"image": "crystaldba/postgres-mcp:0.3.0", "name": "postgres-mcp"}]},
        "trafficWeight": 100,
        "active": True,
        "replicas": 1,
        "runningState": "Running",
        "healthState": "Healthy",
        "provisioningState": "Provisioned",
    },
}


def container(name: str, **changes: Any) -> dict[str, Any]:
    # One entry of Replicas_List.json's containers[].
    return {
        "name": name,
        "containerId": "containerd://6bac7bb3afed1c704b5fe563c34c0ecf59ac30c766bb73488f7fa552dc42ee54",
        "ready": True,
        "started": True,
        "restartCount": 0,
        "runningState": "Running",
        "runningStateDetails": "testDetail",
        "logStreamEndpoint": "testLogStreamEndpoint",
        "execEndpoint": "testExecEndpoint",
        **changes,
    }


def replicas(*containers: dict[str, Any], running: str = "Running") -> dict[str, Any]:
    # Replicas_List.json.
    return {
        "value": [
            {
                "id": f"{APP_ID}/revisions/{REVISION}/replicas/{REVISION}-5d9774cff-5wnd8",
                "name": f"{REVISION}-5d9774cff-5wnd8",
                "type": "Microsoft.Web/containerapps/revisions/replicas",
                "properties": {
                    "createdTime": "2022-01-25T19:42:45Z",
                    "runningState": running,
                    "runningStateDetails": "testDetail",
                    "containers": list(containers),
                    "initContainers": [],
                },
            }
        ]
    }


def changed(body: dict[str, Any], **properties: Any) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    copied["properties"].update(properties)
    return copied


TOKEN_CONTAINERS = ("postgres-mcp", "token-refresher")


# --- the revision ---------------------------------------------------------------------------------------------------


def test_the_latest_revision_ready_healthy_and_running_passes() -> None:
    verdict = revision_verdict(APP, REVISION_BODY)
    assert verdict == Verdict(
        "ok",
        f"revision {REVISION}: provisioningState 'Provisioned', healthState 'Healthy', runningState 'Running', "
        "replicas 1",
    )


def test_a_latest_revision_that_is_not_the_ready_one_is_waited_for_and_named() -> None:
    app = changed(APP, latestReadyRevisionName="pgmcp-dev-mcp--older01")
    verdict = revision_verdict(app, changed(REVISION_BODY, healthState="None", runningState="Processing"))
    assert verdict.state == "wait"
    assert f"the latest revision {REVISION} is not ready: latestReadyRevisionName is 'pgmcp-dev-mcp--older01'" in (
        verdict.message
    )
    assert "runningState 'Processing'" in verdict.message


@pytest.mark.parametrize(
    ("health", "running"), [("Unhealthy", "Running"), ("Healthy", "Degraded"), ("None", "Processing")]
)
def test_unhealthy_or_not_running_is_not_passed(health: str, running: str) -> None:
    verdict = revision_verdict(APP, changed(REVISION_BODY, healthState=health, runningState=running))
    assert verdict.state == "wait" and f"healthState '{health}'" in verdict.message


def test_the_spec_example_as_is_has_no_health_and_does_not_pass() -> None:
    # Revisions_Get.json's body has no healthState: a revision whose health is not reported is not "healthy".
    example = copy.deepcopy(REVISION_BODY)
    del example["properties"]["healthState"], example["properties"]["provisioningState"]
    assert revision_verdict(APP, example).state == "wait"


def test_a_failed_provisioning_fails_at_once_with_azures_reason() -> None:
    failed = changed(
        REVISION_BODY,
        provisioningState="Failed",
        healthState="Unhealthy",
        runningState="Failed",
        provisioningError="Failed to provision revision: unable to fetch secret 'database-uri' using Managed identity",
    )
    verdict = revision_verdict(changed(APP, latestReadyRevisionName="pgmcp-dev-mcp--older01"), failed)
    assert verdict.state == "fail"
    assert "Azure could not provision it: Failed to provision revision: unable to fetch secret" in verdict.message


# --- the replica: postgres-mcp and the token refresher -------------------------------------------------------------


def test_every_container_ready_and_running_passes() -> None:
    verdict = replica_verdict(replicas(container("postgres-mcp"), container("token-refresher")), TOKEN_CONTAINERS)
    assert verdict.state == "ok"
    assert "token-refresher: ready=True, runningState='Running', restartCount=0" in verdict.message


def test_a_refresher_that_is_not_ready_is_named_with_its_state() -> None:
    refresher = container(
        "token-refresher", ready=False, restartCount=3, runningState="Waiting", runningStateDetails="CrashLoopBackOff"
    )
    verdict = replica_verdict(replicas(container("postgres-mcp"), refresher), TOKEN_CONTAINERS)
    assert verdict.state == "wait"
    assert "token-refresher: ready=False, runningState='Waiting', restartCount=3 (CrashLoopBackOff)" in verdict.message


def test_a_missing_refresher_or_no_replica_is_not_passed() -> None:
    missing = replica_verdict(replicas(container("postgres-mcp")), TOKEN_CONTAINERS)
    assert missing.state == "wait" and "no container 'token-refresher'" in missing.message
    assert replica_verdict({"value": []}, TOKEN_CONTAINERS).state == "wait"
    stopped = replica_verdict(replicas(container("postgres-mcp"), running="NotRunning"), ("postgres-mcp",))
    assert stopped.state == "wait" and "is 'NotRunning'" in stopped.message


def test_password_mode_needs_only_postgres_mcp() -> None:
    assert replica_verdict(replicas(container("postgres-mcp")), ("postgres-mcp",)).state == "ok"


def test_a_restart_during_the_verification_fails() -> None:
    before = restart_counts(replicas(container("postgres-mcp"), container("token-refresher", restartCount=1)))
    after = restart_counts(replicas(container("postgres-mcp"), container("token-refresher", restartCount=2)))
    assert restarts_verdict(before, before).state == "ok"
    verdict = restarts_verdict(before, after)
    assert verdict.state == "fail" and f"{REVISION}-5d9774cff-5wnd8/token-refresher 1 -> 2" in verdict.message


# --- admission ------------------------------------------------------------------------------------------------------

OPEN_APP = changed(APP, configuration={"ingress": {"external": True, "targetPort": 8000}})


def test_an_internal_environment_is_skipped_with_the_reason() -> None:
    plan = admission_plan("internal+entra", "api://x/.default", OPEN_APP, "20.1.2.3")
    assert plan.kind == "skip" and "a GitHub-hosted runner cannot reach it" in plan.reason


def test_the_allow_list_is_read_from_the_app_and_admits_only_its_ranges() -> None:
    admitted = admission_plan("allow-list", "", APP, "20.1.2.3")
    assert admitted.kind == "anonymous"
    refused = admission_plan("allow-list", "", APP, "52.9.9.9")
    assert refused.kind == "skip"
    assert "192.168.1.1/32, 20.1.0.0/16" in refused.reason and "this runner (52.9.9.9)" in refused.reason


def test_entra_sign_in_uses_the_stacks_scope() -> None:
    plan = admission_plan("entra", "api://11111111-2222-3333-4444-555555555555/.default", OPEN_APP, "52.9.9.9")
    assert plan.kind == "entra" and plan.scope == "api://11111111-2222-3333-4444-555555555555/.default"
    assert admission_plan("entra+allow-list", "api://x/.default", APP, "20.1.2.3").kind == "entra"
    assert admission_plan("entra+allow-list", "api://x/.default", APP, "52.9.9.9").kind == "skip"
    assert admission_plan("anonymous-public", "", OPEN_APP, "").kind == "anonymous"


# --- the run, with ARM answering from the examples ------------------------------------------------------------------


class FakeArm:
    """Answers GETs of the app (keyed by the child path after its ID) and of other resources (keyed by their ID)."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str]] = []

    def get(self, resource_id: str, child: str = "", api_version: str = "2025-01-01") -> dict[str, Any]:
        key = child if resource_id == APP_ID else resource_id
        self.calls.append((key, api_version))
        queue = self.answers[key]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def arguments(**changes: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "container_app_id": APP_ID,
        "sse_url": "https://pgmcp-dev-mcp.demokube-t24clv0g.eastus.azurecontainerapps.io/sse",
        "auth_mode": "token",
        "admission": "allow-list",
        "entra_scope": "",
        "runner_ip": "20.1.2.3",
        "ready_timeout": 0.0,
        "poll_interval": 0.0,
        "mcp_timeout": 5.0,
    }
    return argparse.Namespace(**{**values, **changes})


def healthy_arm(*replica_answers: dict[str, Any]) -> FakeArm:
    both = replicas(container("postgres-mcp"), container("token-refresher"))
    return FakeArm(
        {
            "": [APP],
            f"/revisions/{REVISION}": [REVISION_BODY],
            f"/revisions/{REVISION}/replicas": list(replica_answers) or [both],
        }
    )


def test_a_healthy_token_mode_deployment_passes_every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []

    def list_tools(url: str, headers: dict[str, str], timeout: float) -> list[str]:
        called.append(url)
        return ["execute_sql", "list_schemas"]

    monkeypatch.setattr(verify_deployment, "list_tools", list_tools)
    report = Report()
    arm = healthy_arm()
    verify(arguments(), arm, report)  # type: ignore[arg-type]
    assert report.failures == []
    assert [line.split("]")[0] + "]" for line in report.lines] == [
        "ok [revision]",
        "ok [replicas (postgres-mcp and the token refresher)]",
        "ok [mcp list_tools (anonymous)]",
        "ok [refresher restarts]",
    ]
    assert called == ["https://pgmcp-dev-mcp.demokube-t24clv0g.eastus.azurecontainerapps.io/sse"]
    assert all(api_version == "2025-01-01" for _, api_version in arm.calls)  # no VNet: nothing but the app asked


def test_a_revision_that_never_gets_ready_fails_naming_what_was_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    arm = healthy_arm()
    arm.answers[""] = [changed(APP, latestReadyRevisionName="pgmcp-dev-mcp--older01")]
    report = Report()
    verify(arguments(ready_timeout=0.0), arm, report)  # type: ignore[arg-type]
    (failure,) = report.failures
    assert failure.startswith("FAILED [revision] not healthy after 0s: the latest revision pgmcp-dev-mcp--pjxhsye")


def test_an_internal_stack_says_why_list_tools_was_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    report = Report(annotate=True)
    verify(arguments(admission="internal"), healthy_arm(), report)  # type: ignore[arg-type]
    assert report.failures == []
    out = capsys.readouterr().out
    assert "SKIPPED [mcp list_tools] the environment is internal" in out
    assert "::warning title=post-deploy check 'mcp list_tools' skipped::" in out


def test_a_refresher_restart_between_the_reads_fails_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_deployment, "list_tools", lambda url, headers, timeout: ["execute_sql"])
    first = replicas(container("postgres-mcp"), container("token-refresher"))
    second = replicas(container("postgres-mcp"), container("token-refresher", restartCount=1))
    report = Report(annotate=True)
    verify(arguments(), healthy_arm(first, second), report)  # type: ignore[arg-type]
    (failure,) = report.failures
    assert failure.startswith("FAILED [refresher restarts] containers restarted while the verification ran")


def test_main_exits_1_and_points_at_the_docs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    arm = healthy_arm()
    arm.answers[f"/revisions/{REVISION}"] = [
        changed(REVISION_BODY, provisioningState="Failed", provisioningError="boom")
    ]
    monkeypatch.setattr(verify_deployment.Arm, "get", lambda self, resource_id, child="": arm.get(resource_id, child))
    argv = [
        f"--container-app-id={APP_ID}",
        "--sse-url=https://x/sse",
        "--auth-mode=token",
        "--admission=allow-list",
        "--ready-timeout=0",
    ]
    assert verify_deployment.main(argv, {"GITHUB_ACTIONS": "true"}) == 1
    out = capsys.readouterr().out
    assert "::error title=post-deploy check 'revision' failed::" in out and "Azure could not provision it: boom" in out
    assert "see docs/post-deploy-verification.md" in out


# --- the apps subnet's network security group ------------------------------------------------------------------------

NSG_ID = "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/networkSecurityGroups/pgmcp-dev-apps-nsg"


def security_group(*rules: dict[str, Any]) -> dict[str, Any]:
    """azure-rest-api-specs Microsoft.Network stable/2024-05-01 examples/NetworkSecurityGroupGet.json, its
    `securityRules` replaced by `rules` (the default rules kept: only DenyAllInBound matches an internet address)."""
    default = [
        ("AllowVnetInBound", "VirtualNetwork", "Allow", 65000),
        ("AllowAzureLoadBalancerInBound", "AzureLoadBalancer", "Allow", 65001),
        ("DenyAllInBound", "*", "Deny", 65500),
    ]
    return {
        "name": "pgmcp-dev-apps-nsg",
        "id": NSG_ID,
        "type": "Microsoft.Network/networkSecurityGroups",
        "location": "westus",
        "properties": {
            "provisioningState": "Succeeded",
            "securityRules": [
                {"name": rule.pop("name"), "id": f"{NSG_ID}/securityRules/x", "properties": rule} for rule in rules
            ],
            "defaultSecurityRules": [
                {
                    "name": name,
                    "properties": {
                        "protocol": "*",
                        "sourcePortRange": "*",
                        "destinationPortRange": "*",
                        "sourceAddressPrefix": source,
                        "destinationAddressPrefix": "*",
                        "access": access,
                        "priority": priority,
                        "direction": "Inbound",
                    },
                }
                for name, source, access, priority in default
            ],
        },
    }


def rule(name: str, priority: int, access: str = "Allow", **source: Any) -> dict[str, Any]:
    # The shape components/network.py declares (one source: sourceAddressPrefix; more: sourceAddressPrefixes).
    return {
        "name": name,
        "provisioningState": "Succeeded",
        "protocol": "Tcp",
        "sourcePortRange": "*",
        "destinationPortRange": "443",
        "destinationAddressPrefix": "10.60.0.0/23",
        "access": access,
        "priority": priority,
        "direction": "Inbound",
        **source,
    }


def test_the_security_group_is_evaluated_by_priority_with_the_default_deny_last() -> None:
    allow_list = security_group(rule("allow-mcp-clients-https", 100, sourceAddressPrefix="198.51.100.0/24"))
    assert nsg_admits(allow_list, "198.51.100.7") == (True, "rule priority 100 (Allow 198.51.100.0/24)")
    assert nsg_admits(allow_list, "20.1.2.3") == (False, "the default rule DenyAllInBound (no rule admits it)")
    several = security_group(
        rule("allow-mcp-clients-https", 100, sourceAddressPrefixes=["198.51.100.0/24", "20.1.0.0/16"])
    )
    assert nsg_admits(several, "20.1.2.3")[0] is True
    assert nsg_admits(security_group(rule("allow-mcp-clients-https", 100, sourceAddressPrefix="Internet")), "20.1.2.3")[
        0
    ]
    denied_first = security_group(
        rule("deny-runner", 90, access="Deny", sourceAddressPrefix="20.1.2.3"),
        rule("allow-all", 100, sourceAddressPrefix="*"),
    )
    assert nsg_admits(denied_first, "20.1.2.3") == (False, "rule priority 90 (Deny 20.1.2.3)")
    # The example's own rule admits port 80 only.
    example = security_group(
        {
            "name": "rule1",
            "protocol": "*",
            "sourcePortRange": "*",
            "destinationPortRange": "80",
            "sourceAddressPrefix": "*",
            "destinationAddressPrefix": "*",
            "access": "Allow",
            "priority": 130,
            "direction": "Inbound",
        }
    )
    assert nsg_admits(example, "20.1.2.3")[0] is False


def test_a_runner_the_subnets_security_group_refuses_is_skipped_not_timed_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environment_id = "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.App/managedEnvironments/pgmcp-dev-env"
    subnet_id = "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/v/subnets/apps"
    arm = healthy_arm()
    arm.answers[""] = [changed(APP, managedEnvironmentId=environment_id)]
    # ManagedEnvironments_Get.json's vnetConfiguration; subnet.json's networkSecurityGroup reference.
    arm.answers[environment_id] = [{"properties": {"vnetConfiguration": {"infrastructureSubnetId": subnet_id}}}]
    arm.answers[subnet_id] = [{"id": subnet_id, "properties": {"networkSecurityGroup": {"id": NSG_ID}}}]
    arm.answers[NSG_ID] = [security_group(rule("allow-mcp-clients-https", 100, sourceAddressPrefix="198.51.100.0/24"))]
    report = Report()
    verify(arguments(), arm, report)  # type: ignore[arg-type]
    assert report.failures == []
    assert (
        "SKIPPED [mcp list_tools] the apps subnet's network security group pgmcp-dev-apps-nsg does not let this runner "
        "(20.1.2.3) reach port 443: the default rule DenyAllInBound" in capsys.readouterr().out
    )
    assert (subnet_id, "2024-05-01") in arm.calls and (NSG_ID, "2024-05-01") in arm.calls


def test_annotations_escape_what_the_runner_would_cut() -> None:
    assert verify_deployment.workflow_command("error", "check a, b: c", "50% done\nthen") == (
        "::error title=check a%2C b%3A c::50%25 done%0Athen"
    )


# --- behind the sign-in gateway: its answer to an anonymous call ---------------------------------------------------


class GatewayStandIn(http.server.BaseHTTPRequestHandler):
    """Answers as the gateway does (FastMCP's RemoteAuthProvider): 401 naming its RFC 9728 metadata at
    /.well-known/oauth-protected-resource/mcp. `behaviour` breaks it the ways the check must notice."""

    behaviour = "gateway"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _base(self) -> str:
        address = self.server.server_address
        assert isinstance(address, tuple)  # an AF_INET server: (host, port)
        return f"http://127.0.0.1:{address[1]}"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.behaviour == "open":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"jsonrpc": "2.0", "id": 1, "result": {}}')
            return
        self.send_response(401)
        challenge = 'Bearer error="invalid_token"'
        if self.behaviour != "no-metadata":
            challenge += f', resource_metadata="{self._base()}/.well-known/oauth-protected-resource/mcp"'
        self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        resource = "https://elsewhere.example/mcp" if self.behaviour == "wrong-resource" else f"{self._base()}/mcp"
        body = json.dumps({"resource": resource, "authorization_servers": [f"{self._base()}/"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def gateway_stand_in(behaviour: str) -> Iterator[str]:
    handler = type("Handler", (GatewayStandIn,), {"behaviour": behaviour})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mcp"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_gateway_admission_checks_its_answer_to_an_anonymous_call() -> None:
    plan = admission_plan("entra-gateway+allow-list", "api://x/.default", APP, "20.1.2.3")
    assert plan.kind == "gateway"
    # An allow-list that leaves the runner out, or an internal environment, still skips.
    assert admission_plan("entra-gateway+allow-list", "api://x/.default", APP, "52.9.9.9").kind == "skip"
    assert admission_plan("internal+entra-gateway", "", OPEN_APP, "20.1.2.3").kind == "skip"
    with gateway_stand_in("gateway") as url:
        verdict = verify_deployment.gateway_verdict(url, timeout=5)
    assert verdict.state == "ok" and "401" in verdict.message and "oauth-protected-resource/mcp" in verdict.message


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("open", "sign-in is not enforced"),
        ("no-metadata", "without resource_metadata"),
        ("wrong-resource", "https://elsewhere.example/mcp"),
    ],
)
def test_a_gateway_that_lets_anonymous_callers_in_or_names_no_metadata_fails(behaviour: str, expected: str) -> None:
    with gateway_stand_in(behaviour) as url:
        verdict = verify_deployment.gateway_verdict(url, timeout=5)
    assert verdict.state == "fail" and expected in verdict.message, verdict.message
    assert verify_deployment.gateway_verdict("", timeout=1).state == "fail"  # no --mcp-url


def test_a_gateway_deployment_waits_for_the_gateway_container_and_checks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def gateway_verdict(url: str, timeout: float) -> Verdict:
        seen.append(url)
        return Verdict("ok", "anonymous call refused with 401")

    monkeypatch.setattr(verify_deployment, "gateway_verdict", gateway_verdict)
    three = replicas(container("postgres-mcp"), container("token-refresher"), container("gateway"))
    report = Report()
    url = "https://pgmcp-dev-mcp.demokube-t24clv0g.eastus.azurecontainerapps.io/mcp"
    verify(arguments(admission="entra-gateway+allow-list", sse_url="", mcp_url=url), healthy_arm(three), report)  # type: ignore[arg-type]
    assert report.failures == [] and seen == [url]
    assert any(line.startswith("ok [mcp sign-in (gateway)]") for line in report.lines)
    # Without the gateway's container in the replica, the replicas check does not pass.
    report = Report()
    verify(arguments(admission="entra-gateway+allow-list", sse_url="", mcp_url=url), healthy_arm(), report)  # type: ignore[arg-type]
    assert any("no container 'gateway'" in failure for failure in report.failures)
