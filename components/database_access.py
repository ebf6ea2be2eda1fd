"""The app's database role and its privileges, converged by a Pulumi dynamic provider.

Token mode: signed in to the server's `postgres` database as the Entra administrator
(a token fetched inside the provider by azure_cloud/deployer_credential.py: in GitHub
Actions with OIDC a fresh GitHub ID token for each request, elsewhere azure-identity's
DefaultAzureCredential, so `az login` works too), the role is created with Flexible Server's
`pgaadauth_create_principal_with_oid(role, principal_id, 'service', false, false)`.
(`SET aad_validate_oids_in_tenant ...; CREATE ROLE ... IN ROLE azure_ad_user` is
Single Server syntax and does not work on Flexible Server.) A role that already exists
is adopted only when `pgaadauth_list_principals(false)` maps it to the same object ID.

Password mode: signed in as the server administrator, a LOGIN role is created with a
SCRAM verifier computed on this side, so the password never travels as SQL text.

Grants on the application database: CONNECT; USAGE on each schema; table and sequence
privileges of the chosen level on existing objects and, through default privileges, on
future ones created by the administrator; membership in pg_read_all_stats. For each role in
`owner_roles` (config key grantOnObjectsOwnedBy: tables that belong to an application's or a
migration tool's role), the same level on that owner's objects and its default privileges, granted
as the owner (SET ROLE) after checking the right to act for it: components/database_owners.py.
Nothing else:
`read` observes every privilege the role holds in the database (on the database, any
schema, table, column, sequence and routine, default privileges of any owner), every
role it is a member of and its role attributes, so `pulumi refresh` shows what was
granted out of band and `pulumi up` takes it back. Each change runs in one transaction
that ends by observing the result; if the role is not exactly as declared the
transaction is rolled back and the error names what remains.

Engine contract (pulumi.dynamic.__main__, the process `pulumi-resource-pulumi-python`
starts): `check` and `diff` run during preview with unknown values, which arrive as
`pulumi.output.Unknown` objects (the host deserializes with keep_unknowns=True); they
never connect and never decide on an unknown. A replacement that keeps the role's name
on the same server deletes the old role first (`delete_before_replace`): roles are
cluster-wide, so create-then-delete would drop the role that create had just adopted.
Every identifier is composed with psycopg.sql.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NotRequired, TypedDict

import psycopg
import pulumi
from psycopg import sql
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown

from azure_cloud import deployer_credential
from azure_cloud.clouds import PUBLIC, by_ossrdbms_scope
from components.database_owners import (
    OWNERS_CONFIG_KEY,
    Acting,
    OwnedObjects,
    act_as,
    expected_owner_grants,
    missing_rights_message,
    owner_grant_statements,
    owner_revoke_statements,
    owner_scope,
    validate_owner_roles,
)

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the wire sentinel for an unknown value (pulumi.runtime.rpc)
ENTRA_SCOPE = PUBLIC.ossrdbms_scope
"""The public cloud's PostgreSQL scope: what an absent `entra_scope` input (a state written before it existed) means."""
FIREWALL_CONFIG_KEY = "deployerCidrs"
ROLE_CONFIG_KEY = "appRoleName"
STATS_ROLE = "pg_read_all_stats"
AUTH_MODES = ("token", "password")
MAX_IDENTIFIER_BYTES = 63


@dataclass(frozen=True)
class Level:
    tables: tuple[str, ...]
    sequences: tuple[str, ...]


LEVELS: dict[str, Level] = {
    "read_only": Level(tables=("SELECT",), sequences=("SELECT",)),
    # For postgres-mcp's unrestricted access mode: data changes, never schema changes.
    "read_write": Level(tables=("SELECT", "INSERT", "UPDATE", "DELETE"), sequences=("SELECT", "USAGE", "UPDATE")),
}
# Inputs whose change needs a new role rather than an update of this one.
REPLACE_ON = ("host", "port", "database", "role", "auth_mode", "principal_id")
# Inputs that say which server and role name a resource is: the same on both sides of a
# replacement means one and the same PostgreSQL role.
SAME_ROLE_WHEN_EQUAL = ("host", "port", "role")
# Inputs the declared grants are computed from.
GRANT_INPUTS = ("role", "database", "schemas", "privilege_level", "owner_roles")
SECRET_OUTPUTS = ["admin_password", "role_password"]
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Role attributes the app's role must never have (and NOLOGIN, which would lock the app out).
FORBIDDEN_ATTRIBUTES = ("SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS", "REPLICATION", "NOLOGIN")
# pg_default_acl.defaclobjtype -> the words ALTER DEFAULT PRIVILEGES uses.
DEFAULT_OBJECT_TYPES = {
    "r": "TABLES",
    "S": "SEQUENCES",
    "f": "FUNCTIONS",
    "T": "TYPES",
    "n": "SCHEMAS",
    "L": "LARGE OBJECTS",
}


class DatabaseAccessError(Exception):
    """A failure the deployer can act on; its message never contains a credential."""


# --- unknown values (preview) ---------------------------------------------------------------


