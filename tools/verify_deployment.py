"""Verifies a deployed stack after `pulumi up`: the revision, the token refresher, and an MCP `list_tools`.

    python tools/verify_deployment.py --container-app-id ID --sse-url URL --auth-mode token \\
        --admission allow-list --entra-scope '' --runner-ip 20.1.2.3

The deploy workflow (.github/workflows/deploy.yml) runs it with the stack's outputs; docs/post-deploy-verification.md
says what each check means and how to read a failure. It exits 1 with one line per failed check (which check, what
was seen, what to look at), and 0 when every check passed or was skipped for a stated reason.

Checks, in order:
1. revision: the app's latest revision is its latest *ready* revision and is Healthy and Running (ARM).
2. replicas: every container of the revision's replica is ready and running; in token mode this is how the
   refresher's health is seen from outside: its /healthz is served inside the replica and only reaches Azure as the
   sidecar's probes, whose failures make the container not ready (startup) or restart it (liveness). A restart count
   that grows while the verification runs is a failure.
3. mcp: an MCP session over SSE (initialize, notifications/initialized, tools/list) through the stack's admission.
   Behind the sign-in gateway (`entra-gateway`), where only a person or an allowed agent signs in, the check is
   the gateway's answer to an anonymous call instead: 401 naming its protected resource metadata, which it serves.

Only the standard library plus azure-identity (through azure_cloud/deployer_credential.py, the same OIDC sign-in as
the database-access provider): postgres-mcp 0.3.0 speaks MCP's SSE transport, simple enough to speak here.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from azure_cloud.clouds import PUBLIC, CloudError, resolve  # noqa: E402 (after the repository root is on the path)

# Microsoft.App stable API (azure-rest-api-specs specification/app/resource-manager/Microsoft.App/stable/2025-01-01:
# ContainerApps.json, ContainerAppsRevisions.json and the definitions they reference).
ARM_API_VERSION = "2025-01-01"
# Microsoft.Network (subnets and network security groups): azure-rest-api-specs specification/network/
# resource-manager/Microsoft.Network/stable/2024-05-01 (subnet.json, networkSecurityGroup.json).
NETWORK_API_VERSION = "2024-05-01"
HTTPS_PORT = 443
# components/mcp_app.py's container names.
MCP_CONTAINER = "postgres-mcp"
REFRESHER_CONTAINER = "token-refresher"
GATEWAY_CONTAINER = "gateway"
GATEWAY_ADMISSION = "entra-gateway"
# postgres-mcp's tool that agents call; its absence means another server answers at the URL.
EXPECTED_TOOL = "execute_sql"
MCP_PROTOCOL_VERSION = "2024-11-05"  # the SSE transport's protocol revision (mcp 1.6.0 in postgres-mcp 0.3.0)
DOCS = "docs/post-deploy-verification.md"


# --- verdicts ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """`ok`, `wait` (not there yet: ask again until the deadline), `fail` (no point waiting) or `skip`."""

    state: str
    message: str

    @property
    def final(self) -> bool:
        return self.state != "wait"


def _properties(resource: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (resource or {}).get("properties") or {}


def revision_verdict(app: Mapping[str, Any], revision: Mapping[str, Any] | None) -> Verdict:
    """The app's latest revision is its latest ready one, Provisioned, Healthy and Running.

    Property names and values: ContainerApp `latestRevisionName`, `latestReadyRevisionName`; Revision
    `provisioningState` (Provisioning, Provisioned, Failed, Deprovisioning, Deprovisioned), `provisioningError`,
    `healthState` (Healthy, Unhealthy, None), `runningState` (Running, Processing, Stopped, Degraded, Failed,
    Unknown) -- azure-rest-api-specs Microsoft.App stable/2025-01-01 (examples ContainerApps_Get.json,
    Revisions_Get.json)."""
    app_properties = _properties(app)
    latest = app_properties.get("latestRevisionName") or ""
    ready = app_properties.get("latestReadyRevisionName") or ""
    if not latest:
        return Verdict(
            "wait",
            f"the app reports no latestRevisionName yet (provisioningState "
            f"{app_properties.get('provisioningState')!r})",
        )
    properties = _properties(revision)
    seen = (
        f"revision {latest}: provisioningState {properties.get('provisioningState')!r}, healthState "
        f"{properties.get('healthState')!r}, runningState {properties.get('runningState')!r}, replicas "
        f"{properties.get('replicas')!r}"
    )
    if properties.get("provisioningState") == "Failed":
        error = properties.get("provisioningError") or "no provisioningError given"
        return Verdict("fail", f"{seen}; Azure could not provision it: {error}")
    if app_properties.get("provisioningState") == "Failed":
        return Verdict("fail", f"the app's provisioningState is 'Failed'; {seen}")
    if latest != ready:
        return Verdict(
            "wait",
            f"the latest revision {latest} is not ready: latestReadyRevisionName is {ready or 'empty'!r} "
            f"(the app still serves the older revision); {seen}",
        )
    # A revision at its maximum scale may report a Running* variant in later API versions: any Running is running.
    running = str(properties.get("runningState") or "").startswith("Running")
    if properties.get("healthState") == "Healthy" and running:
        return Verdict("ok", seen)
    return Verdict("wait", seen)


def replica_verdict(replicas: Mapping[str, Any], expected_containers: tuple[str, ...]) -> Verdict:
    """Every replica is Running and each expected container in it is ready, started and Running.

    Replica: `runningState` (Running, NotRunning, Unknown), `runningStateDetails`, `containers[]` with `name`,
    `ready`, `started`, `restartCount`, `runningState` (Running, Terminated, Waiting), `runningStateDetails` --
    azure-rest-api-specs Microsoft.App stable/2025-01-01, example Replicas_List.json."""
    items = list(replicas.get("value") or [])
    if not items:
        return Verdict("wait", "the revision has no replica yet (minReplicas is 1: one should start)")
    problems: list[str] = []
    seen: list[str] = []
    for replica in items:
        properties = _properties(replica)
        name = replica.get("name", "?")
        if properties.get("runningState") != "Running":
            problems.append(
                f"replica {name} is {properties.get('runningState')!r} ({properties.get('runningStateDetails') or '-'})"
            )
        containers = {container.get("name"): container for container in properties.get("containers") or []}
        for expected in expected_containers:
            container = containers.get(expected)
            if container is None:
                problems.append(f"replica {name} has no container {expected!r} (it has {sorted(containers)})")
                continue
            state = (
                f"{expected}: ready={container.get('ready')}, runningState={container.get('runningState')!r}, "
                f"restartCount={container.get('restartCount', 0)}"
            )
            seen.append(state)
            if not (container.get("ready") is True and container.get("runningState") == "Running"):
                details = container.get("runningStateDetails") or "no details"
                problems.append(f"replica {name}, {state} ({details})")
    if problems:
        return Verdict("wait", "; ".join(problems))
    return Verdict("ok", "; ".join(seen))


def restart_counts(replicas: Mapping[str, Any]) -> dict[str, int]:
    """`<replica>/<container>` -> restartCount, to compare before and after the MCP check."""
    counts: dict[str, int] = {}
    for replica in replicas.get("value") or []:
        for container in _properties(replica).get("containers") or []:
            counts[f"{replica.get('name')}/{container.get('name')}"] = int(container.get("restartCount") or 0)
    return counts


def restarts_verdict(before: Mapping[str, int], after: Mapping[str, int]) -> Verdict:
    grown = {key: (before[key], count) for key, count in after.items() if key in before and count > before[key]}
    if grown:
        listed = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in sorted(grown.items()))
        return Verdict(
            "fail",
            f"containers restarted while the verification ran: {listed}. Any restart takes the single replica out "
            "of rotation: read the container's console log (for the token-refresher, why its liveness probe failed) "
            "and the app's system log",
        )
    return Verdict("ok", "no container restarted while the verification ran")


@dataclass(frozen=True)
class Admission:
    """How the runner reaches the endpoint: `skip` (with the reason), `anonymous`, or `entra` (with the scope)."""

    kind: str
    reason: str
    scope: str = ""


def admission_plan(admission: str, entra_scope: str, app: Mapping[str, Any], runner_ip: str) -> Admission:
    """The stack's admission (`mcpAdmission`: `internal`, `entra`, `allow-list`, joined by `+`, or
    `anonymous-public`) against what the runner can do from the internet.

    The ingress's allow-list is read from the app itself (`configuration.ingress.ipSecurityRestrictions[]`:
    `ipAddressRange`, `action` Allow/Deny -- example ContainerApps_Get.json), not from configuration."""
    modes = set(admission.split("+")) if admission else set()
    if "internal" in modes:
        return Admission(
            "skip",
            "the environment is internal (reachable from its virtual network only): a GitHub-hosted runner cannot "
            "reach it. Run tools/verify_deployment.py from a machine in the network (a self-hosted runner) to "
            "check list_tools",
        )
    rules = ((_properties(app).get("configuration") or {}).get("ingress") or {}).get("ipSecurityRestrictions") or []
    allowed = [rule.get("ipAddressRange", "") for rule in rules if rule.get("action") == "Allow"]
    if allowed:
        if not runner_ip:
            return Admission("skip", "the ingress admits an allow-list and this runner's address is unknown")
        address = ipaddress.ip_address(runner_ip)
        inside = any(address in ipaddress.ip_network(cidr, strict=False) for cidr in allowed if cidr)
        if not inside:
            return Admission(
                "skip",
                f"the ingress admits only its allow-list ({', '.join(allowed)}) and this runner ({runner_ip}) is not "
                "in it: list_tools cannot be called from here. Verify from an admitted address, or give agents "
                "Entra sign-in (entraAuthClientId) so the pipeline can call with its own token",
            )
    if GATEWAY_ADMISSION in modes:
        return Admission(
            "gateway",
            "the sign-in gateway: an anonymous call must get 401 naming its protected resource metadata, which it "
            "serves",
        )
    if "entra" in modes:
        if not entra_scope:
            return Admission("skip", "Entra sign-in is on but the stack output mcpEntraScope is empty")
        return Admission("entra", "with the pipeline's own Entra token", entra_scope)
    return Admission("anonymous", "from this runner's address" if allowed else "without sign-in")


def _ports(rule: Mapping[str, Any]) -> list[str]:
    return [rule.get("destinationPortRange") or "", *(rule.get("destinationPortRanges") or [])]


def _sources(rule: Mapping[str, Any]) -> list[str]:
    return [rule.get("sourceAddressPrefix") or "", *(rule.get("sourceAddressPrefixes") or [])]


def _port_matches(port_range: str, port: int) -> bool:
    if port_range == "*":
        return True
    low, _, high = port_range.partition("-")
    return low.isdigit() and int(low) <= port <= int(high or low)


def _source_matches(prefix: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if prefix in ("*", "Internet"):
        return True
    try:
        return address in ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return False  # another service tag (VirtualNetwork, AzureLoadBalancer, ...): not a runner on the internet


def nsg_admits(security_group: Mapping[str, Any], runner_ip: str, port: int = HTTPS_PORT) -> tuple[bool, str]:
    """Whether the subnet's network security group lets the runner reach `port`, evaluated as Azure does: inbound
    rules by ascending priority, the first whose source, port and protocol match decides; then the default rules,
    of which only DenyAllInBound matches an internet address. (Rule properties: networkSecurityGroup.json,
    SecurityRulePropertiesFormat: `direction`, `access`, `priority`, `protocol`, `sourceAddressPrefix(es)`,
    `destinationPortRange(s)`.)"""
    address = ipaddress.ip_address(runner_ip)
    rules = [rule.get("properties") or {} for rule in _properties(security_group).get("securityRules") or []]
    inbound = sorted((rule for rule in rules if rule.get("direction") == "Inbound"), key=lambda rule: rule["priority"])
    for rule in inbound:
        if rule.get("protocol") not in ("Tcp", "*"):
            continue
        if any(_port_matches(ports, port) for ports in _ports(rule) if ports) and any(
            _source_matches(prefix, address) for prefix in _sources(rule) if prefix
        ):
            sources = ", ".join(prefix for prefix in _sources(rule) if prefix)
            return rule.get("access") == "Allow", f"rule priority {rule['priority']} ({rule.get('access')} {sources})"
    return False, "the default rule DenyAllInBound (no rule admits it)"


# --- MCP over SSE --------------------------------------------------------------------------------------------------


class McpCheckError(Exception):
    """A readable reason the MCP check failed; never contains the bearer token."""


def _sse_events(response: HTTPResponse) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from a text/event-stream (WHATWG HTML, "Server-sent events": lines end in CR LF, LF or CR;
    `:` starts a comment; a blank line dispatches; `data` lines join with LF; the event type defaults to message)."""
    event = ""
    data: list[str] = []
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


