"""The gateway's environment (the contract table): every variable refused when missing, short or
malformed, with a line naming it and what is accepted, and never a secret's value in the message.

gateway/config.py is standard library only, so it is tested here in-process; the process itself
(`python -m gateway` exiting with those lines) is tested in tests/test_gateway_end_to_end.py.
"""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load

pytestmark = pytest.mark.unit

SIGNING = "s" * 31 + "-signing-key-value"
STORE = "k" * 31 + "-store-key-value"
SECRET = "client~secret~value~that~is~long"
VALID = {
    "GATEWAY_PUBLIC_URL": "https://mcp.example.azurecontainerapps.io",
    "ENTRA_TENANT_ID": "11111111-1111-1111-1111-111111111111",
    "ENTRA_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
    "AZURE_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
    "ENTRA_ALLOWED_AGENT_CLIENT_IDS": "44444444-4444-4444-4444-444444444444, 55555555-5555-5555-5555-555555555555",
    "GATEWAY_SIGNING_KEY": SIGNING,
    "GATEWAY_STORE_KEY": STORE,
    "GATEWAY_STORE_ENDPOINT": "https://account.table.core.windows.net",
    "GATEWAY_STORE_TABLE": "gatewaySignIns",
}


def refusal(**changes: str | None) -> str:
    environ = {**VALID, **{k: v for k, v in changes.items() if v is not None}}
    for name, value in changes.items():
        if value is None:
            environ.pop(name, None)
    with pytest.raises(ConfigError) as raised:
        load(environ)
    return str(raised.value)


def test_the_contract_defaults() -> None:
    settings = load(VALID)
    assert settings.port == 8080
    assert settings.backend_url == "http://127.0.0.1:8000/sse"
    assert settings.authority_host == "login.microsoftonline.com"
    assert settings.token_issuer == "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0"
    assert settings.credential == "federated" and settings.client_secret is None
    assert settings.federation_audience == "api://AzureADTokenExchange"
    assert settings.mcp_url == "https://mcp.example.azurecontainerapps.io/mcp"
    assert settings.allowed_agent_client_ids == (
        "44444444-4444-4444-4444-444444444444",
        "55555555-5555-5555-5555-555555555555",
    )
    # Secrets stay out of repr() (tracebacks, debug logs).
    assert SIGNING not in repr(settings) and STORE not in repr(settings)


def test_sovereign_and_local_authorities_and_the_secret_credential() -> None:
    settings = load({**VALID, "ENTRA_AUTHORITY_HOST": "login.microsoftonline.us"})
    assert settings.authority_host == "login.microsoftonline.us"
    assert settings.token_issuer == "https://login.microsoftonline.us/11111111-1111-1111-1111-111111111111/v2.0"
    local = load({**VALID, "ENTRA_AUTHORITY_HOST": "127.0.0.1:8443"})
    assert local.authority_host == "127.0.0.1:8443"
    assert local.token_issuer == "https://127.0.0.1:8443/11111111-1111-1111-1111-111111111111/v2.0"
    # China: the authority and the tokens' issuer differ (azure_cloud/clouds.py `v2_issuer_host`).
    china_issuer = "https://login.partner.microsoftonline.cn/11111111-1111-1111-1111-111111111111/v2.0"
    china = load({**VALID, "ENTRA_AUTHORITY_HOST": "login.chinacloudapi.cn", "ENTRA_TOKEN_ISSUER": china_issuer})
    assert china.authority_host == "login.chinacloudapi.cn" and china.token_issuer == china_issuer
    settings = load({**VALID, "ENTRA_CREDENTIAL": "secret", "ENTRA_CLIENT_SECRET": SECRET})
    assert settings.client_secret == SECRET and SECRET not in repr(settings)
    assert load({**VALID, "ENTRA_ALLOWED_AGENT_CLIENT_IDS": ""}).allowed_agent_client_ids == ()
    assert load({**VALID, "GATEWAY_PUBLIC_URL": "http://127.0.0.1:8080"}).public_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("GATEWAY_PORT", "http", "1-65535"),
        ("GATEWAY_PORT", "70000", "1-65535"),
        ("GATEWAY_PUBLIC_URL", None, "https://<app fqdn>"),
        ("GATEWAY_PUBLIC_URL", "https://mcp.example.io/", "no trailing slash"),
        ("GATEWAY_PUBLIC_URL", "https://mcp.example.io/mcp", "no path"),
        ("GATEWAY_PUBLIC_URL", "http://mcp.example.io", "https:// is required"),
        ("GATEWAY_BACKEND_URL", "http://10.0.0.4:8000/sse", "loopback"),
        ("GATEWAY_BACKEND_URL", "ftp://127.0.0.1/sse", "http(s) URL"),
        ("ENTRA_TENANT_ID", None, "GUID"),
        ("ENTRA_TENANT_ID", "contoso.onmicrosoft.com", "GUID"),
        ("ENTRA_CLIENT_ID", "not-a-guid", "GUID"),
        ("ENTRA_AUTHORITY_HOST", "https://login.microsoftonline.com", "no scheme"),
        ("ENTRA_AUTHORITY_HOST", "login.microsoftonline.com/tenant", "no scheme"),
        ("ENTRA_TOKEN_ISSUER", "http://login.microsoftonline.com/t/v2.0", "https:// is required"),
        ("ENTRA_TOKEN_ISSUER", "https://login.microsoftonline.com", "a path with the tenant"),
        ("ENTRA_CREDENTIAL", "certificate", "federated"),
        ("ENTRA_FEDERATION_AUDIENCE", "api://Azure AD", "audience"),
        ("AZURE_CLIENT_ID", None, "managed identity"),
        ("ENTRA_ALLOWED_AGENT_CLIENT_IDS", "agent-one", "GUIDs"),
        ("GATEWAY_STORE_ENDPOINT", None, "table service endpoint"),
        ("GATEWAY_STORE_ENDPOINT", "http://account.table.core.windows.net", "https:// is required"),
        ("GATEWAY_STORE_TABLE", "sign-ins", "a table name"),
        ("GATEWAY_STORE_TABLE", "ab", "a table name"),
    ],
)
def test_a_bad_variable_is_named_with_what_is_accepted(name: str, value: str | None, accepted: str) -> None:
    message = refusal(**{name: value})
    lines = message.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(name + " ") or lines[0].startswith(name + "="), lines[0]
    assert accepted in lines[0], lines[0]


