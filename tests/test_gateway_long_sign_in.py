"""One sign-in, then calls for more than 240 seconds through the gateway (testing/gateway_stack.py), Entra's
tokens living 6 seconds: about forty upstream expiries, each crossed with no manual step (no second
sign-in, no failed call), every upstream refresh carrying the scope and none carrying `resource`.

Calls come every 4 s, so some find Entra's token expired and some find it in its last seconds (the
gateway refreshes it 2 s early, gateway/auth.py REFRESH_MARGIN_SECONDS); midway the client restarts
and redeems its refresh token at the gateway's /token (the refresh grant) instead of its access token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.gateway_stack import API_CLIENT_ID, Stack, gateway_stack

pytestmark = pytest.mark.drill
# Wall time, mostly real-clock waits (one sign-in used for more than 240 s):
# conftest.py starts this module first under xdist.
EXPECTED_SECONDS = 260

DURATION = 242.0  # seconds of calls, in two halves with a client restart between: the span passes 240 s


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(tmp_path_factory.mktemp("gateway-long"), access_token_lifetime=6) as started:
        started.start_gateway()
        yield started


def test_calls_keep_working_past_240_seconds_of_six_second_upstream_tokens(stack: Stack) -> None:
    storage = stack.work / "client-state.json"
    half = DURATION / 2
    first = stack.run_client("--storage", str(storage), "--duration", str(half), "--interval", "4", timeout=half + 120)
    assert first.returncode == 0 and first.summary["sign_ins"] == 1, stack.diagnosis(first)
    second = stack.run_client(
        "--storage",
        str(storage),
        "--no-browser",
        "--refresh-first",
        "--duration",
        str(half),
        "--interval",
        "4",
        timeout=half + 120,
    )
    assert second.returncode == 0 and second.summary["sign_ins"] == 0, stack.diagnosis(second)
    calls = first.calls + second.calls
    assert all(call["ok"] for call in calls), [call for call in calls if not call["ok"]]
    assert calls[-1]["t"] - calls[0]["t"] >= 240
    assert len(calls) >= 55
    refreshes = stack.entra.requests("token", grant_type="refresh_token")
    assert len(refreshes) >= 240 // 6 - 5, len(refreshes)
    for refresh in refreshes:
        assert refresh.outcome == "ok", refresh
        assert f"api://{API_CLIENT_ID}/user_impersonation" in refresh.params["scope"].split()
        assert "client_assertion" in refresh.params
    assert len(stack.entra.requests("authorize")) == 1  # one sign-in in all
    for entry in stack.entra.log:
        assert "resource" not in entry.params, (entry.path, entry.params)
