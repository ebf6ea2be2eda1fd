"""postgres-mcp in Azure Container Apps, in the environment it is given by ID.

The environment is created by components/environment.py or adopted (existingEnvironmentId);
the app takes its ID, static IP and workload profile alike (Azure Verified Modules'
`environmentResourceId` pattern).

Token mode: DATABASE_URI carries no password and PGPASSFILE points into an EmptyDir
volume that the token-refresher sidecar keeps filled with a fresh Entra token; libpq
reads that file on every new connection, so postgres-mcp runs unchanged.
Password mode: DATABASE_URI is a Container Apps secret that references Key Vault.

Sign-in (`signIn`): with `gateway` a second container, the sign-in gateway (gateway/, FastMCP's OAuth
proxy), takes the ingress on GATEWAY_PORT and relays Streamable HTTP calls to postgres-mcp, which then
listens on 127.0.0.1 only; with `easyAuth` Container Apps authentication stands in front of postgres-mcp's
SSE endpoint (an authConfig); with `none` nothing signs callers in.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pulumi
from pulumi_azure_native import app

import gateway
from azure_cloud.clouds import PUBLIC, Cloud
from components.database import POSTGRES_PORT
from sidecar.shipping import content_digest, shipped_source
from sidecar.token_refresher import DEFAULT_STALL_GRACE_SECONDS, DEFAULT_TIMEOUT_SECONDS

MCP_PORT = 8000
MCP_CONTAINER = "postgres-mcp"
REFRESHER_CONTAINER = "token-refresher"
DATABASE_URI_SECRET = "database-uri"  # noqa: S105 (a secret name, not a secret)
PGPASS_VOLUME = "pgpass"
PGPASS_DIRECTORY = "/var/run/pgpass"
PGPASS_FILE = f"{PGPASS_DIRECTORY}/pgpass"
REFRESHER_SOURCE = Path(__file__).resolve().parent.parent / "sidecar" / "token_refresher.py"
# Which program a revision runs (sidecar/shipping.py). Not TOKEN_...: the policy pack takes a
# name with TOKEN in it for a secret, and a digest is none.
REFRESHER_DIGEST_VARIABLE = "REFRESHER_DIGEST"
REFRESHER_HEALTH_PORT = 8081  # the replica's containers share one network namespace: not MCP_PORT
REFRESHER_HEALTH_PATH = "/healthz"  # the whole verdict: the startup probe's
REFRESHER_LIVENESS_PATH = "/livez"  # fails only for a stalled refresh loop: the liveness probe's

# The sign-in gateway's contract, from the gateway's own package (gateway/__init__.py imports only the standard
# library, so this 3.11 infrastructure code imports it without fastmcp).
GATEWAY_COMMAND: tuple[str, ...] = gateway.COMMAND
GATEWAY_PORT = gateway.PORT
GATEWAY_HEALTH_PATH = gateway.HEALTH_PATH  # 200 only while the shared backend session answers (503 otherwise)
GATEWAY_LIVENESS_PATH = gateway.LIVENESS_PATH  # 200 while the event loop runs
GATEWAY_MCP_PATH = gateway.MCP_PATH
GATEWAY_BACKEND_URL = gateway.DEFAULT_BACKEND_URL
GATEWAY_CONTAINER = "gateway"
LOOPBACK = "127.0.0.1"
# The Key Vault secrets the gateway references (names of the vault's secrets and of the app's secrets alike).
GATEWAY_SIGNING_KEY_SECRET = "gateway-signing-key"  # noqa: S105 (a secret name, not a secret)
GATEWAY_STORE_KEY_SECRET = "gateway-store-key"  # noqa: S105 (a secret name, not a secret)
ENTRA_CLIENT_SECRET_SECRET = "entra-client-secret"  # noqa: S105 (a secret name, not a secret)


@dataclass(frozen=True)
class Resources:
    cpu: float  # vCPU
    memory_gib: float

    @property
    def memory(self) -> str:
        return f"{self.memory_gib:g}Gi"

    def __sub__(self, other: Resources) -> Resources:
        # Container Apps takes at most two decimals per container.
        return Resources(round(self.cpu - other.cpu, 2), round(self.memory_gib - other.memory_gib, 2))


# What the app is billed for, in both auth modes. In the Consumption plan and profile each
# container may ask for any amount with two decimals, but the total of all containers must be one
# of the pairs 0.25 vCPU / 0.5 GiB, 0.5 / 1.0, ... (learn.microsoft.com/azure/container-apps/
# containers#allocations). Token mode carves the refresher out of the same total, so it costs
# what password mode costs.
APP_RESOURCES = Resources(cpu=0.5, memory_gib=1.0)
# The refresher idles: its peak RSS with the health endpoint answering is 26 MiB under Python 3.12
# (the image's) and 24 MiB under 3.11 (`python -m drill.benchmark`), so 0.1 GiB leaves about 4x;
# sidecar/tests/test_token_refresher.py keeps the peak under half of it.
REFRESHER_RESOURCES = Resources(cpu=0.05, memory_gib=0.1)


# The gateway idles at about 100 MiB RSS (measured on the gateway branch for issue 18, fastmcp 4.2.3 under
# Python 3.12) and relays calls without computing much: 0.25 GiB leaves 2.5x for sign-in bursts and the token
# cache, 0.15 vCPU keeps its added latency per call in the measured ~10 ms. It is carved out of the same
# total as the refresher, so a gateway stack costs what a stack without it costs, in both auth modes.
GATEWAY_RESOURCES = Resources(cpu=0.15, memory_gib=0.25)


def mcp_resources(token_mode: bool, gateway: bool = False) -> Resources:
    share = APP_RESOURCES - REFRESHER_RESOURCES if token_mode else APP_RESOURCES
    return share - GATEWAY_RESOURCES if gateway else share


@dataclass(frozen=True)
class ProbeTiming:
    period_seconds: int
    failure_threshold: int  # the REST spec allows 1 to 10
    timeout_seconds: int = 3
    initial_delay_seconds: int = 1

    @property
    def window_seconds(self) -> int:
        """At most this long after the endpoint turns unhealthy, the platform acts."""
        return self.period_seconds * self.failure_threshold


# The sidecar's probes. Readiness is per replica: the replica is ready only when every container
# is (Kubernetes pod readiness, which Container Apps probes follow; Microsoft Learn, "Health probes
# in Azure Container Apps"), and a container that restarts is not ready until it has started again.
# So any refresher restart, a liveness kill included, takes the replica out of the ingress's
# rotation until the new process passes its startup probe; with one replica, the MCP endpoint is
# unreachable meanwhile (postgres-mcp's own process, pool and sessions are not restarted). Hence:
# - no readiness probe on the sidecar: a refresher that is retrying must not take postgres-mcp out;
# - liveness on /livez, which fails only when the refresh loop is stalled (past its own deadline):
#   the one failure a restart cures. An aging token during an identity endpoint outage is logged
#   and alerted on, never a kill: a new process would meet the same outage, out of rotation;
# - startup on /healthz, which answers 200 at once when the new process finds its predecessor's
#   still valid token (the restart case), and after the first fetch otherwise. Every 5 s from 1 s
#   after the start: a restart with a valid file is out of rotation ~1 s plus the platform's own
#   restart time, a fresh start up to one period longer than its fetch (docs/token-refresher.md,
#   "Health endpoint and probes", measured by `python -m drill.benchmark`). 10 failures: 50 s to
#   write a first token.
REFRESHER_STARTUP = ProbeTiming(period_seconds=5, failure_threshold=10)
REFRESHER_LIVENESS = ProbeTiming(period_seconds=10, failure_threshold=3)


def refresher_min_validity(margin_seconds: int) -> float:
    """The token life left below which /healthz reports unhealthy (logged, alerted on): half the margin.

    The refresher starts fetching `margin` before expiry; after half of it spent retrying (backoff
    capped at 60 s: about ten attempts at the default 900 s) the failures are worth a person's
    attention, with half the margin left to act. No restart: liveness does not look at the token."""
    return margin_seconds / 2


def refresher_stall_seconds() -> float:
    """At most this long after an attempt starts, a loop that made no progress reports a stall:
    the request's whole deadline plus the grace (the refresher's defaults, which the stack keeps)."""
    return DEFAULT_TIMEOUT_SECONDS + DEFAULT_STALL_GRACE_SECONDS


def restart_lead_seconds(margin_seconds: int) -> float:
    """Worst case: how long before the last good token expires a refresher whose loop stalls at its
    first refresh attempt (`margin` before expiry) is restarted: 830 s at the default 900 s."""
    return margin_seconds - refresher_stall_seconds() - REFRESHER_LIVENESS.window_seconds


def http_probes(port: int, *probes: tuple[str, str, ProbeTiming]) -> list[app.ContainerAppProbeArgs]:
    """HTTP GET probes on one port: (type, path, timing) each."""
    return [
        app.ContainerAppProbeArgs(
            type=kind,
            http_get=app.ContainerAppProbeHttpGetArgs(path=path, port=port),
            period_seconds=timing.period_seconds,
            failure_threshold=timing.failure_threshold,
            timeout_seconds=timing.timeout_seconds,
            initial_delay_seconds=timing.initial_delay_seconds,
        )
        for kind, path, timing in probes
    ]


def refresher_probes() -> list[app.ContainerAppProbeArgs]:
    return http_probes(
        REFRESHER_HEALTH_PORT,
        ("Startup", REFRESHER_HEALTH_PATH, REFRESHER_STARTUP),
        ("Liveness", REFRESHER_LIVENESS_PATH, REFRESHER_LIVENESS),
    )


def refresher_source() -> str:
    """The sidecar's program as shipped: sidecar/token_refresher.py without comments or docstrings."""
    return shipped_source(REFRESHER_SOURCE)


