"""tools/verify_deployment.py's MCP check over SSE, against the real postgres-mcp 0.3.0 and against servers that
refuse or never answer.

postgres-mcp runs from the drill's virtualenv (drill/postgres_mcp_venv.py, built on first use) as its container runs
it (`--transport=sse`, components/mcp_app.py `mcp_arguments`), connected to a local PostgreSQL over TLS.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from psycopg import sql

from components.mcp_app import password_database_uri
from drill.postgres_mcp_venv import ensure_venv
from testing.postgres_server import free_port, running_postgres
from tools.verify_deployment import McpCheckError, list_tools, mcp_verdict

pytestmark = pytest.mark.drill


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def postgres_mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    venv = ensure_venv(log=False)
    with running_postgres() as server:
        with server.superuser() as su:
            su.execute(sql.SQL("CREATE ROLE agent LOGIN PASSWORD {}").format(sql.Literal("agent-password")))
        port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PG", "PYTHON"))}
        # The server's certificate is self-signed here: `require` encrypts without verifying it.
        env["DATABASE_URI"] = password_database_uri("agent", "agent-password", "127.0.0.1", "postgres", server.port)
        env["DATABASE_URI"] = env["DATABASE_URI"].split("?")[0] + "?sslmode=require"
        log = tmp_path_factory.mktemp("postgres-mcp") / "postgres-mcp.log"
        command = [
            str(venv / "bin" / "postgres-mcp"),
            "--transport=sse",
            "--sse-host=127.0.0.1",
            f"--sse-port={port}",
            "--access-mode=restricted",
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while not _listening(port):
                    assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
                yield f"http://127.0.0.1:{port}/sse"
            finally:
                process.terminate()
                process.wait(timeout=30)


def test_list_tools_against_the_real_postgres_mcp_passes(postgres_mcp_url: str) -> None:
    tools = list_tools(postgres_mcp_url, timeout=30)
    assert {"execute_sql", "list_schemas", "list_objects", "analyze_db_health"} <= set(tools)
    verdict = mcp_verdict(tools)
    assert verdict.state == "ok" and "execute_sql" in verdict.message


class _Refusing(http.server.BaseHTTPRequestHandler):
    """What Container Apps' built-in auth answers without a valid token (unauthenticatedClientAction Return401)."""

    def do_GET(self) -> None:
        self.send_response(401, "Unauthorized")
        self.send_header("WWW-Authenticate", 'Bearer realm="pgmcp-dev-mcp.example.azurecontainerapps.io"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Silent(http.server.BaseHTTPRequestHandler):
    """Accepts the SSE stream and never sends an event (a hung server, or a proxy that buffers the stream)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.flush()
        time.sleep(20)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _NoAnswers(http.server.BaseHTTPRequestHandler):
    """Sends the `endpoint` event, accepts every POST (202) and never answers on the stream."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"event: endpoint\r\ndata: /messages/?session_id=0123\r\n\r\n")
        self.wfile.flush()
        time.sleep(20)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202, "Accepted")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sse"
    finally:
        server.shutdown()
        server.server_close()


def test_a_401_is_a_readable_failure_naming_the_challenge() -> None:
    with serving(_Refusing) as url, pytest.raises(McpCheckError) as raised:
        list_tools(url, {"Authorization": "Bearer not-a-real-token"}, timeout=10)
    message = str(raised.value)
    assert "HTTP 401" in message and "WWW-Authenticate: Bearer realm" in message and "sign-in" in message
    assert "not-a-real-token" not in message


@pytest.mark.parametrize(
    ("handler", "waited_for"),
    [(_Silent, "the SSE stream's `endpoint` event"), (_NoAnswers, "the answer to initialize")],
)
def test_a_server_that_never_answers_fails_within_the_timeout(
    handler: type[http.server.BaseHTTPRequestHandler], waited_for: str
) -> None:
    started = time.monotonic()
    with serving(handler) as url, pytest.raises(McpCheckError) as raised:
        list_tools(url, timeout=2)
    assert time.monotonic() - started < 5
    assert f"no answer from {url} within 2s: waited for {waited_for}" == str(raised.value)
