"""The server's record: the create-only values it was created with, and the guards that compare them.

Create-only properties never follow `authMode`, and a change of one is refused before anything
happens: the values the server was created with are a stack output (`serverCreateOnly`), which
the next run reads back (`preflight.stack_record.own_stack_outputs`) and compares with what it
would declare, before it declares any resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

# The server's password administrator, in both modes (create-only: it cannot follow authMode).
ADMIN_LOGIN = "pgadmin"


# Create-only properties of Microsoft.DBforPostgreSQL/flexibleServers in REST API 2025-08-01 (the
# version pulumi-azure-native 3.x deploys): `x-ms-mutability: [read, create]` in the spec's
# ServerProperties and Backup definitions, plus the resource's name, group and location. A change
# of any of them makes the provider replace the server, and a replaced server starts empty.
CREATE_ONLY_PROPERTIES = (
    "serverName",
    "resourceGroupName",
    "location",
    "administratorLogin",
    "backup.geoRedundantBackup",
    "availabilityZone",
    "sourceServerResourceId",
    "pointInTimeUTC",
)
# What this program sets among them, with the config key that decides each value. The server's
# name is `<serverNamePrefix><stable random suffix>`, so its prefix stands for the name.
GUARDED_PROPERTIES: dict[str, str] = {
    "serverNamePrefix": "namePrefix (and the stack name)",
    "location": "location",
    "administratorLogin": "none (the program's constant; absent on servers an earlier version made in token mode)",
    "backup.geoRedundantBackup": "geoRedundantBackup",
}
CREATE_ONLY_OUTPUT = "serverCreateOnly"


def server_name_prefix(base_name: str) -> str:
    """The server's name is this prefix and a stable random suffix: the prefix stands for the name."""
    return f"{base_name}-pg-"


class CreateOnlyChangeError(pulumi.RunError):
    """A create-only server property would change: the server would be replaced and its data lost."""


# What versions of this program from before the record exported: a deployed server, and the mode it
# was deployed in. Those versions gave the server a password administrator in password mode only.
LEGACY_SERVER_OUTPUT = "serverFqdn"
LEGACY_MODE_OUTPUT = "authMode"
NO_LOGIN = ""


def deployed_by_an_earlier_version(outputs: Mapping[str, Any]) -> bool:
    """The stack's last update came from a version of this program from before the record."""
    return CREATE_ONLY_OUTPUT not in outputs and LEGACY_SERVER_OUTPUT in outputs


def earlier_entra_admin(outputs: Mapping[str, Any]) -> str | None:
    """The Entra administrator's name a stack last deployed by an earlier version has, else None."""
    name = outputs.get("entraAdminPrincipalName")
    return str(name) if deployed_by_an_earlier_version(outputs) and name else None


def recorded_create_only_values(outputs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The create-only values the server was created with, from the last update's outputs: the record,
    or, for a stack last deployed by a version from before the record, what its outputs tell (whether
    the server has a password administrator). None before the first deployment."""
    record = outputs.get(CREATE_ONLY_OUTPUT)
    if isinstance(record, Mapping):
        return record
    if LEGACY_SERVER_OUTPUT not in outputs:
        return None
    mode = outputs.get(LEGACY_MODE_OUTPUT)
    if mode not in ("token", "password"):
        raise CreateOnlyChangeError(
            f"this stack's server ({outputs[LEGACY_SERVER_OUTPUT]}) was deployed by an earlier version of this "
            f"program, and its output '{LEGACY_MODE_OUTPUT}' ({mode!r}) does not say whether the server has a "
            "password administrator, which Azure sets only when a server is created. Nothing was changed: run "
            "`pulumi up` once with the version that deployed it, then this one."
        )
    return {"administratorLogin": ADMIN_LOGIN if mode == "password" else NO_LOGIN}


def administrator_login(recorded: Mapping[str, Any] | None) -> str:
    """The password administrator to declare: the program's, unless the server was created without one
    (token mode, before the login existed in both modes). Azure sets the login only at creation, so
    such a server keeps having none: declaring one would replace it."""
    if recorded is not None and recorded.get("administratorLogin") == NO_LOGIN:
        return NO_LOGIN
    return ADMIN_LOGIN


def refuse_password_mode_without_login(login: str, auth_mode: str) -> None:
    if auth_mode == "password" and login == NO_LOGIN:
        raise CreateOnlyChangeError(
            "config key 'authMode': 'password' needs the server's password administrator, and this server was "
            "created without one (in token mode, by an earlier version of this program). Azure sets the "
            "administrator login only when a server is created, so adding it would replace the server, and a "
            "new server starts empty. Nothing was changed. Keep authMode 'token'; to move to password mode on "
            "purpose, dump the data, deploy a new stack and restore it there."
        )


def create_only_values(
    base_name: str, location: str, geo_redundant_backup: bool, login: str = ADMIN_LOGIN
) -> dict[str, str]:
    """The guarded create-only values this program declares for the server."""
    return {
        "serverNamePrefix": server_name_prefix(base_name),
        "location": location,
        "administratorLogin": login,
        "backup.geoRedundantBackup": "Enabled" if geo_redundant_backup else "Disabled",
    }


def create_only_changes(recorded: Mapping[str, Any] | None, declared: Mapping[str, Any]) -> list[str]:
    """The guarded properties whose declared value differs from the one the server was created with."""
    if not isinstance(recorded, Mapping):
        return []  # the first deployment, or a stack from before the record existed
    return [
        f"{key}: {recorded[key]!r} -> {declared[key]!r} (config key: {GUARDED_PROPERTIES[key]})"
        for key in GUARDED_PROPERTIES
        if key in recorded and key in declared and recorded[key] != declared[key]
    ]


def refuse_create_only_changes(recorded: Mapping[str, Any] | None, declared: Mapping[str, Any]) -> dict[str, Any]:
    """Returns `declared`, or raises when the server would be replaced."""
    changes = create_only_changes(recorded, declared)
    if changes:
        raise CreateOnlyChangeError(
            "the PostgreSQL Flexible Server would be replaced, and a new server starts empty: "
            "these properties can only be chosen when the server is created, and they differ from the "
            f"values recorded in this stack's output '{CREATE_ONLY_OUTPUT}':\n  - "
            + "\n  - ".join(changes)
            + "\nNothing was changed. Set the config back to the recorded values; to move to a new server on "
            "purpose, dump the data, deploy the new server in a new stack and restore it there."
        )
    return dict(declared)