def refresher_digest() -> str:
    """The short content digest of what `refresher_source` ships."""
    return content_digest(refresher_source())


# Verified TLS: the server's certificate must chain to a trusted root and name the host, so that
# neither the app's token nor its password can be handed to an impostor (`require` checks nothing).
# `sslrootcert=system` (libpq 16+; the image's psycopg-binary 3.2.6 bundles libpq 17) trusts
# OpenSSL's default store, and the wheel's own OpenSSL looks for it in its build directory
# (OPENSSLDIR "/host/tmp/libpq.build/ssl"), not in Debian's: SYSTEM_TRUST_STORE points it there.
TLS_PARAMETERS = "sslmode=verify-full&sslrootcert=system"
SYSTEM_TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's ca-certificates, in python:3.12-slim


def passwordless_database_uri(role: str, host: str, database: str, port: int = POSTGRES_PORT) -> str:
    """The URI postgres-mcp gets in token mode: libpq takes the password from PGPASSFILE."""
    return (
        f"postgresql://{urllib.parse.quote(role, safe='')}@{host}:{port}/"
        f"{urllib.parse.quote(database, safe='')}?{TLS_PARAMETERS}"
    )


def password_database_uri(role: str, password: str, host: str, database: str, port: int = POSTGRES_PORT) -> str:
    return (
        f"postgresql://{urllib.parse.quote(role, safe='')}:{urllib.parse.quote(password, safe='')}"
        f"@{host}:{port}/{urllib.parse.quote(database, safe='')}?{TLS_PARAMETERS}"
    )


