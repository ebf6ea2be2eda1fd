"""A deliberate wait for a new Azure role assignment to apply, before anything relies on it.

Azure RBAC applies a new role assignment with a delay: "When you assign roles or remove role assignments, it
can take up to 10 minutes for changes to take effect" (Microsoft Learn, "Troubleshoot Azure RBAC", symptom
"Role assignment changes are not being detected"); Key Vault's RBAC guide gives the same bound ("Provide
access to Key Vault keys, certificates, and secrets with Azure role-based access control", Known limits:
"up to 10 minutes (600 seconds) after role assignments is changed for role to be applied"). A Container App
resolves its Key Vault references while it creates a revision: a revision created before the identity's
Key Vault Secrets User applies fails, and so does `pulumi up`.

Why a fixed wait and not a poll: the role assignment is visible through ARM as soon as its PUT returns (that
is when the engine calls it created), so polling `get_role_assignment` proves nothing; what lags is the data
plane's authorization cache, and only the app's identity could test it, and its token cannot be had from
the deployer's machine. So the wait is a dynamic resource whose create sleeps the configured seconds
(`keyVaultRoleWaitSeconds`, 600 by default: the documented bound) and whose only trigger is the role
assignment: it waits again only when the assignment is replaced (a new ID), never on an ordinary update.
It depends on the role assignment alone, so on a stack's first `up` it runs alongside the server's creation
(itself several minutes) and adds little, if anything, to the run. The wait counts from the assignment's own
creation time (`createdOn`, as ARM reports it), so an assignment that has existed for longer than the bound
(a stack deployed by an earlier version, which gains this resource on upgrade) is not waited for at all; a
deployer's clock that runs ahead of Azure's shortens the wait by as much, so the count never goes below zero
and an unreadable time means the whole wait.

The provider lives in an importable module with no attributes and no I/O, so that the engine's provider
process unpickles it by reference (see components/database_access.py); check and diff are offline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult
from pulumi.dynamic import Resource as DynamicResource
from pulumi.output import Unknown

# The documented bound (see above); the config key's default.
DOCUMENTED_PROPAGATION_SECONDS = 600
# What makes the wait run again: a new role assignment (its ID changes when it is replaced, and with it the
# principal or the scope it grants).
TRIGGERS = ("role_assignment_id",)


class RolePropagationWaitArgs(TypedDict):
    role_assignment_id: pulumi.Input[str]
    seconds: int
    assigned_at: NotRequired[pulumi.Input[str] | None]
    """The role assignment's `createdOn` (ISO 8601, UTC); the wait counts from it."""


def remaining_seconds(seconds: float, assigned_at: Any, now: datetime) -> float:
    """How much of the wait is left `now`, for an assignment created at `assigned_at` (the whole wait when that
    time is unknown or unreadable, or lies in the future of this machine's clock)."""
    try:
        created = datetime.fromisoformat(str(assigned_at))
    except ValueError:
        return max(seconds, 0)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    elapsed = max((now - created).total_seconds(), 0.0)
    return min(max(seconds - elapsed, 0.0), max(seconds, 0))


def _changed(olds: dict[str, Any], news: dict[str, Any], key: str) -> bool:
    new = news.get(key)
    return isinstance(new, Unknown) or olds.get(key) != new


class RolePropagationWaitProvider(ResourceProvider):
    """Create sleeps; diff replaces only on a new role assignment; update (the seconds) records, no sleep."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        seconds = int(props.get("seconds", 0))
        waited = remaining_seconds(seconds, props.get("assigned_at"), datetime.now(UTC))
        time.sleep(waited)
        outs = {key: value for key, value in props.items() if key != "__provider"}
        result = {**outs, "waited_seconds": round(waited)}
        return CreateResult(id_=f"{props['role_assignment_id']}#propagated", outs=result)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in TRIGGERS if _changed(olds, news, key)]
        changes = bool(replaces) or _changed(olds, news, "seconds")
        # Create-before-delete (the default): the new wait runs, then the old one is forgotten.
        return DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Only `seconds` changed: the role assignment is the one already waited for.
        outs = {key: value for key, value in news.items() if key != "__provider"}
        return UpdateResult(outs={**outs, "waited_seconds": olds.get("waited_seconds", 0)})


class RolePropagationWait(DynamicResource, name="RolePropagationWait"):
    """Done once the role assignment has had `seconds` to apply; depend on it instead of the assignment."""

    def __init__(self, name: str, args: RolePropagationWaitArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            RolePropagationWaitProvider(),
            name,
            {
                "role_assignment_id": args["role_assignment_id"],
                "seconds": args["seconds"],
                "assigned_at": args.get("assigned_at"),
            },
            opts,
        )


def wait_for_role(name: str, assignment: Any, seconds: int, parent: pulumi.Resource) -> RolePropagationWait:
    """The wait that follows a role assignment (`<name>-propagation`, counted from its `createdOn`): what a revision
    that needs the role depends on."""
    return RolePropagationWait(
        f"{name}-propagation",
        {"role_assignment_id": assignment.id, "seconds": seconds, "assigned_at": assignment.created_on},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[assignment]),
    )
