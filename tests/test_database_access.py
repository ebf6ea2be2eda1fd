"""The database-access dynamic provider against a real PostgreSQL server.

The server is made to look like a Flexible Server where it matters: the administrator
is not a superuser but a CREATEROLE member of `azure_pg_admin`, the application
database belongs to `azure_pg_admin`, TLS is on, and in token mode the administrator's
password is whatever token the local identity endpoint minted last (valid until that
token's expiry). Azure's `pgaadauth_create_principal_with_oid` exists only on Azure:
`PGAADAUTH_SHIM` below is a clearly labelled stand-in with the same signature, installed
by these tests and never by the program.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from components import database_access
from components.database_access import (
    UNKNOWN,
    DatabaseAccessError,
    DatabaseAccessProvider,
    create_principal,
    expected_grants,
)
from drill.identity_endpoint import IdentityEndpoint
from drill.postgres_server import PostgresServer, running_postgres

ENTRA_ADMIN = "pulumi-deployer"
SERVER_ADMIN, SERVER_ADMIN_PASSWORD = "pgadmin", "Server-admin-Pw-9x"
APP_PRINCIPAL_ID = "22222222-2222-2222-2222-222222222222"
APP_PASSWORD = "App-Pw_1~generated"

# TEST SHIM — stands in for Azure's pgaadauth extension, which only exists on Azure.
PGAADAUTH_SHIM = """
CREATE TABLE pgaadauth_shim_calls (role_name text, object_id text, object_type text, is_admin boolean, is_mfa boolean);
CREATE FUNCTION pgaadauth_create_principal_with_oid(
    role_name text, object_id text, object_type text, is_admin boolean, is_mfa boolean) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO public.pgaadauth_shim_calls VALUES (role_name, object_id, object_type, is_admin, is_mfa);
    EXECUTE format('CREATE ROLE %I LOGIN', role_name);
    EXECUTE format('COMMENT ON ROLE %I IS %L', role_name, 'aadauth,oid=' || object_id || ',type=' || object_type);
    RETURN 'Created role for "' || role_name || '"';
END $$;
REVOKE ALL ON FUNCTION pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) FROM PUBLIC;
"""

_names = itertools.count()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server, server.superuser() as su:
        su.execute("CREATE ROLE azure_pg_admin NOLOGIN")
        for admin in (ENTRA_ADMIN, SERVER_ADMIN):
            su.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE IN ROLE azure_pg_admin").format(sql.Identifier(admin)))
            su.execute(sql.SQL("GRANT pg_read_all_stats TO {} WITH ADMIN OPTION").format(sql.Identifier(admin)))
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
        yield server


@pytest.fixture(scope="module")
def identity(postgres: PostgresServer) -> Iterator[IdentityEndpoint]:
    """The managed identity endpoint azure-identity finds through IDENTITY_ENDPOINT; each token it mints
    becomes the Entra administrator's password until the token expires, as Entra tokens do."""

    endpoint = IdentityEndpoint(on_mint=postgres.token_becomes_password(ENTRA_ADMIN)).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture(autouse=True)
def managed_identity_environment(identity: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.url)
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


def admin_of(mode: str) -> str:
    return ENTRA_ADMIN if mode == "token" else SERVER_ADMIN


@pytest.fixture(params=["token", "password"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(postgres: PostgresServer, mode: str) -> str:
    """A fresh application database with two tables and a sequence owned by the mode's administrator."""
    name = f"app_{next(_names)}"
    with postgres.superuser() as su:
        su.execute(sql.SQL("CREATE DATABASE {} OWNER azure_pg_admin").format(sql.Identifier(name)))
    with postgres.superuser(name) as su:
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(admin_of(mode))))
        su.execute("CREATE TABLE orders (id serial PRIMARY KEY, total numeric)")
        su.execute("INSERT INTO orders (total) VALUES (10), (20)")
        su.execute("CREATE TABLE canary (note text)")
        su.execute("INSERT INTO canary VALUES ('still here')")
        su.execute("CREATE SCHEMA reports")
        su.execute("CREATE TABLE reports.daily (day date)")
    return name


