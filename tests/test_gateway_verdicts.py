"""The gateway's per-replica verdicts (gateway/auth.py `Verdicts`, `GatewayAuth.load_access_token`), in the gateway's
own virtualenv with a stand-in clock and verifier: an accepted token is verified once per VERDICT_SECONDS, never
kept past its Entra token's expiry less the refresh margin (the refresh at Entra stays on time), a refusal is never
kept, entries are bounded and keyed by a digest, not the token. What it buys, a signed-in user's call without the
store's two reads, is measured by `python -m drill.gateway_benchmark`; the sign-in end to end still refreshes
Entra's tokens on time (tests/test_gateway_end_to_end.py, tests/test_gateway_long_sign_in.py)."""

from __future__ import annotations

import pytest

from testing.gateway_stack import run_in_gateway_venv

pytestmark = pytest.mark.drill

SCRIPT = r"""
import asyncio, json
from mcp.server.auth.provider import AccessToken
from gateway.auth import GatewayAuth, Verdicts, REFRESH_MARGIN_SECONDS, VERDICT_SECONDS


def token(expires_at):
    return AccessToken(token="t", client_id="c", scopes=["user_impersonation"], expires_at=expires_at)


now = [1000.0]
out = {}
verdicts = Verdicts(clock=lambda: now[0], entries=3)
verdicts.keep("a", token(int(now[0] + 3600)))
out["kept"] = verdicts.get("a") is not None
now[0] += VERDICT_SECONDS - 0.5
out["within"] = verdicts.get("a") is not None
now[0] += 1
out["after"] = verdicts.get("a") is None
# An Entra token with 5 s left is kept 5 - margin seconds, not VERDICT_SECONDS.
now[0] = 2000.0
verdicts.keep("b", token(int(now[0] + 5)))
now[0] += 5 - REFRESH_MARGIN_SECONDS - 0.5
out["capped_within"] = verdicts.get("b") is not None
now[0] += 1
out["capped_after"] = verdicts.get("b") is None
verdicts.keep("c", token(int(now[0] + 1)))
out["too_short"] = len(verdicts) == 0
for name in "defg":
    verdicts.keep(name, token(int(now[0] + 3600)))
out["bounded"] = len(verdicts) == 3 and verdicts.get("d") is None and verdicts.get("g") is not None
out["digest"] = all("g" != key and len(key) == 64 for key in verdicts._kept)


class Counting(GatewayAuth):
    def __init__(self):
        self.verdicts = Verdicts(clock=lambda: now[0])
        self.calls = 0
        self.accept = True

    async def _verify(self, token_text):
        self.calls += 1
        return token(int(now[0] + 3600)) if self.accept else None


async def main():
    auth = Counting()
    first = await auth.load_access_token("x")
    second = await auth.load_access_token("x")
    out["verified_once"] = first is not None and second is first and auth.calls == 1
    auth.accept = False
    out["refusal"] = await auth.load_access_token("y") is None and await auth.load_access_token("y") is None
    out["refusal_not_kept"] = auth.calls == 3
    now[0] += VERDICT_SECONDS + 1
    out["verified_again"] = await auth.load_access_token("x") is None and auth.calls == 4


asyncio.run(main())
print(json.dumps(out))
"""


def test_an_accepted_token_is_verified_once_per_period_and_never_past_its_entra_token() -> None:
    verdict = run_in_gateway_venv(SCRIPT)
    assert verdict == {
        "kept": True,
        "within": True,
        "after": True,
        "capped_within": True,
        "capped_after": True,
        "too_short": True,
        "bounded": True,
        "digest": True,
        "verified_once": True,
        "refusal": True,
        "refusal_not_kept": True,
        "verified_again": True,
    }
