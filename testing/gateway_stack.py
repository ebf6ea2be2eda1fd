"""The sign-in gateway end to end on one machine, as a Container App replica runs it (for tests and benchmarks).

- Entra: `testing/entra_endpoint.py` over HTTPS (local CA), the gateway's authority (`ENTRA_AUTHORITY_HOST`),
  access tokens living a few seconds; the app registration trusts the managed identity (a federated credential).
- The managed identity endpoint: `testing/identity_endpoint.py`, minting real RS256 JWTs for
  `api://AzureADTokenExchange` (the client assertion) and for Storage (Azurite), JWT-shaped tokens for
  PostgreSQL (each one the role's password, as Entra tokens are on Flexible Server).
- The shared store: Azurite's Table service over HTTPS with OAuth (`testing/azurite.py`).
- postgres-mcp 0.3.0 (drill/postgres_mcp_venv.py) on a local PostgreSQL over TLS in token mode: no password
  in DATABASE_URI, the project's token refresher keeping PGPASSFILE fresh (as drill/scenarios.py runs it);
  restartable on its port.
- A recording TCP relay between the gateway and postgres-mcp (`GATEWAY_BACKEND_URL` points at it), and a
  TCP "ingress" in front of the gateway processes: `GATEWAY_PUBLIC_URL` is the ingress, so replicas and a
  restarted gateway share one public URL, as behind Container Apps' ingress.
- Gateways: `python -m gateway` from the locked venv (drill/gateway_venv.py) with the environment the
  container declares (gateway_environment), `ENTRA_CREDENTIAL=federated`.
- The client: testing/gateway_client.py in the gateway venv (the MCP SDK's OAuthClientProvider and the
  scripted browser).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.mcp_app import passwordless_database_uri
from drill.gateway_venv import ensure_venv as ensure_gateway_venv
from drill.postgres_mcp_venv import ensure_venv as ensure_postgres_mcp_venv
from drill.scenarios import DATABASE, ROLE, SERVER_OPTIONS, TLS_HOST, RefresherProcess, _prepare, start_refresher
from testing.azurite import Azurite
from testing.entra_endpoint import AppRegistration, EntraEndpoint, FederatedCredential
from testing.identity_endpoint import IdentityEndpoint, federation_audience, storage_audience
from testing.local_ca import LocalCA
from testing.postgres_server import PostgresServer, free_port, running_postgres
from testing.tcp_relay import TcpRelay

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "testing" / "gateway_client.py"
TENANT = "11111111-2222-3333-4444-555555555555"
API_CLIENT_ID = "66666666-7777-8888-9999-000000000000"
IDENTITY_CLIENT_ID = "33333333-3333-3333-3333-333333333333"
IDENTITY_PRINCIPAL_ID = "22222222-2222-2222-2222-222222222222"
AGENT = "a9e47e2e-0000-4000-8000-00000000a6e1"
OTHER_AGENT = "b9e47e2e-0000-4000-8000-00000000b6e2"
AGENT_SECRET = "agent-secret-value"
API_SECRET = "api-client-secret-value-for-the-secret-credential"  # ENTRA_CREDENTIAL=secret


# An MCP `initialize` request and the headers Streamable HTTP asks of a client, for raw HTTP checks.
INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
).encode()
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@dataclass
class GatewayProcess:
    port: int
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class ClientRun:
    returncode: int
    calls: list[dict[str, Any]]
    summary: dict[str, Any]
    stderr: str


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {port} within {timeout:.0f}s:\n{log.read_text(errors='replace')[-4000:]}")


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@dataclass
class Stack:
    work: Path
    entra: EntraEndpoint
    identity: IdentityEndpoint
    azurite: Azurite
    server: PostgresServer
    trust_store: Path  # the local CAs: Entra's, Azurite's, PostgreSQL's
    mcp_port: int
    mcp_env: dict[str, str]
    relay: TcpRelay
    ingress: TcpRelay
    signing_key: str = field(default_factory=lambda: secrets.token_urlsafe(40))
    store_key: str = field(default_factory=lambda: secrets.token_urlsafe(40))
    table: str = "gatewaySignIns"
    gateways: list[GatewayProcess] = field(default_factory=list)
    mcp: subprocess.Popen[bytes] | None = None

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress.port}"

    @property
    def mcp_url(self) -> str:
        return self.public_url + "/mcp"

    # --- postgres-mcp ---------------------------------------------------------------------------

    def start_postgres_mcp(self) -> None:
        venv = ensure_postgres_mcp_venv(log=False)
        log = self.work / "postgres-mcp.log"
        command = [
            str(venv / "bin" / "postgres-mcp"),
            "--transport=sse",
            "--sse-host=127.0.0.1",
            f"--sse-port={self.mcp_port}",
            "--access-mode=restricted",
        ]
        with log.open("ab") as output:
            self.mcp = subprocess.Popen(command, env=self.mcp_env, stdout=output, stderr=subprocess.STDOUT)
        _wait_for_port(self.mcp_port, self.mcp, log)

    def stop_postgres_mcp(self) -> None:
        if self.mcp is not None and self.mcp.poll() is None:
            self.mcp.send_signal(signal.SIGTERM)
            try:
                self.mcp.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.mcp.kill()
                self.mcp.wait(timeout=10)

    # --- gateways -------------------------------------------------------------------------------

    def gateway_environment(self, port: int, **overrides: str) -> dict[str, str]:
        """The gateway container's environment (the contract table), pointed at the local stand-ins."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work),
            "GATEWAY_PORT": str(port),
            "GATEWAY_PUBLIC_URL": self.public_url,
            "GATEWAY_BACKEND_URL": f"http://127.0.0.1:{self.relay.port}/sse",
            "ENTRA_TENANT_ID": TENANT,
            "ENTRA_CLIENT_ID": API_CLIENT_ID,
            "ENTRA_AUTHORITY_HOST": self.entra.host,
            # As the stack sets it (components/mcp_app.py): the `iss` of the tenant's v2 tokens.
            "ENTRA_TOKEN_ISSUER": self.entra.issuer,
            "ENTRA_CREDENTIAL": "federated",
            "AZURE_CLIENT_ID": IDENTITY_CLIENT_ID,
            "ENTRA_ALLOWED_AGENT_CLIENT_IDS": AGENT,
            "GATEWAY_SIGNING_KEY": self.signing_key,
            "GATEWAY_STORE_KEY": self.store_key,
            "GATEWAY_STORE_ENDPOINT": self.azurite.table_endpoint,
            "GATEWAY_STORE_TABLE": self.table,
            # What Container Apps sets for the managed identity.
            "IDENTITY_ENDPOINT": self.identity.url,
            "IDENTITY_HEADER": self.identity.header,
            # The local CAs (on Azure: the image's public roots).
            "SSL_CERT_FILE": str(self.trust_store),
            "REQUESTS_CA_BUNDLE": str(self.trust_store),
            "FASTMCP_HOME": str(self.work / "fastmcp-home"),
        }
        env.update(overrides)
        return env

    def start_gateway(self, route: bool = True, port: int = 0, **overrides: str) -> GatewayProcess:
        venv = ensure_gateway_venv(log=False)
        port = port or free_port()
        log = self.work / f"gateway-{port}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [str(venv / "bin" / "python"), "-m", "gateway"],
                cwd=ROOT,
                env=self.gateway_environment(port, **overrides),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        _wait_for_port(port, process, log)
        gateway = GatewayProcess(port, process, log)
        self.gateways.append(gateway)
        if route:
            self.ingress.set_targets([gateway.port])
        return gateway

    def healthz(self, gateway: GatewayProcess) -> tuple[int, str]:
        status, _, body = http_get(f"http://127.0.0.1:{gateway.port}/healthz")
        return status, body

    def wait_healthy(self, gateway: GatewayProcess, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        status, body = self.healthz(gateway)
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
            status, body = self.healthz(gateway)
        assert status == 200, body

    # --- the store's table -----------------------------------------------------------------------

    def _table_request(self, method: str, path: str, body: bytes | None = None) -> int:
        """A Table service request to Azurite with the managed identity's Storage token (the deployer's
        role, in Azure); the status."""
        query = urllib.parse.urlencode(
            {"resource": "https://storage.azure.com", "api-version": "2019-08-01", "client_id": IDENTITY_CLIENT_ID}
        )
        identity = urllib.request.Request(
            f"{self.identity.url}?{query}", headers={"X-IDENTITY-HEADER": self.identity.header}
        )
        with urllib.request.urlopen(identity, timeout=10) as response:
            token = json.load(response)["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "x-ms-version": "2019-02-02",
            "Accept": "application/json;odata=nometadata",
            "Content-Type": "application/json",
        }
        request = urllib.request.Request(
            f"{self.azurite.table_endpoint}/{path}", data=body, headers=headers, method=method
        )
        context = ssl.create_default_context(cafile=str(self.trust_store))
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    def create_table(self, name: str) -> None:
        """Create Table (https://learn.microsoft.com/rest/api/storageservices/create-table), as the stack
        declares the table (components: azure-native storage.Table) before the gateway starts."""
        status = self._table_request("POST", "Tables", json.dumps({"TableName": name}).encode())
        assert status == 201, f"Create Table {name}: {status}"

    def table_exists(self, name: str) -> bool:
        """Query Tables for one table (https://learn.microsoft.com/rest/api/storageservices/query-tables)."""
        return self._table_request("GET", f"Tables('{name}')") == 200

    # --- the client -----------------------------------------------------------------------------

    def run_client(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None, url: str = ""
    ) -> ClientRun:
        venv = ensure_gateway_venv(log=False)
        client_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work),
            "SSL_CERT_FILE": str(self.trust_store),
            **(env or {}),
        }
        completed = subprocess.run(
            [str(venv / "bin" / "python"), str(CLIENT), "--url", url or self.mcp_url, *args],
            cwd=ROOT,
            env=client_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
        calls = [line for line in lines if "done" not in line]
        summary = next((line for line in lines if "done" in line), {"done": False, "error": "no summary"})
        return ClientRun(completed.returncode, calls, summary, completed.stderr)

    def diagnosis(self, run: ClientRun) -> str:
        """What to read when a client run failed: its summary and error output, each gateway's log tail."""
        parts = [f"client: {run.summary}", run.stderr[-2500:]]
        for gateway in self.gateways:
            parts.append(f"--- gateway on :{gateway.port} (log tail)\n{gateway.log[-3500:]}")
        return "\n".join(parts)

    def agent_token(self, client_id: str = AGENT, secret: str = AGENT_SECRET, lifetime: int = 300) -> str:
        """A client-credentials token from the Entra stand-in, as an agent gets one.

        It lives `lifetime` seconds (Entra's live an hour or more), not the few seconds of the users'
        tokens here: the client that sends it is a new process, slow to start on a loaded machine."""
        body = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": f"api://{API_CLIENT_ID}/.default",
            }
        ).encode()
        context = ssl.create_default_context(cafile=str(self.trust_store))
        request = urllib.request.Request(self.entra.token_endpoint, data=body, method="POST")
        users_lifetime, self.entra.access_token_lifetime = self.entra.access_token_lifetime, lifetime
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return str(json.load(response)["access_token"])
        finally:
            self.entra.access_token_lifetime = users_lifetime


