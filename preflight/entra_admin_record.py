"""The server's Entra administrator, pinned: recorded by every update, and changed only by its keys.

With the `entraAdmin*` keys empty the administrator is whoever deploys (settings.deployer): a user on a laptop,
the pipeline's application in CI. Left alone, the second deployment of a stack from the other place would
replace the server's administrator, and the role/grant step would sign in as another role. So every update
records the administrator it declares (output `entraAdminRecord`: object ID, name and type), and the next run
refuses a difference that no key asked for, naming the keys that keep or change it.

A field whose key is set explicitly may change (that is the way to hand the server to another administrator);
a field taken from the deployer may not. A stack last deployed before the record existed has the user output
`entraAdminPrincipalName`, which pins the name; a stack from before the create-only record (whose default
administrator was `pulumi-deployer`, see server_record.earlier_entra_admin) keeps that name through
`complete_entra_admin`, so it passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

import pulumi

from settings import EntraAdmin, Settings
from settings.types import PrincipalType

ENTRA_ADMIN_OUTPUT = "entraAdminRecord"
# What versions of this program from before the record exported, and what it pins.
PRINCIPAL_NAME_OUTPUT = "entraAdminPrincipalName"
# Record field -> (EntraAdmin attribute, config key).
FIELDS = (
    ("objectId", "object_id", "entraAdminObjectId"),
    ("principalName", "principal_name", "entraAdminPrincipalName"),
    ("principalType", "principal_type", "entraAdminPrincipalType"),
)


class EntraAdminChangeError(pulumi.RunError):
    """The server's Entra administrator would change only because someone else deploys."""


def entra_admin_record(admin: EntraAdmin) -> dict[str, str]:
    """What the next run compares with: the administrator this update declares."""
    return {field: str(getattr(admin, attribute) or "") for field, attribute, _ in FIELDS}


def recorded_entra_admin(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The recorded administrator's fields: all three from the record; only the name from a stack deployed
    before the record (its `entraAdminPrincipalName` output); none before the first deployment."""
    record = outputs.get(ENTRA_ADMIN_OUTPUT)
    if isinstance(record, Mapping):
        return {field: str(record[field]) for field, _, _ in FIELDS if isinstance(record.get(field), str)}
    name = outputs.get(PRINCIPAL_NAME_OUTPUT)
    return {"principalName": name} if isinstance(name, str) and name else {}


def silent_entra_admin_changes(recorded: Mapping[str, str], configured: EntraAdmin, declared: EntraAdmin) -> list[str]:
    """The fields that would change although their key is empty (`configured`: the keys as set; `declared`:
    completed from the deployer). Pure."""
    changes = []
    for field, attribute, key in FIELDS:
        was, now = recorded.get(field), getattr(declared, attribute)
        if was and now and was != now and getattr(configured, attribute) is None:
            changes.append(f"{field}: {was!r} -> {now!r} (config key {key} is empty, so it follows the deployer)")
    return changes


def keep_recorded_entra_admin(outputs: Mapping[str, Any], loaded: Settings, completed: Settings) -> Settings:
    """`completed`, with the recorded name and type where their keys are empty and the deployer is the recorded
    administrator: the same principal keeps the role name the server knows it by, even when its token now
    says another name (a renamed UPN or application; or `pulumi-deployer`, an earlier version's default, which
    `complete_entra_admin` keeps only while no record exists)."""
    recorded = recorded_entra_admin(outputs)
    configured, declared = loaded.entra_admin, completed.entra_admin
    if recorded.get("objectId") != declared.object_id or configured.complete:
        return completed
    recorded_type = next((kind for kind in get_args(PrincipalType) if kind == recorded.get("principalType")), None)
    kept = EntraAdmin(
        declared.object_id,
        configured.principal_name or recorded.get("principalName") or declared.principal_name,
        configured.principal_type or recorded_type or declared.principal_type,
    )
    return completed.with_entra_admin(kept)


def refuse_silent_entra_admin_change(outputs: Mapping[str, Any], loaded: Settings, completed: Settings) -> None:
    recorded = recorded_entra_admin(outputs)
    changes = silent_entra_admin_changes(recorded, loaded.entra_admin, completed.entra_admin)
    if not changes:
        return
    keep = " ".join(
        f"{key}={recorded[field]!r}" if field in recorded else f"{key}=<the current administrator's {field}>"
        for field, _, key in FIELDS
    )
    raise EntraAdminChangeError(
        "the server's Entra administrator would be replaced only because another principal deploys this stack "
        f"(recorded in its output '{ENTRA_ADMIN_OUTPUT}'):\n  - " + "\n  - ".join(changes) + "\nNothing was "
        "changed. Pin the administrator by setting the keys entraAdminObjectId, entraAdminPrincipalName and "
        f"entraAdminPrincipalType (to keep it: {keep}), in the stack's config so that every place that deploys "
        "uses them; to hand the server to another administrator on purpose, set those keys to that one."
    )
