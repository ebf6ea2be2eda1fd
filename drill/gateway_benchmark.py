"""What the sign-in gateway costs, in figures (nothing passes or fails): `python -m drill.gateway_benchmark`.

On the stack of the gateway's end-to-end tests (testing/gateway_stack.py: the real postgres-mcp 0.3.0 in
token mode, Entra, the managed identity and Azurite played locally), with a gateway whose public URL is its
own port and whose backend is postgres-mcp directly (no test relay in either path):

- the latency of postgres-mcp's `list_schemas`, called directly over SSE and through the gateway
  (Streamable HTTP, the shared backend session) on its two paths: an agent's Entra token (verified on every
  call against the cached JWKS), and a signed-in user's token, the OAuth proxy's own (on every call the
  gateway reads its JTI mapping and the upstream Entra token from the store, Table Storage played by
  Azurite, and verifies that Entra token); one caller and `concurrency` concurrent callers: p50 and p95
  over `calls` calls each, and the difference;
- the gateway's start: wall time and CPU seconds from its launch to listening (imports, the store and
  sign-in setup, the backend session), i.e. how long a CPU quota stretches it;
- the gateway's resident memory (/proc/<pid>/status VmRSS) idle after start, and after the load
  (VmRSS and the peak VmHWM).

`gateway_overhead()` prints them and returns them; drill/benchmark.py may call it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from testing.gateway_stack import Stack, gateway_stack
from testing.postgres_server import free_port


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _latencies(stack: Stack, url: str, calls: int, concurrency: int, *args: str, env: dict[str, str]) -> list[float]:
    # One warm-up batch (connection, session, JWKS fetch) is run and left out of the figures.
    run = stack.run_client(
        *args,
        "--summary-only",
        "--calls",
        str(calls + concurrency),
        "--interval",
        "0",
        "--concurrency",
        str(concurrency),
        url=url,
        env=env,
        timeout=600,
    )
    if run.returncode != 0 or run.summary.get("failures"):
        raise RuntimeError(f"the benchmark's client failed: {run.summary} {run.stderr[-2000:]}")
    samples: list[float] = run.summary["ms"]
    return samples[concurrency:]


def gateway_overhead(calls: int = 200, concurrency: int = 5, progress: Any = print) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-benchmark-") as work:
        # Entra tokens living an hour: no refresh inside the measurement.
        with gateway_stack(Path(work), access_token_lifetime=3600) as stack:
            port = free_port()
            started = time.monotonic()
            gateway = stack.start_gateway(
                route=False,
                port=port,
                GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}",
                GATEWAY_BACKEND_URL=f"http://127.0.0.1:{stack.mcp_port}/sse",
            )
            # Listening means the lifespan ran (uvicorn binds after startup): the backend session is open.
            figures["startup_wall_s"] = time.monotonic() - started
            figures["startup_cpu_s"] = cpu_seconds(gateway.process.pid)
            stack.wait_healthy(gateway)
            figures["rss_idle_kib"] = memory_kib(gateway.process.pid)["VmRSS"]
            token = {"AGENT_TOKEN": stack.agent_token()}
            direct = f"http://127.0.0.1:{stack.mcp_port}/sse"
            through = f"http://127.0.0.1:{port}/mcp"
            # A user signs in once, through this gateway (its callback is on its own port), and keeps the
            # gateway's tokens in `storage`; the measured calls need no browser.
            stack.entra.api.redirect_uris = (*stack.entra.api.redirect_uris, f"http://127.0.0.1:{port}/auth/callback")
            storage = Path(work) / "user-client.json"
            signed_in = stack.run_client("--storage", str(storage), "--calls", "1", url=through)
            if signed_in.returncode != 0 or signed_in.summary.get("sign_ins") != 1:
                raise RuntimeError(f"the benchmark's sign-in failed: {signed_in.summary} {signed_in.stderr[-2000:]}")
            for callers in (1, concurrency):
                progress(f"gateway benchmark: {calls} list_schemas calls, {callers} concurrent caller(s)")
                plain = _latencies(stack, direct, calls, callers, "--sse", env={})
                gated = _latencies(stack, through, calls, callers, "--bearer-env", "AGENT_TOKEN", env=token)
                user = _latencies(stack, through, calls, callers, "--storage", str(storage), "--no-browser", env={})
                figures[f"callers_{callers}"] = {
                    "direct_p50_ms": percentile(plain, 0.5),
                    "direct_p95_ms": percentile(plain, 0.95),
                    "gateway_p50_ms": percentile(gated, 0.5),
                    "gateway_p95_ms": percentile(gated, 0.95),
                    "added_p50_ms": percentile(gated, 0.5) - percentile(plain, 0.5),
                    "added_p95_ms": percentile(gated, 0.95) - percentile(plain, 0.95),
                    "user_p50_ms": percentile(user, 0.5),
                    "user_p95_ms": percentile(user, 0.95),
                    "user_added_p50_ms": percentile(user, 0.5) - percentile(plain, 0.5),
                    "user_added_p95_ms": percentile(user, 0.95) - percentile(plain, 0.95),
                }
            loaded = memory_kib(gateway.process.pid)
            figures["rss_loaded_kib"] = loaded["VmRSS"]
            figures["rss_peak_kib"] = loaded["VmHWM"]
    print("\nlist_schemas through the gateway vs directly over SSE (milliseconds)")
    print(
        f"{'path':>6} {'callers':>8} {'direct p50':>11} {'p95':>7} {'gateway p50':>12} {'p95':>7} "
        f"{'added p50':>10} {'p95':>7}"
    )
    for path, prefix in (("agent", ""), ("user", "user_")):
        for callers in (1, concurrency):
            row = figures[f"callers_{callers}"]
            through_p50 = row["gateway_p50_ms" if not prefix else "user_p50_ms"]
            through_p95 = row["gateway_p95_ms" if not prefix else "user_p95_ms"]
            print(
                f"{path:>6} {callers:>8} {row['direct_p50_ms']:>11.1f} {row['direct_p95_ms']:>7.1f} "
                f"{through_p50:>12.1f} {through_p95:>7.1f} {row[prefix + 'added_p50_ms']:>10.1f} "
                f"{row[prefix + 'added_p95_ms']:>7.1f}"
            )
    print(
        f"gateway start to listening: {figures['startup_wall_s']:.1f} s, {figures['startup_cpu_s']:.2f} CPU-seconds "
        f"(at a 0.15 vCPU quota about {figures['startup_cpu_s'] / 0.15:.0f} s)"
    )
    print(
        f"gateway memory: idle {figures['rss_idle_kib'] / 1024:.0f} MiB, after the load "
        f"{figures['rss_loaded_kib'] / 1024:.0f} MiB (peak {figures['rss_peak_kib'] / 1024:.0f} MiB)"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=5)
    args = parser.parse_args()
    gateway_overhead(args.calls, args.concurrency)


if __name__ == "__main__":
    main()
