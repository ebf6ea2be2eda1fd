"""The expiry drill: the real postgres-mcp against a local PostgreSQL whose tokens expire.

Each minted token becomes the app role's password `VALID UNTIL` its expiry, so new
logins fail after it while open sessions live on, as with Entra tokens on Flexible
Server. Two setups are compared:

- `baked`: a token fetched once and put in DATABASE_URI (the setup from the field);
- `refresher`: the Container App's setup, DATABASE_URI without password plus the
  project's token refresher keeping PGPASSFILE fresh, run exactly as the sidecar runs.

Time is compressed: tokens live `TOKEN_LIFETIME` seconds instead of hours, and the
pool replaces connections every `POOL_MAX_LIFETIME` seconds instead of every hour.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from components.mcp_app import password_database_uri, passwordless_database_uri, refresher_command
from testing.identity_endpoint import RESOURCE, IdentityEndpoint, Minted
from testing.local_ca import LocalCA
from testing.postgres_server import PostgresServer, free_port, running_postgres

TLS_HOST = "localhost"  # the name on the server's certificate; the server listens on 127.0.0.1

ROOT = Path(__file__).resolve().parent.parent
TIMEWARP = Path(__file__).resolve().parent / "timewarp"
CLIENT = Path(__file__).resolve().parent / "mcp_client.py"

ROLE, DATABASE = "postgres_mcp", "app"
TOKEN_LIFETIME = 6  # seconds (Entra: up to 24 h for a managed identity)
BAKED_FETCH_LIFETIME = 3600.0  # the baked token until the first call; then TOKEN_LIFETIME from that call
FIRST_CALL_TIMEOUT = 180.0  # seconds for postgres-mcp's client to connect and make its first call
REFRESH_MARGIN = 3  # seconds before expiry the refresher fetches the next token (production: 900)
POOL_MAX_LIFETIME = 2.0  # seconds (psycopg_pool default: 3600)
POOL_TIMEOUT = 3.0  # seconds a call waits for a connection (psycopg_pool default: 30)
CALL_INTERVAL = 0.5
PROGRESS_EVERY = 10.0  # seconds between progress lines while the calls run
HEALTH_INTERVAL = 0.25  # how often the drill calls the refresher's /healthz, as a probe would
SERVER_OPTIONS = "-c log_connections=on -c log_line_prefix='%m [%p] '"


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the client's first call
    # An endpoint behaviour from now on ("ok", "http-503", "drop", ...), "next:<b>,<b>,..." for the next
    # attempts only, "kill-refresher" or "start-refresher".
    action: str
    note: str


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: str  # "baked" or "refresher"
    duration: float
    faults: tuple[Fault, ...] = ()
    description: str = ""
    expect: str = "no-failures"  # or "fails-after-expiry" or "fails-then-recovers"
    expect_logged: tuple[str, ...] = ()  # fragments the refresher must have logged


@dataclass
class Call:
    t: float
    ok: bool
    ms: float
    detail: str


@dataclass
class Result:
    scenario: Scenario
    start: float
    calls: list[Call]
    events: list[tuple[float, str, str]] = field(default_factory=list)
    minted: list[Minted] = field(default_factory=list)
    refresher_log: list[str] = field(default_factory=list)
    mcp_log: str = ""
    health: list[tuple[float, str, str]] = field(default_factory=list)
    """(time, "200" / "503" / "down", reason): every answer of the refresher's /healthz."""

    @property
    def failed(self) -> list[Call]:
        return [call for call in self.calls if not call.ok]

    def calls_between(self, start: float, end: float) -> list[Call]:
        return [call for call in self.calls if start <= call.t - self.start < end]

    def reconnections(self) -> int:
        return sum(1 for _, source, text in self.events if source == "postgres" and text.startswith("pool connected"))

    def health_changes(self) -> list[tuple[float, str, str]]:
        """The health answers where the status changed: what a probe's owner would notice."""
        changes: list[tuple[float, str, str]] = []
        for answer in self.health:
            if not changes or answer[1] != changes[-1][1]:
                changes.append(answer)
        return changes