def props(postgres: PostgresServer, database: str, mode: str, role: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "host": postgres.host,
        "port": postgres.port,
        "admin_user": admin_of(mode),
        "auth_mode": mode,
        "database": database,
        "role": role,
        "schemas": ["public"],
        "privilege_level": "read_only",
        "principal_id": APP_PRINCIPAL_ID if mode == "token" else "",
        "sslmode": "require",
        "connect_timeout": 5,
        "connect_attempts": 2,
        "retry_base_seconds": 0.01,
        "grants": None,
    }
    if mode == "password":
        values.update(admin_password=SERVER_ADMIN_PASSWORD, role_password=APP_PASSWORD)
    values.update(overrides)
    return values


def new_role() -> str:
    return f"mcp_role_{next(_names)}"


def role_exists(postgres: PostgresServer, role: str) -> bool:
    with postgres.superuser() as su:
        return su.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def login_as_app(postgres: PostgresServer, mode: str, role: str, database: str) -> psycopg.Connection[Any]:
    if mode == "token":
        # The app signs in with its own Entra token; here the superuser hands the role one.
        with postgres.superuser() as su:
            su.execute(sql.SQL("ALTER ROLE {} PASSWORD 'app-token'").format(sql.Identifier(role)))
        return postgres.connect(role, "app-token", database)
    return postgres.connect(role, APP_PASSWORD, database)


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


# --- the SQL itself ------------------------------------------------------------------------


def test_token_mode_sends_flexible_servers_function_with_its_argument_order(postgres: PostgresServer) -> None:
    with postgres.superuser() as su:
        rendered = create_principal("postgres_mcp", APP_PRINCIPAL_ID).as_string(su)
    assert rendered == (
        "SELECT * FROM pgaadauth_create_principal_with_oid("
        "'postgres_mcp', '22222222-2222-2222-2222-222222222222', 'service', false, false)"
    )
    assert "aad_validate_oids_in_tenant" not in rendered and "azure_ad_user" not in rendered


# --- create / read / update / delete -------------------------------------------------------


def test_create_then_the_role_can_log_in_and_read_but_not_write(
    postgres: PostgresServer, database: str, mode: str
) -> None:
    role = new_role()
    provider = DatabaseAccessProvider()
    created = provider.create(props(postgres, database, mode, role))
    assert created.id == f"127.0.0.1/{database}/{role}"
    assert created.outs is not None and created.outs["grants"] == expected_grants(
        database_access.AccessSpec.from_props(created.outs)
    )
    read = provider.read(created.id, created.outs)
    assert read.id == created.id and read.outs is not None and read.outs["grants"] == created.outs["grants"]

    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        assert app.execute("SELECT pg_has_role('pg_read_all_stats', 'MEMBER')").fetchone() == (True,)
        assert not can(app, "INSERT INTO orders (total) VALUES (1)")
        assert not can(app, "DELETE FROM canary")
        assert not can(app, "CREATE TABLE mine (x int)")
        assert not can(app, "SELECT * FROM reports.daily")  # a schema it was not given
    with postgres.superuser() as su:
        if mode == "token":
            calls = su.execute("SELECT * FROM pgaadauth_shim_calls WHERE role_name = %s", (role,)).fetchall()
            assert calls == [(role, APP_PRINCIPAL_ID, "service", False, False)]
        else:
            stored = su.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
            assert stored is not None and stored[0].startswith("SCRAM-SHA-256$")


def test_future_tables_are_readable_through_default_privileges(
    postgres: PostgresServer, database: str, mode: str
) -> None:
    role = new_role()
    DatabaseAccessProvider().create(props(postgres, database, mode, role))
    with postgres.superuser(database) as su:
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(admin_of(mode))))
        su.execute("CREATE TABLE later (x int)")
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM later").fetchone() == (0,)


