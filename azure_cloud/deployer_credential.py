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
does not answer). azure-native's other assertion sources are honoured in its order: `ARM_OIDC_TOKEN` (one fixed
assertion; an expiry is reported as such) and `ARM_OIDC_TOKEN_FILE_PATH` (read again for each request). Elsewhere
- a laptop with `az login`, a managed identity, workload identity - it is `DefaultAzureCredential`, as before.

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

from azure_cloud.clouds import PUBLIC, Cloud, CloudError, by_name

# What the Entra federated credential for GitHub expects (GitHub's "Configuring OpenID Connect in Azure";
# azure-native's default `oidcAudience`, `ARM_OIDC_AUDIENCE` overrides it there and here).
GITHUB_AUDIENCE = "api://AzureADTokenExchange"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# @actions/http-client retries GET on 502, 503 and 504 only (HttpResponseRetryCodes, RetryableHttpVerbs).
RETRY_STATUSES = (502, 503, 504)
ID_TOKEN_ATTEMPTS = 3
ID_TOKEN_TIMEOUT_SECONDS = 10.0
RETRY_DELAY_SECONDS = 0.5  # doubled per attempt
JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
README_SECTION = "docs/ci-cd.md"


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
class OidcAssertion:
    """A federated identity signed in with an assertion given by azure-native's other OIDC variables: a file that
    is read again for each token request (its writer renews it), or one fixed token (which nothing renews)."""

    client_id: str
    tenant_id: str
    authority: str
    token_file: str = ""
    token: str = field(default="", repr=False)

    def describe(self) -> str:
        source = f"ARM_OIDC_TOKEN_FILE_PATH {self.token_file}" if self.token_file else "the fixed ARM_OIDC_TOKEN"
        return (
            f"the OIDC federated identity (client id {self.client_id}, tenant {self.tenant_id}, "
            f"authority {self.authority}) with the assertion from {source}"
        )


@dataclass(frozen=True)
class DefaultChain:
    """azure-identity's DefaultAzureCredential: environment, workload identity, managed identity, Azure CLI..."""

    in_github_actions: bool = False
    client_id: str = ""
    authority: str = ""
    """A sovereign cloud's Entra authority host (azure-identity's `authority`); empty: azure-identity's default,
    AZURE_AUTHORITY_HOST or the public cloud."""

    def describe(self) -> str:
        who = f" (AZURE_CLIENT_ID {self.client_id})" if self.client_id else ""
        return f"DefaultAzureCredential{who}: environment variables, workload identity, managed identity, Azure CLI"


Choice = GitHubOidc | OidcAssertion | DefaultChain
RUNNER_VARIABLES = "set by the runner when the job has `permissions: id-token: write`"


