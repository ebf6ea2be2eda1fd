"""The gateway's settings, read only from its environment and checked before anything starts.

A missing, short or malformed variable stops the process with one line per variable naming it
and what is accepted. A secret's value is never part of a message (only its length is checked).
Standard library only: the unit tests import this from the repository's Python 3.11 venv.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway import DEFAULT_BACKEND_URL, PORT

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# A host name or IPv4 address with an optional port (no scheme, no path): how azure-identity's
# AZURE_AUTHORITY_HOST names a cloud, e.g. login.microsoftonline.us.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
AUTHORITY_HOST = re.compile(rf"^{_LABEL}(\.{_LABEL})*(:[0-9]{{1,5}})?$")
# Azure Table Storage's table names: alphanumeric, starting with a letter, 3 to 63 characters
# (https://learn.microsoft.com/en-us/rest/api/storageservices/understanding-the-table-service-data-model#table-names).
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
MIN_SECRET_LENGTH = 32
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigError(ValueError):
    """One line per bad variable; never a secret's value."""


@dataclass(frozen=True)
class Settings:
    port: int
    public_url: str
    backend_url: str
    tenant_id: str
    client_id: str
    authority_host: str
    token_issuer: str  # the `iss` of the tenant's v2 tokens (differs from the authority's host in China)
    credential: str  # "federated" or "secret"
    federation_audience: str
    managed_identity_client_id: str
    allowed_agent_client_ids: tuple[str, ...]
    store_endpoint: str
    store_table: str
    # Secrets: kept out of repr() so that no traceback or log line shows them.
    client_secret: str | None = field(repr=False)
    signing_key: str = field(repr=False)
    store_key: str = field(repr=False)

    @property
    def mcp_url(self) -> str:
        return self.public_url + "/mcp"


def _url(value: str, *, https_only: bool) -> str | None:
    """The reason a URL is refused, or None. http:// is allowed only on loopback unless https_only."""
    try:
        parsed = urllib.parse.urlsplit(value)
    except ValueError:
        return "not a URL"
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        return "not an http(s) URL with a host"
    if parsed.scheme == "http" and (https_only or parsed.hostname not in LOOPBACK_HOSTS):
        return "https:// is required (http:// only on loopback)"
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        return "no query, fragment or credentials allowed"
    try:
        parsed.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return "a malformed port"
    return None