def _describe_http_error(error: urllib.error.HTTPError, what: str) -> str:
    challenge = error.headers.get("WWW-Authenticate", "") if error.headers else ""
    body = ""
    try:
        body = error.read(300).decode("utf-8", "replace").strip()
    except OSError:
        pass
    hint = {
        401: "the endpoint wants a sign-in the request did not satisfy (Entra sign-in: the token's audience, issuer "
        "or the allowed client applications)",
        403: "refused: the ingress's IP allow-list, or Entra sign-in's allowed client applications "
        "(entraAuthAllowedClientIds) do not admit the caller",
        404: "nothing at that path: is the URL the stack's mcpSseUrl, and is the app's ingress on?",
    }.get(error.code, "")
    parts = [f"{what}: HTTP {error.code} {error.reason}"]
    if challenge:
        parts.append(f"WWW-Authenticate: {challenge}")
    if body:
        parts.append(f"body: {body!r}")
    if hint:
        parts.append(hint)
    return "; ".join(parts)


def _session(
    sse_url: str, headers: Mapping[str, str], answers: queue.Queue[tuple[str, Any]], io_timeout: float
) -> None:
    """Runs in a thread: the whole exchange, each outcome put on `answers` as ("step", value) or ("error", text)."""
    try:
        request = urllib.request.Request(sse_url, headers={"Accept": "text/event-stream", **headers})
        try:
            stream = urllib.request.urlopen(request, timeout=io_timeout)
        except urllib.error.HTTPError as error:
            answers.put(("error", _describe_http_error(error, f"GET {sse_url}")))
            return
        with stream:
            content_type = stream.headers.get("Content-Type", "")
            if not content_type.startswith("text/event-stream"):
                answers.put(
                    ("error", f"GET {sse_url} answered {content_type!r}, not an SSE stream (text/event-stream)")
                )
                return
            events = _sse_events(stream)
            endpoint = ""
            for event, data in events:
                if event == "endpoint":
                    endpoint = urllib.parse.urljoin(sse_url, data.strip())
                    break
            if not endpoint:
                answers.put(("error", f"the SSE stream at {sse_url} ended before its `endpoint` event"))
                return
            answers.put(("endpoint", endpoint))

            def post(message: dict[str, Any]) -> None:
                body = json.dumps(message).encode()
                post_request = urllib.request.Request(
                    endpoint, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
                )
                try:
                    with urllib.request.urlopen(post_request, timeout=io_timeout) as answer:
                        answer.read()
                except urllib.error.HTTPError as error:
                    raise McpCheckError(
                        _describe_http_error(error, f"POST {message['method']} to {endpoint}")
                    ) from None

            def answer_to(request_id: int) -> dict[str, Any]:
                for event, data in events:
                    if event != "message":
                        continue
                    message = json.loads(data)
                    if message.get("id") == request_id:
                        if "error" in message:
                            raise McpCheckError(f"the server answered request {request_id} with {message['error']}")
                        return dict(message.get("result") or {})
                raise McpCheckError(f"the SSE stream ended before the answer to request {request_id}")

            post(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": MCP_PROTOCOL_VERSION,
                        "capabilities": {},
                        "clientInfo": {"name": "verify-deployment", "version": "1"},
                    },
                }
            )
            answers.put(("initialize", answer_to(1)))
            post({"jsonrpc": "2.0", "method": "notifications/initialized"})
            post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
            answers.put(("tools/list", answer_to(2)))
    except McpCheckError as error:
        answers.put(("error", str(error)))
    except (OSError, ValueError) as error:  # URLError, timeouts, resets, bad JSON
        answers.put(("error", f"{type(error).__name__}: {error}"))


