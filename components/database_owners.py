"""Granting on objects that belong to other roles (config key `grantOnObjectsOwnedBy`): the pure part.

A database the stack did not create has tables that belong to the role that created them:
the application's owner role, or a migration tool's role. The administrator the provider
signs in as (on Flexible Server a CREATEROLE member of azure_pg_admin, never a superuser)
cannot grant on them, and its own default privileges do nothing for tables another role
creates later. So for each owner role named in the config the provider acts *as* that
owner, inside the one transaction of the change:

    SET ROLE <owner>;
    GRANT USAGE ON SCHEMA <schema it owns> TO <app>;
    GRANT <level> ON TABLE <each table it owns in the configured schemas> TO <app>;
    GRANT <level> ON SEQUENCE <each sequence it owns there> TO <app>;
    ALTER DEFAULT PRIVILEGES IN SCHEMA <each configured schema> GRANT <level> ON TABLES/SEQUENCES TO <app>;
    RESET ROLE;

Why SET ROLE (PostgreSQL documentation, sql-set-role.html): on 16 and later "The current session
user must have the SET option for the specified role_name, either directly or indirectly via a chain
of memberships with the SET option"; on 15 "The specified role_name must be a role that the current
session user is a member of". After it, "permissions checking for SQL commands is carried out as
though the named role were the one that had logged in originally": GRANT runs as the objects' owner,
and ALTER DEFAULT PRIVILEGES without FOR ROLE sets the owner's own defaults (sql-alterdefaultprivileges
.html: "As a non-superuser, you can change default privileges only for yourself and for roles that
you are a member of"; default privileges apply only to objects the target role itself creates, which
is why the administrator's own defaults never reach a migration tool's tables). Checked against 15 and 18:
`ALTER DEFAULT PRIVILEGES FOR ROLE <owner>` run by the administrator itself needs INHERIT on 16+
("permission denied to change default privileges" with SET alone), while `SET ROLE <owner>`
followed by a plain `ALTER DEFAULT PRIVILEGES` needs only the SET option; so the provider always
uses SET ROLE and never needs the owner's privileges to be inherited.

The right to act for an owner (checked before anything is changed):
- PostgreSQL 16 and later: membership WITH SET TRUE, or the ADMIN OPTION on the owner. With
  ADMIN alone the provider grants itself `WITH INHERIT FALSE, SET TRUE` inside the transaction
  and revokes exactly that grant (`GRANTED BY CURRENT_USER`) before it commits.
- PostgreSQL 15: membership (any; INHERIT does not matter for SET ROLE).
Without it the run stops, naming each owner and the one statement that fixes it. An owner
role cannot grant membership in itself (tested: "must have admin option on role" on 15,
"permission denied to grant role" on 18), so the statement is run by a role with the ADMIN
OPTION on the owner (on 16+ the role that created it has it; on 15 any CREATEROLE role, such
as the Flexible Server administrator). Nothing here makes a role superuser or changes an owner.

Taking back: as each owner (configured now or before the change), REVOKE ALL on every object
of that owner on which the app's role holds a privilege and on each of its default privileges
that name the app's role; then the configured grants are made again. So removing an owner from
the config takes back exactly what was granted as it, and out-of-band grants on its objects are
drift that `pulumi up` converges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

OWNERS_CONFIG_KEY = "grantOnObjectsOwnedBy"
MAX_IDENTIFIER_BYTES = 63
# Names GRANT/SET ROLE read as keywords rather than roles (docs: "GRANT", role_specification),
# and PUBLIC, which is everyone.
RESERVED_ROLE_NAMES = ("public", "none", "current_role", "current_user", "session_user")


def validate_owner_roles(value: Any, key: str = OWNERS_CONFIG_KEY) -> list[str]:
    """Why `value` is not a usable list of owner role names ([] when it is).

    For the settings model and the provider's check alike: a list of distinct PostgreSQL role
    names, each 1-63 bytes without NUL, none reserved (pg_* roles are the server's own and own
    no application objects; PUBLIC, NONE, CURRENT_USER, SESSION_USER, CURRENT_ROLE are keywords).
    Names are exact, case-sensitive role names, as `\\du` lists them (never folded to lower case).
    """
    if not isinstance(value, (list, tuple)):
        return [f'{key} must be a list of role names, e.g. ["app_owner", "flyway"]']
    problems: list[str] = []
    seen: set[str] = set()
    for name in value:
        if not isinstance(name, str) or not name:
            problems.append(f"{key} entries must be non-empty role names; got {name!r}")
            continue
        if len(name.encode()) > MAX_IDENTIFIER_BYTES:
            problems.append(
                f"{key} entry {name[:20]!r}... is {len(name.encode())} bytes; PostgreSQL role names are at most "
                f"{MAX_IDENTIFIER_BYTES} bytes"
            )
        elif "\x00" in name:
            problems.append(f"{key} entry {name!r} must not contain a NUL character")
        elif name.lower() in RESERVED_ROLE_NAMES:
            problems.append(f"{key} entry {name!r} is a reserved word, not a role that can own tables")
        elif name.startswith("pg_"):
            problems.append(f"{key} entry {name!r} is a predefined role (pg_*), which owns no application objects")
        if name in seen:
            problems.append(f"{key} names {name!r} twice")
        seen.add(name)
    return problems


def owner_scope(owners: Sequence[str], schemas: Sequence[str]) -> list[str]:
    """What a change touches, one line per owner and schema: `pulumi preview` shows its diff."""
    return [f"{owner} in schema {schema}" for owner in owners for schema in schemas]


def expected_owner_grants(
    owners: Sequence[str], schemas: Sequence[str], tables: Sequence[str], sequences: Sequence[str]
) -> list[str]:
    """The default privileges each owner holds for the app's role, in `describe`'s words.
    (Grants on the owners' existing objects are part of `... ON ALL TABLES IN SCHEMA ...`.)"""
    grants: list[str] = []
    for owner in owners:
        for schema in schemas:
            grants += [f"DEFAULT {p} ON TABLES IN SCHEMA {schema} FOR ROLE {owner}" for p in tables]
            grants += [f"DEFAULT {p} ON SEQUENCES IN SCHEMA {schema} FOR ROLE {owner}" for p in sequences]
    return grants


@dataclass(frozen=True)
class OwnedObjects:
    """What one owner owns in the database, as far as the app's role is concerned."""

    relations: tuple[tuple[str, str, str], ...] = ()
    """(schema, name, TABLE|SEQUENCE) of its relations in the configured schemas."""
    schemas: tuple[str, ...] = ()
    """Configured schemas it owns."""
    held_relations: tuple[tuple[str, str, str], ...] = ()
    """(schema, name, TABLE|SEQUENCE) of its relations, anywhere, on which the app's role holds a privilege."""
    held_schemas: tuple[str, ...] = ()
    """Its schemas, anywhere, on which the app's role holds a privilege."""
    held_routines: tuple[str, ...] = ()
    """regprocedure text of its routines on which the app's role holds a privilege."""
    held_defaults: tuple[tuple[str, str], ...] = ()
    """(schema or "", ALTER DEFAULT PRIVILEGES object type word) of its defaults that name the app's role."""


@dataclass(frozen=True)
class Acting:
    """How the administrator acts for one owner: `set` (it may SET ROLE already) or `admin` (it holds
    the ADMIN OPTION on 16+ and grants itself SET for the transaction; `self_granted` when it already
    holds a grant of that role made by itself, whose SET option is then revoked rather than the grant)."""

    owner: str
    how: str
    self_granted: bool = False


def _relation(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _words(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(name) for name in names)  # names come from LEVELS only


def act_as(acting: Acting, statements: Sequence[sql.Composed]) -> list[sql.Composed]:
    """`statements` run as the owner: SET ROLE around them, and for `admin` a SET grant to itself
    that is taken back before the transaction ends."""
    owner = sql.Identifier(acting.owner)
    before: list[sql.Composed] = []
    after: list[sql.Composed] = []
    if acting.how == "admin":
        if acting.self_granted:
            before.append(sql.SQL("GRANT {} TO CURRENT_USER WITH SET TRUE").format(owner))
            after.append(sql.SQL("REVOKE SET OPTION FOR {} FROM CURRENT_USER GRANTED BY CURRENT_USER").format(owner))
        else:
            before.append(sql.SQL("GRANT {} TO CURRENT_USER WITH INHERIT FALSE, SET TRUE").format(owner))
            after.append(sql.SQL("REVOKE {} FROM CURRENT_USER GRANTED BY CURRENT_USER").format(owner))
    return [
        *before,
        sql.SQL("SET ROLE {}").format(owner),
        *statements,
        sql.SQL("RESET ROLE").format(),
        *after,
    ]


def owner_revoke_statements(role: str, owned: OwnedObjects) -> list[sql.Composed]:
    """Run as the owner: takes back everything the owner granted the app's role (table-level REVOKE
    ALL also revokes column privileges)."""
    grantee = sql.Identifier(role)
    statements: list[sql.Composed] = []
    for schema, name, kind in owned.held_relations:
        statements.append(
            sql.SQL("REVOKE ALL ON {} {} FROM {}").format(sql.SQL(kind), _relation(schema, name), grantee)
        )
    for routine in owned.held_routines:
        # regprocedure text is already a quoted, schema-qualified signature from the catalogs.
        statements.append(sql.SQL("REVOKE ALL ON ROUTINE {} FROM {}").format(sql.SQL(routine), grantee))
    for schema in owned.held_schemas:
        statements.append(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(schema), grantee))
    for schema, object_type in owned.held_defaults:
        clause: sql.Composable = sql.SQL("ALTER DEFAULT PRIVILEGES")
        if schema:
            clause = sql.SQL("{} IN SCHEMA {}").format(clause, sql.Identifier(schema))
        statements.append(sql.SQL("{} REVOKE ALL ON {} FROM {}").format(clause, sql.SQL(object_type), grantee))
    return statements


def owner_grant_statements(
    role: str, schemas: Sequence[str], tables: Sequence[str], sequences: Sequence[str], owned: OwnedObjects
) -> list[sql.Composed]:
    """Run as the owner: the configured level on its existing objects in the configured schemas,
    USAGE on the configured schemas it owns, and its default privileges for what it creates later."""
    grantee = sql.Identifier(role)
    statements = [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), grantee) for schema in owned.schemas
    ]
    for kind, privileges in (("TABLE", tables), ("SEQUENCE", sequences)):
        names = [_relation(schema, name) for schema, name, of_kind in owned.relations if of_kind == kind]
        if names:
            statements.append(
                sql.SQL("GRANT {} ON {} {} TO {}").format(
                    _words(privileges), sql.SQL(kind), sql.SQL(", ").join(names), grantee
                )
            )
    for schema in schemas:
        for kind, privileges in (("TABLES", tables), ("SEQUENCES", sequences)):
            statements.append(
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON {} TO {}").format(
                    sql.Identifier(schema), _words(privileges), sql.SQL(kind), grantee
                )
            )
    return statements