def test_create_twice_converges(postgres: PostgresServer, database: str, mode: str) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    first = provider.create(props(postgres, database, mode, role))
    second = provider.create(props(postgres, database, mode, role))
    assert first.outs is not None and second.outs is not None
    assert provider.read(second.id, second.outs).outs["grants"] == first.outs["grants"]  # type: ignore[index]
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)


def test_update_changes_level_and_schemas_both_ways(postgres: PostgresServer, database: str, mode: str) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    old = props(postgres, database, mode, role)
    created = provider.create(old)
    assert created.outs is not None
    new = props(postgres, database, mode, role, privilege_level="read_write", schemas=["public", "reports"])
    diff = provider.diff(created.id, created.outs, new)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, created.outs, new)
    assert updated.outs is not None
    with login_as_app(postgres, mode, role, database) as app:
        assert can(app, "INSERT INTO orders (total) VALUES (1)")
        assert app.execute("SELECT count(*) FROM reports.daily").fetchone() == (0,)
        assert not can(app, "CREATE TABLE mine (x int)")  # read_write never means DDL
    back = provider.update(created.id, updated.outs, old)
    assert back.outs is not None
    with login_as_app(postgres, mode, role, database) as app:
        assert not can(app, "INSERT INTO orders (total) VALUES (1)")
        assert not can(app, "SELECT * FROM reports.daily")
    assert provider.read(created.id, back.outs).outs["grants"] == expected_grants(  # type: ignore[index]
        database_access.AccessSpec.from_props(old)
    )


def test_delete_and_delete_again(postgres: PostgresServer, database: str, mode: str) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    created = provider.create(props(postgres, database, mode, role))
    assert created.outs is not None
    provider.delete(created.id, created.outs)
    assert not role_exists(postgres, role)
    provider.delete(created.id, created.outs)  # already gone: still a success
    assert provider.read(created.id, created.outs).id == ""


def test_delete_while_the_role_owns_objects(postgres: PostgresServer, database: str, mode: str) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    created = provider.create(props(postgres, database, mode, role))
    assert created.outs is not None
    with postgres.superuser(database) as su:
        su.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        su.execute("CREATE TABLE owned_by_app (x int)")
    provider.delete(created.id, created.outs)
    assert not role_exists(postgres, role)
    with postgres.superuser(database) as su:
        owner = su.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'owned_by_app'").fetchone()
    assert owner == (admin_of(mode),)  # reassigned to the administrator, not lost


# --- drift ---------------------------------------------------------------------------------


def test_dropped_role_is_reported_gone_and_recreated(postgres: PostgresServer, database: str, mode: str) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    created = provider.create(props(postgres, database, mode, role))
    assert created.outs is not None
    with postgres.superuser(database) as su:
        su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert provider.read(created.id, created.outs).id == ""  # refresh removes it from state ...
    provider.create(props(postgres, database, mode, role))  # ... and the next up creates it again
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)


def test_revoked_grant_is_reported_and_repaired(postgres: PostgresServer, database: str, mode: str) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    wanted = props(postgres, database, mode, role)
    created = provider.create(wanted)
    assert created.outs is not None
    with postgres.superuser(database) as su:
        su.execute(sql.SQL("REVOKE SELECT ON orders FROM {}").format(sql.Identifier(role)))
        su.execute(sql.SQL("REVOKE pg_read_all_stats FROM {}").format(sql.Identifier(role)))
    refreshed = provider.read(created.id, created.outs)
    assert refreshed.outs is not None
    drift = set(created.outs["grants"]) - set(refreshed.outs["grants"])
    assert drift == {"SELECT ON ALL TABLES IN SCHEMA public", "MEMBER OF pg_read_all_stats"}
    assert "SELECT ON SOME TABLES IN SCHEMA public" in refreshed.outs["grants"]
    diff = provider.diff(created.id, refreshed.outs, wanted)
    assert diff.changes is True and diff.replaces == []
    provider.update(created.id, refreshed.outs, wanted)
    assert provider.read(created.id, refreshed.outs).outs["grants"] == created.outs["grants"]  # type: ignore[index]
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)


