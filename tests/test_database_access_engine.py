"""The database-access provider driven the way the Pulumi engine drives it: its own process
(`python -u -m pulumi.dynamic`), gRPC, `rpc`-serialized requests, the pickled provider loaded
from `__provider`, outputs handed back as olds (tests/engine.py). Against PostgreSQL 15 and 18
made to look like Flexible Server (testing/flexible_server.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engine import PROVIDER, Engine, ProviderError, ProviderHost, State
from psycopg import sql
from pulumi.output import Unknown
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2

from azure_cloud.clouds import PUBLIC, US_GOVERNMENT
from components.database_access import AccessSpec, expected_grants
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
    as_role,
    can,
    default_privileges_for,
    entra_mapping,
    entra_sign_in,
    give_right,
    login_as_app,
    new_database,
    new_name,
    owned_database,
    role_exists,
)
from testing.identity_endpoint import IdentityEndpoint
from testing.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres  # `postgres`: tests/flexible_server_fixtures.py


@pytest.fixture(scope="module")
def host(postgres: PostgresServer) -> Iterator[ProviderHost]:
    """The provider process, signed in to Entra through the local managed identity endpoint."""
    with entra_sign_in(postgres) as endpoint:
        provider_host = ProviderHost({"IDENTITY_ENDPOINT": endpoint.url, "IDENTITY_HEADER": endpoint.header})
        yield provider_host
        provider_host.close()


@pytest.fixture
def engine(host: ProviderHost) -> Iterator[Engine]:
    run = Engine(host)
    yield run
    try:
        run.destroy()
    except ProviderError:
        pass  # a test that leaves a broken resource has asserted what it wanted


def declared(postgres: PostgresServer, database: str, mode: str, role: str, **overrides: Any) -> dict[str, Any]:
    return access_props(postgres, database, mode, role, **overrides)


# --- preview: unknowns as the engine sends them ------------------------------------------------


@pytest.mark.parametrize("mode", ["token", "password"])
def test_the_first_preview_of_a_new_stack_passes_check(host: ProviderHost, mode: str) -> None:
    # Before Azure answers, the server's name, the database's name, the identity's principal ID
    # and the generated passwords are unknown; the engine sends them as rpc.UNKNOWN.
    news = {
        "host": rpc.UNKNOWN,
        "port": 5432,
        "admin_user": ENTRA_ADMIN if mode == "token" else SERVER_ADMIN,
        "auth_mode": mode,
        "database": rpc.UNKNOWN,
        "role": "postgres_mcp",
        "schemas": ["public", rpc.UNKNOWN],
        "privilege_level": "read_only",
        "principal_id": rpc.UNKNOWN if mode == "token" else "",
        "sslmode": "require",
    }
    if mode == "password":
        news.update(admin_password=rpc.UNKNOWN, role_password=rpc.UNKNOWN)
    checked, failures = host.check({}, {**news, "__provider": PROVIDER})
    assert failures == {}
    assert isinstance(checked["host"], Unknown) and isinstance(checked["schemas"][1], Unknown)
    assert Engine(host).preview(news) is None  # a new resource: nothing to diff


def test_a_preview_with_a_new_identity_plans_a_delete_first_replacement(host: ProviderHost) -> None:
    olds = {
        "host": "db.postgres.database.azure.com",
        "port": 5432,
        "admin_user": ENTRA_ADMIN,
        "auth_mode": "token",
        "database": "app",
        "role": "postgres_mcp",
        "schemas": ["public"],
        "privilege_level": "read_only",
        "principal_id": APP_PRINCIPAL_ID,
        "sslmode": "require",
    }
    run = Engine(host)
    run.state = State("db/app/postgres_mcp", olds, {**olds, "grants": expected_grants(AccessSpec.from_props(olds))})
    unchanged = run.preview(olds)
    assert unchanged.changes == provider_pb2.DiffResponse.DIFF_NONE and list(unchanged.replaces) == []
    diff = run.preview({**olds, "principal_id": rpc.UNKNOWN})
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(diff.replaces) == ["principal_id"] and diff.deleteBeforeReplace is True
    level = run.preview({**olds, "privilege_level": "read_write", "schemas": [rpc.UNKNOWN]})
    assert level.changes == provider_pb2.DiffResponse.DIFF_SOME and list(level.replaces) == []


def test_a_preview_with_unknown_owner_roles_plans_an_update_and_shows_owners_and_schemas(host: ProviderHost) -> None:
    olds = {
        "host": "db.postgres.database.azure.com",
        "port": 5432,
        "admin_user": ENTRA_ADMIN,
        "auth_mode": "token",
        "database": "app",
        "role": "postgres_mcp",
        "schemas": ["public", "reports"],
        "privilege_level": "read_only",
        "principal_id": APP_PRINCIPAL_ID,
        "sslmode": "require",
    }
    run = Engine(host)
    run.state = State("db/app/postgres_mcp", olds, {**olds, "grants": expected_grants(AccessSpec.from_props(olds))})
    # The whole list unknown, or one name unknown (taken from another resource's output).
    for owners in (rpc.UNKNOWN, ["app_owner", rpc.UNKNOWN]):
        checked, failures = host.check(olds, {**olds, "owner_roles": owners, "__provider": PROVIDER})
        assert failures == {} and "owner_scope" not in checked
        diff = run.preview({**olds, "owner_roles": owners})
        assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    # Known: check adds what the change touches, owner by schema, so `pulumi preview` shows it.
    known = {**olds, "owner_roles": ["app_owner", "flyway"]}
    checked, failures = host.check(olds, {**known, "__provider": PROVIDER})
    assert failures == {}
    assert checked["owner_scope"] == [
        "app_owner in schema public",
        "app_owner in schema reports",
        "flyway in schema public",
        "flyway in schema reports",
    ]
    diff = run.preview(known)
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    # No owners, absent or an empty list, is the same declaration: nothing to do.
    assert run.preview({**olds, "owner_roles": []}).changes == provider_pb2.DiffResponse.DIFF_NONE
    for bad in (["pg_monitor"], ["app_owner", "app_owner"], ["public"], [ENTRA_ADMIN], ["x" * 64]):
        _, failures = host.check({}, {**olds, "owner_roles": bad, "__provider": PROVIDER})
        assert set(failures) == {"owner_roles"}, bad


# --- up, refresh, destroy ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["token", "password"])
def test_up_up_refresh_destroy(postgres: PostgresServer, engine: Engine, mode: str) -> None:
    database, role = new_database(postgres, admin_of(mode)), new_name("mcp")
    wanted = declared(postgres, database, mode, role)
    assert engine.up(wanted) == ["create"]
    with login_as_app(postgres, mode, role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        assert not can(app, "DELETE FROM canary")
    assert engine.up(wanted) == []  # nothing changed, nothing done
    engine.refresh()
    assert engine.state is not None
    assert engine.state.outputs["grants"] == expected_grants(AccessSpec.from_props(wanted))
    assert SERVER_ADMIN_PASSWORD not in str(engine.state.outputs.get("grants"))
    engine.destroy()
    assert not role_exists(postgres, role)


def test_up_with_owner_roles_refresh_remove_one_destroy(postgres: PostgresServer, engine: Engine) -> None:
    database, owner, migrator = owned_database(postgres)
    admin, role = admin_of("password"), new_name("mcp")
    for each in (owner, migrator):
        give_right(postgres, each, admin, "set")
    wanted = declared(
        postgres, database, "password", role, schemas=["public", "reports"], owner_roles=[owner, migrator]
    )
    assert engine.up(wanted) == ["create"]
    assert engine.up(wanted) == []
    as_role(postgres, database, migrator, "CREATE TABLE later (x int)")
    engine.refresh()
    assert engine.state is not None
    assert engine.state.outputs["grants"] == expected_grants(AccessSpec.from_props(wanted))
    assert engine.up(wanted) == []
    with login_as_app(postgres, "password", role, database) as app:
        assert app.execute("SELECT count(*) FROM later").fetchone() == (0,)
    assert engine.up({**wanted, "owner_roles": [owner]}) == ["update"]
    assert {row[0] for row in default_privileges_for(postgres, database, role)} == {admin, owner}
    engine.destroy()
    assert not role_exists(postgres, role) and default_privileges_for(postgres, database, role) == []


# --- replacements never lose the role ---------------------------------------------------------


def test_a_new_managed_identity_replaces_the_mapping_and_keeps_the_role(
    postgres: PostgresServer, engine: Engine
) -> None:
    database, role = new_database(postgres, ENTRA_ADMIN), new_name("mcp")
    engine.up(declared(postgres, database, "token", role, principal_id=OTHER_PRINCIPAL_ID))
    assert entra_mapping(postgres, role) == OTHER_PRINCIPAL_ID
    steps = engine.up(declared(postgres, database, "token", role))
    assert steps == ["delete-replaced", "create"]
    assert entra_mapping(postgres, role) == APP_PRINCIPAL_ID
    with login_as_app(postgres, "token", role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)


def shared_database(postgres: PostgresServer) -> str:
    """Tables owned by a role both administrators are members of, so either can grant on them."""
    owner = new_name("app_owner")
    with postgres.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE azure_pg_admin").format(sql.Identifier(owner)))
        for admin in (ENTRA_ADMIN, SERVER_ADMIN):
            su.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(admin)))
    return new_database(postgres, owner)


def test_switching_auth_mode_both_ways_keeps_the_role_and_its_grants(postgres: PostgresServer, engine: Engine) -> None:
    database, role = shared_database(postgres), new_name("mcp")
    engine.up(declared(postgres, database, "token", role))
    assert engine.up(declared(postgres, database, "password", role)) == ["delete-replaced", "create"]
    assert entra_mapping(postgres, role) is None
    with postgres.connect(role, APP_PASSWORD, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    assert engine.up(declared(postgres, database, "token", role)) == ["delete-replaced", "create"]
    assert entra_mapping(postgres, role) == APP_PRINCIPAL_ID
    with login_as_app(postgres, "token", role, database) as app:
        assert app.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        assert not can(app, "INSERT INTO orders (total) VALUES (1)")
    engine.refresh()
    assert engine.state is not None
    assert engine.state.outputs["grants"] == expected_grants(AccessSpec.from_props(engine.state.inputs))


def test_a_new_role_name_is_created_before_the_old_role_is_dropped(postgres: PostgresServer, engine: Engine) -> None:
    database, old, new = new_database(postgres, ENTRA_ADMIN), new_name("mcp"), new_name("mcp")
    engine.up(declared(postgres, database, "token", old))
    assert engine.up(declared(postgres, database, "token", new)) == ["create", "delete-replaced"]
    assert role_exists(postgres, new) and not role_exists(postgres, old)


# --- drift -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["token", "password"])
def test_refresh_shows_every_out_of_band_privilege_and_up_takes_it_back(
    postgres: PostgresServer, engine: Engine, mode: str
) -> None:
    database, role = new_database(postgres, admin_of(mode)), new_name("mcp")
    wanted = declared(postgres, database, mode, role)
    engine.up(wanted)
    names = {"role": sql.Identifier(role).as_string(), "database": sql.Identifier(database).as_string()}
    for statement, _, _ in EXTRAS:
        as_admin(postgres, mode, database, statement.format(**names))
    engine.refresh()
    assert engine.state is not None
    for _, described, _ in EXTRAS:
        assert described.format(database=database) in engine.state.outputs["grants"]
    assert engine.up(wanted) == ["update"]
    engine.refresh()
    assert engine.state.outputs["grants"] == expected_grants(AccessSpec.from_props(wanted))
    with login_as_app(postgres, mode, role, database) as app:
        for _, _, forbidden in EXTRAS:
            if forbidden:
                assert not can(app, forbidden), forbidden


# --- errors the engine prints -------------------------------------------------------------------


def test_a_role_mapped_to_someone_else_is_refused_with_both_object_ids(
    postgres: PostgresServer, engine: Engine
) -> None:
    database, role = new_database(postgres, ENTRA_ADMIN), new_name("mcp")
    other = Engine(engine.host)
    other.up(declared(postgres, database, "token", role, principal_id=OTHER_PRINCIPAL_ID))
    with pytest.raises(ProviderError) as refused:
        engine.up(declared(postgres, database, "token", role))
    assert refused.value.method == "Create"
    assert f"role {role!r} already exists" in refused.value.details
    assert OTHER_PRINCIPAL_ID in refused.value.details and APP_PRINCIPAL_ID in refused.value.details
    assert entra_mapping(postgres, role) == OTHER_PRINCIPAL_ID
    other.destroy()


def test_a_failure_prints_no_password(postgres: PostgresServer, engine: Engine) -> None:
    database = new_database(postgres, SERVER_ADMIN)
    wanted = declared(postgres, database, "password", new_name("mcp"), admin_password="Wrong-Admin-Pw-77")
    with pytest.raises(ProviderError) as refused:
        engine.up(wanted)
    assert "password authentication failed" in refused.value.details
    assert "Wrong-Admin-Pw-77" not in refused.value.details and APP_PASSWORD not in refused.value.details


# --- the stack's cloud: the administrator's token audience (azure_cloud/clouds.py) ------------------------------


def test_a_stack_from_before_the_scope_input_sees_no_change_when_it_arrives(
    postgres: PostgresServer, engine: Engine
) -> None:
    database, role = new_database(postgres, ENTRA_ADMIN), new_name("mcp")
    before = declared(postgres, database, "token", role)
    assert "entra_scope" not in before  # as DatabaseAccess declared it before the input existed
    assert engine.up(before) == ["create"]
    now = {**before, "entra_scope": PUBLIC.ossrdbms_scope}
    assert engine.preview(now).changes == provider_pb2.DiffResponse.DIFF_NONE
    assert engine.up(now) == []
    moved = engine.preview({**now, "entra_scope": US_GOVERNMENT.ossrdbms_scope})
    assert moved.changes == provider_pb2.DiffResponse.DIFF_SOME and list(moved.replaces) == []


def test_a_us_government_stack_signs_in_with_a_token_for_its_own_cloud(postgres: PostgresServer) -> None:
    # A managed identity endpoint that issues PostgreSQL tokens for the US Government audience only, each one the
    # administrator's password until it expires, as the server would accept it.
    identity = IdentityEndpoint(
        resource=US_GOVERNMENT.ossrdbms_resource_id, on_mint=postgres.token_becomes_password(ENTRA_ADMIN)
    ).start()
    provider_host = ProviderHost({"IDENTITY_ENDPOINT": identity.url, "IDENTITY_HEADER": identity.header})
    run = Engine(provider_host)
    try:
        database, role = new_database(postgres, ENTRA_ADMIN), new_name("mcp")
        assert run.up(declared(postgres, database, "token", role, entra_scope=US_GOVERNMENT.ossrdbms_scope)) == [
            "create"
        ]
        assert entra_mapping(postgres, role) == APP_PRINCIPAL_ID
        assert run.state is not None and run.state.outputs["entra_scope"] == US_GOVERNMENT.ossrdbms_scope
        assert {tuple(request.query["resource"]) for request in identity.requests} == {
            ("https://ossrdbms-aad.database.usgovcloudapi.net",)
        }
        run.destroy()  # from the state's outputs: the same cloud's token again
        assert not role_exists(postgres, role)
    finally:
        provider_host.close()
        identity.stop()
