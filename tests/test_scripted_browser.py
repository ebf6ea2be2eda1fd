"""The scripted browser (testing/scripted_browser.py) through a consent step shaped like FastMCP 4.2.3's, then Entra.

The "gateway" here is a few lines playing what the browser meets in fastmcp/server/auth/oauth_proxy/consent.py
and ui.py: /authorize redirects to /consent?txn_id=..., whose page is a POST form to itself (hidden `txn_id`,
`csrf_token`, `submit`; buttons `action=approve|deny`) and sets a consent-state cookie that the POST must carry
(the double-submit check); approval redirects to Entra with a consent-binding cookie the callback checks. The
real FastMCP is driven by the gateway's own end-to-end tests; this proves the browser's half on its own.
"""

from __future__ import annotations

import html
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testing.entra_endpoint import AppRegistration, EntraEndpoint, pkce_pair
from testing.scripted_browser import SignInError, sign_in

pytestmark = pytest.mark.program

API = "66666666-7777-8888-9999-000000000000"
CLIENT_REDIRECT = "http://127.0.0.1:33333/callback"


class ConsentGateway:
    def __init__(self, entra: EntraEndpoint) -> None:
        self.entra = entra
        self.transactions: dict[str, dict[str, str]] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                gateway.get(self)

            def do_POST(self) -> None:
                gateway.post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _redirect(handler: BaseHTTPRequestHandler, location: str, cookies: dict[str, str] | None = None) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        for name, value in (cookies or {}).items():
            handler.send_header("Set-Cookie", f"{name}={value}; HttpOnly; Path=/; SameSite=lax; Max-Age=900")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    @staticmethod
    def _page(handler: BaseHTTPRequestHandler, status: int, body: str, cookie: str = "") -> None:
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        if cookie:
            handler.send_header("Set-Cookie", cookie)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _cookies(handler: BaseHTTPRequestHandler) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie(handler.headers.get("Cookie") or "")
        return {name: morsel.value for name, morsel in jar.items()}

    def get(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        if parsed.path == "/authorize":
            txn_id = secrets.token_urlsafe(16)
            self.transactions[txn_id] = {"redirect": query["redirect_uri"], "state": query["state"]}
            self._redirect(handler, f"/consent?txn_id={txn_id}")
        elif parsed.path == "/consent":
            csrf = secrets.token_urlsafe(16)
            self.transactions[query["txn_id"]]["csrf"] = csrf
            form = (
                '<html><body><form id="consentForm" method="POST" action="">'
                f'<input type="hidden" name="txn_id" value="{html.escape(query["txn_id"])}" />'
                f'<input type="hidden" name="csrf_token" value="{csrf}" />'
                '<input type="hidden" name="submit" value="true" />'
                '<button type="submit" name="action" value="approve">Allow Access</button>'
                '<button type="submit" name="action" value="deny">Deny</button></form></body></html>'
            )
            self._page(handler, 200, form, f"MCP_CONSENT_STATE_x={csrf}; HttpOnly; Path=/; SameSite=lax")
        elif parsed.path == "/auth/callback":
            txn = self.transactions[query["state"]]
            if self._cookies(handler).get("MCP_CONSENT_BINDING") != txn["binding"]:
                self._page(handler, 403, "<h1>Error</h1><p>Authorization session mismatch</p>")
                return
            client = {"code": "gateway-code-" + query["code"][:4], "state": txn["state"]}
            self._redirect(handler, f"{txn['redirect']}?{urllib.parse.urlencode(client)}")
        else:
            self._page(handler, 404, "not found")

    def post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(handler.rfile.read(length).decode()))
        txn = self.transactions[form["txn_id"]]
        if form.get("csrf_token") != txn["csrf"] or self._cookies(handler).get("MCP_CONSENT_STATE_x") != txn["csrf"]:
            self._page(handler, 403, "<h1>Error</h1><p>Authorization session mismatch.</p>")
            return
        if form.get("action") == "deny":
            denied = {"error": "access_denied", "state": txn["state"]}
            self._redirect(handler, f"{txn['redirect']}?{urllib.parse.urlencode(denied)}")
            return
        txn["binding"] = secrets.token_urlsafe(16)
        upstream = {
            "response_type": "code",
            "client_id": API,
            "redirect_uri": f"{self.base}/auth/callback",
            "state": form["txn_id"],
            "scope": f"{self.entra.api_scope} offline_access",
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
        }
        location = f"{self.entra.authorization_endpoint}?{urllib.parse.urlencode(upstream)}"
        self._redirect(handler, location, {"MCP_CONSENT_BINDING": txn["binding"]})


@pytest.fixture
def entra(tmp_path: Path) -> Iterator[EntraEndpoint]:
    endpoint = EntraEndpoint(api=AppRegistration(API)).start(tmp_path)
    yield endpoint
    endpoint.stop()


@pytest.fixture
def gateway(entra: EntraEndpoint) -> Iterator[ConsentGateway]:
    server = ConsentGateway(entra)
    entra.api.redirect_uris = (f"{server.base}/auth/callback",)
    yield server
    server.stop()


def _authorize(gateway: ConsentGateway) -> str:
    query = {"response_type": "code", "client_id": "dcr-client", "redirect_uri": CLIENT_REDIRECT, "state": "client-st"}
    return f"{gateway.base}/authorize?{urllib.parse.urlencode(query)}"


def test_the_browser_approves_consent_signs_in_at_entra_and_stops_at_the_client(
    entra: EntraEndpoint, gateway: ConsentGateway
) -> None:
    assert entra.ca_bundle is not None
    result = sign_in(_authorize(gateway), redirect_uri=CLIENT_REDIRECT, ca_files=[entra.ca_bundle])
    assert (result.state, result.error) == ("client-st", None)
    assert result.code is not None and result.code.startswith("gateway-code-")
    assert [hop.split(" ", 2)[:2] for hop in result.visited[:3]] == [
        ["GET", _authorize(gateway)],
        ["GET", f"{gateway.base}/consent?txn_id={next(iter(gateway.transactions))}"],
        ["POST", f"{gateway.base}/consent?txn_id={next(iter(gateway.transactions))}"],
    ]
    assert [entry.outcome for entry in entra.requests("authorize")] == ["ok"]


def test_a_denied_consent_reaches_the_client_as_access_denied_without_entra(
    entra: EntraEndpoint, gateway: ConsentGateway
) -> None:
    result = sign_in(_authorize(gateway), redirect_uri=CLIENT_REDIRECT, approve=False)
    assert (result.code, result.error, result.state) == (None, "access_denied", "client-st")
    assert entra.log == []


def test_an_entra_error_page_stops_the_browser_with_its_text(entra: EntraEndpoint, gateway: ConsentGateway) -> None:
    assert entra.ca_bundle is not None
    entra.api.redirect_uris = ()
    with pytest.raises(SignInError, match=r"answered 400: .*AADSTS50011: The redirect URI"):
        sign_in(_authorize(gateway), redirect_uri=CLIENT_REDIRECT, ca_files=[entra.ca_bundle])


def test_entra_is_not_trusted_without_its_ca(entra: EntraEndpoint, gateway: ConsentGateway) -> None:
    with pytest.raises(OSError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        sign_in(_authorize(gateway), redirect_uri=CLIENT_REDIRECT)
