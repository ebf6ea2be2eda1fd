"""The app's database role and its privileges, converged by a Pulumi dynamic provider.

Token mode: signed in to the server's `postgres` database as the Entra administrator
(a token from azure-identity's DefaultAzureCredential, fetched inside the provider, so
`az login` and CI's OIDC both work), the role is created with Flexible Server's
`pgaadauth_create_principal_with_oid(role, principal_id, 'service', false, false)`.
(`SET aad_validate_oids_in_tenant ...; CREATE ROLE ... IN ROLE azure_ad_user` is
Single Server syntax and does not work on Flexible Server.)

Password mode: signed in as the server administrator, a LOGIN role is created with a
SCRAM verifier computed on this side, so the password never travels as SQL text.

Grants on the application database: CONNECT; USAGE on each schema; table and sequence
privileges of the chosen level on existing objects and, through default privileges, on
future ones created by the administrator; membership in pg_read_all_stats.

`check` and `diff` never connect, so `pulumi preview` works without reaching the server.
`read` reports drift as the `grants` the role really holds, so `pulumi refresh` then
`pulumi up` repairs it. Every identifier is composed with psycopg.sql.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict

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

from components import deployer_credential

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # how the engine hands a dynamic provider an unknown value
ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
FIREWALL_CONFIG_KEY = "deployerCidrs"
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
SECRET_OUTPUTS = ["admin_password", "role_password"]
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class DatabaseAccessError(Exception):
    """A failure the deployer can act on; its message never contains a credential."""


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
    sslmode: str = "require"
    connect_timeout: int = 10
    connect_attempts: int = 6
    retry_base_seconds: float = 2.0

    @staticmethod
    def from_props(props: dict[str, Any]) -> AccessSpec:
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
            sslmode=str(props.get("sslmode") or "require"),
            connect_timeout=int(props.get("connect_timeout") or 10),
            connect_attempts=int(props.get("connect_attempts") or 6),
            retry_base_seconds=float(props.get("retry_base_seconds") or 2.0),
        )


def validate(props: dict[str, Any]) -> list[CheckFailure]:
    """Offline checks of known inputs; unknown values (preview) are left for later."""
    failures: list[CheckFailure] = []

    def known(key: str) -> bool:
        return key in props and props[key] is not None and props[key] != UNKNOWN

    for key in ("role", "database", "admin_user"):
        if not known(key):
            continue
        value = props[key]
        if not isinstance(value, str) or not value:
            failures.append(CheckFailure(key, f"{key} must be a non-empty string"))
        elif len(value.encode()) > MAX_IDENTIFIER_BYTES:
            failures.append(
                CheckFailure(
                    key,
                    f"{key} {value[:20]!r}... is {len(value.encode())} bytes; PostgreSQL names are at most "
                    f"{MAX_IDENTIFIER_BYTES} bytes and a longer one would be silently truncated",
                )
            )
        elif "\x00" in value:
            failures.append(CheckFailure(key, f"{key} must not contain a NUL character"))
    if known("schemas"):
        schemas = props["schemas"]
        if not isinstance(schemas, list) or not schemas:
            failures.append(CheckFailure("schemas", "schemas must be a non-empty list of schema names"))
        else:
            for schema in schemas:
                if schema == UNKNOWN:
                    continue
                if (
                    not isinstance(schema, str)
                    or not schema
                    or len(schema.encode()) > MAX_IDENTIFIER_BYTES
                    or "\x00" in schema
                ):
                    failures.append(
                        CheckFailure("schemas", f"schema {schema!r} is not a PostgreSQL name of 1-63 bytes")
                    )
    if known("privilege_level") and props["privilege_level"] not in LEVELS:
        failures.append(
            CheckFailure(
                "privilege_level", f"privilege_level {props['privilege_level']!r} is not one of {', '.join(LEVELS)}"
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


# --- the SQL (pure: tested without a server) ------------------------------------------------


def create_principal(role: str, principal_id: str) -> sql.Composed:
    """Flexible Server's way to create a role for a managed identity (object type 'service')."""
    return sql.SQL("SELECT * FROM pgaadauth_create_principal_with_oid({}, {}, 'service', false, false)").format(
        sql.Literal(role), sql.Literal(principal_id)
    )


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