def choose(environ: Mapping[str, str], cloud: Cloud | None = None) -> Choice:
    """The credential for this environment; raises DeployerCredentialError for a half-configured OIDC job.

    With ARM_USE_OIDC the assertion comes from where azure-native takes it, in its order (`newOidcCredential`):
    ARM_OIDC_TOKEN, then ARM_OIDC_TOKEN_FILE_PATH, then the runner's ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN."""
    # azure-native enables OIDC only for the exact string "true" (`getConfig("useOidc", "ARM_USE_OIDC") == "true"`):
    # the same test here keeps both providers on the same identity.
    if environ.get("ARM_USE_OIDC") != "true":
        # DefaultAzureCredential signs in at the public cloud unless told otherwise (Microsoft Learn, "Multi-cloud:
        # Connect to all regions with the Azure libraries for Python": a sovereign cloud needs `authority`).
        host = "" if environ.get("AZURE_AUTHORITY_HOST", "").strip() else authority(environ, cloud)
        return DefaultChain(
            in_github_actions=environ.get("GITHUB_ACTIONS") == "true",
            client_id=environ.get("AZURE_CLIENT_ID", ""),
            authority="" if host == PUBLIC.authority_host else host,
        )
    required = {
        "ARM_CLIENT_ID": "the app registration's client id (repository variable AZURE_CLIENT_ID)",
        "ARM_TENANT_ID": "its tenant id (repository variable AZURE_TENANT_ID)",
    }
    has_source = environ.get("ARM_OIDC_TOKEN") or environ.get("ARM_OIDC_TOKEN_FILE_PATH")
    if not has_source:
        required["ACTIONS_ID_TOKEN_REQUEST_URL"] = RUNNER_VARIABLES
        required["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = RUNNER_VARIABLES
    missing = [f"{name} ({why})" for name, why in required.items() if not environ.get(name)]
    if missing:
        raise DeployerCredentialError(
            "ARM_USE_OIDC=true, but the database-access step cannot sign in with OIDC: missing "
            + "; ".join(missing)
            + f". See {README_SECTION}."
        )
    client_id, tenant_id, host = environ["ARM_CLIENT_ID"], environ["ARM_TENANT_ID"], authority(environ, cloud)
    if has_source:
        return OidcAssertion(
            client_id,
            tenant_id,
            host,
            token_file="" if environ.get("ARM_OIDC_TOKEN") else environ["ARM_OIDC_TOKEN_FILE_PATH"],
            token=environ.get("ARM_OIDC_TOKEN", ""),
        )
    return GitHubOidc(
        client_id=client_id,
        tenant_id=tenant_id,
        authority=host,
        request_url=environ["ACTIONS_ID_TOKEN_REQUEST_URL"],
        request_token=environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
        audience=environ.get("ARM_OIDC_AUDIENCE") or GITHUB_AUDIENCE,
    )


def authority(environ: Mapping[str, str], cloud: Cloud | None = None) -> str:
    """AZURE_AUTHORITY_HOST (azure-identity's own variable) first, then the stack's cloud (the provider's
    `entra_scope` input says which), then azure-native's cloud name, then public (azure_cloud/clouds.py)."""
    host = environ.get("AZURE_AUTHORITY_HOST", "").strip()
    if host:
        if "://" in host and not host.lower().startswith("https://"):
            raise DeployerCredentialError(f"AZURE_AUTHORITY_HOST {host!r} must be an https:// URL or a host name")
        return host.rstrip("/")
    if cloud is not None:
        return cloud.authority_host
    name = environ.get("ARM_ENVIRONMENT") or environ.get("AZURE_ENVIRONMENT") or "public"
    try:
        return by_name(name, "ARM_ENVIRONMENT").authority_host
    except CloudError:
        raise DeployerCredentialError(
            f"ARM_ENVIRONMENT {name!r} is not an Azure cloud azure-native knows; expected one of "
            "public, usgovernment, china (or set AZURE_AUTHORITY_HOST to the Entra authority host)"
        ) from None


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


def read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as error:
        raise DeployerCredentialError(f"cannot read ARM_OIDC_TOKEN_FILE_PATH {path}: {error.strerror}") from None
    if not token:
        raise DeployerCredentialError(f"ARM_OIDC_TOKEN_FILE_PATH {path} is empty")
    return token


class Assertions:
    """The ClientAssertionCredential callback: a new assertion on every call (from GitHub, or the file read again).

    Keeps the public claims of the last one (for error messages) and how many it handed out; the assertions
    themselves are kept only to scrub them from messages."""

    def __init__(self, choice: GitHubOidc | OidcAssertion) -> None:
        self.choice = choice
        self.fetched = 0
        self.last_claims: dict[str, Any] = {}
        self._issued: list[str] = []

    def __call__(self) -> str:
        choice = self.choice
        if isinstance(choice, GitHubOidc):
            token = github_id_token(choice)  # looked up at call time, so a test can stand in for GitHub
        elif choice.token_file:
            token = read_token_file(choice.token_file)
        else:
            token = choice.token
        self.fetched += 1
        self.last_claims = public_claims(token)
        self._issued.append(token)
        return token

    def scrub(self, message: str) -> str:
        secrets = [*self._issued, self.choice.token if isinstance(self.choice, OidcAssertion) else ""]
        if isinstance(self.choice, GitHubOidc):
            secrets.append(self.choice.request_token)
        for secret in secrets:
            if secret:
                message = message.replace(secret, "***")
        return JWT.sub("***", message)


# --- a token, or an error that says what to check -----------------------------------------------


def credential(choice: Choice, assertions: Assertions | None = None) -> Any:
    """A new azure-identity credential for the choice (the caller closes it)."""
    if not isinstance(choice, DefaultChain):
        # Its AadClient posts to <authority>/<tenant>/oauth2/v2.0/token itself (MSAL is only its token cache):
        # no instance discovery or authority validation, so a sovereign cloud's host needs no extra option.
        from azure.identity import ClientAssertionCredential

        return ClientAssertionCredential(
            choice.tenant_id, choice.client_id, assertions or Assertions(choice), authority=choice.authority
        )
    from azure.identity import DefaultAzureCredential

    if choice.authority:
        return DefaultAzureCredential(exclude_interactive_browser_credential=True, authority=choice.authority)
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def get_token(scope: str, environ: Mapping[str, str] | None = None, cloud: Cloud | None = None) -> str:
    """An Entra access token for `scope` as the deployer, signed in at `cloud`'s authority (default: the one
    ARM_ENVIRONMENT names). A new credential per call, as the provider asks once per connection attempt: in GitHub
    Actions every call presents a new GitHub ID token."""
    choice = choose(os.environ if environ is None else environ, cloud)
    assertions = None if isinstance(choice, DefaultChain) else Assertions(choice)
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


def failure(choice: Choice, scope: str, error: Exception, assertions: Assertions | None) -> str:
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


def what_to_check(choice: Choice, reason: str, assertions: Assertions | None) -> str:
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
    if not claims:  # no assertion was obtained: the reason already says why
        return f"See {README_SECTION}."
    whose = "GitHub's ID token for this job" if isinstance(choice, GitHubOidc) else "The assertion"
    presented = (
        f"{whose} has issuer {claims.get('iss')!r}, subject {claims.get('sub')!r}, audience {claims.get('aud')!r}"
    )
    if "AADSTS70021" in reason:
        first = (
            f"Check: app registration {choice.client_id} needs a federated credential with exactly this issuer, "
            "subject and audience (a job with an `environment:` presents the environment, not the branch)"
        )
    elif "AADSTS700016" in reason or "AADSTS90002" in reason:
        first = "Check: ARM_CLIENT_ID and ARM_TENANT_ID (repository variables AZURE_CLIENT_ID, AZURE_TENANT_ID)"
    elif "AADSTS700024" in reason and isinstance(choice, OidcAssertion) and not choice.token_file:
        first = (
            "Check: ARM_OIDC_TOKEN is one fixed assertion and it has expired; in GitHub Actions leave it unset so "
            "that each token request presents a new ID token from the runner"
        )
    elif "AADSTS700024" in reason:
        first = "Check: the clock of this machine; each request presented a new assertion and Entra found it expired"
    else:
        first = (
            f"Check: app registration {choice.client_id} in tenant {choice.tenant_id} has a federated credential "
            "for this job's subject"
        )
    return f"{first}. {presented}. See {README_SECTION}."