@pytest.mark.parametrize("name", ["GATEWAY_SIGNING_KEY", "GATEWAY_STORE_KEY"])
def test_a_short_key_is_refused_without_echoing_it(name: str) -> None:
    short = "abcdefghijklmnopqrstuvwxyz01234"  # 31 characters
    message = refusal(**{name: short})
    assert message.splitlines() == [f"{name} is refused (31 characters): " + message.split(": ", 1)[1]]
    assert "at least 32 characters" in message
    assert short not in message and short[:8] not in message
    assert f"{name} is missing" in refusal(**{name: None})


def test_the_client_secret_is_required_with_the_secret_credential_and_never_echoed() -> None:
    assert "ENTRA_CLIENT_SECRET is missing" in refusal(ENTRA_CREDENTIAL="secret")
    message = refusal(ENTRA_CREDENTIAL="secret", ENTRA_CLIENT_SECRET="   ", GATEWAY_STORE_KEY="short-store-secret")
    assert "ENTRA_CLIENT_SECRET" in message and "short-store-secret" not in message


def test_the_two_keys_must_differ() -> None:
    message = refusal(GATEWAY_STORE_KEY=SIGNING)
    assert "GATEWAY_STORE_KEY" in message and SIGNING not in message


def test_every_problem_is_reported_in_one_run() -> None:
    message = refusal(ENTRA_TENANT_ID=None, GATEWAY_STORE_TABLE="x", GATEWAY_SIGNING_KEY="short")
    assert [line.split(" ")[0].split("=")[0] for line in message.splitlines()] == [
        "ENTRA_TENANT_ID",
        "GATEWAY_SIGNING_KEY",
        "GATEWAY_STORE_TABLE",
    ]


def test_what_the_infrastructure_declares_is_accepted() -> None:
    # The values the Container App gives the gateway (components/mcp_app.py), per cloud.
    from azure_cloud.clouds import CHINA, PUBLIC, US_GOVERNMENT
    from components.mcp_app import GATEWAY_BACKEND_URL, GATEWAY_PORT
    from components.sign_in_store import STORE_TABLE

    for cloud in (PUBLIC, US_GOVERNMENT, CHINA):
        settings = load(
            {
                **VALID,
                "GATEWAY_PORT": str(GATEWAY_PORT),
                "GATEWAY_BACKEND_URL": GATEWAY_BACKEND_URL,
                "ENTRA_AUTHORITY_HOST": cloud.authority_host,
                "ENTRA_FEDERATION_AUDIENCE": cloud.federation_audience,
                "GATEWAY_STORE_TABLE": STORE_TABLE,
            }
        )
        assert settings.authority_host == cloud.authority_host