def is_unknown(value: Any) -> bool:
    """An unknown as the dynamic provider host hands it over (an `Unknown` object) or on the wire (the sentinel)."""
    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def has_unknown(value: Any) -> bool:
    """True when `value` is unknown or holds an unknown anywhere inside (lists, dicts)."""
    if is_unknown(value):
        return True
    if isinstance(value, Mapping):
        return any(has_unknown(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_unknown(item) for item in value)
    return False


# --- what the resource asks for -------------------------------------------------------------


@dataclass(frozen=True)
class AccessSpec:
    host: str
    port: int
    admin_user: str
    auth_mode: str
    database: str
    role: str
    schemas: tuple[str, ...]
    level: str
    principal_id: str = ""
    owner_roles: tuple[str, ...] = ()
    """Roles whose objects the app's role is granted on, acting as each (components/database_owners.py)."""
    sslmode: str = "verify-full"
    sslrootcert: str = "certifi"
    connect_timeout: int = 10
    connect_attempts: int = 6
    retry_base_seconds: float = 2.0
    entra_scope: str = ENTRA_SCOPE
    """The administrator's Entra token is asked for the stack's cloud's PostgreSQL scope (azure_cloud/clouds.py)."""

    @staticmethod
    def from_props(props: Mapping[str, Any]) -> AccessSpec:
        return AccessSpec(
            host=str(props["host"]),
            port=int(props.get("port") or 5432),
            admin_user=str(props["admin_user"]),
            auth_mode=str(props["auth_mode"]),
            database=str(props["database"]),
            role=str(props["role"]),
            schemas=tuple(props.get("schemas") or ("public",)),
            level=str(props.get("privilege_level") or "read_only"),
            principal_id=str(props.get("principal_id") or ""),
            owner_roles=tuple(str(owner) for owner in props.get("owner_roles") or ()),
            sslmode=str(props.get("sslmode") or "verify-full"),
            sslrootcert=str(props.get("sslrootcert") or "certifi"),
            connect_timeout=int(props.get("connect_timeout") or 10),
            connect_attempts=int(props.get("connect_attempts") or 6),
            retry_base_seconds=float(props.get("retry_base_seconds") or 2.0),
            entra_scope=str(props.get("entra_scope") or ENTRA_SCOPE),
        )


def _name_failure(key: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{key} must be a non-empty string"
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        return (
            f"{key} {value[:20]!r}... is {len(value.encode())} bytes; PostgreSQL names are at most "
            f"{MAX_IDENTIFIER_BYTES} bytes and a longer one would be silently truncated"
        )
    if "\x00" in value:
        return f"{key} must not contain a NUL character"
    return None


def validate(props: Mapping[str, Any]) -> list[CheckFailure]:
    """Offline checks of the known inputs; an unknown value (preview) is left for the real run."""
    failures: list[CheckFailure] = []

    def known(key: str) -> bool:
        return props.get(key) is not None and not is_unknown(props[key])

    for key in ("role", "database", "admin_user"):
        if known(key) and (reason := _name_failure(key, props[key])) is not None:
            failures.append(CheckFailure(key, reason))
    if known("schemas"):
        schemas = props["schemas"]
        if not isinstance(schemas, (list, tuple)) or not schemas:
            failures.append(CheckFailure("schemas", "schemas must be a non-empty list of schema names"))
        else:
            for schema in schemas:
                if not is_unknown(schema) and _name_failure("schema", schema) is not None:
                    failures.append(
                        CheckFailure("schemas", f"schema {schema!r} is not a PostgreSQL name of 1-63 bytes")
                    )
    if known("privilege_level") and props["privilege_level"] not in LEVELS:
        failures.append(
            CheckFailure(
                "privilege_level", f"privilege_level {props['privilege_level']!r} is not one of {', '.join(LEVELS)}"
            )
        )
    if known("owner_roles"):
        owners = props["owner_roles"]
        listed = [owner for owner in owners if not is_unknown(owner)] if isinstance(owners, (list, tuple)) else owners
        for reason in validate_owner_roles(listed, key="owner_roles"):
            failures.append(CheckFailure("owner_roles", reason))
        for key in ("role", "admin_user"):
            if known(key) and isinstance(listed, list) and props[key] in listed:
                failures.append(
                    CheckFailure(
                        "owner_roles",
                        f"owner_roles names {key} {props[key]!r}; its own objects need no owner entry"
                        if key == "admin_user"
                        else f"owner_roles names the app's own role {props[key]!r}",
                    )
                )
    if known("auth_mode") and props["auth_mode"] not in AUTH_MODES:
        failures.append(CheckFailure("auth_mode", f"auth_mode {props['auth_mode']!r} is not one of token, password"))
    if (
        known("auth_mode")
        and props["auth_mode"] == "token"
        and known("principal_id")
        and not GUID.match(str(props["principal_id"]))
    ):
        failures.append(
            CheckFailure("principal_id", "principal_id must be the managed identity's object (principal) ID, a GUID")
        )
    if known("auth_mode") and props["auth_mode"] == "password":
        for key in ("admin_password", "role_password"):
            if key in props and props[key] in (None, ""):
                failures.append(CheckFailure(key, f"{key} is required in password mode"))
    return failures


def with_owner_scope(props: dict[str, Any]) -> dict[str, Any]:
    """The inputs plus `owner_scope` (owner x schema, what a change touches) when owners are configured
    and known; without owners the inputs are exactly as before this input existed."""
    owners, schemas = props.get("owner_roles"), props.get("schemas")
    props = {key: value for key, value in props.items() if key != "owner_scope"}
    if owners and not has_unknown(owners) and schemas and not has_unknown(schemas):
        props["owner_scope"] = owner_scope([str(o) for o in owners], [str(s) for s in schemas])
    return props


def plan_diff(olds: Mapping[str, Any], news: Mapping[str, Any]) -> DiffResult:
    """What a change of inputs means, decided offline; an unknown new value counts as a change."""
    keys = (set(olds) | set(news)) - {"__provider", "grants"}

    def value(props: Mapping[str, Any], key: str) -> Any:
        # No owner roles, absent or empty, is one and the same declaration; so are an absent Entra scope
        # (a state written before the input existed) and the public cloud's.
        if key == "entra_scope":
            return props.get(key) or ENTRA_SCOPE
        return props.get(key) or None if key in ("owner_roles", "owner_scope") else props.get(key)

    changed = sorted(key for key in keys if has_unknown(news.get(key)) or value(olds, key) != value(news, key))
    replaces = [key for key in changed if key in REPLACE_ON]
    drifted = False
    if not any(has_unknown(news.get(key)) for key in GRANT_INPUTS):
        drifted = olds.get("grants") != expected_grants(AccessSpec.from_props({**olds, **news}))
    same_role = all(not has_unknown(news.get(key)) and olds.get(key) == news.get(key) for key in SAME_ROLE_WHEN_EQUAL)
    return DiffResult(
        changes=bool(changed) or drifted, replaces=replaces, delete_before_replace=bool(replaces) and same_role
    )


# --- the SQL (pure: tested without a server) ------------------------------------------------


def create_principal(role: str, principal_id: str) -> sql.Composed:
    """Flexible Server's way to create a role for a managed identity (object type 'service')."""
    return sql.SQL("SELECT * FROM pgaadauth_create_principal_with_oid({}, {}, 'service', false, false)").format(
        sql.Literal(role), sql.Literal(principal_id)
    )


# Microsoft Learn, "Manage Microsoft Entra roles" (azure/postgresql/flexible-server/how-to-manage-azure-ad-users,
# "List Microsoft Entra roles using SQL"): `pgaadauth_list_principals(isAdminValue boolean)` returns
# rolename, principalType, objectId, tenantId, isMfa, isAdmin; `false` lists every Entra-mapped role.
LIST_PRINCIPALS = "SELECT * FROM pgaadauth_list_principals(false)"


def create_login_role(role: str, verifier: str) -> sql.Composed:
    return sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))


