"""The drill's client side (drill/client_side.py), run as `python -m drill` runs it, on a shorter session: a pasted
Entra token fails the session once it expires and nothing recovers; the same session signed in through the gateway
loses no call, signs in once and crosses several Entra expiries. The verdicts are the drill's own (`judge`), so a
drill that stopped telling the two apart fails here."""

from __future__ import annotations

from typing import Any

import pytest

from drill import client_side

pytestmark = pytest.mark.drill


def test_the_pasted_token_fails_the_session_and_the_gateways_sign_in_survives_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20 s sessions, Entra's tokens living 5 s, the pasted one 10 s: the same shape as the drill's 30 s.
    monkeypatch.setattr(client_side, "SESSION", 20.0)
    monkeypatch.setattr(client_side, "PASTED_LIFETIME", 10)
    pasted, signed_in = client_side.run()

    assert (pasted.name, signed_in.name) == ("pasted", "signed-in")
    assert client_side.judge(pasted) == [], client_side.timeline(pasted)
    assert client_side.judge(signed_in) == [], client_side.timeline(signed_in)
    # The pasted session: passes first, then is refused to the end.
    assert pasted.calls[0]["ok"] and not pasted.calls[-1]["ok"]
    assert "FAILED" in client_side.timeline(pasted) and "expired at" in client_side.timeline(pasted)
    # The signed-in session: at least 20 s / 5 s - 1 Entra expiries crossed by the gateway's own refreshes.
    assert signed_in.failed == [] and signed_in.entra_refreshes >= 3


def test_the_verdict_names_what_went_wrong() -> None:
    # A pasted token that never stopped working, a signed-in session that lost calls and signed in twice.
    calls: list[dict[str, Any]] = [{"t": 1000.0 + i, "ok": True, "ms": 5.0, "error": None} for i in range(30)]
    never_expired = client_side.ClientSession("pasted", "", calls, {}, 0, expires_at=1012.0)
    assert client_side.judge(never_expired) == ["calls still passed after the pasted token expired"]
    lost: list[dict[str, Any]] = [*calls[:20], *({**c, "ok": False, "error": "401"} for c in calls[20:])]
    broken = client_side.ClientSession("signed-in", "", lost, {"sign_ins": 2}, 1)
    problems = client_side.judge(broken)
    assert len(problems) == 3 and "10 calls failed: 401" in problems[0]
    assert "signed in 2 times" in problems[1] and "1 times, not several" in problems[2]
