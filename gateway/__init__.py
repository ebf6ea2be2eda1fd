"""The sign-in gateway: an MCP server on Streamable HTTP in front of postgres-mcp 0.3.0 (SSE).

MCP clients sign in through it (an OAuth proxy to Entra ID, fastmcp's `AzureProvider`); it
relays their calls to postgres-mcp over one shared backend session and never forwards their
headers. Run as `python -m gateway`, configured only by its environment (`gateway/config.py`).

This module imports nothing but the standard library: the infrastructure code (Python 3.11,
without fastmcp) imports the constants below to declare the container.
"""

from __future__ import annotations

# The container's command (the Dockerfile's CMD and the Container App's `command`).
COMMAND: tuple[str, ...] = ("python", "-m", "gateway")
# The port the gateway listens on (GATEWAY_PORT's default; the ingress's target port).
PORT = 8080
# Where postgres-mcp is reached from the gateway's container (the same replica, loopback only).
DEFAULT_BACKEND_URL = "http://127.0.0.1:8000/sse"
# Health routes (not behind sign-in) and the MCP endpoint's path.
HEALTH_PATH = "/healthz"
LIVENESS_PATH = "/livez"
# The shared store's check (a cheap read, cached): for operators and alerts, not a probe (every replica
# shares the store; leaving the rotation on its failure would stop the agents' path too).
STORE_HEALTH_PATH = "/healthz/store"
MCP_PATH = "/mcp"
# The callback path registered as the app registration's redirect URI (`<public url>/auth/callback`).
CALLBACK_PATH = "/auth/callback"
# The delegated scope the app registration exposes on `api://<client id>`.
SCOPE = "user_impersonation"