def set_login_password(role: str, verifier: str) -> sql.Composed:
    return sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))


def _privileges(names: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(name) for name in names)  # names come from LEVELS only


def grant_statements(spec: AccessSpec) -> list[sql.Composed]:
    role, level = sql.Identifier(spec.role), LEVELS[spec.level]
    statements = [sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(spec.database), role)]
    for schema_name in spec.schemas:
        schema = sql.Identifier(schema_name)
        tables, sequences = _privileges(level.tables), _privileges(level.sequences)
        statements += [
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role),
            sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(tables, schema, role),
            sql.SQL("GRANT {} ON ALL SEQUENCES IN SCHEMA {} TO {}").format(sequences, schema, role),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}").format(schema, tables, role),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON SEQUENCES TO {}").format(
                schema, sequences, role
            ),
        ]
    statements.append(sql.SQL("GRANT {} TO {}").format(sql.Identifier(STATS_ROLE), role))
    return statements


def expected_grants(spec: AccessSpec) -> list[str]:
    """What `describe` reports for a role that is exactly as declared."""
    level = LEVELS[spec.level]
    grants = [f"CONNECT ON DATABASE {spec.database}", f"MEMBER OF {STATS_ROLE}"]
    for schema in spec.schemas:
        grants.append(f"USAGE ON SCHEMA {schema}")
        grants += [f"{p} ON ALL TABLES IN SCHEMA {schema}" for p in level.tables]
        grants += [f"{p} ON ALL SEQUENCES IN SCHEMA {schema}" for p in level.sequences]
        grants += [f"DEFAULT {p} ON TABLES IN SCHEMA {schema}" for p in level.tables]
        grants += [f"DEFAULT {p} ON SEQUENCES IN SCHEMA {schema}" for p in level.sequences]
        for owner in spec.owner_roles:
            grants += [f"{p} ON ALL TABLES IN SCHEMA {schema} OWNED BY {owner}" for p in level.tables]
            grants += [f"{p} ON ALL SEQUENCES IN SCHEMA {schema} OWNED BY {owner}" for p in level.sequences]
    grants += expected_owner_grants(spec.owner_roles, spec.schemas, level.tables, level.sequences)
    return sorted(grants)


@dataclass(frozen=True)
class Held:
    """One thing the role holds, as the catalogs say it.

    kind: DATABASE, SCHEMA, TABLE, SEQUENCE, COLUMN, ROUTINE, DEFAULT, MEMBER or ATTRIBUTE.
    name: the object (database, schema, relation, routine or column, the role it is a member
    of, the attribute, or for DEFAULT the pg_default_acl object type letter).
    grantor: who granted it (for DEFAULT: the role whose future objects it applies to).
    mine: for DEFAULT, whether that role is the administrator running this provider.
    """

    kind: str
    privilege: str
    schema: str | None
    name: str
    grantor: str
    mine: bool = True
    owner: str | None = None
    """For TABLE, SEQUENCE and COLUMN: the relation's owner."""


@dataclass(frozen=True)
class Observed:
    held: tuple[Held, ...]
    schemas: frozenset[str]
    """Every schema of the database."""
    relations: Mapping[tuple[str, str], int]
    """How many TABLES / SEQUENCES each schema has, keyed (schema, TABLES|SEQUENCES)."""
    by_owner: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """The same counts per owner, keyed (schema, TABLES|SEQUENCES, owner)."""
    inherited: frozenset[str] = frozenset()
    """Roles whose privileges the administrator has (itself, and roles it inherits): it grants on their objects."""


def _describe_one(item: Held) -> str:
    if item.kind == "DATABASE":
        return f"{item.privilege} ON DATABASE {item.name}"
    if item.kind == "SCHEMA":
        return f"{item.privilege} ON SCHEMA {item.name}"
    if item.kind == "COLUMN":
        return f"{item.privilege} ON COLUMNS IN SCHEMA {item.schema}"
    if item.kind == "ROUTINE":
        return f"{item.privilege} ON ROUTINES IN SCHEMA {item.schema}"
    if item.kind == "DEFAULT":
        text = f"DEFAULT {item.privilege} ON {DEFAULT_OBJECT_TYPES.get(item.name, item.name)}"
        text += f" IN SCHEMA {item.schema}" if item.schema else ""
        return text if item.mine else f"{text} FOR ROLE {item.grantor}"
    if item.kind == "MEMBER":
        return f"MEMBER OF {item.name}" + (" WITH ADMIN OPTION" if item.privilege == "ADMIN" else "")
    if item.kind == "ATTRIBUTE":
        return f"ATTRIBUTE {item.name}"
    raise ValueError(f"no description for {item.kind}")


def describe(observed: Observed, spec: AccessSpec) -> dict[str, set[str]]:
    """What the role holds, in `expected_grants`' words, each with who granted it.

    Table and sequence privileges read `ON ALL` when every one in the schema carries them,
    `ON SOME` otherwise; ALL of nothing is held, so a declared schema without tables (or
    sequences) lacks none of the declared privileges on them.
    """
    found: dict[str, set[str]] = defaultdict(set)
    relations: dict[tuple[str, str, str, str | None], set[str]] = defaultdict(set)
    grantors: dict[tuple[str, str, str, str | None], set[str]] = defaultdict(set)
    for item in observed.held:
        if item.kind in ("TABLE", "SEQUENCE"):
            key = (str(item.schema), f"{item.kind}S", item.privilege, _bucket(item.owner, observed, spec))
            relations[key].add(item.name)
            grantors[key].add(item.grantor)
        else:
            found[_describe_one(item)].add(item.grantor)
    for (schema, kind, privilege, bucket), names in relations.items():
        extent = "ALL" if len(names) == _relation_count(observed, spec, schema, kind, bucket) else "SOME"
        text = f"{privilege} ON {extent} {kind} IN SCHEMA {schema}" + (f" OWNED BY {bucket}" if bucket else "")
        found[text].update(grantors[(schema, kind, privilege, bucket)])
    level = LEVELS[spec.level]
    for schema in spec.schemas:
        if schema not in observed.schemas:
            continue
        for kind, privileges in (("TABLES", level.tables), ("SEQUENCES", level.sequences)):
            for bucket in (None, *spec.owner_roles):
                if _relation_count(observed, spec, schema, kind, bucket) == 0:
                    for privilege in privileges:
                        text = f"{privilege} ON ALL {kind} IN SCHEMA {schema}"
                        found.setdefault(text + (f" OWNED BY {bucket}" if bucket else ""), set())
    return dict(found)