SCENARIOS = {
    "baked": Scenario(
        "baked",
        "baked",
        20,
        description="token baked into DATABASE_URI (the setup from the field)",
        expect="fails-after-expiry",
    ),
    "refresher": Scenario(
        "refresher", "refresher", 30, description="token-refresher sidecar keeping PGPASSFILE fresh (token mode)"
    ),
    "short-outage": Scenario(
        "short-outage",
        "refresher",
        20,
        # The refresher's next 4 attempts fail: ~2.3 s of backoff, inside its 3 s margin.
        (Fault(6, "next:http-503,http-503,http-503,http-503", "identity endpoint down (HTTP 503) for 4 attempts"),),
        "identity endpoint down for less than the token's remaining life",
        expect_logged=("HTTP 503", "keeping last good token"),
    ),
    "long-outage": Scenario(
        "long-outage",
        "refresher",
        36,
        (Fault(6, "drop", "identity endpoint unreachable"), Fault(24, "ok", "identity endpoint back")),
        "identity endpoint down for longer than a token lives",
        expect="fails-then-recovers",
        expect_logged=("unreachable", "EXPIRED", "failure(s)"),
    ),
    "garbage": Scenario(
        "garbage",
        "refresher",
        20,
        (
            Fault(
                5,
                "next:not-json,http-500,no-token,token-with-newline",
                "the next 4 answers: garbage, HTTP 500, JSON without a token, a token with a newline",
            ),
        ),
        "identity endpoint answering garbage and HTTP errors",
        expect_logged=(
            "malformed answer: not JSON",
            "HTTP 500",
            "access_token missing",
            "characters a JWT cannot have",
            "keeping last good token",
        ),
    ),
    "refresher-restart": Scenario(
        "refresher-restart",
        "refresher",
        20,
        (Fault(7, "kill-refresher", "refresher killed (SIGKILL)"), Fault(9, "start-refresher", "refresher restarted")),
        "refresher killed and restarted",
    ),
}


def _prepare(server: PostgresServer) -> None:
    with server.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ROLE)))
        su.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with server.superuser(DATABASE) as su:
        su.execute("CREATE TABLE orders (id serial PRIMARY KEY, total numeric)")
        su.execute("INSERT INTO orders (total) SELECT generate_series(1, 42)")
        su.execute(sql.SQL("GRANT SELECT ON orders TO {}").format(sql.Identifier(ROLE)))


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"postgres-mcp did not listen on port {port} within {timeout:.0f}s")


class RefresherProcess:
    """The refresher exactly as the sidecar runs it, restartable, its log kept across runs."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.health_port = free_port()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                # The sidecar's own command (`python -c <token_refresher.py> --margin-seconds=N
                # --health-port=P --health-min-validity-seconds=N/2`), with the drill's compressed
                # margin, a free port and a shorter retry backoff.
                sys.executable,
                *refresher_command(REFRESH_MARGIN, self.health_port)[1:],
                "--min-interval-seconds=0.5",
                "--backoff-base-seconds=0.2",
                "--backoff-max-seconds=1",
            ],
            env=self.env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(f"{time.time():.3f} {line.rstrip()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)


def start_refresher(
    endpoint: IdentityEndpoint, identity_client_id: str, passfile: Path, server: PostgresServer
) -> RefresherProcess:
    """The sidecar's environment (components/mcp_app.py) pointed at the stand-ins, the refresher started, and its
    first password file waited for (30 s at most)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(
        IDENTITY_ENDPOINT=endpoint.url,
        IDENTITY_HEADER=endpoint.header,
        AZURE_CLIENT_ID=identity_client_id,
        PGPASSFILE=str(passfile),
        PGHOST=TLS_HOST,
        PGPORT=str(server.port),
        PGDATABASE=DATABASE,
        PGUSER=ROLE,
    )
    refresher = RefresherProcess(env)
    refresher.start()
    deadline = time.monotonic() + 30
    while not passfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return refresher