def test_extra_privilege_is_drift_too(postgres: PostgresServer, database: str, mode: str) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    wanted = props(postgres, database, mode, role)
    created = provider.create(wanted)
    assert created.outs is not None
    with postgres.superuser(database) as su:
        su.execute(sql.SQL("GRANT DELETE ON canary TO {}").format(sql.Identifier(role)))
    refreshed = provider.read(created.id, created.outs)
    assert refreshed.outs is not None and "DELETE ON SOME TABLES IN SCHEMA public" in refreshed.outs["grants"]
    assert provider.diff(created.id, refreshed.outs, wanted).changes is True
    provider.update(created.id, refreshed.outs, wanted)
    with login_as_app(postgres, mode, role, database) as app:
        assert not can(app, "DELETE FROM canary")


# --- hostile input and failures --------------------------------------------------------------


@pytest.mark.parametrize("role", ['mcp"; DROP TABLE canary; --', "rôle_ünïcödé_名前", "Mixed Case 'quoted'"])
def test_hostile_identifiers_are_quoted_never_executed(
    postgres: PostgresServer, database: str, mode: str, role: str
) -> None:
    provider = DatabaseAccessProvider()
    role = f"{role}{next(_names)}"
    assert provider.check({}, props(postgres, database, mode, role)).failures == []
    created = provider.create(props(postgres, database, mode, role))
    assert created.outs is not None
    assert role_exists(postgres, role)
    with postgres.superuser(database) as su:
        assert su.execute("SELECT note FROM canary").fetchone() == ("still here",)
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    provider.delete(created.id, created.outs)
    assert not role_exists(postgres, role)


def test_names_longer_than_postgres_allows_are_refused(postgres: PostgresServer, database: str, mode: str) -> None:
    too_long = "r" * 60 + "ééé"  # 66 bytes: PostgreSQL would silently cut it to 63
    failures = (
        DatabaseAccessProvider().check({}, props(postgres, database, mode, too_long, schemas=["s" * 64])).failures
    )
    reasons = {failure.property: failure.reason for failure in failures}
    assert "66 bytes" in reasons["role"] and "at most 63 bytes" in reasons["role"]
    assert "schemas" in reasons
    assert not role_exists(postgres, too_long)


def test_check_refuses_bad_values_by_name(postgres: PostgresServer, database: str, mode: str) -> None:
    bad = props(postgres, database, mode, "ok_role", privilege_level="superuser", auth_mode="magic")
    reasons = {failure.property: failure.reason for failure in DatabaseAccessProvider().check({}, bad).failures}
    assert "one of read_only, read_write" in reasons["privilege_level"]
    assert "one of token, password" in reasons["auth_mode"]
    token = props(postgres, database, "token", "ok_role", principal_id="11111111-client-id")
    reasons = {failure.property: failure.reason for failure in DatabaseAccessProvider().check({}, token).failures}
    assert "object (principal) ID" in reasons["principal_id"]