def _bucket(owner: str | None, observed: Observed, spec: AccessSpec) -> str | None:
    """Whose relations a privilege is counted among. Without owner roles configured: all of a schema's,
    as before that input existed. With them: each configured owner's own (`... OWNED BY <owner>`); the
    rest that the administrator grants on itself (its own and those of roles it inherits); and any
    other role's, which nothing here grants on (`... OWNED BY <role>`: drift if the app's role holds it)."""
    if not spec.owner_roles or owner is None:
        return None
    if owner in spec.owner_roles or owner not in observed.inherited:
        return owner
    return None


def _relation_count(observed: Observed, spec: AccessSpec, schema: str, kind: str, bucket: str | None) -> int:
    if not spec.owner_roles:
        return observed.relations.get((schema, kind), 0)
    if bucket is not None:
        return observed.by_owner.get((schema, kind, bucket), 0)
    return sum(
        count
        for (in_schema, of_kind, owner), count in observed.by_owner.items()
        if in_schema == schema and of_kind == kind and owner not in spec.owner_roles and owner in observed.inherited
    )


def repair_statements(spec: AccessSpec, observed: Observed, acting_for: Iterable[str] = ()) -> list[sql.Composed]:
    """Takes back everything the role holds in the database, so that the grants that follow leave
    exactly what is declared. Only privileges: no object is dropped, no data is touched. Default
    privileges of the owners in `acting_for` are taken back as each owner (owner_revoke_statements)."""
    acting = set(acting_for)
    role = sql.Identifier(spec.role)
    statements = [sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(spec.database), role)]
    held = observed.held
    schemas = {item.schema for item in held if item.kind in ("SCHEMA", "TABLE", "SEQUENCE", "COLUMN", "ROUTINE")}
    schemas.update(spec.schemas)
    for schema_name in sorted(s for s in schemas if s is not None and s in observed.schemas):
        schema = sql.Identifier(schema_name)
        statements += [
            # Revoking a table privilege revokes the same privilege on each of its columns.
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema, role),
            sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema, role),
            sql.SQL("REVOKE ALL ON ALL ROUTINES IN SCHEMA {} FROM {}").format(schema, role),
            sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(schema, role),
        ]
    defaults = sorted(
        {(i.grantor, i.mine, i.schema or "", i.name) for i in held if i.kind == "DEFAULT" and i.grantor not in acting}
    )
    for owner, mine, schema_name, object_type in defaults:
        clause: sql.Composable = sql.SQL("ALTER DEFAULT PRIVILEGES")
        if not mine:
            clause = sql.SQL("{} FOR ROLE {}").format(clause, sql.Identifier(owner))
        if schema_name:
            clause = sql.SQL("{} IN SCHEMA {}").format(clause, sql.Identifier(schema_name))
        statements.append(
            sql.SQL("{} REVOKE ALL ON {} FROM {}").format(
                clause, sql.SQL(DEFAULT_OBJECT_TYPES.get(object_type, "TABLES")), role
            )
        )
    for group in sorted({i.name for i in held if i.kind == "MEMBER" and i.name != STATS_ROLE}):
        statements.append(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), role))
    if any(i.kind == "MEMBER" and i.name == STATS_ROLE and i.privilege == "ADMIN" for i in held):
        statements.append(sql.SQL("REVOKE ADMIN OPTION FOR {} FROM {}").format(sql.Identifier(STATS_ROLE), role))
    attributes = [i.name for i in held if i.kind == "ATTRIBUTE"]
    if attributes:
        words = ["LOGIN" if name == "NOLOGIN" else f"NO{name}" for name in attributes]
        statements.append(sql.SQL("ALTER ROLE {} WITH {}").format(role, sql.SQL(" ".join(words))))
    return statements


def belongs_to(spec: AccessSpec, observed: Observed) -> str:
    """Who owns relations in the configured schemas that the administrator cannot grant on by itself."""
    others = sorted(
        {
            owner
            for (schema, _, owner) in observed.by_owner
            if schema in spec.schemas and owner not in observed.inherited and owner not in spec.owner_roles
        }
    )
    return f" (objects in the configured schemas belong to {', '.join(others)})" if others else ""


def unconverged(spec: AccessSpec, found: Mapping[str, set[str]]) -> str | None:
    """None when the role holds exactly what is declared; otherwise what differs, with grantors."""
    expected = set(expected_grants(spec))
    extra = sorted(set(found) - expected)
    missing = sorted(expected - set(found))
    if not extra and not missing:
        return None
    parts = []
    if extra:
        shown = [f"{grant} (granted by {', '.join(sorted(found[grant])) or '?'})" for grant in extra]
        parts.append("still holds " + "; ".join(shown))
    if missing:
        parts.append("lacks " + "; ".join(missing))
    return " and ".join(parts)


# --- I/O ------------------------------------------------------------------------------------

TRANSIENT = (
    "connection refused",
    "timeout expired",
    "timed out",
    "could not connect",
    "starting up",
    "shutting down",
    "closed the connection unexpectedly",
    "no route to host",
    "could not translate host name",
    "temporary failure in name resolution",
    "no pg_hba.conf entry",  # Azure's firewall, while a rule propagates
    "server is not available",
    "too many connections",
    "in recovery mode",
)


def is_transient(error: Exception) -> bool:
    message = str(error).lower()
    return isinstance(error, psycopg.OperationalError) and any(fragment in message for fragment in TRANSIENT)