def secret_password_database_uri(
    role: str, password: pulumi.Input[str], host: pulumi.Input[str], database: pulumi.Input[str]
) -> pulumi.Output[str]:
    """The password-mode DATABASE_URI, as a secret: the value of the Key Vault secret the app references."""
    plain: pulumi.Output[str] = pulumi.Output.all(password, host, database).apply(
        lambda values: password_database_uri(role, str(values[0]), str(values[1]), str(values[2]))
    )
    return pulumi.Output.secret(plain)


def mcp_arguments(access_mode: str, host: str = "0.0.0.0") -> list[str]:
    # The image's entrypoint runs `postgres-mcp <args>`; host and port are explicit so that nothing depends on
    # the entrypoint's own rewriting of the arguments. Behind the gateway the host is 127.0.0.1: the image's
    # docker-entrypoint.sh (crystaldba/postgres-mcp, v0.3.0) appends `--sse-host=0.0.0.0` only when no argument
    # starts with `--sse-host` ("Add --sse-host if needed": has_sse && !has_sse_host), so with ours present it
    # adds nothing, and ours is the only --sse-host postgres-mcp's argparse sees. The loopback address is
    # reachable from the replica's other containers (they share one network namespace) and from nothing else:
    # not the ingress, not the environment's other apps.
    return ["--transport=sse", f"--sse-host={host}", f"--sse-port={MCP_PORT}", f"--access-mode={access_mode}"]


def refresher_command(margin_seconds: int, health_port: int = REFRESHER_HEALTH_PORT) -> list[str]:
    return [
        "python",
        "-c",
        refresher_source(),
        f"--margin-seconds={margin_seconds}",
        f"--health-port={health_port}",
        f"--health-min-validity-seconds={refresher_min_validity(margin_seconds):g}",
    ]


@dataclass(frozen=True)
class Admission:
    """Who may reach the MCP endpoint: postgres-mcp itself authenticates nobody. (Whether the VNet only may reach
    it is the environment's kind: components/environment.py, `internal`.)"""

    allowed_cidrs: tuple[str, ...] = ()
    entra_client_id: str = ""
    allowed_client_ids: tuple[str, ...] = ()
    tenant_id: pulumi.Input[str] = ""
    ci_runner_ip: str = ""
    """The deploy pipeline's runner (ciRunnerIp), admitted through an allow-list for the run's own verification
    (tools/verify_deployment.py) and removed with the database's runner rule after it."""


