"""`python -m drill`: the expiry drill, runnable by anyone with this repository.

Runs the real postgres-mcp 0.3.0 against a local PostgreSQL whose tokens expire like
Entra tokens, first with the token baked into DATABASE_URI, then with the token
refresher exactly as the Container App runs it, prints a timeline of each and a verdict.
`--faults` adds the identity endpoint outages, garbage answers and a refresher restart.
"""

from __future__ import annotations

import argparse
import sys

from drill import client_side, scenarios
from drill.postgres_mcp_venv import ensure_venv

CLIENT_SIDE = "client-side"
NAMES = [*scenarios.SCENARIOS, CLIENT_SIDE]  # what --only accepts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drill",
        description=__doc__.splitlines()[0],
        epilog="scenarios:\n"
        + "\n".join(f"  {name:18} {scenario.description}" for name, scenario in scenarios.SCENARIOS.items())
        + f"\n  {CLIENT_SIDE:18} the MCP client's own token: pasted (expires) vs signed in through the gateway"
        + "\n\nThe first run builds .drill/postgres-mcp-0.3.0 (the real postgres-mcp, from PyPI) and"
        + " .drill/gateway-venv (the gateway's lock) once; the client side needs `npm ci --prefix tools/azurite`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--faults", action="store_true", help="run every scenario: baked, refresher and the faults")
    parser.add_argument(
        "--only",
        choices=NAMES,
        action="append",
        metavar="SCENARIO",
        help="run only this scenario; repeat to run several (e.g. --only refresher --only long-outage)",
    )
    arguments = parser.parse_args(argv)
    names = arguments.only or (NAMES if arguments.faults else ["baked", "refresher", CLIENT_SIDE])
    venv = ensure_venv()
    print(
        f"Tokens live {scenarios.TOKEN_LIFETIME}s (Entra: up to 24h); the pool replaces connections every "
        f"{scenarios.POOL_MAX_LIFETIME}s (postgres-mcp: hourly) and waits {scenarios.POOL_TIMEOUT}s for one "
        "(30s); each token becomes the role's password VALID UNTIL its expiry.\n"
    )
    verdicts: list[tuple[str, bool, str]] = []
    for name in names:
        if name == CLIENT_SIDE:
            verdicts.extend(run_client_side())
            continue
        scenario = scenarios.SCENARIOS[name]
        print(f"== {name}: {scenario.description}")
        result = scenarios.run(scenario, venv, lambda line: print(f"   {line}", flush=True))
        print(scenarios.timeline(result))
        problems = scenarios.judge(result)
        summary = (
            f"{len(result.calls)} calls, {len(result.failed)} failed, {len(result.minted)} tokens minted, "
            f"{result.reconnections()} new logins"
        )
        expected = {
            "no-failures": "no failed call",
            "fails-after-expiry": "fails after the first expiry, never recovers",
            "fails-then-recovers": "fails while the endpoint is down, recovers by itself",
        }[scenario.expect]
        verdict = "AS EXPECTED" if not problems else "UNEXPECTED: " + "; ".join(problems)
        print(f"   {summary}\n   expected: {expected} -> {verdict}\n", flush=True)
        verdicts.append((name, not problems, summary))
    print("== verdict")
    for name, ok, summary in verdicts:
        print(f"   {'PASS' if ok else 'FAIL'}  {name:18} {summary}")
    return 0 if all(ok for _, ok, _ in verdicts) else 1


def run_client_side() -> list[tuple[str, bool, str]]:
    print(f"== {CLIENT_SIDE}: the MCP client's own token, pasted or signed in through the sign-in gateway")
    verdicts = []
    for session in client_side.run(lambda line: print(f"   {line}", flush=True)):
        print(f"   -- {session.name}: {session.description}")
        print(client_side.timeline(session))
        problems = client_side.judge(session)
        verdict = "AS EXPECTED" if not problems else "UNEXPECTED: " + "; ".join(problems)
        text = client_side.summary(session)
        print(f"   {text}\n   expected: {client_side.EXPECTED[session.name]} -> {verdict}\n", flush=True)
        verdicts.append((f"client-{session.name}", not problems, text))
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