class HealthWatch:
    """Calls the refresher's GET /healthz every HEALTH_INTERVAL seconds and keeps every answer."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.answers: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    answer = (str(response.status), response.read().decode().strip())
            except urllib.error.HTTPError as error:
                answer = (str(error.code), error.read().decode().strip())
            except OSError as error:
                answer = ("down", str(getattr(error, "reason", error)))
            self.answers.append((time.time(), *answer))
            self._stop.wait(HEALTH_INTERVAL)

    def stop(self) -> list[tuple[float, str, str]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.answers


def _fetch_token_once(endpoint: IdentityEndpoint) -> str:
    """What the field does at deploy time: one token, then baked into the URI."""
    query = urllib.parse.urlencode({"resource": RESOURCE, "api-version": "2019-08-01"})
    request = urllib.request.Request(f"{endpoint.url}?{query}", headers={"X-IDENTITY-HEADER": endpoint.header})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["access_token"])


@contextmanager
def _process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+) \[\d+\] (\w+):\s+(.*)$")


def _server_events(log_file: Path) -> list[tuple[float, str, str]]:
    events: list[tuple[float, str, str]] = []
    for line in log_file.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp = datetime.datetime.strptime(match.group(1).rsplit(" ", 1)[0], "%Y-%m-%d %H:%M:%S.%f")
        when = stamp.replace(tzinfo=datetime.UTC).timestamp()
        text = match.group(3)
        if text.startswith(f"connection authorized: user={ROLE} "):
            events.append((when, "postgres", "pool connected (new login accepted)"))
        elif "password authentication failed" in text and ROLE in text:
            events.append((when, "postgres", "login REFUSED: password authentication failed"))
        elif text.startswith(f'User "{ROLE}" has an expired password') and events:
            events[-1] = (events[-1][0], "postgres", "login REFUSED: the token presented has EXPIRED")
    return events


def run(scenario: Scenario, venv: Path, progress: Callable[[str], None] = lambda _: None) -> Result:
    """Runs one scenario end to end and returns what every participant saw."""
    # Verified TLS, as in the Container App: the server's certificate comes from a local CA that the
    # server's clients trust through SSL_CERT_FILE, and names "localhost", the host in the URI.
    authority = LocalCA.create("drill CA")
    with (
        running_postgres(
            SERVER_OPTIONS, issue_certificate=lambda data: authority.issue_server_certificate(data, (TLS_HOST,))
        ) as server,
        tempfile.TemporaryDirectory(prefix="drill-") as work,
    ):
        workdir = Path(work)
        trust_store = authority.write_bundle(workdir / "ca.pem")
        progress(f"{scenario.name}: PostgreSQL up on :{server.port} (TLS, certificate from a local CA)")
        _prepare(server)
        expire_token = server.token_becomes_password(ROLE)
        endpoint = IdentityEndpoint(lifetime=TOKEN_LIFETIME, on_mint=expire_token).start()
        refresher: RefresherProcess | None = None
        health: HealthWatch | None = None
        try:
            passfile = workdir / "pgpass" / "pgpass"
            mcp_env = {key: value for key, value in os.environ.items() if not key.startswith(("PG", "PYTHON"))}
            mcp_env.update(
                PYTHONPATH=str(TIMEWARP),
                DRILL_POOL_MAX_LIFETIME=str(POOL_MAX_LIFETIME),
                DRILL_POOL_TIMEOUT=str(POOL_TIMEOUT),
                SSL_CERT_FILE=str(trust_store),
            )
            if scenario.setup == "baked":
                endpoint.lifetime = BAKED_FETCH_LIFETIME
                token = _fetch_token_once(endpoint)
                endpoint.lifetime = TOKEN_LIFETIME
                mcp_env["DATABASE_URI"] = password_database_uri(ROLE, token, TLS_HOST, DATABASE, server.port)
            else:
                # The Container App's environment, container by container (components/mcp_app.py).
                mcp_env["DATABASE_URI"] = passwordless_database_uri(ROLE, TLS_HOST, DATABASE, server.port)
                mcp_env["PGPASSFILE"] = str(passfile)
                refresher = start_refresher(endpoint, "11111111-1111-1111-1111-111111111111", passfile, server)
                health = HealthWatch(refresher.health_port)
            port = free_port()
            command = [
                str(venv / "bin" / "postgres-mcp"),
                "--transport=sse",
                "--sse-host=127.0.0.1",
                f"--sse-port={port}",
                "--access-mode=restricted",
            ]
            mcp_log = workdir / "postgres-mcp.log"
            with _process(command, mcp_env, mcp_log):
                _wait_for_port(port)
                progress(
                    f"{scenario.name}: postgres-mcp serving on :{port}; calling execute_sql every "
                    f"{CALL_INTERVAL}s for {scenario.duration:.0f}s"
                )
                client = subprocess.Popen(
                    [
                        str(venv / "bin" / "python"),
                        str(CLIENT),
                        f"--url=http://127.0.0.1:{port}/sse",
                        f"--interval={CALL_INTERVAL}",
                        f"--duration={scenario.duration}",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                start = time.time()
                output = ClientOutput(client)
                # Every deadline of the run counts from the first call, an observed event: how long
                # postgres-mcp and the client take to start depends on the machine's load.
                first_call = output.first_call(timeout=FIRST_CALL_TIMEOUT)
                if scenario.setup == "baked":
                    # The baked token expires TOKEN_LIFETIME after the first call, as if fetched then.
                    baked = dataclasses.replace(endpoint.minted[0], expires_on=first_call + TOKEN_LIFETIME)
                    expire_token(baked)
                    endpoint.minted[0] = baked
                fault_events = _apply_faults(scenario, first_call, endpoint, refresher, client)
                stdout, stderr = _wait_for_client(client, output, scenario, start, endpoint, progress)
                if client.returncode != 0:
                    raise RuntimeError(f"MCP client failed: {stderr.strip()[-2000:]}")
            calls = [Call(**json.loads(line)) for line in stdout.splitlines() if line.startswith("{")]
            health_answers = health.stop() if health is not None else []
            if refresher is not None:
                refresher.stop()
            events = _server_events(server.log_file) + fault_events
            events += [
                (m.issued_at, "identity", f"token #{i} minted, expires +{m.expires_on - m.issued_at:.0f}s")
                for i, m in enumerate(endpoint.minted)
            ]
            if refresher is not None:
                for line in refresher.lines:
                    stamp, text = line.split(" ", 1)
                    text = text.split("token-refresher: ", 1)[-1]
                    if not text.startswith("health: "):  # the health answers have their own lines
                        events.append((float(stamp), "refresher", text))
            result = Result(
                scenario,
                calls[0].t if calls else start,
                calls,
                [],
                list(endpoint.minted),
                refresher.lines if refresher else [],
                mcp_log.read_text(errors="replace"),
                health_answers,
            )
            events += [(when, "health", f"{status} {reason}") for when, status, reason in result.health_changes()]
            result.events = sorted(events)
            return result
        finally:
            if health is not None:
                health.stop()
            if refresher is not None:
                refresher.kill()
            endpoint.stop()


class ClientOutput:
    """The MCP client's stdout (one JSON line per call) and stderr, read as they come."""

    def __init__(self, client: subprocess.Popen[str]) -> None:
        self.client = client
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=lambda: self.out.extend(iter(client.stdout.readline, "")), daemon=True),  # type: ignore[union-attr]
            threading.Thread(target=lambda: self.err.extend(iter(client.stderr.readline, "")), daemon=True),  # type: ignore[union-attr]
        ]
        for reader in self.readers:
            reader.start()

    def first_call(self, timeout: float) -> float:
        """When the client started its first call (its own record), waiting for it as long as it runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [line for line in list(self.out) if line.startswith("{")]
            if lines:
                return float(json.loads(lines[0])["t"])
            if self.client.poll() is not None:
                self.join()
                raise RuntimeError(f"MCP client ended before its first call: {''.join(self.err).strip()[-2000:]}")
            time.sleep(0.05)
        self.client.kill()
        raise RuntimeError(f"MCP client made no call within {timeout:.0f}s")

    def join(self) -> None:
        for reader in self.readers:
            reader.join(timeout=10)


def _wait_for_client(
    client: subprocess.Popen[str],
    output: ClientOutput,
    scenario: Scenario,
    start: float,
    endpoint: IdentityEndpoint,
    progress: Callable[[str], None],
) -> tuple[str, str]:
    """The client's output once it is done, with a progress line every PROGRESS_EVERY seconds meanwhile."""
    out, err = output.out, output.err
    deadline = start + scenario.duration + 180
    next_report = start + PROGRESS_EVERY
    while client.poll() is None:
        if time.time() > deadline:
            client.kill()
            raise RuntimeError(f"MCP client still running {scenario.duration + 180:.0f}s after it started")
        time.sleep(0.2)
        if time.time() >= next_report:
            calls = [json.loads(line) for line in list(out) if line.startswith("{")]
            failed = sum(1 for call in calls if not call["ok"])
            progress(
                f"{scenario.name}: +{time.time() - start:.0f}s of {scenario.duration:.0f}s: {len(calls)} calls, "
                f"{failed} failed, {len(endpoint.minted)} tokens minted"
            )
            next_report += PROGRESS_EVERY
    output.join()
    return "".join(out), "".join(err)