CI_RUNNER_RULE = "ci-runner"


def ip_restrictions(admission: Admission) -> list[tuple[str, str, str]]:
    """(name, range, description) of the ingress's Allow rules. An empty list leaves the ingress open (Entra sign-in
    or anonymous), so the runner is added only to a non-empty allow-list: alone, it would shut everyone else out."""
    rules = [(f"client-{index}", cidr, "allowedClientCidrs") for index, cidr in enumerate(admission.allowed_cidrs)]
    if rules and admission.ci_runner_ip:
        rules.append((CI_RUNNER_RULE, f"{admission.ci_runner_ip}/32", "ciRunnerIp: the deploy run's verification"))
    return rules


def entra_audiences(client_id: str) -> list[str]:
    return [f"api://{client_id}", client_id]


def entra_scope(client_id: str) -> str:
    """What a client asks Entra for to call the endpoint (client credentials or a user token)."""
    return f"api://{client_id}/.default" if client_id else ""


def mcp_client_configuration(server_name: str, url: str, entra_client_id: str = "", sign_in: str = "") -> str:
    """The `mcpServers` entry an MCP client (Cursor, VS Code, agents; Claude Desktop via mcp-remote) takes: SSE to
    postgres-mcp, or Streamable HTTP (`type: http`) to the gateway, where the client signs in by itself."""
    entry: dict[str, Any] = {"type": "http" if sign_in == "gateway" else "sse", "url": url}
    if entra_client_id and sign_in != "gateway":
        # Easy Auth: the client sends a token for entra_scope(); ${MCP_ENTRA_TOKEN} is filled in by the user or agent.
        entry["headers"] = {"Authorization": "Bearer ${MCP_ENTRA_TOKEN}"}
    return json.dumps({"mcpServers": {server_name: entry}}, indent=2)


@dataclass(frozen=True)
class Gateway:
    """What the sign-in gateway container needs (signIn: gateway); its environment is the gateway's contract
    (gateway/config.py on the gateway branch)."""

    image: pulumi.Input[str]
    """The gateway's image, by digest (gatewayImage, or the stack's registry and gatewayImageDigest)."""
    public_url: pulumi.Input[str]
    """`https://<app fqdn>`, no trailing slash: known before the app exists (see `public_url`)."""
    client_id: pulumi.Input[str]
    """The app registration's client ID (created or adopted)."""
    tenant_id: pulumi.Input[str]
    signing_key_secret_url: pulumi.Input[str]
    store_key_secret_url: pulumi.Input[str]
    store_endpoint: pulumi.Input[str]
    store_table: pulumi.Input[str]
    credential: str = "federated"
    client_secret_url: pulumi.Input[str] | None = None
    """With credential `secret`: the Key Vault URL of the client secret."""
    allowed_agent_client_ids: tuple[str, ...] = ()
    resources: Resources = GATEWAY_RESOURCES
    registry: app.RegistryCredentialsArgs | None = None
    """Where the image is pulled from with the app's identity (the stack's registry, or the Azure Container Registry
    of a prebuilt image); None for a prebuilt image elsewhere, pulled anonymously."""


def public_url(app_name: str, default_domain: pulumi.Input[str]) -> pulumi.Output[str]:
    """The app's public URL before the app exists: an app with external ingress is served at
    `<app name>.<environment default domain>` (Microsoft Learn, "Ingress in Azure Container Apps", Domain names:
    `<APP_NAME>.<UNIQUE_IDENTIFIER>.<REGION_NAME>.azurecontainerapps.io`, the environment's defaultDomain being
    everything after the app's name). The app registration's redirect URI and GATEWAY_PUBLIC_URL need it first."""
    return pulumi.Output.from_input(default_domain).apply(lambda domain: f"https://{app_name}.{domain}")


