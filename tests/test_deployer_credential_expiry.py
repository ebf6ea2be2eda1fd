"""The deployer's credential across the expiry of GitHub's ID tokens, on the real clock: each test
waits out a three-second ID token (the stand-ins in `testing/oidc_endpoints.py`, set up by
deployer_sign_in.py), so they are in the drill tier, apart from test_deployer_credential.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from deployer_sign_in import (
    SCOPE,
    assert_no_credential_in,
    two_tokens_across_expiry,
    without_runner_variables,
)

from azure_cloud import deployer_credential
from azure_cloud.deployer_credential import DeployerCredentialError, GitHubOidc, choose, get_token
from testing.oidc_endpoints import ActionsIdTokenEndpoint, EntraTokenEndpoint

pytestmark = pytest.mark.drill


def test_each_token_request_presents_a_fresh_github_id_token(
    actions_job: dict[str, str], github: ActionsIdTokenEndpoint, entra: EntraTokenEndpoint
) -> None:
    started = time.monotonic()
    first, second = two_tokens_across_expiry(github)

    assert entra.outcomes == ["ok", "ok"]
    assert [first, second] == entra.issued and first != second
    assert len(github.minted) == 2
    assert entra.presented == [minted.token for minted in github.minted]  # each request its own, new ID token
    assert github.minted[1].claims["nbf"] >= github.minted[0].claims["exp"]  # the second minted after the first died
    assert all(minted.claims["aud"] == "api://AzureADTokenExchange" for minted in github.minted)
    # azure-identity's ClientAssertionCredential asks the token endpoint only (no discovery, no instance metadata).
    assert entra.paths == [f"POST /{entra.tenant_id}/oauth2/v2.0/token"] * 2
    assert time.monotonic() - started < 10


def test_one_id_token_reused_fails_the_same_test(
    actions_job: dict[str, str],
    github: ActionsIdTokenEndpoint,
    entra: EntraTokenEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an Azure CLI signed in by Azure/login does: it keeps presenting the ID token it was given."""
    fetch = deployer_credential.github_id_token
    kept: list[str] = []

    def first_id_token_forever(config: GitHubOidc) -> str:
        if not kept:
            kept.append(fetch(config))
        return kept[0]

    monkeypatch.setattr(deployer_credential, "github_id_token", first_id_token_forever)
    with pytest.raises(DeployerCredentialError) as failure:
        two_tokens_across_expiry(github)

    assert entra.outcomes == ["ok", "AADSTS700024"]
    assert entra.presented == [github.minted[0].token] * 2
    message = str(failure.value)
    assert "AADSTS700024: Client assertion is not within its valid time range" in message
    assert entra.client_id in message and entra.tenant_id in message and SCOPE in message
    assert_no_credential_in(message, github, entra)


def test_a_credential_kept_across_expiry_also_fetches_a_new_id_token(
    actions_job: dict[str, str], github: ActionsIdTokenEndpoint, entra: EntraTokenEndpoint
) -> None:
    """azure-identity calls the callback for every token it does not have cached, not once per credential."""
    entra.access_token_lifetime = 1
    signed_in = deployer_credential.credential(choose(actions_job))
    try:
        first = signed_in.get_token(SCOPE).token
        time.sleep(max(0.0, github.minted[0].claims["exp"] - time.time()) + 0.2)
        second = signed_in.get_token(SCOPE).token
    finally:
        signed_in.close()
    assert entra.outcomes == ["ok", "ok"] and first != second
    assert entra.presented == [minted.token for minted in github.minted] and len(github.minted) == 2


def test_a_token_file_is_read_again_for_each_token_request(
    actions_job: dict[str, str],
    github: ActionsIdTokenEndpoint,
    entra: EntraTokenEndpoint,
    clean_environment: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    without_runner_variables(clean_environment)
    token_file = tmp_path / "oidc-token"
    token_file.write_text(github.mint("api://AzureADTokenExchange"))
    clean_environment.setenv("ARM_OIDC_TOKEN_FILE_PATH", str(token_file))
    first = get_token(SCOPE)
    time.sleep(max(0.0, github.minted[0].claims["exp"] - time.time()) + 0.2)
    token_file.write_text(github.mint("api://AzureADTokenExchange") + "\n")  # its writer renews it
    assert get_token(SCOPE) != first
    assert entra.outcomes == ["ok", "ok"] and entra.presented == [minted.token for minted in github.minted]


def test_a_fixed_oidc_token_works_until_it_expires_and_then_says_so(
    actions_job: dict[str, str],
    github: ActionsIdTokenEndpoint,
    entra: EntraTokenEndpoint,
    clean_environment: pytest.MonkeyPatch,
) -> None:
    without_runner_variables(clean_environment)
    clean_environment.setenv("ARM_OIDC_TOKEN", github.mint("api://AzureADTokenExchange"))
    with pytest.raises(DeployerCredentialError) as failure:
        two_tokens_across_expiry(github)
    assert entra.outcomes == ["ok", "AADSTS700024"]
    message = str(failure.value)
    assert "ARM_OIDC_TOKEN is one fixed assertion and it has expired" in message
    assert entra.client_id in message and SCOPE in message
    assert_no_credential_in(message, github, entra)
