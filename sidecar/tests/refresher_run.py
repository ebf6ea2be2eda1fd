"""Running the token refresher as the sidecar runs it, for the tests in this folder.

The program under test is a subprocess; what it talks to (the identity endpoint) is a stand-in
from `testing/`, and what the platform does (probing /healthz) is done here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from testing.identity_endpoint import IdentityEndpoint, Minted

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "sidecar" / "token_refresher.py"
CLIENT_ID = "11111111-1111-1111-1111-111111111111"

FAST = ["--backoff-base-seconds=0.05", "--backoff-max-seconds=0.2", "--timeout-seconds=2"]


def refresher_env(endpoint: IdentityEndpoint, passfile: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(
        {
            "IDENTITY_ENDPOINT": endpoint.url,
            "IDENTITY_HEADER": endpoint.header,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "PGPASSFILE": str(passfile),
            "PGHOST": "pgmcp-dev.postgres.database.azure.com",
            "PGPORT": "5432",
            "PGDATABASE": "app",
            "PGUSER": "postgres_mcp",
        }
    )
    env.update(extra)
    return env


class Refresher:
    """The refresher running as `python3 sidecar/token_refresher.py`, its log captured."""

    def __init__(self, env: dict[str, str], *arguments: str, program: Sequence[str] = (str(SCRIPT),)) -> None:
        # program: the file (the default) or `-c <code>`, as the sidecar is shipped.
        self.process = subprocess.Popen(
            [sys.executable, *program, *arguments],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        return code

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def wait_for(condition, timeout: float = 10.0, interval: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def expected_line(token: str) -> str:
    return f"pgmcp-dev.postgres.database.azure.com:5432:app:postgres_mcp:{token}\n"


class HealthProbe:
    """Calls GET `path` (/healthz) every `interval` seconds, as a probe does, and keeps every answer."""

    def __init__(self, port: int, interval: float = 0.1, path: str = "/healthz") -> None:
        self.url = f"http://127.0.0.1:{port}{path}"
        self.interval = interval
        self.answers: list[tuple[float, int | str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def get(self) -> tuple[int | str, str]:
        try:
            with urllib.request.urlopen(self.url, timeout=3) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return "down", str(error)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self.get()
            self.answers.append((time.time(), status, body))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def first(self, status: int | str, after: float = 0.0) -> tuple[float, int | str, str]:
        return next(answer for answer in list(self.answers) if answer[0] >= after and answer[1] == status)

    def seen(self, status: int | str, after: float = 0.0) -> bool:
        return any(answer[0] >= after and answer[1] == status for answer in list(self.answers))


def probe_path(kind: str) -> str:
    """The path the platform's `kind` probe ("Startup", "Liveness") of the sidecar calls, as deployed."""
    from pulumi_azure_native import app

    from components.mcp_app import refresher_probes

    (probe,) = [p for p in refresher_probes() if p.type == kind]
    assert isinstance(probe.http_get, app.ContainerAppProbeHttpGetArgs)
    return str(probe.http_get.path)


# A refresher whose file writes hang while a file named by $HANG_WHILE exists: a stuck loop (as on
# a hung volume) with everything else working. The program is the real one, run as __main__.
HANGING_WRITES = """
import os, runpy, sys, time
real_replace = os.replace
def replace(source, target):
    while os.path.exists(os.environ["HANG_WHILE"]):
        time.sleep(0.05)
    return real_replace(source, target)
os.replace = replace
sys.argv[0] = {script!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def hanging_writes_program() -> tuple[str, str]:
    return ("-c", HANGING_WRITES.format(script=str(SCRIPT)))


def secret_parts(minted: list[Minted]) -> list[str]:
    """Each token and its claims and signature segments (the JWT header is the same for all)."""
    return [part for m in minted for part in (m.token, *m.token.split(".")[1:])]