# The gateway's probes, on its own routes (Microsoft Learn, "Health probes in Azure Container Apps": HTTP probes
# succeed on a status from 200 to 399; one probe of each type per container; no exec probes):
# - startup and liveness on /livez (the event loop runs): restarting the gateway cures a hung gateway, never a
#   postgres-mcp that is down, which the gateway reconnects to by itself;
# - readiness on /healthz (503 until the shared backend session answers): a replica whose postgres-mcp does not
#   answer leaves the ingress's rotation and comes back when it does. It covers postgres-mcp's readiness too:
#   postgres-mcp listens on 127.0.0.1 only, and the platform probes a replica's address, not its loopback, so
#   postgres-mcp gets no probe of its own behind the gateway (a crashed process is still restarted; its startup
#   window, 150 s, is the gateway's readiness wait). Where the platform adds its default TCP probes on the ingress
#   port to a container that declares none ("Health probes", Default configuration), they reach the gateway's
#   port in the replica's shared network namespace, which is what they would check anyway.
# Startup: 50 s for the interpreter and fastmcp's imports under the container's 0.15 vCPU quota (not measured in
# Azure; a few seconds at full CPU here), checked every 5 s.
GATEWAY_STARTUP = ProbeTiming(period_seconds=5, failure_threshold=10)
GATEWAY_LIVENESS = ProbeTiming(period_seconds=10, failure_threshold=3)
GATEWAY_READINESS = ProbeTiming(period_seconds=5, failure_threshold=2)


def gateway_probes() -> list[app.ContainerAppProbeArgs]:
    return http_probes(
        GATEWAY_PORT,
        ("Startup", GATEWAY_LIVENESS_PATH, GATEWAY_STARTUP),
        ("Liveness", GATEWAY_LIVENESS_PATH, GATEWAY_LIVENESS),
        ("Readiness", GATEWAY_HEALTH_PATH, GATEWAY_READINESS),
    )


def gateway_container(
    gateway: Gateway, identity_id: pulumi.Input[str], identity_client_id: pulumi.Input[str], cloud: Cloud
) -> tuple[app.ContainerArgs, list[app.SecretArgs]]:
    """The gateway's container and the Key Vault references it reads (versionless: Container Apps re-reads a
    rotated secret). Every secret reaches it as a secretRef, never as a value."""
    secrets = [
        app.SecretArgs(
            name=GATEWAY_SIGNING_KEY_SECRET, key_vault_url=gateway.signing_key_secret_url, identity=identity_id
        ),
        app.SecretArgs(name=GATEWAY_STORE_KEY_SECRET, key_vault_url=gateway.store_key_secret_url, identity=identity_id),
    ]
    env = [
        app.EnvironmentVarArgs(name="GATEWAY_PORT", value=str(GATEWAY_PORT)),
        app.EnvironmentVarArgs(name="GATEWAY_PUBLIC_URL", value=gateway.public_url),
        app.EnvironmentVarArgs(name="GATEWAY_BACKEND_URL", value=GATEWAY_BACKEND_URL),
        app.EnvironmentVarArgs(name="ENTRA_TENANT_ID", value=gateway.tenant_id),
        app.EnvironmentVarArgs(name="ENTRA_CLIENT_ID", value=gateway.client_id),
        # The cloud's authority host: login.microsoftonline.com, .us, or login.chinacloudapi.cn.
        app.EnvironmentVarArgs(name="ENTRA_AUTHORITY_HOST", value=cloud.authority_host),
        # The `iss` of the tenant's v2 tokens, which the gateway verifies: the authority's host except in China
        # (login.partner.microsoftonline.cn; azure_cloud/clouds.py `v2_issuer_host`).
        app.EnvironmentVarArgs(
            name="ENTRA_TOKEN_ISSUER", value=pulumi.Output.from_input(gateway.tenant_id).apply(cloud.entra_v2_issuer)
        ),
        app.EnvironmentVarArgs(name="ENTRA_CREDENTIAL", value=gateway.credential),
        app.EnvironmentVarArgs(name="AZURE_CLIENT_ID", value=identity_client_id),
        app.EnvironmentVarArgs(name="ENTRA_ALLOWED_AGENT_CLIENT_IDS", value=",".join(gateway.allowed_agent_client_ids)),
        app.EnvironmentVarArgs(name="GATEWAY_SIGNING_KEY", secret_ref=GATEWAY_SIGNING_KEY_SECRET),
        app.EnvironmentVarArgs(name="GATEWAY_STORE_KEY", secret_ref=GATEWAY_STORE_KEY_SECRET),
        app.EnvironmentVarArgs(name="GATEWAY_STORE_ENDPOINT", value=gateway.store_endpoint),
        app.EnvironmentVarArgs(name="GATEWAY_STORE_TABLE", value=gateway.store_table),
    ]
    if gateway.credential == "secret":
        if gateway.client_secret_url is None:
            raise ValueError("gatewayCredential 'secret' needs the client secret's Key Vault URL")
        secrets.append(
            app.SecretArgs(
                name=ENTRA_CLIENT_SECRET_SECRET, key_vault_url=gateway.client_secret_url, identity=identity_id
            )
        )
        env.append(app.EnvironmentVarArgs(name="ENTRA_CLIENT_SECRET", secret_ref=ENTRA_CLIENT_SECRET_SECRET))
    else:
        # The federated credential's assertion comes from the managed identity endpoint for the cloud's
        # token exchange audience, the one the app registration's federated credential names (azure_cloud/clouds.py).
        env.append(app.EnvironmentVarArgs(name="ENTRA_FEDERATION_AUDIENCE", value=cloud.federation_audience))
    container = app.ContainerArgs(
        name=GATEWAY_CONTAINER,
        image=gateway.image,
        command=list(GATEWAY_COMMAND),
        env=env,
        resources=app.ContainerResourcesArgs(cpu=gateway.resources.cpu, memory=gateway.resources.memory),
        probes=gateway_probes(),
    )
    return container, secrets


