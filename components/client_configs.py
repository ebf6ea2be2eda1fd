"""Ready MCP client configurations for the stack's endpoint (the `mcpClientConfigs` output).

Behind the gateway every client below speaks Streamable HTTP to `https://<app>/mcp` and signs in by itself: it
reads the protected resource metadata from the gateway's 401, registers (DCR or CIMD) and opens the browser.
So no entry carries a token, a client ID or a header. Each format as its client documents it:

- VS Code: `.vscode/mcp.json` (or the user profile's mcp.json), top-level `servers`, an entry of `type: "http"`
  with `url` (code.visualstudio.com/docs/copilot/reference/mcp-configuration, "HTTP and SSE servers").
- Claude Code: `claude mcp add --transport http <name> <url>`, or the project's `.mcp.json` with top-level
  `mcpServers` and `{"type": "http", "url": ...}` (docs.anthropic.com/en/docs/claude-code/mcp, "Option 3: Add a
  remote HTTP server", "Project scope"); `/mcp` in a session signs in.
- Cursor: `.cursor/mcp.json` (project) or `~/.cursor/mcp.json`, top-level `mcpServers`, a remote server by `url`
  (cursor.com/docs/context/mcp, "Remote servers"; Streamable HTTP with OAuth).
- mcp-remote: `npx mcp-remote <url>`, a stdio bridge for clients that run only local servers (Claude Desktop's
  `claude_desktop_config.json`: `{"command": "npx", "args": ["mcp-remote", <url>]}`); it does the OAuth flow
  in the browser and keeps the tokens under ~/.mcp-auth (npmjs.com/package/mcp-remote, README "Usage").
- MCP Python SDK: `streamablehttp_client(url, auth=OAuthClientProvider(...))` and a `ClientSession`
  (github.com/modelcontextprotocol/python-sdk, README "OAuth Authentication for Clients";
  examples/snippets/clients/oauth_client.py).

Without the gateway (`easyAuth`, `none`) the endpoint is postgres-mcp's SSE one: the entries say `sse`, and with
Easy Auth carry the `${MCP_ENTRA_TOKEN}` placeholder the user fills in (never a token).
"""

from __future__ import annotations

import json
from typing import Any

PYTHON_SDK_SNIPPET = """\
# pip install "mcp>=1.10"  (Streamable HTTP and OAuthClientProvider)
import asyncio, webbrowser
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

URL = {url!r}


class MemoryStorage(TokenStorage):  # keep them somewhere safer in a long-lived agent
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def redirect(url: str) -> None:
    webbrowser.open(url)


async def callback() -> tuple[str, str | None]:
    answer = input("Paste the URL the browser was sent to: ")
    from urllib.parse import parse_qs, urlsplit
    query = parse_qs(urlsplit(answer).query)
    return query["code"][0], query.get("state", [None])[0]


async def main() -> None:
    auth = OAuthClientProvider(
        server_url=URL,
        client_metadata=OAuthClientMetadata(
            client_name="postgres-mcp agent",
            redirect_uris=["http://localhost:3030/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=MemoryStorage(),
        redirect_handler=redirect,
        callback_handler=callback,
    )
    async with streamablehttp_client(URL, auth=auth) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            print([tool.name for tool in (await session.list_tools()).tools])


asyncio.run(main())
"""


def _json(value: Any) -> str:
    return json.dumps(value, indent=2)


def client_configurations(server_name: str, url: str, sign_in: str, easy_auth_client_id: str = "") -> dict[str, str]:
    """By client: the text to paste (JSON files as JSON text, commands as one shell line, the SDK as Python)."""
    if sign_in == "gateway":
        remote: dict[str, Any] = {"type": "http", "url": url}
        cursor: dict[str, Any] = {"url": url}
    else:
        remote = {"type": "sse", "url": url}
        cursor = {"url": url}
        if easy_auth_client_id:  # only with easyAuth (program.py passes "" otherwise)
            # Easy Auth: a token the user obtains (az account get-access-token) and exports; about an hour.
            headers = {"Authorization": "Bearer ${MCP_ENTRA_TOKEN}"}
            remote["headers"] = headers
            cursor["headers"] = {"Authorization": "Bearer ${env:MCP_ENTRA_TOKEN}"}
    transport = "http" if sign_in == "gateway" else "sse"
    # Server names and URLs need no shell quoting (postgres-<stack>, https://<fqdn>/<path>); the header stays in
    # double quotes so that the shell fills in the user's exported token.
    header = ' --header "Authorization: Bearer ${MCP_ENTRA_TOKEN}"' if easy_auth_client_id else ""
    remote_args = ["mcp-remote", url, *(["--header", "Authorization:Bearer ${MCP_ENTRA_TOKEN}"] if header else [])]
    configs = {
        "vscode": _json({"servers": {server_name: remote}}),
        "claudeCode": f"claude mcp add --transport {transport}{header} {server_name} {url}",
        "claudeCodeProjectFile": _json({"mcpServers": {server_name: remote}}),
        "cursor": _json({"mcpServers": {server_name: cursor}}),
        "mcpRemote": f"npx mcp-remote {url}"
        + (' --header "Authorization:Bearer ${MCP_ENTRA_TOKEN}"' if header else ""),
        "claudeDesktopViaMcpRemote": _json({"mcpServers": {server_name: {"command": "npx", "args": remote_args}}}),
    }
    if sign_in == "gateway":
        # The SDK's OAuthClientProvider needs the gateway's OAuth endpoints: only the gateway has them.
        configs["pythonSdk"] = PYTHON_SDK_SNIPPET.format(url=url)
    return configs
