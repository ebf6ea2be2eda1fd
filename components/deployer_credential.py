"""The Entra identity that the deployer's own code (the database-access provider) signs in as.

In GitHub Actions with OIDC, `Azure/login` signs the Azure CLI in with one GitHub ID token. Entra accepts
that assertion for about five minutes (`AADSTS700024 ... assertion valid from 11:39:49, expiry time of
assertion 11:44:49`, Azure/login#372, kata-containers/kata-containers#11758) and the CLI cannot fetch another,
so a token for a new scope asked for late in a run - the PostgreSQL scope, after the server was created - fails.

So when the job runs with the variables azure-native itself reads for OIDC (`ARM_USE_OIDC=true`, `ARM_CLIENT_ID`,
`ARM_TENANT_ID`, and the runner's `ACTIONS_ID_TOKEN_REQUEST_URL`/`ACTIONS_ID_TOKEN_REQUEST_TOKEN`; see
pulumi-azure-native `provider/pkg/provider/auth_azidentity.go`, `readAuthConfig`), the token comes from
azure-identity's `ClientAssertionCredential`, whose callback asks GitHub for a new ID token each time Entra is
asked for a token (azure-identity calls the callback in `_request_token`, i.e. on every request that the cache
does not answer). Elsewhere - a laptop with `az login`, a managed identity, workload identity - it is
`DefaultAzureCredential`, as before.

Failures name the identity, the scope and what to check (for a federated identity: the subject GitHub put in
the job's ID token, which the app registration's federated credential must match exactly). No message ever
contains an assertion, the runner's request token or an access token.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# What the Entra federated credential for GitHub expects (GitHub's "Configuring OpenID Connect in Azure";
# azure-native's default `oidcAudience`, `ARM_OIDC_AUDIENCE` overrides it there and here).
GITHUB_AUDIENCE = "api://AzureADTokenExchange"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# azure-native's cloud names (provider/pkg/azure/cloud/cloud.go, FromName) and their Entra authority hosts
# (azcore/cloud: AzurePublic, AzureChina, AzureGovernment).
CLOUD_AUTHORITIES = {
    "public": "login.microsoftonline.com",
    "azurecloud": "login.microsoftonline.com",
    "china": "login.chinacloudapi.cn",
    "azurechinacloud": "login.chinacloudapi.cn",
    "usgov": "login.microsoftonline.us",
    "usgovernment": "login.microsoftonline.us",
    "azureusgovernment": "login.microsoftonline.us",
    "azureusgovernmentcloud": "login.microsoftonline.us",
    "usgovernmentl4": "login.microsoftonline.us",
}
# @actions/http-client retries GET on 502, 503 and 504 only (HttpResponseRetryCodes, RetryableHttpVerbs).
RETRY_STATUSES = (502, 503, 504)
ID_TOKEN_ATTEMPTS = 3
ID_TOKEN_TIMEOUT_SECONDS = 10.0
RETRY_DELAY_SECONDS = 0.5  # doubled per attempt
JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
README_SECTION = "README.md, section 'CI/CD'"


class DeployerCredentialError(Exception):
    """A sign-in failure the deployer can act on; its message never contains a credential."""


@dataclass(frozen=True)
class GitHubOidc:
    """A federated identity signed in with a fresh GitHub Actions ID token for each Entra token request."""

    client_id: str
    tenant_id: str
    authority: str
    request_url: str = field(repr=False)
    request_token: str = field(repr=False)
    audience: str = GITHUB_AUDIENCE

    def describe(self) -> str:
        return (
            f"the GitHub Actions OIDC federated identity (client id {self.client_id}, tenant {self.tenant_id}, "
            f"authority {self.authority})"
        )


@dataclass(frozen=True)
class DefaultChain:
    """azure-identity's DefaultAzureCredential: environment, workload identity, managed identity, Azure CLI..."""

    in_github_actions: bool = False
    client_id: str = ""

    def describe(self) -> str:
        who = f" (AZURE_CLIENT_ID {self.client_id})" if self.client_id else ""
        return f"DefaultAzureCredential{who}: environment variables, workload identity, managed identity, Azure CLI"


Choice = GitHubOidc | DefaultChain