def list_tools(sse_url: str, headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> list[str]:
    """The names of the server's tools, by one MCP session over SSE; McpCheckError when it takes longer than
    `timeout` seconds in all (a server that accepts and never answers included) or the server refuses."""
    answers: queue.Queue[tuple[str, Any]] = queue.Queue()
    # The sockets wait a little longer than the deadline, so that the deadline (here) is what reports a silent server;
    # the daemon thread ends with the process, or when its socket times out.
    worker = threading.Thread(target=_session, args=(sse_url, dict(headers or {}), answers, timeout + 5), daemon=True)
    deadline = time.monotonic() + timeout
    worker.start()
    reached = "connecting"
    while True:
        remaining = deadline - time.monotonic()
        try:
            step, value = answers.get(timeout=max(0.0, remaining))
        except queue.Empty:
            waiting_for = {
                "connecting": "the SSE stream's `endpoint` event",
                "endpoint": "the answer to initialize",
                "initialize": "the answer to tools/list",
            }[reached]
            # The daemon thread dies with the process; its socket times out on its own.
            raise McpCheckError(f"no answer from {sse_url} within {timeout:.0f}s: waited for {waiting_for}") from None
        if step == "error":
            raise McpCheckError(str(value))
        reached = step
        if step == "tools/list":
            return [str(tool.get("name")) for tool in value.get("tools") or []]


def _resource_metadata_url(challenge: str) -> str:
    """The `resource_metadata` parameter of a `WWW-Authenticate: Bearer ...` challenge (RFC 9728, section 5.1)."""
    for part in challenge.split(","):
        name, _, value = part.strip().removeprefix("Bearer").strip().partition("=")
        if name.strip() == "resource_metadata":
            return value.strip().strip('"')
    return ""


def gateway_verdict(mcp_url: str, timeout: float = 30.0) -> Verdict:
    """What the pipeline can prove about the sign-in gateway without a person to sign in: the ingress reaches the
    gateway at `mcp_url`, which refuses an anonymous MCP `initialize` as the MCP authorization specification says
    (401 with `WWW-Authenticate: Bearer resource_metadata="..."`), and the metadata it names is served and names
    this endpoint as its `resource`, with an authorization server (RFC 9728, section 3.2)."""
    if not mcp_url:
        return Verdict("fail", "no --mcp-url: pass the stack output mcpUrl")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "verify-deployment", "version": "1"},
        },
    }
    request = urllib.request.Request(
        mcp_url,
        data=json.dumps(initialize).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Verdict(
                "fail", f"POST {mcp_url} without a token answered {response.status}: sign-in is not enforced"
            )
    except urllib.error.HTTPError as error:
        if error.code != 401:
            return Verdict("fail", _describe_http_error(error, f"POST {mcp_url} without a token"))
        challenge = error.headers.get("WWW-Authenticate", "")
    except (urllib.error.URLError, OSError) as error:
        return Verdict("fail", f"POST {mcp_url}: {error}")
    metadata_url = _resource_metadata_url(challenge)
    if not metadata_url:
        return Verdict(
            "fail", f"POST {mcp_url} answered 401 without resource_metadata (WWW-Authenticate: {challenge!r})"
        )
    try:
        with urllib.request.urlopen(metadata_url, timeout=timeout) as response:
            metadata = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        return Verdict("fail", f"GET {metadata_url} (the gateway's resource metadata): {error}")
    resource = str(metadata.get("resource") or "") if isinstance(metadata, dict) else ""
    servers = metadata.get("authorization_servers") if isinstance(metadata, dict) else None
    if resource.rstrip("/") != mcp_url.rstrip("/") or not servers:
        return Verdict(
            "fail",
            f"GET {metadata_url} names resource {resource!r} (expected {mcp_url}) and authorization servers "
            f"{servers!r}: is GATEWAY_PUBLIC_URL the app's URL?",
        )
    return Verdict("ok", f"anonymous call refused with 401; resource metadata at {metadata_url}, servers {servers}")


def mcp_verdict(tools: list[str]) -> Verdict:
    if EXPECTED_TOOL not in tools:
        return Verdict("fail", f"tools/list answered {tools}, without {EXPECTED_TOOL!r}: is this postgres-mcp?")
    return Verdict("ok", f"tools/list answered {len(tools)} tools ({', '.join(sorted(tools))})")


# --- ARM -----------------------------------------------------------------------------------------------------------


@dataclass
class Arm:
    """GETs on Azure Resource Manager with the deployer's token (one token for the whole run: it lasts an hour)."""

    token: Callable[[], str]
    endpoint: str = PUBLIC.resource_manager
    _cached: str = field(default="", repr=False)

    def get(self, resource_id: str, child: str = "", api_version: str = ARM_API_VERSION) -> dict[str, Any]:
        if not self._cached:
            self._cached = self.token()
        url = f"{self.endpoint}{resource_id}{child}?api-version={api_version}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._cached}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return dict(json.loads(answer.read()))
        except urllib.error.HTTPError as error:
            body = error.read(500).decode("utf-8", "replace")
            raise RuntimeError(f"GET {resource_id}{child}: HTTP {error.code} {body}") from None


def arm_endpoint(environ: Mapping[str, str]) -> str:
    """ARM's endpoint in the cloud the job's ARM_ENVIRONMENT (or AZURE_ENVIRONMENT) names, as azure-native
    deployed to it (azure_cloud/clouds.py)."""
    try:
        return resolve("", environ).resource_manager
    except CloudError as error:
        raise SystemExit(str(error)) from None


def entra_token(scope: str) -> str:
    from azure_cloud.deployer_credential import get_token

    return get_token(scope)


# --- the run -------------------------------------------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    annotate: bool = False

    def add(self, check: str, verdict: Verdict) -> None:
        label = {"ok": "ok", "skip": "SKIPPED", "fail": "FAILED", "wait": "FAILED"}[verdict.state]
        line = f"{label} [{check}] {verdict.message}"
        self.lines.append(line)
        print(line, flush=True)
        if verdict.state in ("fail", "wait"):
            self.failures.append(line)
            if self.annotate:  # a GitHub Actions error annotation: shown on the run's summary page
                print(workflow_command("error", f"post-deploy check '{check}' failed", verdict.message), flush=True)
        elif verdict.state == "skip" and self.annotate:
            print(workflow_command("warning", f"post-deploy check '{check}' skipped", verdict.message), flush=True)


def workflow_command(kind: str, title: str, message: str) -> str:
    """A GitHub Actions annotation, its data escaped as the runner expects (actions/toolkit core/src/command.ts:
    `%` -> %25, CR -> %0D, LF -> %0A; in properties also `:` -> %3A and `,` -> %2C)."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    return f"::{kind} title={data(title).replace(':', '%3A').replace(',', '%2C')}::{data(message)}"


def wait_for(poll: Callable[[], Verdict], deadline: float, interval: float) -> Verdict:
    """Polls until the verdict is final or the deadline passes; the last verdict (a `wait` means timed out)."""
    while True:
        verdict = poll()
        if verdict.final or time.monotonic() + interval > deadline:
            return verdict
        time.sleep(interval)


def verify(arguments: argparse.Namespace, arm: Arm, report: Report) -> None:
    deadline = time.monotonic() + arguments.ready_timeout
    app: dict[str, Any] = {}
    revision_name = ""

    def revision() -> Verdict:
        nonlocal app, revision_name
        app = arm.get(arguments.container_app_id)
        revision_name = str(_properties(app).get("latestRevisionName") or "")
        found = arm.get(arguments.container_app_id, f"/revisions/{revision_name}") if revision_name else None
        return revision_verdict(app, found)

    verdict = wait_for(revision, deadline, arguments.poll_interval)
    if verdict.state == "wait":
        verdict = Verdict("wait", f"not healthy after {arguments.ready_timeout:.0f}s: {verdict.message}")
    report.add("revision", verdict)
    if verdict.state != "ok":
        return
    token_mode = arguments.auth_mode == "token"
    containers = (MCP_CONTAINER, REFRESHER_CONTAINER) if token_mode else (MCP_CONTAINER,)
    if GATEWAY_ADMISSION in arguments.admission.split("+"):
        containers = (*containers, GATEWAY_CONTAINER)
    replicas_path = f"/revisions/{revision_name}/replicas"
    replicas: dict[str, Any] = {}

    def replica_state() -> Verdict:
        nonlocal replicas
        replicas = arm.get(arguments.container_app_id, replicas_path)
        return replica_verdict(replicas, containers)

    verdict = wait_for(replica_state, deadline, arguments.poll_interval)
    check = "replicas (postgres-mcp and the token refresher)" if token_mode else "replicas"
    if verdict.state == "wait":
        verdict = Verdict("wait", f"not ready after {arguments.ready_timeout:.0f}s: {verdict.message}")
    report.add(check, verdict)
    before = restart_counts(replicas)

    plan = admission_plan(arguments.admission, arguments.entra_scope, app, arguments.runner_ip)
    if plan.kind != "skip" and arguments.runner_ip:
        plan = network_plan(arm, app, arguments.runner_ip, plan)
    if plan.kind == "skip":
        report.add("mcp list_tools", Verdict("skip", plan.reason))
    elif plan.kind == "gateway":
        report.add("mcp sign-in (gateway)", gateway_verdict(getattr(arguments, "mcp_url", ""), arguments.mcp_timeout))
    else:
        headers = {}
        if plan.kind == "entra":
            headers["Authorization"] = f"Bearer {entra_token(plan.scope)}"
        try:
            tools = list_tools(arguments.sse_url, headers, timeout=arguments.mcp_timeout)
            verdict = mcp_verdict(tools)
        except McpCheckError as error:
            verdict = Verdict("fail", f"{plan.reason}: {error}")
        except Exception as error:  # noqa: BLE001 (a sign-in failure: DeployerCredentialError and azure-identity's)
            verdict = Verdict("fail", f"no token for {plan.scope}: {error}")
        report.add(f"mcp list_tools ({plan.kind})", verdict)

    if token_mode and before:
        report.add(
            "refresher restarts",
            restarts_verdict(before, restart_counts(arm.get(arguments.container_app_id, replicas_path))),
        )


def network_plan(arm: Arm, app: Mapping[str, Any], runner_ip: str, plan: Admission) -> Admission:
    """An environment in a virtual network of the stack's own has a network security group on its subnet, which may
    admit only the allow-list: then the runner cannot reach the endpoint, and the check says so instead of timing
    out. (ContainerApp `managedEnvironmentId`; ManagedEnvironment `vnetConfiguration.infrastructureSubnetId`;
    Subnet `networkSecurityGroup.id`.)"""
    environment_id = _properties(app).get("managedEnvironmentId") or _properties(app).get("environmentId")
    if not environment_id:
        return plan
    subnet_id = (_properties(arm.get(environment_id)).get("vnetConfiguration") or {}).get("infrastructureSubnetId")
    if not subnet_id:
        return plan
    group_id = (_properties(arm.get(subnet_id, api_version=NETWORK_API_VERSION)).get("networkSecurityGroup") or {}).get(
        "id"
    )
    if not group_id:
        return plan
    admitted, deciding = nsg_admits(arm.get(group_id, api_version=NETWORK_API_VERSION), runner_ip)
    if admitted:
        return plan
    return Admission(
        "skip",
        f"the apps subnet's network security group {group_id.rsplit('/', 1)[-1]} does not let this runner "
        f"({runner_ip}) reach port {HTTPS_PORT}: {deciding}. Verify from an admitted address",
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container-app-id", required=True, help="stack output mcpContainerAppId")
    parser.add_argument("--sse-url", required=True, help="stack output mcpSseUrl (empty behind the sign-in gateway)")
    parser.add_argument("--mcp-url", default="", help="stack output mcpUrl (the sign-in gateway's /mcp)")
    parser.add_argument("--auth-mode", required=True, choices=("token", "password"), help="stack output authMode")
    parser.add_argument("--admission", required=True, help="stack output mcpAdmission")
    parser.add_argument("--entra-scope", default="", help="stack output mcpEntraScope")
    parser.add_argument("--runner-ip", default="", help="this runner's public address")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for a ready revision")
    parser.add_argument("--poll-interval", type=float, default=15.0)
    parser.add_argument("--mcp-timeout", type=float, default=60.0, help="seconds for the whole MCP exchange")
    arguments = parser.parse_args(argv)
    if not arguments.container_app_id.startswith("/subscriptions/"):
        parser.error(f"--container-app-id {arguments.container_app_id!r} is not an ARM resource ID")
    return arguments


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    arguments = parse(argv)
    endpoint = arm_endpoint(environ)
    arm = Arm(lambda: entra_token(f"{endpoint}/.default"), endpoint)
    report = Report(annotate=environ.get("GITHUB_ACTIONS") == "true")
    try:
        verify(arguments, arm, report)
    except Exception as error:  # noqa: BLE001 (ARM or sign-in: reported as a failed check, never a traceback)
        report.add("azure", Verdict("fail", str(error)))
    if report.failures:
        print(f"\nThe deployment did not verify ({len(report.failures)} failed check(s)); see {DOCS}.", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
