"""`python -m drill.benchmark`: what token mode costs, in figures. Nothing here passes or fails.

1. New-connection latency over TCP + TLS to a local PostgreSQL, three ways to present
   the same token: as a static password; from the password file the refresher keeps;
   fetched in-process from the identity endpoint for each connection (the workaround
   found in the field), with a new credential each time and with a shared (caching) one.
2. Identity endpoint calls per token lifetime made by the refresher.
3. The refresher's resident memory and CPU while it waits for the next refresh.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import psycopg.conninfo
from psycopg import sql

from drill.identity_endpoint import IdentityEndpoint
from drill.postgres_server import PostgresServer, running_postgres

ROOT = Path(__file__).resolve().parent.parent
REFRESHER = ROOT / "components" / "token_refresher.py"
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


def idle_footprint(seconds: float) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    with running_refresher(3600) as (_, process):
        time.sleep(2)  # first refresh done, now waiting

        def cpu_seconds() -> float:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        print(f"\n   sampling the idle refresher's CPU time and memory for {seconds:.0f}s ...", flush=True)
        before = cpu_seconds()
        time.sleep(seconds)
        used = cpu_seconds() - before
        rss_kib = next(
            int(line.split()[1])
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    print(
        f"\n3. Refresher while idle: RSS {rss_kib / 1024:.1f} MiB; CPU {used * 1000:.0f} ms over {seconds:.0f}s "
        f"({used / seconds * 100:.3f}% of one core); Python {sys.version.split()[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m drill.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=20)
    arguments = parser.parse_args()
    print("starting a local PostgreSQL (TLS) ...", flush=True)
    with running_postgres() as server:
        connection_latency(server, arguments.connections)
    calls_per_lifetime(lifetime=6, margin=3, lifetimes=5)
    idle_footprint(arguments.idle_seconds)


if __name__ == "__main__":
    main()