@contextlib.contextmanager
def gateway_stack(work: Path, *, access_token_lifetime: int = 5, issuer_host: str = "") -> Iterator[Stack]:
    """Everything above, started; stopped (only what it started) on exit. `issuer_host`: the host in the
    tokens' `iss` when it is not the authority's (China's login.partner.microsoftonline.cn)."""
    ensure_gateway_venv(log=False)
    ensure_postgres_mcp_venv(log=False)
    authority = LocalCA.create("gateway test CA")
    entra = EntraEndpoint(
        tenant_id=TENANT,
        api=AppRegistration(API_CLIENT_ID, redirect_uris=(), secrets=(API_SECRET,)),
        clients=[
            AppRegistration(AGENT, secrets=(AGENT_SECRET,)),
            AppRegistration(OTHER_AGENT, secrets=(AGENT_SECRET,)),
        ],
        access_token_lifetime=access_token_lifetime,
        issuer_host=issuer_host,
    )
    relay: TcpRelay | None = None
    ingress: TcpRelay | None = None
    identity: IdentityEndpoint | None = None
    azurite: Azurite | None = None
    stack: Stack | None = None
    refresher: RefresherProcess | None = None
    with running_postgres(
        SERVER_OPTIONS, issue_certificate=lambda data: authority.issue_server_certificate(data, (TLS_HOST,))
    ) as server:
        try:
            (work / "entra").mkdir(parents=True, exist_ok=True)
            entra.start(work / "entra")
            ingress = TcpRelay([])
            entra.api.redirect_uris = (f"http://127.0.0.1:{ingress.port}/auth/callback",)
            entra.api.federated_credentials = (FederatedCredential(issuer=entra.issuer, subject=IDENTITY_PRINCIPAL_ID),)
            _prepare(server)
            identity = IdentityEndpoint(
                on_mint=server.token_becomes_password(ROLE),
                principal_id=IDENTITY_PRINCIPAL_ID,
                identity_client_id=IDENTITY_CLIENT_ID,
                tenant_id=TENANT,
                signed={
                    "api://AzureADTokenExchange": federation_audience(entra),
                    "https://storage.azure.com": storage_audience(TENANT),
                },
            ).start()
            azurite = Azurite(work / "azurite").start()
            trust_store = work / "trust.pem"
            assert entra.ca_bundle is not None and azurite.ca_bundle is not None
            postgres_ca = authority.write_bundle(work / "postgres-ca.pem")
            trust_store.write_text(
                entra.ca_bundle.read_text() + azurite.ca_bundle.read_text() + postgres_ca.read_text()
            )
            passfile = work / "pgpass" / "pgpass"
            refresher = start_refresher(identity, IDENTITY_CLIENT_ID, passfile, server)
            mcp_env = {key: value for key, value in os.environ.items() if not key.startswith(("PG", "PYTHON"))}
            mcp_env.update(
                DATABASE_URI=passwordless_database_uri(ROLE, TLS_HOST, DATABASE, server.port),
                PGPASSFILE=str(passfile),
                SSL_CERT_FILE=str(trust_store),
            )
            mcp_port = free_port()
            relay = TcpRelay([mcp_port], record=True)
            stack = Stack(
                work=work,
                entra=entra,
                identity=identity,
                azurite=azurite,
                server=server,
                trust_store=trust_store,
                mcp_port=mcp_port,
                mcp_env=mcp_env,
                relay=relay,
                ingress=ingress,
            )
            # The stack declares the table; the gateway, whose role is scoped to it, never creates it.
            stack.create_table(stack.table)
            stack.start_postgres_mcp()
            yield stack
        finally:
            if stack is not None:
                for gateway in stack.gateways:
                    gateway.stop()
                stack.stop_postgres_mcp()
            if refresher is not None:
                refresher.kill()
            for closeable in (relay, ingress):
                if closeable is not None:
                    closeable.close()
            if azurite is not None:
                azurite.stop()
            if identity is not None:
                identity.stop()
            entra.stop()


def run_in_gateway_venv(script: str) -> dict[str, Any]:
    """Runs `script` (Python source) in the gateway's locked virtualenv from the repository root, with nothing of
    this process's environment but PATH; returns the JSON object its last output line prints."""
    python = ensure_gateway_venv(log=False) / "bin" / "python"
    completed = subprocess.run(
        [str(python), "-c", script],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]
