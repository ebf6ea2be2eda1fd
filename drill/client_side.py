"""The client side of the drill: the MCP client's own token, pasted or signed in through the gateway.

The database side no longer expires (the refresher); the user's side still did: with Easy Auth a user pastes
an Entra token into the MCP client, and it lasts about an hour. Here two clients run the same session, a
`list_schemas` call every second for `SESSION` seconds, through the same sign-in gateway (the gateway
program from its locked venv, as its container runs it) in front of the real postgres-mcp 0.3.0 in token
mode, while Entra's tokens live `ENTRA_LIFETIME` seconds instead of an hour:

- `pasted`: the client sends one Entra access token as its bearer, as a user who pasted the output of
  `az account get-access-token` does. The gateway accepts such a raw Entra token only from an allowed agent
  (`entraAuthAllowedClientIds`), so an agent's client-credentials token plays the pasted one; it is checked
  the same way (signature, issuer, audience, expiry). Expected: calls pass until it expires, then every call
  is refused (401) and nothing recovers without a person pasting a new one.
- `signed-in`: the MCP SDK's OAuthClientProvider signs in through the gateway by itself (discovery,
  registration, consent and Entra sign-in played by the scripted browser), then calls. The gateway keeps
  Entra's tokens in its store and refreshes them at Entra itself. Expected: no call fails, across several
  Entra expiries, and the user signs in once.

Stand-ins (testing/gateway_stack.py): Entra over HTTPS on Entra's paths, the managed identity endpoint,
Azurite's Table service as the shared store, a local PostgreSQL whose passwords are the identity's tokens.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testing.gateway_stack import Stack, gateway_stack
from testing.signing import unverified_claims

SESSION = 30.0  # seconds each client calls for
ENTRA_LIFETIME = 5  # seconds an Entra access token lives here (Entra: 60-90 minutes)
PASTED_LIFETIME = 12  # seconds the pasted token lives from the moment it is pasted
INTERVAL = 1.0  # seconds between calls


@dataclass(frozen=True)
class ClientSession:
    name: str
    description: str
    calls: list[dict[str, Any]]
    summary: dict[str, Any]
    entra_refreshes: int
    expires_at: float | None = None  # epoch seconds; the pasted token's expiry

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [call for call in self.calls if not call["ok"]]


def _pasted(stack: Stack) -> ClientSession:
    token = stack.agent_token(lifetime=PASTED_LIFETIME)
    expires_at = float(unverified_claims(token)["exp"])
    run = stack.run_client(
        "--bearer-env",
        "PASTED_TOKEN",
        "--duration",
        str(SESSION),
        "--interval",
        str(INTERVAL),
        env={"PASTED_TOKEN": token},
        timeout=SESSION + 120,
    )
    return ClientSession(
        "pasted",
        f"a pasted Entra token living {PASTED_LIFETIME}s, sent as the bearer (Easy Auth's way)",
        run.calls,
        run.summary,
        0,
        expires_at,
    )


def _signed_in(stack: Stack, work: Path) -> ClientSession:
    before = len(stack.entra.requests("token", grant_type="refresh_token"))
    run = stack.run_client(
        "--storage",
        str(work / "signed-in-client.json"),
        "--duration",
        str(SESSION),
        "--interval",
        str(INTERVAL),
        timeout=SESSION + 180,
    )
    refreshes = len(stack.entra.requests("token", grant_type="refresh_token")) - before
    return ClientSession(
        "signed-in",
        "the MCP SDK's OAuthClientProvider signed in through the gateway, which refreshes Entra's tokens",
        run.calls,
        run.summary,
        refreshes,
    )


def run(progress: Callable[[str], None] = lambda _: None) -> list[ClientSession]:
    """Both client sessions against one gateway stack; the stack is stopped on return."""
    with tempfile.TemporaryDirectory(prefix="drill-client-side-") as directory:
        work = Path(directory)
        progress("starting the stand-ins (Entra, managed identity, Azurite), PostgreSQL, postgres-mcp 0.3.0")
        with gateway_stack(work, access_token_lifetime=ENTRA_LIFETIME) as stack:
            gateway = stack.start_gateway()
            stack.wait_healthy(gateway)
            progress(f"gateway ready at {stack.mcp_url}; Entra tokens live {ENTRA_LIFETIME}s")
            progress(f"pasted: {SESSION:g}s of calls with one pasted token")
            pasted = _pasted(stack)
            progress(f"signed-in: {SESSION:g}s of calls through the gateway's sign-in")
            signed_in = _signed_in(stack, work)
            return [pasted, signed_in]


def timeline(session: ClientSession) -> str:
    """Runs of passing and failing calls, with seconds from the session's first call."""
    if not session.calls:
        return f"   no call was made: {session.summary.get('error', '')}"
    start = session.calls[0]["t"]
    lines: list[str] = []
    run_start, run_ok, count, error = session.calls[0]["t"], session.calls[0]["ok"], 0, ""
    for call in [*session.calls, None]:
        if call is None or call["ok"] != run_ok:
            what = "ok" if run_ok else f"FAILED ({error})"
            lines.append(f"   {run_start - start:5.1f}s  {count:3} calls {what}")
            if call is None:
                break
            run_start, run_ok, count = call["t"], call["ok"], 0
        count += 1
        error = (call["error"] or "")[:90]
    if session.expires_at is not None:
        lines.append(f"   (the pasted token expired at {session.expires_at - start:.1f}s)")
    return "\n".join(lines)


def judge(session: ClientSession) -> list[str]:
    """What went against the expectation of each client; empty when the session behaved as expected."""
    problems: list[str] = []
    calls = session.calls
    if len(calls) < SESSION / INTERVAL / 2:
        problems.append(f"only {len(calls)} calls in {SESSION:g}s ({session.summary.get('error', '')})")
        return problems
    if session.name == "pasted":
        assert session.expires_at is not None
        before = [c for c in calls if c["t"] < session.expires_at - 1]
        after = [c for c in calls if c["t"] > session.expires_at + 1]
        if not before or not all(c["ok"] for c in before):
            problems.append("calls failed before the pasted token expired")
        if not after or any(c["ok"] for c in after):
            problems.append("calls still passed after the pasted token expired")
    else:
        if session.failed:
            problems.append(f"{len(session.failed)} calls failed: {session.failed[0]['error']}")
        if session.summary.get("sign_ins") != 1:
            problems.append(f"the user signed in {session.summary.get('sign_ins')} times, not once")
        if session.entra_refreshes < 2:
            problems.append(f"the gateway refreshed Entra's token {session.entra_refreshes} times, not several")
    return problems


def summary(session: ClientSession) -> str:
    text = f"{len(session.calls)} calls, {len(session.failed)} failed"
    if session.name == "signed-in":
        text += f", {session.summary.get('sign_ins')} sign-in, {session.entra_refreshes} Entra refreshes by the gateway"
    return text


EXPECTED = {
    "pasted": "passes until the pasted token expires, then every call is refused",
    "signed-in": "no failed call, one sign-in, the gateway refreshing Entra's tokens",
}
