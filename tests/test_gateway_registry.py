"""The sign-in gateway's registry under mocks: admin user and anonymous pull off, AcrPull for the app's identity on
the registry only, the app waiting for it, the image by digest; nothing when a prebuilt image is given or the
gateway is off; the refusal without a digest; and the first deploy's `--target` list (tools/gateway_image.py)
equal to what the program declares, closed under parents and dependencies as the engine requires."""

from __future__ import annotations

import functools
from typing import Any

import pulumi
import pytest
from harness import (
    PIPELINE_GATEWAY_DIGEST,
    ROLE_ASSIGNED_AT,
    SUBSCRIPTION_ID,
    ProgramRun,
    RecordingMocks,
    run_program,
)

from components.gateway_registry import ACR_PULL, GatewayRegistry
from preflight.gateway_image import PLACEHOLDER_DIGEST, GatewayImageError
from tools.gateway_image import registry_targets

pytestmark = pytest.mark.program

REGISTRY = "azure-native:containerregistry:Registry"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
CONTAINER_APP = "azure-native:app:ContainerApp"
WAIT = "pulumi-python:dynamic:RolePropagationWait"
IDENTITY_PRINCIPAL = "22222222-2222-2222-2222-222222222222"  # the mocks' user-assigned identity
PREBUILT = "contoso.azurecr.io/postgres-mcp-gateway@sha256:" + "cd" * 32
STACK_TYPE = "pulumi:pulumi:Stack"


@functools.cache
def shipped(stack: str) -> ProgramRun:
    return run_program(stack)


def acr_pull(run: ProgramRun) -> list[dict[str, str]]:
    return [r.inputs for r in run.of_type(ROLE_ASSIGNMENT) if r.inputs["roleDefinitionId"].endswith(ACR_PULL)]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_registry_has_no_admin_user_and_no_anonymous_pull(stack: str) -> None:
    registry = shipped(stack).one(REGISTRY)
    assert registry.inputs["adminUserEnabled"] is False
    assert registry.inputs["anonymousPullEnabled"] is False
    assert registry.inputs["sku"] == {"name": "Basic"}
    assert registry.inputs["publicNetworkAccess"] == "Enabled"
    # Global, letters and digits only: the stack's base name without hyphens, then its random suffix.
    assert registry.inputs["registryName"] == f"pgmcp{stack}a1b2c3"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_apps_identity_may_pull_from_this_registry_only(stack: str) -> None:
    run = shipped(stack)
    (assignment,) = acr_pull(run)
    assert assignment["roleDefinitionId"] == (
        f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"
    )
    assert assignment["principalId"] == IDENTITY_PRINCIPAL
    assert assignment["principalType"] == "ServicePrincipal"
    registry_urn = next(urn for name, urn in run.urns.items() if urn.endswith(f"::{name}") and REGISTRY in urn)
    assert assignment["scope"].endswith(f"/{REGISTRY}/{registry_urn.rsplit('::', 1)[-1]}")  # the mock's ARM ID


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_app_waits_for_acr_pull_to_apply(stack: str) -> None:
    run = shipped(stack)
    (wait,) = [r for r in run.of_type(WAIT) if r.name.endswith("-acr-pull-propagation")]
    (assignment,) = [r for r in run.of_type(ROLE_ASSIGNMENT) if r.inputs["roleDefinitionId"].endswith(ACR_PULL)]
    assert run.depends_on(wait.name) == [assignment.name]
    assert wait.inputs["seconds"] == 600 and wait.inputs["assigned_at"] == ROLE_ASSIGNED_AT
    app = run.one(CONTAINER_APP)
    assert {wait.name, assignment.name} <= set(run.depends_on(app.name))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_gateway_image_is_referenced_by_digest_in_the_stacks_registry(stack: str) -> None:
    run = shipped(stack)
    login_server = f"pgmcp{stack}a1b2c3.azurecr.io"
    assert run.exports["gatewayRegistryLoginServer"] == login_server
    assert run.exports["gatewayImage"] == f"{login_server}/postgres-mcp-gateway@{PIPELINE_GATEWAY_DIGEST}"