def revoke_statements(role_name: str, schemas: Sequence[str]) -> list[sql.Composed]:
    """Takes back everything this resource may have granted in `schemas` (existing ones only)."""
    role = sql.Identifier(role_name)
    statements: list[sql.Composed] = []
    for schema_name in schemas:
        schema = sql.Identifier(schema_name)
        statements += [
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema, role),
            sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema, role),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} REVOKE ALL ON TABLES FROM {}").format(schema, role),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} REVOKE ALL ON SEQUENCES FROM {}").format(schema, role),
            sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(schema, role),
        ]
    return statements


def expected_grants(spec: AccessSpec) -> list[str]:
    """The grants `read` must observe when the role is as declared, in `observed_grants`' words."""
    level = LEVELS[spec.level]
    grants = [f"CONNECT ON DATABASE {spec.database}", f"MEMBER OF {STATS_ROLE}"]
    for schema in spec.schemas:
        grants.append(f"USAGE ON SCHEMA {schema}")
        grants += [f"{p} ON ALL TABLES IN SCHEMA {schema}" for p in level.tables]
        grants += [f"{p} ON ALL SEQUENCES IN SCHEMA {schema}" for p in level.sequences]
        grants += [f"DEFAULT {p} ON TABLES IN SCHEMA {schema}" for p in level.tables]
        grants += [f"DEFAULT {p} ON SEQUENCES IN SCHEMA {schema}" for p in level.sequences]
    return sorted(grants)


OBSERVE_GRANTS = """
WITH target AS (SELECT oid FROM pg_roles WHERE rolname = %(role)s),
relations AS (
    SELECT n.nspname AS schema, CASE WHEN c.relkind = 'S' THEN 'SEQUENCES' ELSE 'TABLES' END AS kind, c.oid, c.relacl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
),
held AS (
    SELECT r.schema, r.kind, a.privilege_type, count(DISTINCT r.oid) AS objects
    FROM relations r, aclexplode(r.relacl) a, target
    WHERE a.grantee = target.oid GROUP BY 1, 2, 3
),
totals AS (SELECT schema, kind, count(*) AS objects FROM relations GROUP BY 1, 2)
SELECT 'CONNECT ON DATABASE ' || d.datname
    FROM pg_database d, aclexplode(d.datacl) a, target
    WHERE d.datname = %(database)s AND a.grantee = target.oid AND a.privilege_type = 'CONNECT'
UNION ALL
SELECT 'USAGE ON SCHEMA ' || n.nspname
    FROM pg_namespace n, aclexplode(n.nspacl) a, target
    WHERE n.nspname = ANY(%(schemas)s) AND a.grantee = target.oid AND a.privilege_type = 'USAGE'
UNION ALL
SELECT h.privilege_type || CASE WHEN h.objects = t.objects THEN ' ON ALL ' ELSE ' ON SOME ' END
       || h.kind || ' IN SCHEMA ' || h.schema
    FROM held h JOIN totals t USING (schema, kind)
UNION ALL
SELECT 'DEFAULT ' || a.privilege_type || CASE d.defaclobjtype WHEN 'S' THEN ' ON SEQUENCES' ELSE ' ON TABLES' END
       || ' IN SCHEMA ' || n.nspname
    FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a, target
    WHERE n.nspname = ANY(%(schemas)s) AND d.defaclrole = current_user::regrole AND a.grantee = target.oid
      AND d.defaclobjtype IN ('r', 'S')
UNION ALL
SELECT 'MEMBER OF ' || g.rolname
    FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid, target
    WHERE m.member = target.oid AND g.rolname = %(stats_role)s
"""