def choose(environ: Mapping[str, str]) -> Choice:
    """The credential for this environment; raises DeployerCredentialError for a half-configured OIDC job."""
    # azure-native enables OIDC only for the exact string "true" (`getConfig("useOidc", "ARM_USE_OIDC") == "true"`):
    # the same test here keeps both providers on the same identity.
    if environ.get("ARM_USE_OIDC") != "true":
        return DefaultChain(
            in_github_actions=environ.get("GITHUB_ACTIONS") == "true", client_id=environ.get("AZURE_CLIENT_ID", "")
        )
    required = {
        "ARM_CLIENT_ID": "the app registration's client id (repository variable AZURE_CLIENT_ID)",
        "ARM_TENANT_ID": "its tenant id (repository variable AZURE_TENANT_ID)",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "set by the runner when the job has `permissions: id-token: write`",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "set by the runner when the job has `permissions: id-token: write`",
    }
    missing = [f"{name} ({why})" for name, why in required.items() if not environ.get(name)]
    if missing:
        fixed = [name for name in ("ARM_OIDC_TOKEN", "ARM_OIDC_TOKEN_FILE_PATH") if environ.get(name)]
        note = (
            f" ({' and '.join(fixed)} hold one fixed assertion, which expires during a long run, so they are "
            "not used here)"
            if fixed
            else ""
        )
        raise DeployerCredentialError(
            "ARM_USE_OIDC=true, but the database-access step cannot sign in with GitHub OIDC: missing "
            + "; ".join(missing)
            + note
            + f". See {README_SECTION}."
        )
    return GitHubOidc(
        client_id=environ["ARM_CLIENT_ID"],
        tenant_id=environ["ARM_TENANT_ID"],
        authority=authority(environ),
        request_url=environ["ACTIONS_ID_TOKEN_REQUEST_URL"],
        request_token=environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
        audience=environ.get("ARM_OIDC_AUDIENCE") or GITHUB_AUDIENCE,
    )


def authority(environ: Mapping[str, str]) -> str:
    """AZURE_AUTHORITY_HOST (azure-identity's own variable) first, then azure-native's cloud name, then public."""
    host = environ.get("AZURE_AUTHORITY_HOST", "").strip()
    if host:
        if "://" in host and not host.lower().startswith("https://"):
            raise DeployerCredentialError(f"AZURE_AUTHORITY_HOST {host!r} must be an https:// URL or a host name")
        return host.rstrip("/")
    cloud = environ.get("ARM_ENVIRONMENT") or environ.get("AZURE_ENVIRONMENT") or "public"
    if cloud.lower() not in CLOUD_AUTHORITIES:
        raise DeployerCredentialError(
            f"ARM_ENVIRONMENT {cloud!r} is not an Azure cloud azure-native knows; expected one of "
            "public, usgovernment, china (or set AZURE_AUTHORITY_HOST to the Entra authority host)"
        )
    return CLOUD_AUTHORITIES[cloud.lower()]


# --- the assertion callback ---------------------------------------------------------------------


