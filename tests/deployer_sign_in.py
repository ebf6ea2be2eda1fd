"""GitHub Actions with OIDC, played locally for the deployer credential's tests: the stand-in
endpoints (testing/oidc_endpoints.py) as fixtures, and what a deploy job's environment holds.

GitHub's ID tokens live three seconds, so a test can outlive one (test_deployer_credential_expiry.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from azure_cloud.deployer_credential import get_token
from components import database_access
from testing.oidc_endpoints import (
    GITHUB_ISSUER,
    ActionsIdTokenEndpoint,
    EntraTokenEndpoint,
    FederatedCredential,
    local_ca,
)

SCOPE = database_access.ENTRA_SCOPE

REPOSITORY = "octo-org/postgres-mcp-azure"

DEPLOY_SUBJECT = f"repo:{REPOSITORY}:environment:dev"
AZURE_VARIABLES = (
    "ARM_USE_OIDC",
    "ARM_CLIENT_ID",
    "ARM_TENANT_ID",
    "ARM_OIDC_AUDIENCE",
    "ARM_OIDC_TOKEN",
    "ARM_OIDC_TOKEN_FILE_PATH",
    "ARM_ENVIRONMENT",
    "AZURE_ENVIRONMENT",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "GITHUB_ACTIONS",
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return local_ca(tmp_path_factory.mktemp("entra-ca"))


@pytest.fixture
def github() -> Iterator[ActionsIdTokenEndpoint]:
    endpoint = ActionsIdTokenEndpoint(subject=DEPLOY_SUBJECT, repository=REPOSITORY, lifetime=3).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def entra(github: ActionsIdTokenEndpoint, tls: tuple[Path, Path, Path]) -> Iterator[EntraTokenEndpoint]:
    endpoint = EntraTokenEndpoint(
        github=github, tls=(tls[1], tls[2]), federated=[FederatedCredential(GITHUB_ISSUER, DEPLOY_SUBJECT)]
    ).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in AZURE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return monkeypatch


@pytest.fixture
def actions_job(
    clean_environment: pytest.MonkeyPatch,
    github: ActionsIdTokenEndpoint,
    entra: EntraTokenEndpoint,
    tls: tuple[Path, Path, Path],
) -> dict[str, str]:
    """What the deploy job's environment holds: the workflow's ARM_* variables and the runner's ACTIONS_*."""
    variables = {
        "GITHUB_ACTIONS": "true",
        "ARM_USE_OIDC": "true",
        "ARM_CLIENT_ID": entra.client_id,
        "ARM_TENANT_ID": entra.tenant_id,
        "ACTIONS_ID_TOKEN_REQUEST_URL": github.url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": github.request_token,
        "AZURE_AUTHORITY_HOST": entra.authority,
        "REQUESTS_CA_BUNDLE": str(tls[0]),
    }
    for name, value in variables.items():
        clean_environment.setenv(name, value)
    return variables


def two_tokens_across_expiry(github: ActionsIdTokenEndpoint) -> list[str]:
    """The provider's pattern: a token for one connection attempt, then another once the first ID token expired."""
    first = get_token(SCOPE)
    time.sleep(max(0.0, github.minted[0].claims["exp"] - time.time()) + 0.2)
    return [first, get_token(SCOPE)]


def assert_no_credential_in(message: str, github: ActionsIdTokenEndpoint, entra: EntraTokenEndpoint) -> None:
    for secret in [m.token for m in github.minted] + entra.issued + [github.request_token]:
        assert secret not in message
    assert "eyJ" not in message  # no JWT at all, not even one this test did not see minted


def without_runner_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL")
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