def vacuous_grants(spec: AccessSpec, empty_kinds: set[tuple[str, str]]) -> list[str]:
    """ALL of nothing is held: a schema without tables (or sequences) lacks no privilege on them."""
    level = LEVELS[spec.level]
    grants: list[str] = []
    for schema, kind in sorted(empty_kinds):
        privileges = level.tables if kind == "TABLES" else level.sequences
        grants += [f"{p} ON ALL {kind} IN SCHEMA {schema}" for p in privileges]
    return grants


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


def entra_token() -> str:
    """A token for the server administrator as the deployer: a fresh GitHub ID token per request in
    GitHub Actions with OIDC, DefaultAzureCredential elsewhere (components/deployer_credential.py)."""
    try:
        return deployer_credential.get_token(ENTRA_SCOPE)
    except deployer_credential.DeployerCredentialError as error:
        raise DatabaseAccessError(str(error)) from None


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
            return entra_token()
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


def observed_grants(connection: psycopg.Connection[Any], spec: AccessSpec) -> list[str]:
    parameters = {"role": spec.role, "schemas": list(spec.schemas), "database": spec.database, "stats_role": STATS_ROLE}
    held = {row[0] for row in connection.execute(OBSERVE_GRANTS, parameters).fetchall()}
    rows = connection.execute(
        "SELECT n.nspname, k.kind FROM pg_namespace n CROSS JOIN (VALUES ('TABLES'), ('SEQUENCES')) k(kind) "
        "WHERE n.nspname = ANY(%(schemas)s) AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid "
        "AND CASE WHEN k.kind = 'SEQUENCES' THEN c.relkind = 'S' ELSE c.relkind IN ('r','p','v','m','f') END)",
        parameters,
    ).fetchall()
    held.update(vacuous_grants(spec, {(row[0], row[1]) for row in rows}))
    return sorted(held)


def scram_verifier(connection: psycopg.Connection[Any], role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier libpq computes, so no plaintext password is ever sent as SQL."""
    return connection.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def _execute_all(connection: psycopg.Connection[Any], statements: Sequence[sql.Composed], spec: AccessSpec) -> None:
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
        return CheckResult(news, validate(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = set(olds) | set(news)
        keys -= {"__provider", "grants"}
        changed = sorted(key for key in keys if olds.get(key) != news.get(key))
        replaces = [key for key in changed if key in REPLACE_ON]
        drifted = False
        if (
            not any(news.get(key) == UNKNOWN for key in ("role", "database", "schemas", "privilege_level"))
            and isinstance(news.get("schemas"), list)
            and UNKNOWN not in news["schemas"]
        ):
            drifted = olds.get("grants") != expected_grants(AccessSpec.from_props({**olds, **news}))
        return DiffResult(changes=bool(changed) or drifted, replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = AccessSpec.from_props(props)
        connector = Connector(spec, props.get("admin_password"))
        self._converge(connector, spec, props.get("role_password"), previous_schemas=())
        outs = {**props, "grants": expected_grants(spec)}
        return CreateResult(id_=f"{spec.host}/{spec.database}/{spec.role}", outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        spec = AccessSpec.from_props(news)
        connector = Connector(spec, news.get("admin_password"))
        self._converge(connector, spec, news.get("role_password"), previous_schemas=tuple(olds.get("schemas") or ()))
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
            with connection.transaction():
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

    def _converge(
        self, connector: Connector, spec: AccessSpec, role_password: str | None, previous_schemas: Sequence[str]
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
            existed = role_exists(connection, spec.role)
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
                    existing_previous = [s for s in previous_schemas if s not in missing_schemas(connection, [s])]
                    if existed:
                        statements += revoke_statements(spec.role, sorted(set(existing_previous) | set(spec.schemas)))
                    statements += grant_statements(spec)
                    _execute_all(connection, statements, spec)
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
            "sslmode": "require",
            "connect_timeout": 10,
            "connect_attempts": 6,
            "retry_base_seconds": 2.0,
            "grants": None,
        }
        if args["auth_mode"] == "password":
            props["admin_password"] = pulumi.Output.secret(args["admin_password"] or "")
            props["role_password"] = pulumi.Output.secret(args["role_password"] or "")
        super().__init__(
            DatabaseAccessProvider(),
            name,
            props,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)),
        )