def fix_statement(owner: str, admin: str, server_version: int) -> str:
    """The one statement that gives `admin` the right to act for `owner`, and nothing more: on 16+
    SET without INHERIT (the administrator may become the owner for a statement, but does not carry
    its privileges around), on 15 plain membership (GRANT has no options there)."""
    role, member = sql.Identifier(owner).as_string(), sql.Identifier(admin).as_string()
    if server_version >= 160000:
        return f"GRANT {role} TO {member} WITH INHERIT FALSE, SET TRUE;"
    return f"GRANT {role} TO {member};"


def missing_rights_message(
    where: str,
    admin: str,
    server_version: int,
    missing: Iterable[str],
    absent: Iterable[str],
    superusers: Iterable[str],
) -> str:
    """The refusal when the administrator may not act for some owners; nothing has been changed."""
    lines = [
        f"{where}: cannot act for the owner roles in config key '{OWNERS_CONFIG_KEY}' (to grant on their objects, "
        "or to take back what was granted as them); nothing was changed."
    ]
    absent, superusers, missing = sorted(absent), sorted(superusers), sorted(missing)
    if absent:
        lines.append(
            "These roles do not exist in the server: "
            + ", ".join(repr(name) for name in absent)
            + f" (names are exact and case-sensitive, as \\du lists them); correct '{OWNERS_CONFIG_KEY}'."
        )
    if superusers:
        lines.append(
            "These roles are superusers, which the provider never acts as: "
            + ", ".join(repr(name) for name in superusers)
            + f"; remove them from '{OWNERS_CONFIG_KEY}' and have their objects owned by an ordinary role."
        )
    if missing:
        if server_version >= 160000:
            rule = (
                f"On PostgreSQL 16 and later, {admin!r} may act for a role only with membership WITH SET TRUE or "
                "the ADMIN OPTION on it, and it holds neither for"
            )
            who = "a role with the ADMIN OPTION on that role (such as the role that created it)"
        else:
            rule = f"On PostgreSQL 15, {admin!r} may act for a role only as a member of it, and it is not a member of"
            who = "a role with the ADMIN OPTION on that role or any role with CREATEROLE (such as the administrator)"
        lines.append(f"{rule}: " + ", ".join(repr(name) for name in missing) + ".")
        lines.append(f"Run once, as {who}, for each (it grants no superuser right and changes no owner):")
        lines += [f"  {fix_statement(name, admin, server_version)}" for name in missing]
        lines.append("then run pulumi up again.")
    return "\n".join(lines)
