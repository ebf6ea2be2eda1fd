"""Password mode's Key Vault reference survives RBAC propagation: the app waits for the identity's Key Vault
Secrets User to apply ("up to 10 minutes", Microsoft Learn, "Troubleshoot Azure RBAC"), through a dynamic
wait resource that depends on the role assignment and runs again only when the assignment is replaced.

Under mocks: who waits for whom. Through the engine protocol (tests/engine.py: the SDK's own dynamic provider
servicer in its own process, rpc-serialized requests): the wait's create, diff and update, with short waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from engine import Engine, ProviderHost
from harness import ROLE_ASSIGNED_AT, Declared, ProgramRun, run_program
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2

from components.role_propagation import DOCUMENTED_PROPAGATION_SECONDS, RolePropagationWaitProvider, remaining_seconds

pytestmark = pytest.mark.program

WAIT = "pulumi-python:dynamic:RolePropagationWait"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
CONTAINER_APP = "azure-native:app:ContainerApp"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def secrets_user(run: ProgramRun) -> str:
    (assignment,) = [
        r for r in run.of_type(ROLE_ASSIGNMENT) if r.inputs["roleDefinitionId"].endswith(KEY_VAULT_SECRETS_USER)
    ]
    return assignment.name


def key_vault_wait(run: ProgramRun) -> Declared:
    """The wait that follows the identity's Key Vault Secrets User (the gateway's table and registry have their own:
    tests/test_gateway.py, tests/test_sign_in_registration.py)."""
    assignment = secrets_user(run)
    (wait,) = [w for w in run.of_type(WAIT) if w.inputs["role_assignment_id"].endswith(f"/{assignment}")]
    return wait


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_password_mode_app_waits_for_the_role_to_apply(stack: str) -> None:
    run = run_program(stack, {"authMode": "password"})
    assignment = secrets_user(run)
    wait = key_vault_wait(run)
    # The wait follows the role assignment (its ID is the trigger) and starts only once it exists...
    assert wait.inputs["role_assignment_id"].endswith(f"/{ROLE_ASSIGNMENT}/{assignment}")  # the mock's ARM ID
    assert run.depends_on(wait.name) == [assignment]
    # ...for the documented bound by default...
    assert wait.inputs["seconds"] == DOCUMENTED_PROPAGATION_SECONDS == 600
    # ...counted from the assignment's own creation time, as ARM reports it...
    assert wait.inputs["assigned_at"] == ROLE_ASSIGNED_AT
    # ...and the app, whose first revision resolves the Key Vault reference, waits for the wait.
    app = run.one(CONTAINER_APP)
    assert wait.name in run.depends_on(app.name) and assignment in run.depends_on(app.name)
    assert app.inputs["configuration"]["secrets"][0]["keyVaultUrl"].startswith("https://")


def test_the_wait_is_configurable_and_independent_of_the_server() -> None:
    run = run_program("dev", {"authMode": "password", "keyVaultRoleWaitSeconds": 120})
    wait = key_vault_wait(run)
    assert wait.inputs["seconds"] == 120
    # The gateway's table role waits as long: the same documented bound, under the same key.
    assert {w.inputs["seconds"] for w in run.of_type(WAIT)} == {120}
    # Nothing but the role assignment: the wait runs alongside the server's creation.
    assert run.depends_on(wait.name) == [secrets_user(run)]


def test_token_mode_references_no_secret_and_waits_for_nothing() -> None:
    # Without the sign-in gateway: the app references no secret.
    run = run_program("dev", {"authMode": "token", "signIn": "none"})
    assert run.of_type(WAIT) == []
    assert "secrets" not in run.one(CONTAINER_APP).inputs["configuration"]


def test_behind_the_gateway_token_mode_waits_for_the_vault_and_the_table() -> None:
    # The gateway's keys are Key Vault references in token mode too, its store is a table the identity reads
    # through a new role, and its image is pulled with AcrPull: the first revision waits for all three roles.
    run = run_program("dev", {"authMode": "token"})
    app = run.one(CONTAINER_APP)
    waits = run.of_type(WAIT)
    assert len(waits) == 3 and all(wait.name in run.depends_on(app.name) for wait in waits)
    assert key_vault_wait(run).inputs["seconds"] == DOCUMENTED_PROPAGATION_SECONDS
    (table_wait,) = [w for w in waits if w.name.endswith("-table-contributor-propagation")]
    (table_role,) = [r for r in run.of_type(ROLE_ASSIGNMENT) if r.name.endswith("-table-contributor")]
    assert run.depends_on(table_wait.name) == [table_role.name]
    assert table_wait.inputs["role_assignment_id"].endswith(f"/{ROLE_ASSIGNMENT}/{table_role.name}")
    assert {s["name"] for s in app.inputs["configuration"]["secrets"]} == {"gateway-signing-key", "gateway-store-key"}


def test_the_wait_counts_from_the_assignments_creation() -> None:
    now = datetime(2026, 12, 2, 10, 5, tzinfo=UTC)
    # Five minutes after the assignment (ARM's seven fractional digits read), five minutes are left.
    assert abs(remaining_seconds(600, "2026-12-02T10:00:00.1234567Z", now) - 300.123) < 0.01
    # An assignment older than the bound (a stack that gains the wait on upgrade) is not waited for.
    assert remaining_seconds(600, "2026-11-28T08:00:00Z", now) == 0
    # A time in this machine's future (its clock behind Azure's), none, or an unreadable one: the whole wait.
    assert remaining_seconds(600, "2026-12-02T10:06:00Z", now) == 600
    assert remaining_seconds(600, None, now) == 600
    assert remaining_seconds(600, "yesterday", now) == 600
    assert remaining_seconds(0, "2026-12-02T10:05:00Z", now) == 0


# --- the wait provider, as the engine runs it ---------------------------------------------------

ASSIGNMENT_ID = (
    "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
    "/providers/Microsoft.Authorization/roleAssignments/8f2c7a54-1111-4a4a-9b9b-0123456789ab"
)
NEW_ASSIGNMENT_ID = ASSIGNMENT_ID[:-12] + "ba9876543210"
WAIT_PROVIDER = serialize_provider(RolePropagationWaitProvider())
SHORT = 1.0


@pytest.fixture(scope="module")
def host() -> Iterator[ProviderHost]:
    provider_host = ProviderHost({})
    yield provider_host
    provider_host.close()


def engine_for(host: ProviderHost) -> Engine:
    return Engine(host, provider=WAIT_PROVIDER)


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def test_create_waits_the_configured_seconds(host: ProviderHost) -> None:
    run = engine_for(host)
    assert run.preview({"role_assignment_id": rpc.UNKNOWN, "seconds": 1}) is None  # a first preview: no diff
    elapsed = timed(lambda: run.up({"role_assignment_id": ASSIGNMENT_ID, "seconds": 1}))
    assert elapsed >= SHORT
    assert run.steps == ["create"]
    assert run.state is not None and run.state.outputs["waited_seconds"] == 1


def test_an_assignment_older_than_the_wait_is_not_waited_for(host: ProviderHost) -> None:
    run = engine_for(host)
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    elapsed = timed(lambda: run.up({"role_assignment_id": ASSIGNMENT_ID, "seconds": 3, "assigned_at": an_hour_ago}))
    assert run.steps == ["create"] and elapsed < 3
    assert run.state is not None and run.state.outputs["waited_seconds"] == 0
    # Just created: the whole wait.
    fresh = engine_for(host)
    just_now = datetime.now(UTC).isoformat()
    elapsed = timed(lambda: fresh.up({"role_assignment_id": NEW_ASSIGNMENT_ID, "seconds": 1, "assigned_at": just_now}))
    assert elapsed >= SHORT - 0.1


def test_an_unchanged_assignment_never_waits_again(host: ProviderHost) -> None:
    run = engine_for(host)
    run.up({"role_assignment_id": ASSIGNMENT_ID, "seconds": 0})
    same = run.preview({"role_assignment_id": ASSIGNMENT_ID, "seconds": 0})
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE and list(same.replaces) == []
    assert run.up({"role_assignment_id": ASSIGNMENT_ID, "seconds": 0}) == []
    # A longer wait configured later applies to the next assignment, not to the one already waited for.
    longer = run.preview({"role_assignment_id": ASSIGNMENT_ID, "seconds": 3})
    assert longer.changes == provider_pb2.DiffResponse.DIFF_SOME and list(longer.replaces) == []
    elapsed = timed(lambda: run.up({"role_assignment_id": ASSIGNMENT_ID, "seconds": 3}))
    assert run.steps[-1] == "update" and elapsed < 3


@pytest.mark.parametrize("new_id", [NEW_ASSIGNMENT_ID, rpc.UNKNOWN], ids=["new-id", "unknown-in-preview"])
def test_a_replaced_assignment_plans_a_new_wait(host: ProviderHost, new_id: str) -> None:
    run = engine_for(host)
    run.up({"role_assignment_id": ASSIGNMENT_ID, "seconds": 0})
    diff = run.preview({"role_assignment_id": new_id, "seconds": 1})
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(diff.replaces) == ["role_assignment_id"] and diff.deleteBeforeReplace is False


def test_a_replaced_assignment_is_waited_for_again(host: ProviderHost) -> None:
    run = engine_for(host)
    run.up({"role_assignment_id": ASSIGNMENT_ID, "seconds": 0})
    elapsed = timed(lambda: run.up({"role_assignment_id": NEW_ASSIGNMENT_ID, "seconds": 1}))
    assert run.steps[-2:] == ["create", "delete-replaced"] and elapsed >= SHORT
    assert run.state is not None and run.state.id == f"{NEW_ASSIGNMENT_ID}#propagated"


def test_a_wait_does_not_hold_up_the_other_dynamic_resources(host: ProviderHost) -> None:
    # The role/grant step's resource is served by the same provider process (one per deployment), which
    # answers on a thread pool (pulumi.dynamic.__main__: grpc.server(ThreadPoolExecutor(max_workers=4))):
    # a sleeping create must leave the other calls free.
    waiting = engine_for(host)
    sleeper = threading.Thread(target=lambda: waiting.up({"role_assignment_id": ASSIGNMENT_ID, "seconds": 3}))
    sleeper.start()
    try:
        time.sleep(0.3)  # the first create is asleep in the provider process
        other = engine_for(host)
        elapsed = timed(lambda: other.up({"role_assignment_id": NEW_ASSIGNMENT_ID, "seconds": 0}))
        assert other.steps == ["create"] and elapsed < 2
    finally:
        sleeper.join(timeout=30)
    assert waiting.steps == ["create"]