def test_failure_in_the_middle_of_granting_leaves_nothing_behind(
    postgres: PostgresServer, database: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = new_role()
    real = database_access.grant_statements

    def failing_halfway(spec: database_access.AccessSpec) -> list[sql.Composed]:
        statements = real(spec)
        return [*statements[:4], sql.SQL("SELECT 1 / 0").format(), *statements[4:]]

    monkeypatch.setattr(database_access, "grant_statements", failing_halfway)
    with pytest.raises(DatabaseAccessError, match="SELECT 1 / 0 failed: division by zero; nothing was changed"):
        DatabaseAccessProvider().create(props(postgres, database, mode, role))
    assert not role_exists(postgres, role)
    with postgres.superuser(database) as su:
        acl = su.execute("SELECT relacl::text FROM pg_class WHERE relname = 'orders'").fetchone()
    assert acl is not None and role not in str(acl[0])


def test_missing_schema_is_named_and_nothing_is_created(postgres: PostgresServer, database: str, mode: str) -> None:
    role = new_role()
    with pytest.raises(DatabaseAccessError, match=r"schema\(s\) 'nope' do not exist .*'grantSchemas'"):
        DatabaseAccessProvider().create(props(postgres, database, mode, role, schemas=["public", "nope"]))
    assert not role_exists(postgres, role)


def test_unreachable_server_names_host_port_and_the_firewall_key(
    postgres: PostgresServer, database: str, mode: str
) -> None:
    from drill.postgres_server import free_port

    port = free_port()
    with pytest.raises(DatabaseAccessError) as failed:
        DatabaseAccessProvider().create(props(postgres, database, mode, new_role(), port=port, connect_attempts=3))
    message = str(failed.value)
    assert f"127.0.0.1:{port}" in message and "after 3 attempts" in message and "'deployerCidrs'" in message
    assert SERVER_ADMIN_PASSWORD not in message and APP_PASSWORD not in message


def test_wrong_admin_password_fails_at_once_without_showing_it(postgres: PostgresServer, database: str) -> None:
    wrong = "Wrong-Admin-Pw-77"
    attempts: list[float] = []
    with pytest.raises(DatabaseAccessError) as failed:
        connector = database_access.Connector(
            database_access.AccessSpec.from_props(
                props(postgres, database, "password", new_role(), connect_attempts=5)
            ),
            wrong,
            sleep=attempts.append,
        )
        with connector.connect(database):
            pass
    message = str(failed.value)
    assert "refused 'pgadmin'" in message and "password authentication failed" in message
    assert wrong not in message and attempts == []  # not transient: no retries


def test_transient_errors_are_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def refuse(**kwargs: Any) -> None:
        calls.append(kwargs["dbname"])
        raise psycopg.OperationalError("connection failed: FATAL:  the database system is starting up")

    monkeypatch.setattr(psycopg, "connect", refuse)
    sleeps: list[float] = []
    spec = database_access.AccessSpec(
        "db.example",
        5432,
        "pgadmin",
        "password",
        "app",
        "r",
        ("public",),
        "read_only",
        connect_attempts=4,
        retry_base_seconds=2.0,
    )
    with pytest.raises(DatabaseAccessError, match="after 4 attempts: connection failed"):
        with database_access.Connector(spec, "pw", sleep=sleeps.append).connect("app"):
            pass
    assert calls == ["app"] * 4 and sleeps == [2.0, 4.0, 8.0]


# --- preview: no connection ------------------------------------------------------------------


def test_check_and_diff_work_offline_with_unknowns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(**_: Any) -> None:
        raise AssertionError("check/diff must not connect")

    monkeypatch.setattr(psycopg, "connect", no_network)
    provider = DatabaseAccessProvider()
    news = {
        "host": UNKNOWN,
        "admin_user": "pulumi-deployer",
        "auth_mode": "token",
        "database": UNKNOWN,
        "role": "postgres_mcp",
        "schemas": ["public"],
        "privilege_level": "read_only",
        "principal_id": UNKNOWN,
    }
    assert provider.check({}, news).failures == []
    olds = {
        **news,
        "host": "old.example",
        "database": "app",
        "principal_id": APP_PRINCIPAL_ID,
        "grants": expected_grants(
            database_access.AccessSpec.from_props({**news, "host": "old.example", "database": "app"})
        ),
    }
    diff = provider.diff("id", olds, news)
    assert diff.changes is True and set(diff.replaces or []) == {"host", "database", "principal_id"}
    same = provider.diff("id", olds, dict(olds))
    assert same.changes is False and same.replaces == []
    assert provider.diff("id", olds, {**olds, "privilege_level": "read_write"}).replaces == []