def load(environ: Mapping[str, str]) -> Settings:
    """Settings from the environment, or a ConfigError listing every refused variable."""
    problems: list[str] = []

    def get(name: str, default: str | None = None) -> str:
        value = environ.get(name, "").strip()
        if not value and default is not None:
            return default
        return value

    def need(name: str, accepted: str, ok: bool, *, secret: bool = False, value: str = "") -> None:
        if ok:
            return
        if not value:
            problems.append(f"{name} is missing: expected {accepted}")
        elif secret:
            problems.append(f"{name} is refused ({len(value)} characters): expected {accepted}")
        else:
            problems.append(f"{name}={value!r} is refused: expected {accepted}")

    port_text = get("GATEWAY_PORT", str(PORT))
    port = int(port_text) if port_text.isdigit() else 0
    need("GATEWAY_PORT", "a port number 1-65535 (default 8080)", 1 <= port <= 65535, value=port_text)

    public_url = get("GATEWAY_PUBLIC_URL")
    reason = _url(public_url, https_only=False) if public_url else "missing"
    if reason is None and (public_url.endswith("/") or urllib.parse.urlsplit(public_url).path):
        reason = "no path and no trailing slash"
    need(
        "GATEWAY_PUBLIC_URL",
        f"the app's public URL, https://<app fqdn> with no path and no trailing slash ({reason})",
        reason is None,
        value=public_url,
    )

    backend_url = get("GATEWAY_BACKEND_URL", DEFAULT_BACKEND_URL)
    reason = _url(backend_url, https_only=False)
    if reason is None and urllib.parse.urlsplit(backend_url).hostname not in LOOPBACK_HOSTS:
        reason = "postgres-mcp runs in the same replica: a loopback address"
    need(
        "GATEWAY_BACKEND_URL",
        f"postgres-mcp's SSE URL, default {DEFAULT_BACKEND_URL} ({reason})",
        reason is None,
        value=backend_url,
    )

    tenant_id = get("ENTRA_TENANT_ID")
    need("ENTRA_TENANT_ID", "the tenant's GUID", bool(GUID.match(tenant_id)), value=tenant_id)
    client_id = get("ENTRA_CLIENT_ID")
    need("ENTRA_CLIENT_ID", "the app registration's client ID (a GUID)", bool(GUID.match(client_id)), value=client_id)

    authority_host = get("ENTRA_AUTHORITY_HOST", "login.microsoftonline.com")
    need(
        "ENTRA_AUTHORITY_HOST",
        "a host name with an optional port and no scheme, default login.microsoftonline.com",
        bool(AUTHORITY_HOST.match(authority_host)),
        value=authority_host,
    )

    # The `iss` of the tenant's v2 tokens. It is the authority's own host in the public cloud and in US
    # Government, but not in China: tokens from login.chinacloudapi.cn carry
    # `https://login.partner.microsoftonline.cn/<tenant>/v2.0` (azure_cloud/clouds.py `v2_issuer_host`, after
    # Microsoft Learn's docs.azure.cn edition of "Configure an application to trust a managed identity").
    default_issuer = f"https://{authority_host}/{tenant_id.lower()}/v2.0"
    token_issuer = get("ENTRA_TOKEN_ISSUER", default_issuer)
    reason = _url(token_issuer, https_only=True)
    if reason is None and not urllib.parse.urlsplit(token_issuer).path.rstrip("/"):
        reason = "a path with the tenant, e.g. /<tenant>/v2.0"
    need(
        "ENTRA_TOKEN_ISSUER",
        f"the `iss` of the tenant's v2 tokens, default https://<ENTRA_AUTHORITY_HOST>/<tenant>/v2.0 ({reason})",
        reason is None,
        value=token_issuer,
    )

    credential = get("ENTRA_CREDENTIAL", "federated")
    need(
        "ENTRA_CREDENTIAL",
        "federated (default: a managed identity assertion) or secret",
        credential in ("federated", "secret"),
        value=credential,
    )
    client_secret: str | None = None
    if credential == "secret":
        client_secret = environ.get("ENTRA_CLIENT_SECRET", "")
        need(
            "ENTRA_CLIENT_SECRET",
            "the app registration's client secret (required with ENTRA_CREDENTIAL=secret)",
            bool(client_secret.strip()),
            secret=True,
            value=client_secret,
        )

    audience = get("ENTRA_FEDERATION_AUDIENCE", "api://AzureADTokenExchange")
    need(
        "ENTRA_FEDERATION_AUDIENCE",
        "the federated credential's audience, default api://AzureADTokenExchange",
        not any(c.isspace() for c in audience),
        value=audience,
    )

    identity = get("AZURE_CLIENT_ID")
    need(
        "AZURE_CLIENT_ID",
        "the user-assigned managed identity's client ID (a GUID)",
        bool(GUID.match(identity)),
        value=identity,
    )

    agents_text = environ.get("ENTRA_ALLOWED_AGENT_CLIENT_IDS", "")
    agents = tuple(part.strip().lower() for part in agents_text.split(",") if part.strip())
    need(
        "ENTRA_ALLOWED_AGENT_CLIENT_IDS",
        "comma-separated client IDs (GUIDs), or empty",
        all(GUID.match(agent) for agent in agents),
        value=agents_text,
    )

    keys: dict[str, str] = {}
    for name, meaning in (
        ("GATEWAY_SIGNING_KEY", "signs the gateway's own tokens"),
        ("GATEWAY_STORE_KEY", "encrypts the sign-in store"),
    ):
        keys[name] = environ.get(name, "")
        need(
            name,
            f"a secret of at least {MIN_SECRET_LENGTH} characters ({meaning})",
            len(keys[name].strip()) >= MIN_SECRET_LENGTH,
            secret=True,
            value=keys[name],
        )
    if keys["GATEWAY_SIGNING_KEY"] and keys["GATEWAY_SIGNING_KEY"] == keys["GATEWAY_STORE_KEY"]:
        problems.append("GATEWAY_STORE_KEY is refused: it must differ from GATEWAY_SIGNING_KEY")

    store_endpoint = get("GATEWAY_STORE_ENDPOINT").rstrip("/")
    reason = _url(store_endpoint, https_only=True) if store_endpoint else "missing"
    need(
        "GATEWAY_STORE_ENDPOINT",
        f"the table service endpoint, https://<account>.table.core.windows.net ({reason})",
        reason is None,
        value=store_endpoint,
    )
    table = get("GATEWAY_STORE_TABLE")
    need(
        "GATEWAY_STORE_TABLE",
        "a table name: a letter, then letters or digits, 3-63 characters",
        bool(TABLE_NAME.match(table)),
        value=table,
    )

    if problems:
        raise ConfigError("\n".join(problems))
    return Settings(
        port=port,
        public_url=public_url,
        backend_url=backend_url,
        tenant_id=tenant_id.lower(),
        client_id=client_id.lower(),
        authority_host=authority_host,
        token_issuer=token_issuer,
        credential=credential,
        federation_audience=audience,
        managed_identity_client_id=identity.lower(),
        allowed_agent_client_ids=agents,
        store_endpoint=store_endpoint,
        store_table=table,
        client_secret=client_secret,
        signing_key=keys["GATEWAY_SIGNING_KEY"],
        store_key=keys["GATEWAY_STORE_KEY"],
    )
