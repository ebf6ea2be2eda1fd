"""Azurite's Table service, over HTTPS with OAuth, as the gateway's shared store in tests.

Azurite is npm's `azurite`, pinned in tools/azurite/package.json and its lock, installed by
`npm ci --prefix tools/azurite` (.ci/run does it). 3.35.0 is the newest release whose `engines` accept the
Node.js Debian and NodeSource ship here (20); 3.36.0 and later want Node.js 21 or 22.

`Azurite(directory).start()` runs `azurite-table` on 127.0.0.1 and a free port, workspace in `directory`,
with a certificate from a local CA (`ca_bundle` is the CA's PEM), `--oauth basic`, `--disableTelemetry` and
`--skipApiVersionCheck` (the Python SDK may send a newer `x-ms-version` than this Azurite knows); no `--loose`.
`table_endpoint` is `https://127.0.0.1:<port>/devstoreaccount1` (path-style: the account is the first path
segment of the URL on an IP host).

What `--oauth basic` checks in a bearer token (Azure/Azurite src/table/authentication/TableTokenAuthenticator.ts
`authenticateBasic`, src/common/utils/constants.ts `VALID_ISSUE_PREFIXES`, src/table/utils/constants.ts
`VALID_TABLE_AUDIENCES`; read in tools/azurite/node_modules/azurite/dist/src/...):

- only over HTTPS ("Authentication scheme Bearer is not allowed with HTTP");
- the token is a JWT whose payload decodes; the signature is NOT verified ("Validate signature, skip in basic
  check");
- `nbf`, `exp` and `iat` present, and `nbf` <= now <= `exp` (no clock skew): "Lifetime validation failed.";
- `iss` starts with `https://sts.windows.net/`, `https://sts.microsoftonline.de/`,
  `https://sts.chinacloudapi.cn/` or `https://sts.windows-ppe.net` (v1 issuers): "Invalid token issuer.";
- `aud` is `https://storage.azure.com[/]`, `e406a681-f3d4-42a8-90b6-c2b029497af1` or
  `https://<account>.table.core.windows.net[/]` (and the sovereign clouds' table hosts) with the account of
  the request: "Invalid token audience.";
- `scp`/`roles` are not looked at.

A refused token is answered 401 or 403 with `AuthenticationFailed`. A request without `Authorization` falls
through to the next authenticator (shared key, SAS) and, having none, is refused too.
`identity_endpoint.storage_audience(...)` mints tokens that pass.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from testing.oidc_endpoints import local_ca

ROOT = Path(__file__).resolve().parent.parent
AZURITE_TABLE = ROOT / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-table"
ACCOUNT = "devstoreaccount1"  # Azurite's default account (its documented well-known key is never used here)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Azurite:
    """One Azurite Table service process; `stop()` ends it (and only it)."""

    directory: Path
    port: int = 0
    ca_bundle: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    @property
    def table_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"

    def start(self, timeout: float = 20.0) -> Azurite:
        if not AZURITE_TABLE.exists():
            raise RuntimeError(f"{AZURITE_TABLE} is missing: run `npm ci --prefix tools/azurite` first")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH (Azurite is a Node.js program): install nodejs")
        tls = self.directory / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        self.ca_bundle, certificate, key = local_ca(tls)
        workspace = self.directory / "workspace"
        workspace.mkdir(exist_ok=True)
        self.port = self.port or _free_port()
        self.log_file = self.directory / "azurite.log"
        command = [
            str(AZURITE_TABLE),
            "--tableHost", "127.0.0.1",
            "--tablePort", str(self.port),
            "--location", str(workspace),
            "--cert", str(certificate),
            "--key", str(key),
            "--oauth", "basic",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]  # fmt: skip
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited with {self.process.returncode}: {self.log_file.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not listen on {self.port} within {timeout} s: {self.log_file.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
