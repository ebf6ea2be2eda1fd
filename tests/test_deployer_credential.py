"""The deployer's credential: a fresh GitHub ID token for each Entra token request in GitHub Actions with OIDC,
DefaultAzureCredential elsewhere, and errors that say what to check without printing a credential.

Runs against the local stand-ins in `testing/oidc_endpoints.py`: GitHub's ID token endpoint minting tokens valid for
three seconds, and Entra's token endpoint over HTTPS (a local CA, trusted through REQUESTS_CA_BUNDLE, which
`requests` reads because azure-core's RequestsTransport keeps `session.trust_env` on and passes `verify=True`),
reached through AZURE_AUTHORITY_HOST, refusing expired assertions as Entra does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deployer_sign_in import (
    REPOSITORY,
    SCOPE,
    assert_no_credential_in,
)

from azure_cloud import deployer_credential
from azure_cloud.deployer_credential import (
    DefaultChain,
    DeployerCredentialError,
    GitHubOidc,
    OidcAssertion,
    choose,
    get_token,
    id_token_url,
)
from components import database_access
from testing.identity_endpoint import IdentityEndpoint
from testing.oidc_endpoints import (
    GITHUB_ISSUER,
    ActionsIdTokenEndpoint,
    EntraTokenEndpoint,
)

pytestmark = pytest.mark.program

ROOT = Path(__file__).resolve().parent.parent
PR_SUBJECT = f"repo:{REPOSITORY}:pull_request"


# --- GitHub Actions with OIDC ---------------------------------------------------------------------


def test_entra_is_reached_over_https_with_a_certificate_the_client_must_trust(
    actions_job: dict[str, str], entra: EntraTokenEndpoint, clean_environment: pytest.MonkeyPatch
) -> None:
    clean_environment.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(DeployerCredentialError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        get_token(SCOPE)
    assert entra.outcomes == []


def test_a_job_without_a_matching_federated_credential_is_told_its_subject(
    actions_job: dict[str, str], github: ActionsIdTokenEndpoint, entra: EntraTokenEndpoint
) -> None:
    github.subject = PR_SUBJECT  # a pull request's preview; only the dev environment is federated
    with pytest.raises(DeployerCredentialError) as failure:
        get_token(SCOPE)
    message = str(failure.value)
    assert entra.outcomes == ["AADSTS70021"]
    assert "AADSTS70021: No matching federated identity record found" in message
    for fact in (entra.client_id, entra.tenant_id, SCOPE, PR_SUBJECT, GITHUB_ISSUER, "api://AzureADTokenExchange"):
        assert fact in message
    assert "federated credential" in message and "docs/ci-cd.md" in message
    assert "Trace ID" not in message  # the first line of Entra's description, not its diagnostics
    assert_no_credential_in(message, github, entra)


def test_the_audience_is_the_one_entra_expects_unless_azure_native_is_told_otherwise(
    actions_job: dict[str, str],
    github: ActionsIdTokenEndpoint,
    entra: EntraTokenEndpoint,
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("ARM_OIDC_AUDIENCE", "api://SomethingElse")
    with pytest.raises(DeployerCredentialError, match="audience 'api://SomethingElse'"):
        get_token(SCOPE)
    assert entra.outcomes == ["AADSTS70021"]


def test_the_audience_is_added_to_the_runners_url_as_actions_core_does() -> None:
    url = "https://pipelines.actions.githubusercontent.com/abc/idtoken?api-version=2.0"
    # encodeURIComponent("api://AzureADTokenExchange")
    assert id_token_url(url, "api://AzureADTokenExchange") == url + "&audience=api%3A%2F%2FAzureADTokenExchange"
    assert id_token_url(url + "&audience=old", "new") == url + "&audience=new"


def test_a_refused_runner_request_token_says_what_to_check(
    actions_job: dict[str, str],
    github: ActionsIdTokenEndpoint,
    entra: EntraTokenEndpoint,
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "expired-runner-token")
    with pytest.raises(DeployerCredentialError) as failure:
        get_token(SCOPE)
    message = str(failure.value)
    assert "HTTP 401" in message and "id-token: write" in message and entra.client_id in message
    assert "expired-runner-token" not in message and github.request_token not in message
    assert entra.outcomes == [] and github.minted == []


def test_a_github_outage_is_retried_like_actions_http_client_does(
    actions_job: dict[str, str],
    github: ActionsIdTokenEndpoint,
    entra: EntraTokenEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deployer_credential, "RETRY_DELAY_SECONDS", 0.01)
    github.upcoming = [503, 502]
    assert get_token(SCOPE) == entra.issued[0]
    assert len(github.requests) == 3

    github.upcoming = [504, 503, 502]
    with pytest.raises(DeployerCredentialError, match="did not answer after 3 attempts: HTTP 502"):
        get_token(SCOPE)


def test_the_database_access_provider_gets_its_token_this_way(
    actions_job: dict[str, str], github: ActionsIdTokenEndpoint, entra: EntraTokenEndpoint
) -> None:
    assert database_access.entra_token() == entra.issued[0]
    github.subject = PR_SUBJECT
    with pytest.raises(database_access.DatabaseAccessError, match=PR_SUBJECT):
        database_access.entra_token()


# --- which credential, where ----------------------------------------------------------------------

ACTIONS_OIDC = {
    "GITHUB_ACTIONS": "true",
    "ARM_USE_OIDC": "true",
    "ARM_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
    "ARM_TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "ARM_SUBSCRIPTION_ID": "00000000-0000-0000-0000-0000000000aa",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://pipelines.actions.githubusercontent.com/x/idtoken?api-version=2.0",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-token",
}


def test_actions_with_oidc_signs_in_as_the_federated_identity() -> None:
    choice = choose(ACTIONS_OIDC)
    assert choice == GitHubOidc(
        client_id=ACTIONS_OIDC["ARM_CLIENT_ID"],
        tenant_id=ACTIONS_OIDC["ARM_TENANT_ID"],
        authority="login.microsoftonline.com",
        request_url=ACTIONS_OIDC["ACTIONS_ID_TOKEN_REQUEST_URL"],
        request_token="runtime-token",
        audience="api://AzureADTokenExchange",
    )
    assert "runtime-token" not in repr(choice) and "idtoken" not in repr(choice)
    signed_in = deployer_credential.credential(choice)
    try:
        assert type(signed_in).__name__ == "ClientAssertionCredential"
    finally:
        signed_in.close()


@pytest.mark.parametrize(
    ("overrides", "authority"),
    [
        ({"ARM_ENVIRONMENT": "usgovernment"}, "login.microsoftonline.us"),
        ({"ARM_ENVIRONMENT": "china"}, "login.chinacloudapi.cn"),
        ({"AZURE_ENVIRONMENT": "AzureUSGovernment"}, "login.microsoftonline.us"),
        ({"ARM_ENVIRONMENT": "public"}, "login.microsoftonline.com"),
        (
            {"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/", "ARM_ENVIRONMENT": "china"},
            "https://login.microsoftonline.us",
        ),
    ],
)
def test_sovereign_clouds_sign_in_at_their_own_authority(overrides: dict[str, str], authority: str) -> None:
    choice = choose({**ACTIONS_OIDC, **overrides})
    assert isinstance(choice, GitHubOidc) and choice.authority == authority


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ARM_ENVIRONMENT": "mars"}, "ARM_ENVIRONMENT 'mars' is not an Azure cloud"),
        ({"AZURE_AUTHORITY_HOST": "http://login.example"}, "must be an https:// URL"),
    ],
)
def test_an_unknown_cloud_is_refused_by_name(overrides: dict[str, str], expected: str) -> None:
    with pytest.raises(DeployerCredentialError, match=expected):
        choose({**ACTIONS_OIDC, **overrides})


@pytest.mark.parametrize(
    "environ",
    [
        {},  # a laptop: az login
        {"GITHUB_ACTIONS": "true"},  # Actions without OIDC: a client secret or a self-hosted runner's identity
        {"IDENTITY_ENDPOINT": "http://localhost:42356/msi/token", "IDENTITY_HEADER": "h"},  # a managed identity
        {"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"},  # workload identity
        {**ACTIONS_OIDC, "ARM_USE_OIDC": "True"},  # azure-native reads only "true"; so does this
    ],
)
def test_everywhere_else_it_is_default_azure_credential(environ: dict[str, str]) -> None:
    assert isinstance(choose(environ), DefaultChain)


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        (("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"), "id-token: write"),
        (("ARM_CLIENT_ID",), "ARM_CLIENT_ID (the app registration's client id"),
        (("ARM_TENANT_ID",), "ARM_TENANT_ID"),
    ],
)
def test_half_configured_oidc_is_an_error_not_a_silent_fallback(missing: tuple[str, ...], expected: str) -> None:
    environ = {key: value for key, value in ACTIONS_OIDC.items() if key not in missing}
    with pytest.raises(DeployerCredentialError, match="ARM_USE_OIDC=true") as failure:
        choose(environ)
    assert expected in str(failure.value) and "runtime-token" not in str(failure.value)


def test_azure_natives_other_oidc_sources_come_first_in_its_order() -> None:
    fixed = choose(ACTIONS_OIDC | {"ARM_OIDC_TOKEN": "eyJhbGciOi.fixed.assertion", "ARM_OIDC_TOKEN_FILE_PATH": "/t"})
    assert isinstance(fixed, OidcAssertion) and fixed.token and not fixed.token_file
    assert "eyJ" not in repr(fixed)
    from_file = choose(ACTIONS_OIDC | {"ARM_OIDC_TOKEN_FILE_PATH": "/var/run/oidc/token"})
    assert from_file == OidcAssertion(
        ACTIONS_OIDC["ARM_CLIENT_ID"], ACTIONS_OIDC["ARM_TENANT_ID"], "login.microsoftonline.com", "/var/run/oidc/token"
    )


def test_laptop_and_managed_identity_keep_default_azure_credential(clean_environment: pytest.MonkeyPatch) -> None:
    identity = IdentityEndpoint().start()
    try:
        clean_environment.setenv("IDENTITY_ENDPOINT", identity.url)
        clean_environment.setenv("IDENTITY_HEADER", identity.header)
        assert get_token(SCOPE) == identity.minted[-1].token
        clean_environment.setenv("GITHUB_ACTIONS", "true")  # Actions without OIDC: the same chain
        assert get_token(SCOPE) == identity.minted[-1].token and len(identity.minted) == 2

        identity.set("http-400")
        with pytest.raises(DeployerCredentialError) as failure:
            get_token(SCOPE)
    finally:
        identity.stop()
    message = str(failure.value)
    assert message.startswith(f"could not get an Entra token for {SCOPE} as DefaultAzureCredential")
    assert "ARM_USE_OIDC=true" in message and "id-token: write" in message  # what an Actions job should do
    assert all(minted.token not in message for minted in identity.minted)


# --- the documented app registration matches the workflows --------------------------------------


def federated_subjects_the_workflows_present() -> set[str]:
    """The `sub` GitHub gives each job that asks for an ID token: the environment if the job references one, else
    `pull_request` for a pull request event, else the branch (docs.github.com, "OpenID Connect reference",
    example subject claims)."""
    subjects: set[str] = set()
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        workflow: dict[Any, Any] = yaml.safe_load(path.read_text())
        triggers: dict[str, Any] = workflow[True]  # YAML 1.1 reads `on:` as True
        for job in workflow["jobs"].values():
            if (job.get("permissions") or {}).get("id-token") != "write":
                continue
            environment = job.get("environment")
            if environment == "${{ matrix.stack }}":
                subjects.update(
                    f"repo:<owner>/<repo>:environment:{stack}" for stack in job["strategy"]["matrix"]["stack"]
                )
            elif environment:
                subjects.add(f"repo:<owner>/<repo>:environment:{environment}")
            elif "pull_request" in triggers:
                subjects.add("repo:<owner>/<repo>:pull_request")
            else:
                subjects.update(f"repo:<owner>/<repo>:ref:refs/heads/{b}" for b in triggers["push"]["branches"])
    return subjects


def test_the_docs_document_a_federated_credential_for_every_job_that_signs_in() -> None:
    readme = (ROOT / "docs" / "ci-cd.md").read_text()
    subjects = federated_subjects_the_workflows_present()
    assert subjects == {
        "repo:<owner>/<repo>:pull_request",
        "repo:<owner>/<repo>:environment:dev",
        "repo:<owner>/<repo>:environment:prod",
    }
    for subject in subjects:
        assert f"| `{subject}` |" in readme


def test_the_workflows_sign_the_cli_in_just_before_pulumi_and_prefetch_no_token() -> None:
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        workflow: dict[Any, Any] = yaml.safe_load(path.read_text())
        for name, job in workflow["jobs"].items():
            steps = list(job["steps"])
            for step in steps:
                assert "get-access-token" not in str(step.get("run", "")), (path.name, name)
                assert "ACTIONS_ID_TOKEN_REQUEST" not in str(step), (path.name, name)
            logins = [i for i, step in enumerate(steps) if str(step.get("uses", "")).startswith("Azure/login@")]
            if not logins:
                continue
            pulumi = next(i for i, step in enumerate(steps) if str(step.get("uses", "")).startswith("pulumi/actions@"))
            assert logins[0] < pulumi, (path.name, name)
            between = steps[logins[0] + 1 : pulumi]
            assert all("uses" not in step and "install" not in step.get("run", "") for step in between), (
                path.name,
                name,
            )