def id_token_url(request_url: str, audience: str) -> str:
    """The runner's URL with `audience` set, as @actions/core's OidcClient.getIDToken builds it
    (`${ACTIONS_ID_TOKEN_REQUEST_URL}&audience=${encodeURIComponent(audience)}`)."""
    parts = urllib.parse.urlsplit(request_url)
    query = [(key, value) for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    query = [(key, value) for key, value in query if key != "audience"] + [("audience", audience)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


def github_id_token(config: GitHubOidc) -> str:
    """A new ID token from the runner: GET with `Authorization: Bearer <request token>`, answer `{"value": ...}`
    (actions/toolkit packages/core/src/oidc-utils.ts, packages/http-client/src/auth.ts)."""
    url = id_token_url(config.request_url, config.audience)
    host = urllib.parse.urlsplit(url).netloc
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {config.request_token}", "Accept": "application/json"}
    )
    problem = ""
    for attempt in range(1, ID_TOKEN_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=ID_TOKEN_TIMEOUT_SECONDS) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            problem = f"HTTP {error.code}"
            if error.code not in RETRY_STATUSES:
                hint = (
                    " (the runner's ACTIONS_ID_TOKEN_REQUEST_TOKEN was refused: does the job still run, with "
                    "`permissions: id-token: write`?)"
                    if error.code in (401, 403)
                    else ""
                )
                raise DeployerCredentialError(f"GitHub's ID token endpoint ({host}) answered {problem}{hint}") from None
        except (urllib.error.URLError, OSError) as error:
            problem = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        else:
            try:
                value = json.loads(body).get("value")
            except (ValueError, AttributeError):
                value = None
            if not isinstance(value, str) or not value:
                raise DeployerCredentialError(
                    f"GitHub's ID token endpoint ({host}) answered without an ID token in `value`"
                )
            return value
        if attempt < ID_TOKEN_ATTEMPTS:
            time.sleep(RETRY_DELAY_SECONDS * 2 ** (attempt - 1))
    raise DeployerCredentialError(
        f"GitHub's ID token endpoint ({host}) did not answer after {ID_TOKEN_ATTEMPTS} attempts: {problem}"
    )


def public_claims(token: str) -> dict[str, Any]:
    """The claims that say which federated credential must match (issuer, subject, audience); never the token."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    if not isinstance(claims, dict):
        return {}
    return {key: claims[key] for key in ("iss", "sub", "aud", "nbf", "exp") if key in claims}


class GitHubAssertions:
    """The ClientAssertionCredential callback: a new GitHub ID token on every call.

    Keeps the public claims of the last one (for error messages) and how many it fetched; the tokens themselves
    are only kept to scrub them from messages."""

    def __init__(self, config: GitHubOidc) -> None:
        self.config = config
        self.fetched = 0
        self.last_claims: dict[str, Any] = {}
        self._issued: list[str] = []

    def __call__(self) -> str:
        token = github_id_token(self.config)  # looked up at call time, so a test can stand in for GitHub's clock
        self.fetched += 1
        self.last_claims = public_claims(token)
        self._issued.append(token)
        return token

    def scrub(self, message: str) -> str:
        for secret in (*self._issued, self.config.request_token):
            if secret:
                message = message.replace(secret, "***")
        return JWT.sub("***", message)


# --- a token, or an error that says what to check -----------------------------------------------


def credential(choice: Choice, assertions: GitHubAssertions | None = None) -> Any:
    """A new azure-identity credential for the choice (the caller closes it)."""
    if isinstance(choice, GitHubOidc):
        from azure.identity import ClientAssertionCredential

        return ClientAssertionCredential(
            choice.tenant_id, choice.client_id, assertions or GitHubAssertions(choice), authority=choice.authority
        )
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def get_token(scope: str, environ: Mapping[str, str] | None = None) -> str:
    """An Entra access token for `scope` as the deployer. A new credential per call, as the provider asks once per
    connection attempt: in GitHub Actions every call presents a new GitHub ID token."""
    choice = choose(os.environ if environ is None else environ)
    assertions = GitHubAssertions(choice) if isinstance(choice, GitHubOidc) else None
    try:
        signed_in = credential(choice, assertions)
    except Exception as error:  # noqa: BLE001 (a bad authority or option; azure-identity raises ValueError)
        raise DeployerCredentialError(failure(choice, scope, error, assertions)) from None
    try:
        return str(signed_in.get_token(scope).token)
    except Exception as error:  # noqa: BLE001 (azure-identity raises many kinds; all mean the same here)
        raise DeployerCredentialError(failure(choice, scope, error, assertions)) from None
    finally:
        signed_in.close()


def failure(choice: Choice, scope: str, error: Exception, assertions: GitHubAssertions | None) -> str:
    text = str(error).strip()
    if isinstance(error, DeployerCredentialError):
        reason = text
    else:
        # Entra's description runs over several lines (Trace ID, Correlation ID, Timestamp): keep the first.
        reason = f"{type(error).__name__}: {text.splitlines()[0] if text else repr(error)}"
    if assertions is not None:
        reason = assertions.scrub(reason)
    message = f"could not get an Entra token for {scope} as {choice.describe()}: {reason.rstrip('.')}"
    return f"{message}. {what_to_check(choice, reason, assertions)}"


def what_to_check(choice: Choice, reason: str, assertions: GitHubAssertions | None) -> str:
    if isinstance(choice, DefaultChain):
        advice = "Check: `az login` (and `az account show`) on a laptop, or the managed/workload identity"
        if choice.in_github_actions:
            advice += (
                "; in GitHub Actions set ARM_USE_OIDC=true with `permissions: id-token: write` so that each token "
                "request presents a fresh GitHub ID token (an Azure CLI signed in by Azure/login with OIDC "
                "cannot get new tokens after about five minutes)"
            )
        return advice + "."
    claims = assertions.last_claims if assertions else {}
    if not claims:  # GitHub gave no ID token: the reason already says what it answered
        return f"See {README_SECTION}."
    presented = (
        f"GitHub's ID token for this job has issuer {claims.get('iss')!r}, subject {claims.get('sub')!r}, "
        f"audience {claims.get('aud')!r}"
    )
    if "AADSTS70021" in reason:
        first = (
            f"Check: app registration {choice.client_id} needs a federated credential with exactly this issuer, "
            "subject and audience (a job with an `environment:` presents the environment, not the branch)"
        )
    elif "AADSTS700016" in reason or "AADSTS90002" in reason:
        first = "Check: ARM_CLIENT_ID and ARM_TENANT_ID (repository variables AZURE_CLIENT_ID, AZURE_TENANT_ID)"
    elif "AADSTS700024" in reason:
        first = "Check: the runner's clock; each request fetched a new ID token, and Entra still found it expired"
    else:
        first = (
            f"Check: app registration {choice.client_id} in tenant {choice.tenant_id} has a federated credential "
            "for this job's subject"
        )
    return f"{first}. {presented}. See {README_SECTION}."