def mcp_url(fqdn: str, sign_in: str) -> str:
    """The URL clients call: the gateway's Streamable HTTP endpoint, or postgres-mcp's SSE endpoint."""
    return f"https://{fqdn}{GATEWAY_MCP_PATH}" if sign_in == "gateway" else f"https://{fqdn}/sse"


class McpAppArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    base_name: str
    auth_mode: str
    image: str
    access_mode: str
    token_refresh_margin_seconds: int
    environment_id: pulumi.Input[str]
    """The Container Apps environment, created (components/environment.py) or adopted."""
    environment_static_ip: pulumi.Input[str]
    workload_profile_name: pulumi.Input[str]
    """The environment's Consumption profile, where the app runs."""
    identity_id: pulumi.Input[str]
    """The user-assigned identity the app runs as (it reads Key Vault and, in token mode, signs in)."""
    identity_client_id: pulumi.Input[str]
    database_host: pulumi.Input[str]
    database_name: pulumi.Input[str]
    app_role_name: str
    tags: dict[str, str]
    admission: Admission
    depends_on: list[pulumi.Resource]
    """Resources the first revision needs in place: the identity's Key Vault role (references resolve while
    the revision is created), the database, its firewall rules, the role and grants."""
    database_uri_secret_url: NotRequired[pulumi.Input[str] | None]
    """Password mode: the versionless Key Vault URL of the DATABASE_URI secret (see `password_database_uri`)."""
    container_app_name: NotRequired[str]
    """Default: `<base_name>-mcp`, cut to Azure's 32 characters."""
    cloud: NotRequired[Cloud]
    """The stack's Azure cloud (azure_cloud/clouds.py): the refresher's token audience and the sign-in authority.
    Default: the public cloud."""
    sign_in: NotRequired[str]
    """`gateway` (needs `gateway`), `easyAuth` (an authConfig on admission.entra_client_id) or `none`.
    Default: `easyAuth` when admission names a client ID, `none` otherwise (the behaviour before signIn)."""
    gateway: NotRequired[Gateway | None]
    replicas: NotRequired[int]
    """min = max replicas (default 1). More than one only behind the gateway (settings refuse it otherwise)."""