def test_a_prebuilt_image_needs_no_registry() -> None:
    run = run_program("dev", {"gatewayImage": PREBUILT})
    assert run.of_type(REGISTRY) == [] and acr_pull(run) == []
    assert [r for r in run.of_type(WAIT) if r.name.endswith("-acr-pull-propagation")] == []
    assert run.exports["gatewayImage"] == PREBUILT
    assert "gatewayRegistryLoginServer" not in run.exports


def test_without_the_gateway_there_is_no_registry() -> None:
    run = run_program("dev", {"signIn": "none", "gatewayImageDigest": ""})
    assert run.of_type(REGISTRY) == [] and acr_pull(run) == []
    assert "gatewayImage" not in run.exports


def test_up_without_a_digest_names_the_first_deploys_targets() -> None:
    # The refusal itself (nothing declared, both keys named) is tests/test_gateway.py's; a first deploy needs the
    # way out: the targeted `up` that creates the registry before the image exists.
    with pytest.raises(GatewayImageError) as refused:
        run_program("dev", {"gatewayImageDigest": None})
    assert "python -m tools.gateway_image targets" in str(refused.value)


def test_a_preview_without_a_digest_shows_a_placeholder_in_the_stacks_registry() -> None:
    run = run_program("dev", {"gatewayImageDigest": None}, preview=True)
    assert run.exports["gatewayImage"] == f"pgmcpdeva1b2c3.azurecr.io/postgres-mcp-gateway@{PLACEHOLDER_DIGEST}"


def engine_urn(urn: str) -> str:
    """The mocks name a child of the stack `...::pulumi:pulumi:Stack$<type>::...`; the engine leaves the root
    stack's type out (e.g. `urn:pulumi:dev::<project>::aws:ec2/subnet:Subnet::main`, pulumi/pulumi#3369)."""
    return urn.replace(f"::{STACK_TYPE}$", "::", 1)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_first_deploys_targets_are_declared_and_need_nothing_else(stack: str) -> None:
    run = shipped(stack)
    registered = {engine_urn(urn): registration for urn, registration in run.mocks.registrations.items()}
    targets = registry_targets(stack)
    assert set(targets) <= set(registered), set(targets) - set(registered)
    # The engine refuses a target whose parent or dependency is neither targeted nor created (pulumi/pulumi#5869):
    # every parent and dependency of a target is a target, or the stack itself.
    needed = set()
    for urn in targets:
        registration = registered[urn]
        for other in (registration.parent, *registration.dependencies):
            if other and not other.split("::")[2].endswith(STACK_TYPE):
                needed.add(engine_urn(other))
    assert needed <= set(targets), needed - set(targets)
    # And they are what the pipeline needs before the push: the registry and the identity's right to pull.
    kinds = {urn.split("::")[2].rsplit("$", 1)[-1] for urn in targets}
    assert {REGISTRY, ROLE_ASSIGNMENT, "azure-native:resources:ResourceGroup"} <= kinds
    assert not [urn for urn in targets if CONTAINER_APP in urn or WAIT in urn]


def test_the_app_pulls_with_the_identity_and_no_password() -> None:
    """What McpApp puts in `configuration.registries`: the registry's login server and the user-assigned identity's
    resource ID ("For user-assigned identities, use the full user-assigned identity Resource ID", azure-native)."""
    identity_id = (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
        "userAssignedIdentities/pgmcp-dev-app"
    )
    captured: dict[str, Any] = {}

    def declare() -> None:
        registry = GatewayRegistry(
            "pgmcp-dev-gateway-registry",
            {
                "resource_group_name": "rg",
                "location": "westeurope",
                "tags": {},
                "base_name": "pgmcp-dev",
                "name_suffix": "a1b2c3",
                "subscription_id": SUBSCRIPTION_ID,
                "identity_principal_id": IDENTITY_PRINCIPAL,
                "image_digest": PIPELINE_GATEWAY_DIGEST,
            },
        )
        credentials = registry.registry_credentials(identity_id)
        pulumi.Output.all(credentials.server, credentials.identity).apply(lambda v: captured.update(entry=v))
        captured["args"] = credentials

    pulumi.runtime.set_mocks(RecordingMocks(), project="postgres-mcp-azure", stack="dev", preview=False)
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    _sync_await(run_pulumi_func(declare))
    assert captured["entry"] == ["pgmcpdeva1b2c3.azurecr.io", identity_id]
    assert captured["args"].username is None and captured["args"].password_secret_ref is None
