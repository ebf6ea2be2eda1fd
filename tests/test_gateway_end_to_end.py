"""The sign-in gateway end to end (testing/gateway_stack.py): an MCP client signs in by itself and calls
postgres-mcp 0.3.0 through the gateway, with Entra, the managed identity and Storage played by local
stand-ins and tokens living 5 seconds.

- discovery (401 with WWW-Authenticate resource_metadata, the protected resource metadata, the
  authorization server metadata), registration, consent, sign-in at Entra with a federated client
  assertion, a tool call; `resource` never reaches Entra;
- calls keep working across several upstream expiries, each upstream refresh carrying the scope;
- a second gateway sharing the store (same keys) serves the first one's sign-in, and so does a
  restarted gateway;
- no token, an expired token, a wrong audience, a non-allowed agent: 401 with resource_metadata;
  an allowed agent's client-credentials token works;
- the caller's bearer never reaches postgres-mcp (a recording relay in between), no token in the logs;
- /healthz 503 while postgres-mcp is down, 200 again after it restarts (the shared session reconnects);
- a bad environment stops `python -m gateway` with one line naming the variable, no secret echoed.
The >240 s run is tests/test_gateway_long_sign_in.py.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drill.gateway_venv import ensure_venv as ensure_gateway_venv
from drill.scenarios import DATABASE
from testing.gateway_stack import (
    AGENT,
    API_CLIENT_ID,
    API_SECRET,
    INITIALIZE,
    MCP_HEADERS,
    OTHER_AGENT,
    ROOT,
    ClientRun,
    GatewayProcess,
    Stack,
    gateway_stack,
    http_get,
    http_post,
)
from testing.signing import RsaSigner

pytestmark = pytest.mark.drill
# Wall time, mostly real-clock waits (a gateway stack, several clients):
# conftest.py starts this module first under xdist.
EXPECTED_SECONDS = 70


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(tmp_path_factory.mktemp("gateway-e2e")) as started:
        started.start_gateway()
        yield started


def current(stack: Stack) -> GatewayProcess:
    running = [gateway for gateway in stack.gateways if gateway.process.poll() is None]
    assert running, "no gateway running"
    return running[-1]


@pytest.fixture(scope="module")
def signed_in(stack: Stack) -> Path:
    """A client that signed in once (its registration and tokens in this file)."""
    storage = stack.work / "client-state.json"
    run = stack.run_client("--storage", str(storage), "--calls", "1")
    assert run.returncode == 0 and run.summary.get("sign_ins") == 1, stack.diagnosis(run)
    return storage


def stored_tokens(storage: Path) -> dict[str, str]:
    return dict(json.loads(storage.read_text())["tokens"])


def assert_refused(stack: Stack, token: str | None) -> None:
    headers = dict(MCP_HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, answer_headers, _ = http_post(stack.mcp_url, INITIALIZE, headers)
    assert status == 401, status
    challenge = {k.lower(): v for k, v in answer_headers.items()}["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{stack.public_url}/.well-known/oauth-protected-resource/mcp"' in challenge


def test_discovery_registration_consent_sign_in_and_a_tool_call(stack: Stack, signed_in: Path) -> None:
    assert_refused(stack, None)
    status, _, body = http_get(stack.public_url + "/.well-known/oauth-protected-resource/mcp")
    metadata = json.loads(body)
    assert status == 200 and metadata["resource"] == stack.mcp_url
    assert metadata["authorization_servers"] == [stack.public_url + "/"]
    assert metadata["scopes_supported"] == ["user_impersonation"]
    status, _, body = http_get(stack.public_url + "/.well-known/oauth-authorization-server")
    server = json.loads(body)
    assert status == 200 and server["registration_endpoint"] == stack.public_url + "/register"
    assert "S256" in server["code_challenge_methods_supported"]
    # What reached Entra: a sign-in (authorize) and a code redeemed with the managed identity's assertion.
    authorize = stack.entra.requests("authorize")
    assert authorize and all(entry.outcome == "ok" for entry in authorize)
    redeemed = stack.entra.requests("token", grant_type="authorization_code")
    assert redeemed and redeemed[0].outcome == "ok"
    params = redeemed[0].params
    assert params["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "client_assertion" in params and "client_secret" not in params
    assert params["client_id"] == API_CLIENT_ID
    # The managed identity answered the assertion (and Storage's token).
    resources = {request.query.get("resource", [""])[0] for request in stack.identity.requests}
    assert {"api://AzureADTokenExchange", "https://storage.azure.com"} <= resources
    for entry in stack.entra.log:
        assert "resource" not in entry.params, (entry.path, entry.params)


def test_calls_continue_across_upstream_expiries_and_each_refresh_carries_the_scope(
    stack: Stack, signed_in: Path
) -> None:
    refreshes_before = len(stack.entra.requests("token", grant_type="refresh_token"))
    # The gateway's token outlives Entra's (gateway/auth.py ACCESS_TOKEN_LIFETIME): the gateway refreshes
    # the Entra token itself on the first call after each expiry.
    run = stack.run_client(
        "--storage", str(signed_in), "--no-browser", "--duration", "18", "--interval", "2", timeout=120
    )
    assert run.returncode == 0, (run.summary, run.stderr[-3000:], current(stack).log[-6000:])
    assert len(run.calls) >= 8 and all(call["ok"] for call in run.calls)
    refreshes = stack.entra.requests("token", grant_type="refresh_token")
    assert len(refreshes) - refreshes_before >= 3  # 18 s of 5-second tokens
    for refresh in refreshes:
        assert refresh.outcome == "ok", refresh
        assert f"api://{API_CLIENT_ID}/user_impersonation" in refresh.params["scope"].split()
        assert "client_assertion" in refresh.params and "resource" not in refresh.params
    for entry in stack.entra.log:
        assert "resource" not in entry.params


def test_a_second_gateway_sharing_the_store_serves_the_first_ones_sign_in(stack: Stack, signed_in: Path) -> None:
    first = current(stack)
    second = stack.start_gateway(route=False)
    try:
        stack.ingress.set_targets([second.port])
        # The access token the first gateway issued, accepted by the second.
        run = stack.run_client("--storage", str(signed_in), "--no-browser", "--calls", "2", "--interval", "0.5")
        assert run.returncode == 0 and run.summary["sign_ins"] == 0, stack.diagnosis(run)
        # The first gateway's refresh token, redeemed at the second (the client's /token refresh grant).
        refreshed_before = len(stack.entra.requests("token", grant_type="refresh_token"))
        run = stack.run_client("--storage", str(signed_in), "--no-browser", "--refresh-first", "--calls", "2")
        assert run.returncode == 0 and run.summary["sign_ins"] == 0, stack.diagnosis(run)
        assert '"POST /token HTTP/1.1" 200' in second.log and '"POST /mcp HTTP/1.1" 200' in second.log
        assert len(stack.entra.requests("token", grant_type="refresh_token")) > refreshed_before
        # And the token the second gateway issued, accepted by the first.
        stack.ingress.set_targets([first.port])
        run = stack.run_client("--storage", str(signed_in), "--no-browser", "--calls", "1")
        assert run.returncode == 0 and run.summary["sign_ins"] == 0, stack.diagnosis(run)
    finally:
        stack.ingress.set_targets([first.port])
        second.stop()


def test_a_restarted_gateway_keeps_the_sign_in(stack: Stack, signed_in: Path) -> None:
    current(stack).stop()
    restarted = stack.start_gateway()
    run = stack.run_client("--storage", str(signed_in), "--no-browser", "--calls", "2", "--interval", "0.5")
    assert run.returncode == 0 and run.summary["sign_ins"] == 0, stack.diagnosis(run)
    run = stack.run_client("--storage", str(signed_in), "--no-browser", "--refresh-first", "--calls", "1")
    assert run.returncode == 0 and run.summary["sign_ins"] == 0, stack.diagnosis(run)
    assert '"POST /mcp HTTP/1.1" 200' in restarted.log


def test_the_client_secret_credential_signs_in_too(stack: Stack) -> None:
    first = current(stack)
    with_secret = stack.start_gateway(route=False, ENTRA_CREDENTIAL="secret", ENTRA_CLIENT_SECRET=API_SECRET)
    try:
        stack.ingress.set_targets([with_secret.port])
        before = len(stack.entra.requests("token", grant_type="authorization_code"))
        run = stack.run_client("--storage", str(stack.work / "secret-client.json"), "--calls", "1")
        assert run.returncode == 0 and run.summary["sign_ins"] == 1, stack.diagnosis(run)
        redeemed = stack.entra.requests("token", grant_type="authorization_code")[before:]
        # Entra accepted the code with the secret (client_secret_basic: in the Authorization header).
        assert redeemed and redeemed[-1].outcome == "ok"
        assert "client_assertion" not in redeemed[-1].params
        assert API_SECRET not in with_secret.log
    finally:
        stack.ingress.set_targets([first.port])
        with_secret.stop()


REISSUE = """
import json, os, sys
from fastmcp.server.auth.jwt_issuer import JWTIssuer, derive_jwt_key
claims = json.loads(sys.argv[1])
key = derive_jwt_key(low_entropy_material=os.environ["KEY"], salt="fastmcp-jwt-signing-key")
issuer = JWTIssuer(issuer=claims["iss"], audience=claims["aud"], signing_key=key)
print(issuer.issue_access_token(
    client_id=claims["client_id"], scopes=claims["scope"].split(), jti=claims["jti"],
    expires_in=int(sys.argv[2]), upstream_claims=claims.get("upstream_claims"),
))
"""


def gateway_token_like(stack: Stack, token: str, expires_in: int) -> str:
    """The gateway's token with another expiry, signed by fastmcp's own issuer with the gateway's key."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    completed = subprocess.run(
        [str(ensure_gateway_venv(log=False) / "bin" / "python"), "-c", REISSUE, json.dumps(claims), str(expires_in)],
        env={"KEY": stack.signing_key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stdout.strip()


def test_the_gateway_uses_the_declared_table_and_never_creates_one(stack: Stack) -> None:
    # Its identity's role is scoped to the table the stack declares; creating a table is an account-level
    # operation it may be refused (gateway/store.py). A gateway told of a table that does not exist fails its
    # registrations and leaves the account as it was, instead of creating the table.
    assert stack.table_exists(stack.table)  # declared by the stack (testing/gateway_stack.py), used by the others
    missing = "gatewayNeverCreated"
    gateway = stack.start_gateway(route=False, GATEWAY_STORE_TABLE=missing)
    try:
        registration = {
            "redirect_uris": ["http://127.0.0.1:9/callback"],
            "client_name": "table check",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
        status, _, _ = http_post(
            f"http://127.0.0.1:{gateway.port}/register",
            json.dumps(registration).encode(),
            {"Content-Type": "application/json"},
        )
        assert status >= 500, status
        assert not stack.table_exists(missing)
        # /healthz/store says why (the table), and serves that answer again for its period (one read).
        status, _, body = http_get(f"http://127.0.0.1:{gateway.port}/healthz/store")
        assert status == 503 and missing in json.loads(body)["reason"], body
        stack.create_table(missing)
        status, _, body = http_get(f"http://127.0.0.1:{gateway.port}/healthz/store")
        assert status == 503, body  # cached: the table created since is seen after the period
    finally:
        gateway.stop()
    # The gateway in service reads its table: 200.
    status, _, body = http_get(f"http://127.0.0.1:{current(stack).port}/healthz/store")
    assert status == 200 and json.loads(body)["status"] == "ok", body


def test_no_token_an_expired_token_a_wrong_audience_and_foreign_tokens_get_401(stack: Stack, signed_in: Path) -> None:
    assert_refused(stack, None)
    assert_refused(stack, "not-a-jwt")
    # The gateway's own token, expired: the same claims and key as a token it accepts, exp in the past.
    token = stored_tokens(signed_in)["access_token"]
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {gateway_token_like(stack, token, 60)}"}
    assert http_post(stack.mcp_url, INITIALIZE, headers)[0] == 200  # the control: valid, accepted
    assert_refused(stack, gateway_token_like(stack, token, -60))
    # Signed with another key.
    other = Stack.__new__(Stack)
    other.signing_key = "another-signing-key-of-at-least-32-characters"
    assert_refused(stack, gateway_token_like(other, token, 60))
    # A user's Entra token for this API, valid: delegated (`scp`), so refused on the agents' path whatever its
    # audience or expiry (those are tested with an agent's token in the next test).
    assert_refused(stack, stack.entra.mint_access_token(exp=int(time.time()) + 300))
    # A client-credentials token of an app that is not in ENTRA_ALLOWED_AGENT_CLIENT_IDS.
    assert_refused(stack, stack.agent_token(OTHER_AGENT))


def test_an_allowed_agents_token_wrong_in_one_claim_or_its_key_gets_401(stack: Stack) -> None:
    # Each refused token differs from an accepted one (the control, first) in one thing only: an application
    # token of an allowed agent (`azp` in ENTRA_ALLOWED_AGENT_CLIENT_IDS, `idtyp` app, no `scp`), valid for
    # minutes, so that nothing but the named defect can make it fail.
    now = int(time.time())
    valid: dict[str, Any] = {"iat": now - 60, "nbf": now - 60, "exp": now + 300}

    def accepted(token: str) -> bool:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        return http_post(stack.mcp_url, INITIALIZE, headers)[0] == 200

    assert accepted(stack.entra.mint_app_token(AGENT, **valid))
    assert accepted(stack.entra.mint_app_token(AGENT, **{**valid, "aud": f"api://{API_CLIENT_ID}"}))
    # Another audience (another API of the tenant).
    assert_refused(stack, stack.entra.mint_app_token(AGENT, **{**valid, "aud": "api://someone-else"}))
    # Expired a minute ago (fastmcp's verifier allows no leeway on exp).
    assert_refused(stack, stack.entra.mint_app_token(AGENT, iat=now - 400, nbf=now - 400, exp=now - 60))
    # Another issuer: the same tenant at another cloud's authority.
    other_issuer = f"https://login.microsoftonline.us/{stack.entra.tenant_id}/v2.0"
    assert other_issuer != stack.entra.issuer
    assert_refused(stack, stack.entra.mint_app_token(AGENT, **{**valid, "iss": other_issuer}))
    # Signed by another key under the tenant key's own `kid`, and under a `kid` the tenant does not publish.
    impostor = RsaSigner(kid=stack.entra.signer.kid)
    assert_refused(stack, stack.entra.mint_app_token(AGENT, signer=impostor, **valid))
    assert_refused(stack, stack.entra.mint_app_token(AGENT, signer=RsaSigner(), **valid))
    # The control once more, after the refusals: the gateway still accepts the agent.
    assert accepted(stack.entra.mint_app_token(AGENT, **valid))


def test_an_allowed_agent_calls_with_its_client_credentials_token(stack: Stack) -> None:
    token = stack.agent_token()
    run = stack.run_client("--bearer-env", "AGENT_TOKEN", "--calls", "2", env={"AGENT_TOKEN": token})
    assert run.returncode == 0 and all(call["ok"] for call in run.calls), stack.diagnosis(run)


def test_concurrent_callers_are_not_serialized_by_the_shared_backend_session(stack: Stack) -> None:
    # Five calls at once, each reading a table the test keeps locked: on the database, all five are
    # seen waiting together (postgres-mcp's pool holds five connections). Had the shared backend
    # session serialized them, one would wait and the others would not have reached the database yet.
    token = stack.agent_token()
    finished: list[ClientRun] = []
    with stack.server.superuser(DATABASE) as holder, stack.server.superuser(DATABASE) as observer:
        with holder.transaction():
            holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            caller = threading.Thread(
                target=lambda: finished.append(
                    stack.run_client(
                        "--bearer-env",
                        "AGENT_TOKEN",
                        "--sql",
                        "SELECT count(*) AS n FROM orders",
                        "--concurrency",
                        "5",
                        "--calls",
                        "5",
                        env={"AGENT_TOKEN": token},
                    )
                )
            )
            caller.start()
            waiting, deadline = 0, time.monotonic() + 60
            while waiting < 5 and time.monotonic() < deadline and caller.is_alive():
                row = observer.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                    ("%FROM orders%",),
                ).fetchone()
                waiting = max(waiting, int(row[0]) if row else 0)
                time.sleep(0.1)
        caller.join(timeout=120)
    assert waiting == 5, waiting
    run = finished[0]
    assert run.returncode == 0 and len(run.calls) == 5 and all(call["ok"] for call in run.calls), stack.diagnosis(run)


def test_the_callers_bearer_never_reaches_postgres_mcp_and_no_token_is_logged(stack: Stack, signed_in: Path) -> None:
    agent = stack.agent_token()
    run = stack.run_client("--bearer-env", "AGENT_TOKEN", "--calls", "1", env={"AGENT_TOKEN": agent})
    assert run.returncode == 0, stack.diagnosis(run)
    run = stack.run_client("--storage", str(signed_in), "--no-browser", "--calls", "1")
    assert run.returncode == 0, stack.diagnosis(run)
    tokens = stored_tokens(signed_in)
    sent = stack.relay.sent
    assert b"tools/call" in sent and b"list_schemas" in sent  # the calls did pass through the relay
    assert b"authorization" not in sent.lower() and b"bearer" not in sent.lower()
    secrets = [agent, tokens["access_token"], tokens["refresh_token"], stack.signing_key, stack.store_key]
    for secret in secrets:
        assert secret.encode() not in sent
        # Any piece of a JWT (its signature above all) would do: none passes.
        for piece in secret.split("."):
            if len(piece) >= 16:
                assert piece.encode() not in sent
    for gateway in stack.gateways:
        log = gateway.log
        for secret in secrets:
            for piece in secret.split("."):
                if len(piece) >= 16:
                    assert piece not in log, f"a token or key piece in gateway-{gateway.port}.log"
        # Authorization codes (the callback's query) are not logged; a traceback's `status_code=` is no code.
        assert not re.search(r"[?&]code=", log), f"a query string with a code in gateway-{gateway.port}.log"


def test_healthz_follows_postgres_mcp_and_the_shared_session_reconnects(stack: Stack) -> None:
    gateway = current(stack)
    stack.wait_healthy(gateway)
    status, body = stack.healthz(gateway)
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert http_get(f"http://127.0.0.1:{gateway.port}/livez")[0] == 200
    stack.stop_postgres_mcp()
    try:
        deadline = time.monotonic() + 15
        status, body = stack.healthz(gateway)
        while status != 503 and time.monotonic() < deadline:
            time.sleep(0.3)
            status, body = stack.healthz(gateway)
        assert status == 503, body
        assert json.loads(body)["status"] == "unavailable" and json.loads(body)["reason"]
        assert http_get(f"http://127.0.0.1:{gateway.port}/livez")[0] == 200  # alive, just not ready
    finally:
        stack.start_postgres_mcp()
    stack.wait_healthy(gateway, timeout=30)
    token = stack.agent_token()
    run = stack.run_client("--bearer-env", "AGENT_TOKEN", "--calls", "2", env={"AGENT_TOKEN": token})
    assert run.returncode == 0 and all(call["ok"] for call in run.calls), stack.diagnosis(run)
    assert gateway.log.count("backend session") >= 2  # a new shared session after the restart


def test_a_bad_environment_stops_the_gateway_naming_the_variable(tmp_path: Path) -> None:
    venv = ensure_gateway_venv(log=False)
    short_key = "short-store-key-not-to-be-echoed"[:31]
    env = {
        "PATH": "/usr/bin:/bin",
        "GATEWAY_PUBLIC_URL": "https://mcp.example.azurecontainerapps.io",
        "ENTRA_TENANT_ID": "11111111-1111-1111-1111-111111111111",
        "ENTRA_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
        "AZURE_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
        "GATEWAY_SIGNING_KEY": "x" * 40,
        "GATEWAY_STORE_KEY": short_key,
        "GATEWAY_STORE_ENDPOINT": "https://account.table.core.windows.net",
        "GATEWAY_STORE_TABLE": "signins",
    }
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "gateway"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert lines == [
        "gateway: GATEWAY_STORE_KEY is refused (31 characters): expected a secret of at least 32 characters "
        "(encrypts the sign-in store)"
    ]
    assert short_key not in completed.stderr