class McpApp(pulumi.ComponentResource):
    fqdn: pulumi.Output[str]
    sse_url: pulumi.Output[str]
    """postgres-mcp's SSE endpoint through the ingress: only without the gateway (behind it, the ingress does not
    reach postgres-mcp, and the URL would answer the gateway's 404)."""
    mcp_url: pulumi.Output[str]
    """What clients call: `https://<fqdn>/mcp` with the gateway, the SSE URL otherwise."""
    static_ip: pulumi.Output[str]
    """The environment's address: public for an external environment, in the subnet for an internal one."""
    container_app_name: pulumi.Output[str]
    container_app_id: pulumi.Output[str]
    """The app's ARM ID: what the deploy pipeline's verification reads (tools/verify_deployment.py)."""

    def __init__(self, name: str, args: McpAppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("postgresmcp:app:McpApp", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        admission = args["admission"]

        token_mode = args["auth_mode"] == "token"
        cloud = args.get("cloud") or PUBLIC
        sign_in = args.get("sign_in") or ("easyAuth" if admission.entra_client_id else "none")
        gateway = args.get("gateway")
        if (sign_in == "gateway") != (gateway is not None):
            raise ValueError("signIn 'gateway' needs the gateway's settings, and only it takes them")
        # The refresher's token audience: its default is the public cloud's (sidecar/token_refresher.py,
        # DEFAULT_RESOURCE), so TOKEN_RESOURCE is set only in another cloud and a public stack's container,
        # hence its revision, stays exactly as it was.
        resource_env = (
            [] if cloud.is_public else [app.EnvironmentVarArgs(name="TOKEN_RESOURCE", value=cloud.ossrdbms_resource_id)]
        )
        trust_store_env = app.EnvironmentVarArgs(name="SSL_CERT_FILE", value=SYSTEM_TRUST_STORE)
        secrets: list[app.SecretArgs] = []
        volumes: list[app.VolumeArgs] = []
        sidecars: list[app.ContainerArgs] = []
        if token_mode:
            uri_env = app.EnvironmentVarArgs(
                name="DATABASE_URI",
                value=pulumi.Output.all(args["database_host"], args["database_name"]).apply(
                    lambda values: passwordless_database_uri(args["app_role_name"], str(values[0]), str(values[1]))
                ),
            )
            pgpass_mount = [app.VolumeMountArgs(volume_name=PGPASS_VOLUME, mount_path=PGPASS_DIRECTORY)]
            volumes.append(app.VolumeArgs(name=PGPASS_VOLUME, storage_type="EmptyDir"))
            mcp_env = [uri_env, app.EnvironmentVarArgs(name="PGPASSFILE", value=PGPASS_FILE), trust_store_env]
            sidecars.append(
                app.ContainerArgs(
                    name=REFRESHER_CONTAINER,
                    image=args["image"],  # same image, same user: the 0600 file stays readable
                    command=refresher_command(args["token_refresh_margin_seconds"]),
                    env=[
                        app.EnvironmentVarArgs(name=REFRESHER_DIGEST_VARIABLE, value=refresher_digest()),
                        app.EnvironmentVarArgs(name="AZURE_CLIENT_ID", value=args["identity_client_id"]),
                        app.EnvironmentVarArgs(name="PGPASSFILE", value=PGPASS_FILE),
                        app.EnvironmentVarArgs(name="PGHOST", value=args["database_host"]),
                        app.EnvironmentVarArgs(name="PGPORT", value=str(POSTGRES_PORT)),
                        app.EnvironmentVarArgs(name="PGDATABASE", value=args["database_name"]),
                        app.EnvironmentVarArgs(name="PGUSER", value=args["app_role_name"]),
                        *resource_env,
                    ],
                    resources=app.ContainerResourcesArgs(
                        cpu=REFRESHER_RESOURCES.cpu, memory=REFRESHER_RESOURCES.memory
                    ),
                    probes=refresher_probes(),
                    volume_mounts=pgpass_mount,
                )
            )
        else:
            secret_url = args.get("database_uri_secret_url")
            if secret_url is None:
                raise ValueError(
                    "password mode needs the DATABASE_URI secret's Key Vault URL (database_uri_secret_url)"
                )
            # The versionless URI: Container Apps re-reads it when the secret is rotated.
            secrets.append(
                app.SecretArgs(name=DATABASE_URI_SECRET, key_vault_url=secret_url, identity=args["identity_id"])
            )
            pgpass_mount = []
            mcp_env = [app.EnvironmentVarArgs(name="DATABASE_URI", secret_ref=DATABASE_URI_SECRET), trust_store_env]

        # The REST spec bounds failureThreshold to 1-10 and periodSeconds to 1-240: the startup window is
        # 15 s x 10 = 150 s, room for a first connect that times out (postgres-mcp logs it and goes on).
        # Behind the gateway postgres-mcp listens on loopback, where no platform probe reaches: the gateway's
        # readiness probe (/healthz, which asks postgres-mcp) stands for it (see `gateway_probes`).
        probes = [
            app.ContainerAppProbeArgs(
                type=kind,
                tcp_socket=app.ContainerAppProbeTcpSocketArgs(port=MCP_PORT),
                period_seconds=period,
                failure_threshold=failures,
                initial_delay_seconds=delay,
            )
            for kind, period, failures, delay in (
                ("Startup", 15, 10, 1),
                ("Liveness", 10, 3, 10),
                ("Readiness", 10, 3, 1),
            )
        ]
        mcp_share = mcp_resources(token_mode, gateway=gateway is not None)
        mcp_container = app.ContainerArgs(
            name=MCP_CONTAINER,
            image=args["image"],
            args=mcp_arguments(args["access_mode"], LOOPBACK) if gateway else mcp_arguments(args["access_mode"]),
            env=mcp_env,
            resources=app.ContainerResourcesArgs(cpu=mcp_share.cpu, memory=mcp_share.memory),
            probes=None if gateway else probes,
            volume_mounts=pgpass_mount or None,
        )
        if gateway is not None:
            gateway_args, gateway_secrets = gateway_container(
                gateway, args["identity_id"], args["identity_client_id"], cloud
            )
            sidecars.append(gateway_args)
            secrets.extend(gateway_secrets)
        replicas = args.get("replicas", 1)

        container_app = app.ContainerApp(
            f"{name}-app",
            container_app_name=args.get("container_app_name") or f"{args['base_name']}-mcp"[:32].rstrip("-"),
            managed_environment_id=args["environment_id"],
            workload_profile_name=args["workload_profile_name"],
            identity=app.ManagedServiceIdentityArgs(
                type="UserAssigned", user_assigned_identities=[args["identity_id"]]
            ),
            configuration=app.ConfigurationArgs(
                active_revisions_mode="Single",
                ingress=app.IngressArgs(
                    # Outside the environment: the internet for an external environment, the VNet (and
                    # what is peered or connected to it) for an internal one.
                    external=True,
                    # The gateway when there is one: postgres-mcp is then not reachable through the ingress.
                    target_port=GATEWAY_PORT if gateway else MCP_PORT,
                    transport="auto",
                    # No session affinity: the gateway serves stateless Streamable HTTP (any replica answers
                    # any request; sign-ins live in the shared store), so `stickySessions` stays unset
                    # (Microsoft Learn, "Session affinity in Azure Container Apps": off unless enabled).
                    allow_insecure=False,
                    ip_security_restrictions=[
                        app.IpSecurityRestrictionRuleArgs(
                            name=rule_name, ip_address_range=cidr, action="Allow", description=description
                        )
                        for rule_name, cidr, description in ip_restrictions(admission)
                    ]
                    or None,
                ),
                secrets=secrets or None,
                # The stack's registry, pulled with the user-assigned identity (AcrPull): no username, no password.
                registries=[gateway.registry] if gateway is not None and gateway.registry is not None else None,
            ),
            template=app.TemplateArgs(
                containers=[mcp_container, *sidecars],
                volumes=volumes or None,
                # A fixed count: SSE sessions live in one process's memory, so without the gateway one replica
                # (settings refuse more); behind the gateway `replicas` (prod: 2, one per zone at least in its
                # zone-redundant environment), never scaled to zero, since a cold start would time out a client.
                scale=app.ScaleArgs(min_replicas=replicas, max_replicas=replicas),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=args["depends_on"],
                # The app's name is fixed and unique in the resource group: when a new environment
                # replaces the old one, the app must go before its successor can be created.
                delete_before_replace=True,
            ),
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
        )

        def ingress_fqdn(configuration: Any) -> str:
            ingress = getattr(configuration, "ingress", None)
            return (getattr(ingress, "fqdn", None) or "") if ingress is not None else ""

        if sign_in == "easyAuth":
            app.ContainerAppsAuthConfig(
                f"{name}-entra-sign-in",
                auth_config_name="current",
                container_app_name=container_app.name,
                resource_group_name=args["resource_group_name"],
                platform=app.AuthPlatformArgs(enabled=True),
                global_validation=app.GlobalValidationArgs(
                    unauthenticated_client_action=app.UnauthenticatedClientActionV2.RETURN401
                ),
                identity_providers=app.IdentityProvidersArgs(
                    azure_active_directory=app.AzureActiveDirectoryArgs(
                        enabled=True,
                        registration=app.AzureActiveDirectoryRegistrationArgs(
                            client_id=admission.entra_client_id,
                            # The `iss` of the tenant's v2 tokens, which Easy Auth checks: the authority's host
                            # (login.microsoftonline.us in US Government) except in China, whose tokens say
                            # login.partner.microsoftonline.cn (azure_cloud/clouds.py `v2_issuer_host`).
                            open_id_issuer=pulumi.Output.from_input(admission.tenant_id).apply(cloud.entra_v2_issuer),
                        ),
                        validation=app.AzureActiveDirectoryValidationArgs(
                            allowed_audiences=entra_audiences(admission.entra_client_id),
                            default_authorization_policy=app.DefaultAuthorizationPolicyArgs(
                                allowed_applications=list(admission.allowed_client_ids) or None,
                            ),
                        ),
                    ),
                ),
                opts=child,
            )

        self.fqdn = container_app.configuration.apply(ingress_fqdn)
        self.sse_url = self.fqdn.apply(lambda fqdn: f"https://{fqdn}/sse")
        self.mcp_url = self.fqdn.apply(lambda fqdn: mcp_url(fqdn, sign_in))
        self.static_ip = pulumi.Output.from_input(args["environment_static_ip"])
        self.container_app_name = container_app.name
        self.container_app_id = container_app.id
        self.register_outputs(
            {
                "fqdn": self.fqdn,
                "sse_url": self.sse_url,
                "mcp_url": self.mcp_url,
                "static_ip": self.static_ip,
                "container_app_name": self.container_app_name,
                "container_app_id": self.container_app_id,
            }
        )
