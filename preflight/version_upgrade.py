"""The server's PostgreSQL major version: recorded, and changed only on purpose.

A change of `postgresVersion` on the stack's own server is not a replacement: the azure-native provider
PATCHes `version`, and Azure runs an in-place major version upgrade (Microsoft Learn, "Major version upgrades
in Azure Database for PostgreSQL flexible server"): "an offline operation, meaning the server will be
unavailable during the process", most "complete in under 15 minutes", extensions such as `dblink`,
`postgres_fdw` or `pg_partman` block it, and "there are no automated ways to revert to the earlier version"
(only a point-in-time restore to a new server). Azure has no downgrade at all. So an upgrade waits for the
explicit `allowMajorVersionUpgrade`, and a downgrade is refused before anything is declared.

The version the server runs is recorded in `serverCreateOnly` (key `postgresVersion`) by every update; a record
written before the key existed has none, and nothing is compared until the next update records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

VERSION_RECORD_KEY = "postgresVersion"


class MajorVersionChangeError(pulumi.RunError):
    """`postgresVersion` differs from the version the server runs, and Azure cannot or should not follow."""


def recorded_version(record: Mapping[str, Any] | None) -> str | None:
    """The major version the last update deployed, else None (no record, or one from before the key)."""
    value = record.get(VERSION_RECORD_KEY) if isinstance(record, Mapping) else None
    return value if isinstance(value, str) and value.isdigit() else None


def major_version_refusal(recorded: str | None, declared: str, allow_upgrade: bool) -> str | None:
    """Why `declared` cannot be deployed over `recorded`, or None. Pure: the decision, apart from the record."""
    if recorded is None or recorded == declared:
        return None
    if int(declared) < int(recorded):
        return (
            f"config key 'postgresVersion': {declared!r} is not accepted; this stack's server runs PostgreSQL "
            f"{recorded} (recorded in its output 'serverCreateOnly'), and Azure Database for PostgreSQL cannot "
            f"downgrade a server. Expected {recorded!r} or above. Nothing was changed; to run an older version, "
            "restore a point-in-time backup from before the upgrade to a new server."
        )
    if not allow_upgrade:
        return (
            f"config key 'postgresVersion': {recorded!r} -> {declared!r} is an in-place major version upgrade of "
            "this stack's server: the server is offline while it runs (usually under 15 minutes, longer with many "
            "objects), some extensions block it, and there is no way back but a point-in-time restore to a new "
            f"server. Nothing was changed. Set postgresVersion back to {recorded!r}, or, in a maintenance window, "
            "set allowMajorVersionUpgrade to true for the run that upgrades (and back to false after)."
        )
    return None


def check_major_version(record: Mapping[str, Any] | None, declared: str, allow_upgrade: bool) -> dict[str, str]:
    """Raises when the version change is refused; returns what to add to the server's record."""
    recorded = recorded_version(record)
    refusal = major_version_refusal(recorded, declared, allow_upgrade)
    if refusal is not None:
        raise MajorVersionChangeError(refusal)
    if recorded is not None and recorded != declared:
        pulumi.log.warn(
            f"postgresVersion: upgrading this stack's server in place from PostgreSQL {recorded} to {declared} "
            "(allowMajorVersionUpgrade is true); the server is offline while Azure upgrades it"
        )
    return {VERSION_RECORD_KEY: declared}
