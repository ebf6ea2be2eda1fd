"""A scripted browser for sign-in tests: follows an authorization URL to the client's redirect URI.

The hops it plays, for the gateway (a FastMCP 4.2.3 OAuth proxy) in front of Entra (`testing/entra_endpoint.py`):

1. `GET <gateway>/authorize?...` -> 302 to the gateway's consent page (`/consent?txn_id=...`);
2. `GET` the consent page: HTML with `<form method="POST" action="">` holding hidden `txn_id`, `csrf_token` and
   `submit=true`, and two buttons `name="action"` (`approve`, `deny`); the answer sets a signed consent-state
   cookie (fastmcp/server/auth/oauth_proxy/ui.py `create_consent_html`, consent.py `_show_consent_page`,
   `_set_consent_state_cookie`);
3. `POST` the form back to the same URL with the cookie (the double-submit check in consent.py
   `_submit_consent`) and `action=approve` (or `deny`) -> 302 to Entra's /authorize, with a consent-binding
   cookie;
4. Entra's /authorize -> 302 to the gateway's `/auth/callback?code=...&state=...`;
5. the callback (binding cookie checked) -> 302 to the client's redirect URI with the gateway's own `code` and
   `state`: where it stops, without requesting it (a loopback the test's client would listen on).

Cookies are kept per host and port and sent back whatever their `Secure` flag, as a browser does on
`https://` and, for `localhost`, on `http://` too. Standard library only, so that the tests' virtualenv
and the gateway's (Python 3.12) can both import it. `sign_in` blocks: from async code call it through
`asyncio.to_thread`, for example in the MCP SDK's `OAuthClientProvider(redirect_handler=...)`.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["SignInError", "SignInResult", "sign_in"]


class SignInError(Exception):
    """A hop answered neither a redirect nor a consent form (an error page): the message has its status and text."""


@dataclass
class SignInResult:
    final_url: str  # the client's redirect URI with the query the gateway gave it
    code: str | None
    state: str | None
    error: str | None  # e.g. "access_denied" when consent was denied or Entra refused
    error_description: str | None
    visited: list[str] = field(default_factory=list)  # "METHOD URL -> status" per hop


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.in_form = False
        self.method = ""
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.in_form, self.method, self.action = True, values.get("method", "GET").upper(), values.get("action", "")
        elif self.in_form and tag == "input" and values.get("name"):
            if values.get("type", "text") in ("hidden", "text"):
                self.fields[values["name"]] = values.get("value", "")
        elif self.in_form and tag == "button" and values.get("name"):
            self.buttons.append((values["name"], values.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False


def _context(ca_files: Sequence[str | Path]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for ca_file in ca_files:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def sign_in(
    authorization_url: str,
    *,
    redirect_uri: str,
    ca_files: Sequence[str | Path] = (),
    approve: bool = True,
    max_hops: int = 12,
    timeout: float = 10.0,
) -> SignInResult:
    """Follows `authorization_url` (the gateway's /authorize URL a client opened) until a redirect to
    `redirect_uri`, approving (or denying) the gateway's consent form on the way.

    `ca_files` are PEM bundles trusted besides the system's (the Entra stand-in's `ca_bundle`, the gateway's
    CA when it serves HTTPS). Raises `SignInError` on any other page (an error page, a loop)."""
    context = _context(ca_files)
    cookies: dict[str, dict[str, str]] = {}
    visited: list[str] = []
    method, url, body = "GET", authorization_url, b""
    for _ in range(max_hops):
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        headers = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "scripted-browser"}
        jar = cookies.setdefault(origin, {})
        if jar:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in jar.items())
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = f"{parts.scheme}://{parts.netloc}"
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, target or "/", body=body if method == "POST" else None, headers=headers)
            response = connection.getresponse()
            page = response.read()
        finally:
            connection.close()
        visited.append(f"{method} {url} -> {response.status}")
        for header in response.headers.get_all("Set-Cookie") or []:
            pair, _, attributes = header.partition(";")
            name, _, value = pair.strip().partition("=")
            lowered = attributes.lower().replace(" ", "")
            if "max-age=0" in lowered or "expires=thu,01jan1970" in lowered or value in ('""', ""):
                jar.pop(name, None)
            else:
                jar[name] = value
        if response.status in (301, 302, 303, 307, 308):
            location = urllib.parse.urljoin(url, response.headers.get("Location") or "")
            if location.split("?", 1)[0] == redirect_uri.split("?", 1)[0]:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
                visited.append(f"stop at {location.split('?', 1)[0]}")
                return SignInResult(
                    location,
                    query.get("code"),
                    query.get("state"),
                    query.get("error"),
                    query.get("error_description"),
                    visited,
                )
            method, url, body = "GET", location, b""
            continue
        form = _FormParser()
        form.feed(page.decode("utf-8", "replace"))
        if response.status == 200 and form.method == "POST" and "csrf_token" in form.fields:
            choice = "approve" if approve else "deny"
            if ("action", choice) not in form.buttons:
                raise SignInError(f"the consent form has no '{choice}' button: {form.buttons}")
            fields = {**form.fields, "action": choice}
            method, url = "POST", urllib.parse.urljoin(url, form.action or "")
            if not form.action:  # action="" posts to the page itself, query string included
                url = urllib.parse.urlunsplit(parts)
            body = urllib.parse.urlencode(fields).encode()
            continue
        text = page.decode("utf-8", "replace")
        raise SignInError(f"{method} {url} answered {response.status}: {text[:600]}")
    raise SignInError(f"no redirect to {redirect_uri} after {max_hops} hops: {visited}")
