"""`python -m drill.benchmark`: what token mode costs, in figures. Nothing here passes or fails.

1. New-connection latency over TCP + TLS to a local PostgreSQL, three ways to present
   the same token: as a static password; from the password file the refresher keeps;
   fetched in-process from the identity endpoint for each connection (the workaround
   found in the field), with a new credential each time and with a shared (caching) one.
2. Identity endpoint calls per token lifetime made by the refresher.
3. The refresher's resident memory and CPU while it waits for the next refresh, with its health
   endpoint on and probed, against the 0.1 GiB / 0.05 vCPU the sidecar gets.
4. How long a refresher restart keeps the replica out of rotation: the shipped program's time (and
   CPU) from its start to its first 200 on the startup probe's path, with a predecessor's valid token
   and from scratch, turned into the startup probe's schedule (components/mcp_app.py ProbeTiming).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import psycopg.conninfo
from psycopg import sql

from components.mcp_app import (
    REFRESHER_HEALTH_PATH,
    REFRESHER_LIVENESS,
    REFRESHER_RESOURCES,
    REFRESHER_STARTUP,
    ProbeTiming,
    refresher_command,
)
from testing.identity_endpoint import IdentityEndpoint
from testing.postgres_server import PostgresServer, free_port, running_postgres

ROOT = Path(__file__).resolve().parent.parent
REFRESHER = ROOT / "sidecar" / "token_refresher.py"
SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
TOKEN = "eyJ0eXAiOiJKV1QifQ." + "x" * 1600 + ".sig"  # as long as an Entra access token


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def time_connections(connect: Callable[[], psycopg.Connection[object]], count: int) -> list[float]:
    samples: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        connection = connect()
        connection.execute("SELECT 1")
        samples.append((time.perf_counter() - started) * 1000)
        connection.close()
    return samples


def refresher_env(endpoint: IdentityEndpoint, passfile: Path, server: PostgresServer | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        IDENTITY_ENDPOINT=endpoint.url, IDENTITY_HEADER=endpoint.header, PGPASSFILE=str(passfile), PGUSER="app_user"
    )
    if server is not None:
        env.update(PGHOST=server.host, PGPORT=str(server.port), PGDATABASE="postgres")
    return env


def connection_latency(server: PostgresServer, count: int) -> None:
    with server.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE app_user LOGIN PASSWORD {}").format(sql.Literal(TOKEN)))
    endpoint = IdentityEndpoint(lifetime=3600, fixed_token=TOKEN).start()
    workdir = tempfile.TemporaryDirectory(prefix="bench-")
    passfile = Path(workdir.name) / "pgpass"
    refresher = subprocess.run(
        [sys.executable, str(REFRESHER), "--once"],
        env=refresher_env(endpoint, passfile, server),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if refresher.returncode != 0:
        raise RuntimeError(refresher.stderr)
    conninfo = psycopg.conninfo.make_conninfo(
        host=server.host, port=server.port, dbname="postgres", user="app_user", sslmode="require"
    )
    os.environ["IDENTITY_ENDPOINT"], os.environ["IDENTITY_HEADER"] = endpoint.url, endpoint.header
    from azure.identity import ManagedIdentityCredential

    shared = ManagedIdentityCredential()

    def fresh_credential_token() -> str:
        credential = ManagedIdentityCredential()
        try:
            return str(credential.get_token(SCOPE).token)
        finally:
            credential.close()

    ways: dict[str, Callable[[], psycopg.Connection[object]]] = {
        "static password": lambda: psycopg.connect(conninfo, password=TOKEN),
        "refresher's password file": lambda: psycopg.connect(conninfo, passfile=str(passfile)),
        "token fetched per connection (new credential)": lambda: psycopg.connect(
            conninfo, password=fresh_credential_token()
        ),
        "token fetched per connection (shared credential)": lambda: psycopg.connect(
            conninfo, password=shared.get_token(SCOPE).token
        ),
    }
    for connect in ways.values():  # warm up each path once
        time_connections(connect, 3)
    results: dict[str, list[float]] = {}
    for name, connect in ways.items():
        print(f"   measuring {count} new connections: {name} ...", flush=True)
        results[name] = time_connections(connect, count)
    endpoint.stop()
    workdir.cleanup()
    baseline = statistics.median(results["static password"])
    print(
        f"\n1. New-connection latency, TCP + TLS to local PostgreSQL 15, {count} connections each "
        f"(token of {len(TOKEN)} bytes)"
    )
    print(f"   {'way':50} {'median':>9} {'p95':>9} {'ratio':>7}")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"   {name:50} {median:7.2f}ms {percentile(samples, 0.95):7.2f}ms {median / baseline:6.2f}x")
    requests = len(endpoint.requests)
    print(
        f"   identity endpoint requests during the run: {requests} "
        f"(the file and the static password need none per connection)"
    )


@contextmanager
def running_refresher(lifetime: int, *arguments: str) -> Iterator[tuple[IdentityEndpoint, subprocess.Popen[bytes]]]:
    """The refresher in its loop against a local identity endpoint minting `lifetime`-second tokens."""
    endpoint = IdentityEndpoint(lifetime=lifetime).start()
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        process = subprocess.Popen(
            [sys.executable, str(REFRESHER), *arguments],
            env=refresher_env(endpoint, Path(workdir) / "pgpass"),
            stderr=subprocess.DEVNULL,
        )
        try:
            yield endpoint, process
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
            endpoint.stop()


def calls_per_lifetime(lifetime: int, margin: float, lifetimes: int) -> None:
    print(
        f"\n   running the refresher for {lifetime * lifetimes}s against {lifetime}s tokens, counting its calls ...",
        flush=True,
    )
    with running_refresher(lifetime, f"--margin-seconds={margin}", "--min-interval-seconds=0.5") as (endpoint, _):
        for elapsed in range(lifetime, lifetime * lifetimes + 1, lifetime):
            time.sleep(lifetime)
            print(f"   +{elapsed}s: {len(endpoint.requests)} identity endpoint calls so far", flush=True)
    print(
        f"\n2. Identity endpoint calls: {len(endpoint.requests)} in {lifetime * lifetimes}s of {lifetime}s tokens "
        f"(margin {margin}s) = {len(endpoint.requests) / lifetimes:.2f} per token lifetime"
    )
    print("   In production (24 h managed identity tokens, margin 900 s, --max-interval-seconds 3600) the refresher")
    print("   asks once an hour: 24 calls per token lifetime, answered from the platform's token cache.")


def idle_footprint(seconds: float, probes: int) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    port = free_port()
    with running_refresher(3600, f"--health-port={port}") as (_, process):
        time.sleep(2)  # first refresh done, now waiting

        def cpu_seconds() -> float:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        def memory_kib(field: str) -> int:
            status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
            return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))

        print(f"\n   sampling the idle refresher's CPU time and memory for {seconds:.0f}s ...", flush=True)
        before = cpu_seconds()
        time.sleep(seconds)
        idle_cpu = cpu_seconds() - before
        idle_rss = memory_kib("VmRSS")
        before, started = cpu_seconds(), time.perf_counter()
        for _ in range(probes):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                answer.read()
        elapsed, probe_cpu = time.perf_counter() - started, cpu_seconds() - before
        peak = memory_kib("VmHWM")
    allowance = REFRESHER_RESOURCES.memory_gib * 1024
    per_probe = probe_cpu / probes
    print(
        f"\n3. Refresher, health endpoint on (Python {sys.version.split()[0]}): idle RSS {idle_rss / 1024:.1f} MiB; "
        f"peak RSS after {probes} probes {peak / 1024:.1f} MiB = {peak / 1024 / allowance:.0%} of its "
        f"{allowance:.0f} MiB\n   CPU {idle_cpu * 1000:.0f} ms over {seconds:.0f}s idle; "
        f"{per_probe * 1000:.2f} ms per probe ({elapsed / probes * 1000:.2f} ms wall); at one liveness probe "
        f"every {REFRESHER_LIVENESS.period_seconds}s that is "
        f"{per_probe / REFRESHER_LIVENESS.period_seconds / REFRESHER_RESOURCES.cpu:.3%} of its "
        f"{REFRESHER_RESOURCES.cpu} vCPU"
    )


def probe_passes_at(listening: float, answered: float, timing: ProbeTiming) -> float:
    """When the startup probe (a call at initial delay + k x period, each waiting `timeout` for its
    answer) first passes, for a container listening from `listening` seconds after its start and
    answering 200 from `answered` on: the end of the out-of-rotation window (Kubernetes: a container
    without a readiness probe is ready once its startup probe passes). A call before the port listens
    is refused at once; a call that connects waits for the answer."""
    call = float(timing.initial_delay_seconds)
    while call < listening or call + timing.timeout_seconds < answered:
        call += timing.period_seconds
    return max(call, answered)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_to_first_ok(env: dict[str, str], port: int) -> tuple[float, float, float, float]:
    """(wall, CPU) seconds from the start of the shipped refresher to its listening port, then to its first 200."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *refresher_command(900, port)[1:]], env=env, stderr=subprocess.DEVNULL)
    try:
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    listening, listening_cpu = time.perf_counter() - started, cpu_seconds(process.pid)
                    break
            if time.perf_counter() - started > 60:
                raise RuntimeError("the refresher did not listen within 60 s")
            time.sleep(0.002)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{REFRESHER_HEALTH_PATH}", timeout=5) as answer:
                    if answer.status == 200:
                        return listening, listening_cpu, time.perf_counter() - started, cpu_seconds(process.pid)
            except (urllib.error.HTTPError, OSError):
                pass
            if time.perf_counter() - started > 60:
                raise RuntimeError("the refresher did not answer 200 within 60 s")
            time.sleep(0.005)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def restart_window(runs: int) -> None:
    print(f"\n   starting the shipped refresher {runs} times each way, timing its first 200 ...", flush=True)
    endpoint = IdentityEndpoint(lifetime=3600).start()
    results: dict[str, list[tuple[float, float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        passfile = Path(workdir) / "pgpass"
        env = refresher_env(endpoint, passfile)
        for way in ("predecessor's valid token, identity endpoint down", "no token: one fetch (loopback)"):
            samples = []
            for _ in range(runs):
                endpoint.set("ok")
                if way.startswith("predecessor"):
                    once = [sys.executable, str(REFRESHER), "--once"]
                    subprocess.run(once, env=env, check=True, timeout=30, capture_output=True)
                    endpoint.set("http-503")
                else:
                    passfile.unlink(missing_ok=True)
                samples.append(time_to_first_ok(env, free_port()))
            results[way] = samples
    endpoint.stop()
    timing, share = REFRESHER_STARTUP, REFRESHER_RESOURCES.cpu
    print(
        f"\n4. Out of rotation on a refresher restart, counted from the new container's start: startup probe "
        f"every {timing.period_seconds}s from {timing.initial_delay_seconds}s, {timing.timeout_seconds}s timeout "
        f"(components/mcp_app.py); median of {runs} starts, Python {sys.version.split()[0]}"
    )
    print(f"   {'start':52} {'listens':>16} {'first 200':>16} {'out here':>9}   at {share} vCPU")
    for way, samples in results.items():
        listening, listening_cpu, answered, answered_cpu = (statistics.median(s[i] for s in samples) for i in range(4))
        # Under the sidecar's CPU quota a start is CPU-bound: the same CPU time at a 1/20 share.
        slow_listening, slow_answered = max(listening, listening_cpu / share), max(answered, answered_cpu / share)
        here, throttled = (
            probe_passes_at(listening, answered, timing),
            probe_passes_at(slow_listening, slow_answered, timing),
        )
        print(
            f"   {way:52} {listening * 1000:5.0f}ms ({listening_cpu * 1000:3.0f} CPU) "
            f"{answered * 1000:5.0f}ms ({answered_cpu * 1000:3.0f} CPU) {here:8.1f}s   {throttled:.1f}s "
            f"(listens at {slow_listening:.2f}s)"
        )
    print(
        f"   A start that listens after the first call ({timing.initial_delay_seconds}s) waits for the next one, "
        f"{timing.period_seconds}s later.\n"
        "   Plus the platform's own restart before the start: immediate after a first exit, then 10 s doubling\n"
        "   to 5 min for repeated ones, reset after 10 min of running (Kubernetes, Pod Lifecycle)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m drill.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--restart-runs", type=int, default=10)
    parser.add_argument("--only-restart-window", action="store_true", help="measure only 4. (no PostgreSQL needed)")
    arguments = parser.parse_args()
    if arguments.only_restart_window:
        restart_window(arguments.restart_runs)
        return
    print("starting a local PostgreSQL (TLS) ...", flush=True)
    with running_postgres() as server:
        connection_latency(server, arguments.connections)
    calls_per_lifetime(lifetime=6, margin=3, lifetimes=5)
    idle_footprint(arguments.idle_seconds, arguments.probes)
    restart_window(arguments.restart_runs)


if __name__ == "__main__":
    main()
