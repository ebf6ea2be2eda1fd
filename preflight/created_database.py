"""The database this stack created on an adopted server is never deleted as a side effect.

The adoption record (`serverCreateOnly`) names the database the stack created on the server it adopts
(`createdDatabase`). Pulumi deletes what a program stops declaring, and replaces a database whose server or
name changes (delete the old one, create a new one): so a change of `existingServerId` (or its removal, back
to a server of the stack's own) or of `databaseName` would drop that database with its data, silently, in
`pulumi up`. A `protectResources` stack stops at the delete; any other stack must be stopped here.

The escape hatch is two runs, because Pulumi's `retainOnDelete` is read from the state the delete starts from
(pulumi/pulumi pkg/resource/deploy/step.go, DeleteStep.Apply: `s.old.RetainOnDelete` makes the delete a no-op,
for a replacement's delete too), so it must be in the state before the change:

1. `releaseCreatedDatabase: true`, everything else as recorded: the database is declared with `retainOnDelete`
   and the record says so (`createdDatabaseRetained`). Nothing changes in Azure.
2. Change `existingServerId` or `databaseName`: the guard reads that the last update retained the database
   and lets the change through; Pulumi forgets the database instead of dropping it, and it stays on the
   server, its owner's from then on. Set `releaseCreatedDatabase` back to false afterwards.

(`pulumi state delete` of the database would also make Pulumi forget it, but the record could not tell: the
retained flag is the one way the next run can know the database is safe.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from preflight.adoption import ADOPTED_RECORD_KEY, CREATED_DATABASE_KEY, AdoptionError, recorded_adoption
from settings import Settings

RETAINED_DATABASE_KEY = "createdDatabaseRetained"
RETAINED = "true"


def created_database(record: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(server ID, database name) of the database the last update created on an adopted server, else None."""
    server = recorded_adoption(record, ADOPTED_RECORD_KEY)
    name = record.get(CREATED_DATABASE_KEY) if isinstance(record, Mapping) else None
    return (server, name) if server and isinstance(name, str) and name else None


def stopped_declaring(record: Mapping[str, Any] | None, config: Settings) -> str | None:
    """The change that makes the stack stop declaring the database it created on the adopted server, else
    None. Pure."""
    created = created_database(record)
    if created is None:
        return None
    server, name = created
    adopted = config.existing_server
    if adopted is None:
        return f"config key 'existingServerId' is now empty (it was {server})"
    if adopted.id.lower() != server.lower():
        return f"config key 'existingServerId' is now {adopted.id} (it was {server})"
    if config.database_name != name:
        return f"config key 'databaseName' is now {config.database_name!r} (it was {name!r})"
    return None  # existingDatabase turned true on it: adopt_server refuses that (presence_refusal)


def refuse_dropping_a_created_database(record: Mapping[str, Any] | None, config: Settings) -> None:
    change = stopped_declaring(record, config)
    created = created_database(record)
    if change is None or created is None:
        return
    server, name = created
    if isinstance(record, Mapping) and record.get(RETAINED_DATABASE_KEY) == RETAINED:
        pulumi.log.warn(
            f"{change}: database {name!r} stays on server {server} (released by releaseCreatedDatabase); this "
            "stack no longer manages it. Set releaseCreatedDatabase back to false."
        )
        return
    raise AdoptionError(
        f"{change}: this stack created database {name!r} on server {server} (recorded in its output "
        "'serverCreateOnly'), and the change would make pulumi delete it with its data. Nothing was changed. "
        "Keep the recorded values; or, to leave the database on that server and let the stack go: first run "
        "`pulumi up` once with releaseCreatedDatabase set to true and existingServerId and databaseName as "
        "recorded (the database is then kept when the stack stops declaring it), then make the change."
    )


def retains_created_database(config: Settings, adopted: bool) -> bool:
    """Whether the database the stack creates on an adopted server is declared with `retainOnDelete`."""
    return adopted and config.release_created_database and not config.existing_database


def retention_record(config: Settings, adopted: bool) -> dict[str, str]:
    """What the adoption record adds, so that the next run knows the database is retained."""
    return {RETAINED_DATABASE_KEY: RETAINED} if retains_created_database(config, adopted) else {}