def redact(message: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def entra_token(scope: str = ENTRA_SCOPE) -> str:
    """A token for the server administrator as the deployer: a fresh GitHub ID token per request in
    GitHub Actions with OIDC, DefaultAzureCredential elsewhere (azure_cloud/deployer_credential.py), signed in
    at the authority of the cloud whose PostgreSQL scope it is."""
    try:
        return deployer_credential.get_token(scope, cloud=by_ossrdbms_scope(scope))
    except deployer_credential.DeployerCredentialError as error:
        raise DatabaseAccessError(str(error)) from None


# The trust store for verify-full. psycopg's binary wheels bundle their own OpenSSL, whose default
# store is a directory of their build machine (OPENSSLDIR "/usr/lib/psycopg-openssl" in psycopg-binary
# 3.3), so `sslrootcert=system` finds nothing on a laptop or a CI runner unless SSL_CERT_FILE is set.
# "certifi" names the Mozilla bundle that azure-identity's HTTP stack already ships (requests ->
# certifi): it holds the roots Azure Database for PostgreSQL certificates chain to, DigiCert Global
# Root G2 and Microsoft RSA Root Certificate Authority 2017 (Microsoft Learn, "Connect with TLS",
# security-tls-how-to-connect: intermediates rotate in 2025-2026, roots stay). Resolved in the provider's
# process, so that the state holds the same value wherever pulumi runs.
CERTIFI = "certifi"


def trust_store(sslrootcert: str) -> str:
    if sslrootcert == CERTIFI:
        import certifi

        return str(certifi.where())
    return sslrootcert


class Connector:
    """Opens admin connections with retries for transient errors; never logs a credential."""

    def __init__(
        self, spec: AccessSpec, admin_password: str | None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.spec = spec
        self._admin_password = admin_password
        self._sleep = sleep

    def password(self) -> str:
        if self.spec.auth_mode == "token":
            return entra_token(self.spec.entra_scope)
        if not self._admin_password:
            raise DatabaseAccessError("password mode needs the server administrator's password (admin_password)")
        return self._admin_password

    @contextmanager
    def connect(self, database: str) -> Iterator[psycopg.Connection[Any]]:
        spec, last_error = self.spec, ""
        for attempt in range(1, spec.connect_attempts + 1):
            password = self.password()  # a fresh token for each attempt
            try:
                connection = psycopg.connect(
                    host=spec.host,
                    port=spec.port,
                    dbname=database,
                    user=spec.admin_user,
                    password=password,
                    sslmode=spec.sslmode,
                    # psycopg leaves out parameters that are None.
                    sslrootcert=trust_store(spec.sslrootcert) if spec.sslmode.startswith("verify") else None,
                    connect_timeout=spec.connect_timeout,
                    application_name="pulumi-database-access",
                    autocommit=True,  # transactions are explicit
                )
            except psycopg.OperationalError as error:
                last_error = redact(
                    str(error).strip().splitlines()[0] if str(error).strip() else repr(error),
                    password,
                    self._admin_password,
                )
                if not is_transient(error):
                    raise DatabaseAccessError(
                        f"PostgreSQL at {spec.host}:{spec.port} refused {spec.admin_user!r} on database "
                        f"{database!r}: {last_error}"
                    ) from None
                if attempt < spec.connect_attempts:
                    self._sleep(min(30.0, spec.retry_base_seconds * 2 ** (attempt - 1)))
                continue
            try:
                yield connection
            finally:
                connection.close()
            return
        raise DatabaseAccessError(
            f"cannot reach PostgreSQL at {spec.host}:{spec.port} (database {database!r}, user {spec.admin_user!r}) "
            f"after {spec.connect_attempts} attempts: {last_error}. If the machine running pulumi is outside the "
            f"server's firewall, add its public IP to config key '{FIREWALL_CONFIG_KEY}' "
            f"(pulumi config set --path '{FIREWALL_CONFIG_KEY}[0]' <ip>) and run pulumi up again."
        )


def role_exists(connection: psycopg.Connection[Any], role: str) -> bool:
    return connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def missing_schemas(connection: psycopg.Connection[Any], schemas: Sequence[str]) -> list[str]:
    rows = connection.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(schemas),)).fetchall()
    present = {row[0] for row in rows}
    return [schema for schema in schemas if schema not in present]


