"""An MCP client that signs in to the gateway by itself, as VS Code or Claude Code would: the MCP SDK's
`OAuthClientProvider` (discovery: the 401's WWW-Authenticate resource_metadata, the protected resource
metadata, the authorization server metadata; dynamic registration; PKCE; refresh) with the scripted
browser (`testing/scripted_browser.py`) playing the user who approves the consent screen and signs in.

Runs in the gateway's virtualenv (.drill/gateway-venv, Python 3.12: the SDK is mcp 2.x, fastmcp's) as
a subprocess of the tests, from the repository root:

    python testing/gateway_client.py --url http://127.0.0.1:PORT/mcp --storage state.json \
        [--calls N] [--duration S --interval S] [--no-browser] [--refresh-first] [--bearer-env NAME]
        [--concurrency N]

It prints one JSON line per call (`{"t", "ok", "ms", "error"}`) and a last line `{"done": true,
"sign_ins": n, ...}`. `--storage` keeps the client registration and tokens in a JSON file between
runs (the tests read the access token from it); `--no-browser` makes a needed sign-in a failure
(a restarted gateway must keep the sign-in); `--bearer-env` sends the token in that variable instead
(the agents' path) with no OAuth at all. The tool called is postgres-mcp's `list_schemas`
(`execute_sql` with `--sql`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastmcp import Client  # noqa: E402
from fastmcp.client.transports import SSETransport, StreamableHttpTransport  # noqa: E402
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider  # noqa: E402
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken  # noqa: E402

from testing.scripted_browser import sign_in  # noqa: E402

REDIRECT_URI = "http://127.0.0.1:33418/callback"  # never requested: the browser stops at it


class FileStorage:
    """The SDK's TokenStorage, kept in a JSON file."""

    def __init__(self, path: Path, refresh_first: bool = False) -> None:
        self.path = path
        # The SDK learns an access token's expiry only from a token response it handled itself (not
        # from storage): with `refresh_first` the stored access token is withheld, so the SDK starts
        # with a refresh at the gateway's /token (the refresh grant, as a restarted client does).
        self.refresh_first = refresh_first

    def _load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _save(self, key: str, value: dict[str, Any]) -> None:
        data = self._load()
        data[key] = value
        if key == "tokens":
            data["tokens_saved_at"] = time.time()
        self.path.write_text(json.dumps(data))

    async def get_tokens(self) -> OAuthToken | None:
        data = self._load().get("tokens")
        if data and self.refresh_first:
            self.refresh_first = False
            data = {**data, "access_token": ""}
        return OAuthToken.model_validate(data) if data else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self._save("tokens", tokens.model_dump(mode="json", exclude_none=True))

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        data = self._load().get("client_info")
        return OAuthClientInformationFull.model_validate(data) if data else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self._save("client_info", client_info.model_dump(mode="json", exclude_none=True))


class Browser:
    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.sign_ins = 0
        self.result: AuthorizationCodeResult | None = None
        self.visited: list[str] = []

    async def redirect(self, authorization_url: str) -> None:
        if not self.allowed:
            raise RuntimeError("a sign-in was needed (--no-browser)")
        self.sign_ins += 1
        ca = [os.environ["SSL_CERT_FILE"]] if os.environ.get("SSL_CERT_FILE") else []
        result = await asyncio.to_thread(sign_in, authorization_url, redirect_uri=REDIRECT_URI, ca_files=ca)
        self.visited += result.visited
        if result.code is None:
            raise RuntimeError(f"sign-in failed: {result.error} {result.error_description}")
        # RFC 9207: the gateway names itself in the redirect (`iss`); the SDK checks it.
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(result.final_url).query)
        issuer = query["iss"][0] if "iss" in query else None
        self.result = AuthorizationCodeResult(code=result.code, state=result.state, iss=issuer)

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        result, self.result = self.result, None
        return result


async def one_call(client: Client[Any], sql: str | None = None) -> dict[str, Any]:
    started = time.monotonic()
    try:
        if sql is None:
            result = await client.call_tool("list_schemas", {})
        else:
            result = await client.call_tool("execute_sql", {"sql": sql})
        text = " ".join(getattr(block, "text", "") for block in result.content)
        ok = not result.is_error and ("public" in text if sql is None else "Error" not in text)
        error = None if ok else text[:300]
    except Exception as failure:  # noqa: BLE001 (each failed call is reported, not raised)
        ok, error = False, f"{type(failure).__name__}: {failure}"[:500]
    return {"t": time.time(), "ok": ok, "ms": round((time.monotonic() - started) * 1e3, 2), "error": error}


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--storage", type=Path)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--refresh-first", action="store_true")
    parser.add_argument("--bearer-env")
    parser.add_argument("--sse", action="store_true", help="--url is postgres-mcp's SSE endpoint (no auth)")
    parser.add_argument("--sql", help="call execute_sql with this statement instead of list_schemas")
    parser.add_argument("--summary-only", action="store_true", help="print only the last line, with latencies")
    args = parser.parse_args()

    browser = Browser(allowed=not args.no_browser)
    auth: Any
    if args.sse:
        auth = None
    elif args.bearer_env:
        auth = os.environ[args.bearer_env]
    else:
        assert args.storage is not None, "--storage is needed for a sign-in"
        auth = OAuthClientProvider(
            server_url=args.url,
            client_metadata=OAuthClientMetadata(
                client_name="gateway end-to-end test",
                redirect_uris=[REDIRECT_URI],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=FileStorage(args.storage, refresh_first=args.refresh_first),
            redirect_handler=browser.redirect,
            callback_handler=browser.callback,
        )
    transport: Any = SSETransport(args.url) if args.sse else StreamableHttpTransport(args.url, auth=auth)
    client: Client[Any] = Client(transport, mode="legacy" if args.sse else "auto", timeout=60)
    latencies: list[float] = []
    calls = 0
    failures = 0
    deadline = time.monotonic() + args.duration
    async with client:
        while True:
            results = await asyncio.gather(*(one_call(client, args.sql) for _ in range(args.concurrency)))
            for result in results:
                latencies.append(result["ms"])
                if not args.summary_only:
                    print(json.dumps(result), flush=True)
                calls += 1
                failures += 0 if result["ok"] else 1
            if calls >= args.calls and time.monotonic() >= deadline:
                break
            await asyncio.sleep(args.interval)
    summary: dict[str, Any] = {"done": True, "calls": calls, "failures": failures, "sign_ins": browser.sign_ins}
    if args.summary_only:
        summary["ms"] = latencies
    print(json.dumps(summary), flush=True)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as error:  # noqa: BLE001 (the test reads this line)
        print(json.dumps({"done": False, "error": f"{type(error).__name__}: {error}"[:2000]}), flush=True)
        sys.exit(2)
