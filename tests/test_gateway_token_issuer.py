"""The gateway where Entra's tokens name another host than the authority that issues them, as in China: the
authority is login.chinacloudapi.cn while v2 tokens carry `iss=https://login.partner.microsoftonline.cn/<tenant>/v2.0`
(azure_cloud/clouds.py `v2_issuer_host`). The Entra stand-in serves on 127.0.0.1 and signs tokens with that `iss`;
the gateway gets ENTRA_AUTHORITY_HOST=127.0.0.1:<port> and ENTRA_TOKEN_ISSUER as the stack declares it
(components/mcp_app.py). A user signs in and calls a tool, an agent calls with its client-credentials token; a
gateway left with the default issuer (the authority's host) refuses that same agent token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.gateway_stack import INITIALIZE, MCP_HEADERS, Stack, gateway_stack, http_post

pytestmark = pytest.mark.drill
EXPECTED_SECONDS = 35

CHINA_ISSUER_HOST = "login.partner.microsoftonline.cn"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(tmp_path_factory.mktemp("gateway-issuer"), issuer_host=CHINA_ISSUER_HOST) as started:
        assert started.entra.issuer == f"https://{CHINA_ISSUER_HOST}/{started.entra.tenant_id}/v2.0"
        assert CHINA_ISSUER_HOST not in started.entra.host
        started.start_gateway()
        yield started


def test_a_user_signs_in_and_calls_when_the_issuer_is_not_the_authority(stack: Stack) -> None:
    run = stack.run_client("--storage", str(stack.work / "client-state.json"), "--calls", "2")
    assert run.returncode == 0 and run.summary.get("sign_ins") == 1, (run.summary, run.stderr[-3000:])
    assert len(run.calls) == 2 and all(call["ok"] for call in run.calls), run.calls
    # Entra's tokens did carry the other host, and the sign-in went to the authority.
    users = [claims for claims in stack.entra.issued if "scp" in claims]
    assert users and all(claims["iss"] == stack.entra.issuer for claims in users)
    assert stack.entra.requests("token", grant_type="authorization_code")[-1].outcome == "ok"


def test_an_agent_calls_when_the_issuer_is_not_the_authority(stack: Stack) -> None:
    token = stack.agent_token()
    run = stack.run_client("--bearer-env", "AGENT_TOKEN", "--calls", "1", env={"AGENT_TOKEN": token})
    assert run.returncode == 0 and all(call["ok"] for call in run.calls), (run.summary, run.stderr[-3000:])
    # The control: a gateway expecting the authority's host as issuer (ENTRA_TOKEN_ISSUER unset) refuses it.
    default = stack.start_gateway(route=False, ENTRA_TOKEN_ISSUER="")
    try:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        assert http_post(f"http://127.0.0.1:{default.port}/mcp", INITIALIZE, headers)[0] == 401
    finally:
        default.stop()