def server_version(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute("SHOW server_version_num").fetchone()
    return int(row[0]) if row else 0


# For each configured owner: does it exist, is it a superuser, may the administrator SET ROLE to it
# (16+: membership WITH SET; 15: membership), does it hold the ADMIN OPTION on it (16+), and has it
# granted itself that role already (so a transaction-scoped SET is revoked as an option, not a grant).
OWNER_RIGHTS = """
SELECT o.name, r.rolname IS NOT NULL, coalesce(r.rolsuper, false),
       r.oid IS NOT NULL AND pg_has_role(current_user, r.oid, %(set)s),
       r.oid IS NOT NULL AND %(v16)s AND pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION'),
       EXISTS (SELECT 1 FROM pg_auth_members m, pg_roles me
               WHERE me.rolname = current_user AND m.roleid = r.oid AND m.member = me.oid AND m.grantor = me.oid)
FROM unnest(%(owners)s::text[]) o(name) LEFT JOIN pg_roles r ON r.rolname = o.name
"""


def owner_rights(connection: psycopg.Connection[Any], spec: AccessSpec, owners: Sequence[str]) -> list[Acting]:
    """How the administrator acts for each owner; raises, changing nothing, when it may not for some.
    An owner that is no longer configured and no longer exists is skipped: a dropped role has no
    grants left to take back."""
    version = server_version(connection)
    rows = connection.execute(
        OWNER_RIGHTS,
        {"owners": list(owners), "set": "SET" if version >= 160000 else "MEMBER", "v16": version >= 160000},
    ).fetchall()
    acting, missing, absent, superusers = [], [], [], []
    for name, exists, superuser, can_set, admin, self_granted in rows:
        if not exists:
            if name in spec.owner_roles:
                absent.append(name)
        elif superuser:
            superusers.append(name)
        elif can_set:
            acting.append(Acting(name, "set"))
        elif admin:
            acting.append(Acting(name, "admin", bool(self_granted)))
        else:
            missing.append(name)
    if missing or absent or superusers:
        where = f"database access for role {spec.role!r} on {spec.host}/{spec.database} as {spec.admin_user!r}"
        raise DatabaseAccessError(missing_rights_message(where, spec.admin_user, version, missing, absent, superusers))
    return sorted(acting, key=lambda item: item.owner)


# What one owner owns that concerns the app's role: its relations and schemas among the configured
# schemas, and, anywhere in the database, its objects and default privileges that name the app's role.
OWNED = """
WITH owner AS (SELECT oid FROM pg_roles WHERE rolname = %(owner)s),
target AS (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
SELECT 'RELATION', n.nspname, c.relname, CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relowner = (SELECT oid FROM owner)
      AND n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT 'SCHEMA', n.nspname, n.nspname, ''
    FROM pg_namespace n WHERE n.nspowner = (SELECT oid FROM owner) AND n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT 'HELD RELATION', n.nspname, c.relname, CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relowner = (SELECT oid FROM owner)
      AND (EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = (SELECT oid FROM target))
           OR EXISTS (SELECT 1 FROM pg_attribute att, aclexplode(att.attacl) a
                      WHERE att.attrelid = c.oid AND att.attacl IS NOT NULL AND a.grantee = (SELECT oid FROM target)))
UNION ALL
SELECT 'HELD SCHEMA', n.nspname, n.nspname, ''
    FROM pg_namespace n WHERE n.nspowner = (SELECT oid FROM owner)
      AND EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee = (SELECT oid FROM target))
UNION ALL
SELECT 'HELD ROUTINE', n.nspname, p.oid::regprocedure::text, ''
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proowner = (SELECT oid FROM owner)
      AND EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = (SELECT oid FROM target))
UNION ALL
SELECT 'HELD DEFAULT', coalesce(n.nspname, ''), d.defaclobjtype::text, ''
    FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
    WHERE d.defaclrole = (SELECT oid FROM owner)
      AND EXISTS (SELECT 1 FROM aclexplode(d.defaclacl) a WHERE a.grantee = (SELECT oid FROM target))
ORDER BY 1, 2, 3
"""


def owned_objects(connection: psycopg.Connection[Any], spec: AccessSpec, owner: str) -> OwnedObjects:
    rows = connection.execute(OWNED, {"owner": owner, "role": spec.role, "schemas": list(spec.schemas)}).fetchall()

    def of(kind: str) -> list[tuple[str, str, str]]:
        return [(row[1], row[2], row[3]) for row in rows if row[0] == kind]

    return OwnedObjects(
        relations=tuple(of("RELATION")),
        schemas=tuple(schema for schema, _, _ in of("SCHEMA")),
        held_relations=tuple(of("HELD RELATION")),
        held_schemas=tuple(schema for schema, _, _ in of("HELD SCHEMA")),
        held_routines=tuple(name for _, name, _ in of("HELD ROUTINE")),
        held_defaults=tuple(
            (schema, DEFAULT_OBJECT_TYPES.get(letter, "TABLES")) for schema, letter, _ in of("HELD DEFAULT")
        ),
    )


def owner_statements(
    connection: psycopg.Connection[Any], spec: AccessSpec, acting: Sequence[Acting]
) -> list[sql.Composed]:
    """As each owner: take back what it granted the app's role, then (if it is still configured) grant
    the configured level on its objects and set its default privileges."""
    level, statements = LEVELS[spec.level], []
    for item in acting:
        owned = owned_objects(connection, spec, item.owner)
        as_owner = owner_revoke_statements(spec.role, owned)
        if item.owner in spec.owner_roles:
            as_owner += owner_grant_statements(spec.role, spec.schemas, level.tables, level.sequences, owned)
        statements += act_as(item, as_owner)
    return statements


# Everything the role holds in the connected database and as a role. Privileges granted to
# PUBLIC are everyone's and not listed; a grantor that no longer exists reads as its OID.
OBSERVE = """
WITH target AS (SELECT * FROM pg_roles WHERE rolname = %(role)s),
me AS (SELECT oid FROM pg_roles WHERE rolname = current_user),
relations AS (
    SELECT c.oid, n.nspname, c.relname, c.relkind, c.relacl, c.relowner::regrole::text AS owner
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
)
SELECT 'DATABASE', a.privilege_type, NULL, d.datname, a.grantor::regrole::text, true, NULL
    FROM pg_database d, aclexplode(d.datacl) a, target t
    WHERE d.datname = current_database() AND a.grantee = t.oid
UNION ALL
SELECT 'SCHEMA', a.privilege_type, n.nspname, n.nspname, a.grantor::regrole::text, true, NULL
    FROM pg_namespace n, aclexplode(n.nspacl) a, target t
    WHERE a.grantee = t.oid
UNION ALL
SELECT CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, a.privilege_type, r.nspname, r.relname,
       a.grantor::regrole::text, true, r.owner
    FROM relations r, aclexplode(r.relacl) a, target t
    WHERE a.grantee = t.oid
UNION ALL
SELECT 'COLUMN', a.privilege_type, r.nspname, r.relname || '.' || att.attname, a.grantor::regrole::text, true,
       r.owner
    FROM relations r JOIN pg_attribute att ON att.attrelid = r.oid, aclexplode(att.attacl) a, target t
    WHERE att.attacl IS NOT NULL AND a.grantee = t.oid
UNION ALL
SELECT 'ROUTINE', a.privilege_type, n.nspname, p.oid::regprocedure::text, a.grantor::regrole::text, true, NULL
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a, target t
    WHERE a.grantee = t.oid
UNION ALL
SELECT 'DEFAULT', a.privilege_type, n.nspname, d.defaclobjtype::text, d.defaclrole::regrole::text,
       d.defaclrole = (SELECT oid FROM me), NULL
    FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a, target t
    WHERE a.grantee = t.oid
UNION ALL
SELECT 'MEMBER', CASE WHEN m.admin_option THEN 'ADMIN' ELSE 'MEMBER' END, NULL, m.roleid::regrole::text,
       m.grantor::regrole::text, true, NULL
    FROM pg_auth_members m, target t
    WHERE m.member = t.oid
UNION ALL
SELECT 'ATTRIBUTE', '', NULL, x.attribute, '', true, NULL
    FROM target t, LATERAL (VALUES ('SUPERUSER', t.rolsuper), ('CREATEROLE', t.rolcreaterole),
        ('CREATEDB', t.rolcreatedb), ('BYPASSRLS', t.rolbypassrls), ('REPLICATION', t.rolreplication),
        ('NOLOGIN', NOT t.rolcanlogin)) x(attribute, held)
    WHERE x.held
"""

COUNT_RELATIONS = """
SELECT n.nspname, CASE WHEN c.relkind = 'S' THEN 'SEQUENCES' ELSE 'TABLES' END, c.relowner::regrole::text,
       pg_has_role(current_user, c.relowner, 'USAGE'), count(*)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
GROUP BY 1, 2, 3, 4
"""


def _unquote(name: str) -> str:
    """regrole's text quotes names that need it; the descriptions use the plain name."""
    return name[1:-1].replace('""', '"') if len(name) > 1 and name[0] == name[-1] == '"' else name


def observe(connection: psycopg.Connection[Any], spec: AccessSpec) -> Observed:
    held = tuple(
        Held(
            kind=row[0],
            privilege=row[1],
            schema=row[2],
            name=_unquote(row[3]) if row[0] == "MEMBER" else row[3],
            grantor=_unquote(row[4]),
            mine=bool(row[5]),
            owner=None if row[6] is None else _unquote(row[6]),
        )
        for row in connection.execute(OBSERVE, {"role": spec.role}).fetchall()
    )
    schemas = frozenset(row[0] for row in connection.execute("SELECT nspname FROM pg_namespace").fetchall())
    relations: dict[tuple[str, str], int] = defaultdict(int)
    by_owner: dict[tuple[str, str, str], int] = {}
    inherited: set[str] = set()
    for schema, kind, owner, usage, count in connection.execute(COUNT_RELATIONS).fetchall():
        relations[(schema, kind)] += int(count)
        by_owner[(schema, kind, _unquote(owner))] = int(count)
        if usage:
            inherited.add(_unquote(owner))
    return Observed(held, schemas, dict(relations), by_owner, frozenset(inherited))


def observed_grants(connection: psycopg.Connection[Any], spec: AccessSpec) -> list[str]:
    return sorted(describe(observe(connection, spec), spec))


def entra_principals(connection: psycopg.Connection[Any]) -> dict[str, tuple[str, str]]:
    """Entra-mapped roles by name -> (object ID, principal type), from Flexible Server's own listing."""
    cursor = connection.execute(LIST_PRINCIPALS)
    columns = [column.name.lower() for column in cursor.description or ()]

    def column(*names: str) -> int:
        for name in names:
            if name in columns:
                return columns.index(name)
        raise DatabaseAccessError(
            f"pgaadauth_list_principals answered columns {columns}; expected rolename, principaltype, objectid"
        )

    role_at, oid_at, type_at = column("rolename", "rolname"), column("objectid"), column("principaltype")
    return {str(row[role_at]): (str(row[oid_at]), str(row[type_at])) for row in cursor.fetchall()}


def can_list_principals(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute("SELECT to_regprocedure('pgaadauth_list_principals(boolean)') IS NOT NULL").fetchone()
    return bool(row and row[0])


def scram_verifier(connection: psycopg.Connection[Any], role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier libpq computes, so no plaintext password is ever sent as SQL."""
    return connection.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def _execute_all(connection: psycopg.Connection[Any], statements: Iterable[sql.Composed], spec: AccessSpec) -> None:
    for statement in statements:
        try:
            connection.execute(statement)
        except psycopg.Error as error:
            shown = statement.as_string(connection)
            shown = re.sub(r"PASSWORD '[^']*'", "PASSWORD '***'", shown)
            raise DatabaseAccessError(
                f"database access for role {spec.role!r} on {spec.host}/{spec.database}: {shown} failed: "
                f"{str(error).strip().splitlines()[0]}; nothing was changed"
            ) from None


class DatabaseAccessProvider(ResourceProvider):
    """CRUD for the app's role and grants. Connections and credentials live inside each call."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(with_owner_scope(news), validate(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return plan_diff(olds, news)

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = AccessSpec.from_props(props)
        connector = Connector(spec, props.get("admin_password"))
        self._converge(connector, spec, props.get("role_password"), adopting=True)
        outs = {**props, "grants": expected_grants(spec)}
        return CreateResult(id_=f"{spec.host}/{spec.database}/{spec.role}", outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec = AccessSpec.from_props(news)
        connector = Connector(spec, news.get("admin_password"))
        previous = [str(owner) for owner in olds.get("owner_roles") or ()]
        self._converge(connector, spec, news.get("role_password"), adopting=False, previous_owners=previous)
        return UpdateResult(outs={**news, "grants": expected_grants(spec)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        spec = AccessSpec.from_props(props)
        connector = Connector(spec, props.get("admin_password"))
        with connector.connect(spec.database) as connection:
            if not role_exists(connection, spec.role):
                return ReadResult(id_="", outs={})  # gone: refresh drops it, the next up creates it
            grants = observed_grants(connection, spec)
        return ReadResult(id_=id_, outs={**props, "grants": grants})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        spec = AccessSpec.from_props(props)
        connector = Connector(spec, props.get("admin_password"))
        with connector.connect(spec.database) as connection:
            if not role_exists(connection, spec.role):
                return
            role = sql.Identifier(spec.role)
            # Only taking back here: an owner that has been dropped since is skipped.
            acting = (
                owner_rights(connection, replace(spec, owner_roles=()), spec.owner_roles) if spec.owner_roles else []
            )
            with connection.transaction():
                # What was granted as each owner is taken back as that owner: DROP OWNED run by the
                # administrator cannot revoke another role's grants and default privileges.
                _execute_all(connection, owner_statements(connection, replace(spec, owner_roles=()), acting), spec)
                # Membership lets a non-superuser administrator reassign the role's objects.
                if not connection.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (spec.role,)).fetchone()[0]:  # type: ignore[index]
                    _execute_all(connection, [sql.SQL("GRANT {} TO current_user").format(role)], spec)
                _execute_all(
                    connection,
                    [
                        sql.SQL("REASSIGN OWNED BY {} TO current_user").format(role),
                        sql.SQL("DROP OWNED BY {}").format(role),  # also revokes its privileges here
                    ],
                    spec,
                )
        with connector.connect("postgres") as connection, connection.transaction():
            _execute_all(connection, [sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(spec.role))], spec)

    # -- one change, all or nothing ---------------------------------------------------------

    def _check_adoptable(self, connector: Connector, spec: AccessSpec) -> None:
        """A role of the same name already exists: take it over only if it is the app's own."""
        with connector.connect("postgres") as admin:
            if spec.auth_mode == "password" and not can_list_principals(admin):
                return
            mapped = entra_principals(admin).get(spec.role)
        where = f"role {spec.role!r} already exists on {spec.host}"
        if spec.auth_mode == "token":
            if mapped is None:
                raise DatabaseAccessError(
                    f"{where} but is not mapped to any Entra principal (pgaadauth_list_principals does not list "
                    f"it), so it is not the app's managed identity {spec.principal_id}; it was not changed. "
                    f"Choose another name (config key '{ROLE_CONFIG_KEY}') or drop that role first"
                )
            if mapped[0].lower() != spec.principal_id.lower():
                raise DatabaseAccessError(
                    f"{where} and is mapped to Entra object {mapped[0]} ({mapped[1]}), not to the app's managed "
                    f"identity {spec.principal_id}; it was not changed. Choose another name (config key "
                    f"'{ROLE_CONFIG_KEY}') or drop that role first"
                )
        elif mapped is not None:
            raise DatabaseAccessError(
                f"{where} and is mapped to Entra object {mapped[0]} ({mapped[1]}); password mode will not turn an "
                f"Entra principal into a password role. Choose another name (config key '{ROLE_CONFIG_KEY}') or "
                "drop that role first"
            )

    def _converge(
        self,
        connector: Connector,
        spec: AccessSpec,
        role_password: str | None,
        adopting: bool,
        previous_owners: Sequence[str] = (),
    ) -> None:
        if spec.auth_mode == "password" and not role_password:
            raise DatabaseAccessError("password mode needs the app role's password (role_password)")
        with connector.connect(spec.database) as connection:
            missing = missing_schemas(connection, spec.schemas)
            if missing:
                raise DatabaseAccessError(
                    f"schema(s) {', '.join(repr(s) for s in missing)} do not exist in database {spec.database!r} "
                    f"on {spec.host}; create them or change config key 'grantSchemas'"
                )
            # Owners configured now and owners configured before (whose grants are taken back): the right
            # to act for each is checked before anything changes.
            owners = sorted(set(spec.owner_roles) | set(previous_owners))
            acting = owner_rights(connection, spec, owners) if owners else []
            existed = role_exists(connection, spec.role)
            if existed and adopting:
                self._check_adoptable(connector, spec)
            if spec.auth_mode == "token" and not existed:
                # pgaadauth functions must run in the `postgres` database: a transaction of its own.
                with connector.connect("postgres") as admin, admin.transaction():
                    _execute_all(admin, [create_principal(spec.role, spec.principal_id)], spec)
            try:
                with connection.transaction():
                    statements: list[sql.Composed] = []
                    if spec.auth_mode == "password":
                        verifier = scram_verifier(connection, spec.role, role_password or "")
                        statements.append((set_login_password if existed else create_login_role)(spec.role, verifier))
                    if existed:
                        statements += repair_statements(
                            spec, observe(connection, spec), acting_for=[item.owner for item in acting]
                        )
                    _execute_all(connection, statements, spec)
                    # As the owners after the administrator's revokes and before its grants: a grant the
                    # administrator makes on an owner's object through inherited privileges is the owner's.
                    _execute_all(connection, owner_statements(connection, spec, acting), spec)
                    _execute_all(connection, grant_statements(spec), spec)
                    after = observe(connection, spec)
                    difference = unconverged(spec, describe(after, spec))
                    if difference is not None:
                        raise DatabaseAccessError(
                            f"database access for role {spec.role!r} on {spec.host}/{spec.database}: after "
                            f"converging as {spec.admin_user!r} the role {difference}. The administrator cannot "
                            "change what another role granted or owns"
                            f"{belongs_to(spec, after)}: name the owning role in config key "
                            f"'{OWNERS_CONFIG_KEY}' so that the provider grants as it, or revoke or grant it as "
                            "that role, then run pulumi up again; nothing was changed"
                        )
            except BaseException:
                if spec.auth_mode == "token" and not existed:
                    # The principal was created in its own transaction: take it back.
                    with connector.connect("postgres") as admin, admin.transaction():
                        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(spec.role)))
                raise


# --- the resource ---------------------------------------------------------------------------


class DatabaseAccessArgs(TypedDict):
    host: pulumi.Input[str]
    admin_user: pulumi.Input[str]
    auth_mode: str
    database: pulumi.Input[str]
    role: str
    schemas: list[str]
    privilege_level: str
    principal_id: pulumi.Input[str] | None
    admin_password: pulumi.Input[str] | None
    role_password: pulumi.Input[str] | None
    owner_roles: NotRequired[list[str]]
    """Config key grantOnObjectsOwnedBy: roles whose objects in `schemas` the role is granted on."""
    entra_scope: NotRequired[str]
    """The stack's cloud's PostgreSQL token scope (azure_cloud/clouds.py); default the public cloud's."""


class DatabaseAccess(pulumi.dynamic.Resource):
    """The app's role and grants on the application database."""

    role: pulumi.Output[str]
    grants: pulumi.Output[list[str]]

    def __init__(self, name: str, args: DatabaseAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "host": args["host"],
            "port": 5432,
            "admin_user": args["admin_user"],
            "auth_mode": args["auth_mode"],
            "database": args["database"],
            "role": args["role"],
            "schemas": args["schemas"],
            "privilege_level": args["privilege_level"],
            "principal_id": args["principal_id"] or "",
            # Verify the server: the administrator's token or password goes to it and nowhere else.
            "sslmode": "verify-full",
            "sslrootcert": CERTIFI,
            "connect_timeout": 10,
            "connect_attempts": 6,
            "retry_base_seconds": 2.0,
            # In the inputs, so the state and a preview show which audience the administrator's token is for; an
            # absent value (a state from before) means the public cloud's, and `plan_diff` sees no change.
            "entra_scope": args.get("entra_scope") or ENTRA_SCOPE,
            "grants": None,
        }
        if args.get("owner_roles"):
            # Only when configured: without owners the inputs (and the state) are exactly as before.
            props["owner_roles"] = list(args.get("owner_roles") or [])
        if args["auth_mode"] == "password":
            props["admin_password"] = pulumi.Output.secret(args["admin_password"] or "")
            props["role_password"] = pulumi.Output.secret(args["role_password"] or "")
        super().__init__(
            DatabaseAccessProvider(),
            name,
            props,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)),
        )