def _apply_faults(
    scenario: Scenario,
    first_call: float,
    endpoint: IdentityEndpoint,
    refresher: RefresherProcess | None,
    client: subprocess.Popen[str],
) -> list[tuple[float, str, str]]:
    applied: list[tuple[float, str, str]] = []
    for fault in scenario.faults:
        delay = first_call + fault.at - time.time()
        if delay > 0:
            time.sleep(delay)
        if client.poll() is not None:
            break
        if fault.action == "kill-refresher":
            assert refresher is not None
            refresher.kill()
        elif fault.action == "start-refresher":
            assert refresher is not None
            refresher.start()
        elif fault.action.startswith("next:"):
            endpoint.answer_next(*fault.action.removeprefix("next:").split(","))
        else:
            endpoint.set(fault.action)
        applied.append((time.time(), "FAULT", fault.note))
    return applied


RECOVERY_ALLOWANCE = 1.0 + POOL_TIMEOUT + 3.0  # refresher backoff cap + one pool wait + slack


def judge(result: Result) -> list[str]:
    """What differs from the scenario's expected outcome; empty when it behaved as claimed."""
    problems: list[str] = []
    scenario, calls = result.scenario, result.calls
    if len(calls) < 8:
        problems.append(f"only {len(calls)} calls were made")
        return problems
    log = "\n".join(result.refresher_log)
    problems += [
        f"the refresher never logged {fragment!r}" for fragment in scenario.expect_logged if fragment not in log
    ]
    if any(minted.token in log for minted in result.minted):
        problems.append("a token appeared in the refresher's log")
    if scenario.expect == "no-failures":
        if result.failed:
            problems.append(f"{len(result.failed)} of {len(calls)} calls failed")
        expiries = [m for m in result.minted if m.expires_on < calls[-1].t]
        if len(expiries) < 3:
            problems.append(f"only {len(expiries)} token(s) expired during the run: too short to prove anything")
    elif scenario.expect == "fails-after-expiry":
        expiry = result.minted[0].expires_on
        # Calls that ended before the expiry: their logins, whenever the pool made them, were earlier.
        before = [c for c in calls if c.t + c.ms / 1000 < expiry]
        settled = [c for c in calls if c.t > expiry + POOL_MAX_LIFETIME + POOL_TIMEOUT]
        if not before or not all(c.ok for c in before):
            problems.append("calls before the token expired did not all succeed")
        if len(settled) < 2 or any(c.ok for c in settled):
            problems.append("calls after the token expired did not all fail (expected: fails and never recovers)")
    elif scenario.expect == "fails-then-recovers":
        down = next(f.at for f in scenario.faults if f.action != "ok")
        back = next(f.at for f in scenario.faults if f.action == "ok")
        outside = [c for c in result.failed if not down <= c.t - result.start <= back + RECOVERY_ALLOWANCE]
        if not result.failed:
            problems.append("no call failed although the endpoint was down longer than a token lives")
        if outside:
            problems.append(f"{len(outside)} call(s) failed outside the outage and its recovery allowance")
        tail = [c for c in calls if c.t - result.start > back + RECOVERY_ALLOWANCE]
        if len(tail) < 3 or not all(c.ok for c in tail):
            problems.append("calls did not recover by themselves after the endpoint came back")
        if result.failed:
            warned = [when for when, status, _ in result.health if status == "503"]
            if not warned or warned[0] >= result.failed[0].t:
                problems.append("the health endpoint did not turn unhealthy before the first failed call")
        if not any(status == "200" and when - result.start > back for when, status, _ in result.health):
            problems.append("the health endpoint did not turn healthy again after the endpoint came back")
    if scenario.setup == "refresher" and not scenario.faults:
        first_ok = next((when for when, status, _ in result.health if status == "200"), None)
        if first_ok is None:
            problems.append("the health endpoint never answered 200")
        elif any(status != "200" for when, status, _ in result.health if when >= first_ok):
            problems.append("the health endpoint reported a healthy refresher unhealthy")
    return problems


def timeline(result: Result) -> str:
    """A readable account: calls folded into runs, every other event on its own line."""
    lines: list[str] = []
    items: list[tuple[float, str, str]] = list(result.events)
    items += [(call.t, "call", "ok" if call.ok else f"FAILED: {call.detail[:110]}") for call in result.calls]
    items.sort()
    run_start: float | None = None
    run_count = 0
    run_text = ""

    def flush() -> None:
        nonlocal run_start, run_count
        if run_start is not None:
            suffix = f" x{run_count}" if run_count > 1 else ""
            label = "mcp call" if run_source == "call" else run_source
            lines.append(f"  {run_start - result.start:+7.1f}s  {label:10} {run_text}{suffix}")
        run_start, run_count = None, 0

    run_source = ""
    for when, source, text in items:
        if source in ("call", "postgres"):  # repetitive: fold identical neighbours
            if run_start is not None and (source, text) == (run_source, run_text):
                run_count += 1
                continue
            flush()
            run_start, run_count, run_source, run_text = when, 1, source, text
            continue
        flush()
        lines.append(f"  {when - result.start:+7.1f}s  {source:10} {text}")
    flush()
    return "\n".join(lines)
