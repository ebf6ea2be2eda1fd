"""The decisions of the database-access provider, without a server: what counts as unknown,
which inputs are refused, what a change means, the SQL it sends and how it reads the catalogs.

Unknowns are fed in the forms the dynamic provider host really hands over: it deserializes
check/diff inputs with `keep_unknowns=True` (pulumi/dynamic/__main__.py), so an unknown is a
`pulumi.output.Unknown` object, possibly inside a list or dict; the wire form is rpc.UNKNOWN.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from pulumi.output import Unknown
from pulumi.runtime import rpc

from components import database_access
from components.database_access import (
    UNKNOWN,
    AccessSpec,
    DatabaseAccessError,
    DatabaseAccessProvider,
    Held,
    Observed,
    create_principal,
    describe,
    expected_grants,
    has_unknown,
    is_transient,
    plan_diff,
    redact,
    repair_statements,
    unconverged,
    validate,
)

pytestmark = pytest.mark.unit

PRINCIPAL = "22222222-2222-2222-2222-222222222222"


def unknown() -> Any:
    """What the host makes of rpc.UNKNOWN with keep_unknowns=True."""
    return Unknown()  # type: ignore[no-untyped-call]


def inputs(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "host": "db.postgres.database.azure.com",
        "port": 5432,
        "admin_user": "pulumi-deployer",
        "auth_mode": "token",
        "database": "app",
        "role": "postgres_mcp",
        "schemas": ["public"],
        "privilege_level": "read_only",
        "principal_id": PRINCIPAL,
    }
    values.update(overrides)
    return values


def state(**overrides: Any) -> dict[str, Any]:
    """Outputs as a create left them: the inputs plus the grants it made."""
    values = inputs(**overrides)
    return {**values, "grants": expected_grants(AccessSpec.from_props(values))}


def spec(**overrides: Any) -> AccessSpec:
    return AccessSpec.from_props(inputs(**overrides))


# --- unknowns --------------------------------------------------------------------------------


def test_the_wire_sentinel_is_the_sdks() -> None:
    assert UNKNOWN == rpc.UNKNOWN


@pytest.mark.parametrize(
    "value",
    [unknown(), UNKNOWN, ["public", unknown()], {"a": [unknown()]}, ("x", UNKNOWN)],
    # Not repr: an Unknown's repr holds its address, and pytest-xdist's workers must agree on the IDs.
    ids=["unknown", "wire-sentinel", "in-a-list", "in-a-nested-dict", "sentinel-in-a-tuple"],
)
def test_unknowns_are_recognised_in_every_form(value: Any) -> None:
    assert has_unknown(value)


@pytest.mark.parametrize("value", ["public", ["public", "reports"], {"a": 1}, None, 5432, ""], ids=repr)
def test_known_values_are_not_unknown(value: Any) -> None:
    assert not has_unknown(value)


@pytest.mark.parametrize("mode", ["token", "password"])
def test_check_of_a_first_preview_refuses_nothing_unknown(mode: str) -> None:
    # A brand-new stack: the server's name, the database's name, the identity's principal ID and
    # the generated passwords are all computed by Azure or the engine later.
    news = inputs(host=unknown(), database=unknown(), principal_id=unknown(), auth_mode=mode)
    if mode == "password":
        news.update(principal_id="", admin_password=unknown(), role_password=unknown())
    news["schemas"] = ["public", unknown()]
    assert validate(news) == []
    assert DatabaseAccessProvider().check({}, news).failures == []


def test_check_still_refuses_known_bad_values_beside_unknown_ones() -> None:
    news = inputs(host=unknown(), role="r" * 60 + "ééé", privilege_level="superuser", schemas=[unknown(), "s" * 64])
    reasons = {failure.property: failure.reason for failure in validate(news)}
    assert "66 bytes" in reasons["role"] and "at most 63 bytes" in reasons["role"]
    assert "one of read_only, read_write" in reasons["privilege_level"]
    assert "'" + "s" * 64 + "'" in reasons["schemas"]
    assert set(reasons) == {"role", "privilege_level", "schemas"}


def test_check_names_each_bad_value() -> None:
    reasons = {f.property: f.reason for f in validate(inputs(auth_mode="magic", principal_id="11111111-client-id"))}
    assert "one of token, password" in reasons["auth_mode"]
    token = validate(inputs(principal_id="11111111-client-id"))
    assert [f.property for f in token] == ["principal_id"] and "object (principal) ID" in token[0].reason
    password = validate(inputs(auth_mode="password", principal_id="", admin_password="", role_password=None))
    assert {f.property for f in password} == {"admin_password", "role_password"}


# --- what a change means ---------------------------------------------------------------------


def test_no_change_means_no_diff() -> None:
    result = plan_diff(state(), inputs())
    assert result.changes is False and result.replaces == [] and result.delete_before_replace is False


def test_a_level_change_is_an_update() -> None:
    result = plan_diff(state(), inputs(privilege_level="read_write", schemas=["public", "reports"]))
    assert result.changes is True and result.replaces == []


def test_drift_recorded_by_refresh_is_a_change() -> None:
    refreshed = {**state(), "grants": [*state()["grants"], "MEMBER OF pg_write_all_data"]}
    assert plan_diff(refreshed, inputs()).changes is True


@pytest.mark.parametrize("key", ["principal_id", "auth_mode", "database"])
def test_replacing_the_same_role_on_the_same_server_deletes_it_first(key: str) -> None:
    # create(new) would adopt the role and delete(old) would then drop it: the engine must delete first.
    value = {"principal_id": "33333333-3333-3333-3333-333333333333", "auth_mode": "password", "database": "other"}
    result = plan_diff(state(), inputs(**{key: value[key]}))
    assert result.replaces == [key] and result.delete_before_replace is True


def test_a_new_role_name_is_created_before_the_old_one_is_dropped() -> None:
    result = plan_diff(state(), inputs(role="postgres_mcp_v2"))
    assert result.replaces == ["role"] and result.delete_before_replace is False


def test_unknown_new_values_count_as_changes_and_never_decide_delete_first() -> None:
    # The identity is being replaced (its principal ID unknown) and the database too.
    result = plan_diff(state(), inputs(principal_id=unknown(), database=unknown()))
    assert result.changes is True and result.replaces == ["database", "principal_id"]
    assert result.delete_before_replace is True  # same server, same role name: known on both sides
    unknown_server = plan_diff(state(), inputs(host=unknown()))
    assert unknown_server.replaces == ["host"] and unknown_server.delete_before_replace is False
    nested = plan_diff(state(), inputs(schemas=["public", unknown()]))
    assert nested.changes is True and nested.replaces == []


def test_diff_through_the_provider_class() -> None:
    assert DatabaseAccessProvider().diff("id", state(), inputs(principal_id=unknown())).replaces == ["principal_id"]


# --- the SQL -----------------------------------------------------------------------------------


def test_token_mode_sends_flexible_servers_function_with_its_argument_order() -> None:
    rendered = create_principal("postgres_mcp", PRINCIPAL).as_string()
    assert rendered == (
        "SELECT * FROM pgaadauth_create_principal_with_oid("
        "'postgres_mcp', '22222222-2222-2222-2222-222222222222', 'service', false, false)"
    )
    assert "aad_validate_oids_in_tenant" not in rendered and "azure_ad_user" not in rendered


def held(kind: str, privilege: str, schema: str | None, name: str, grantor: str = "admin", mine: bool = True) -> Held:
    return Held(kind, privilege, schema, name, grantor, mine)


def observed(*items: Held, relations: dict[tuple[str, str], int] | None = None) -> Observed:
    return Observed(
        tuple(items),
        frozenset({"public", "reports", "pg_catalog"}),
        relations if relations is not None else {("public", "TABLES"): 2, ("public", "SEQUENCES"): 1},
    )


def test_describe_reads_all_some_and_empty_schemas() -> None:
    found = describe(
        observed(
            held("TABLE", "SELECT", "public", "orders"),
            held("TABLE", "SELECT", "public", "canary"),
            held("TABLE", "DELETE", "public", "canary", grantor="migrator"),
            held("SEQUENCE", "SELECT", "public", "orders_id_seq"),
        ),
        spec(schemas=["public", "reports"]),
    )
    assert "SELECT ON ALL TABLES IN SCHEMA public" in found
    assert found["DELETE ON SOME TABLES IN SCHEMA public"] == {"migrator"}
    assert "SELECT ON ALL SEQUENCES IN SCHEMA public" in found
    # reports has no tables or sequences: nothing it lacks there.
    assert {"SELECT ON ALL TABLES IN SCHEMA reports", "SELECT ON ALL SEQUENCES IN SCHEMA reports"} <= set(found)


def test_describe_names_defaults_memberships_attributes() -> None:
    found = describe(
        observed(
            held("DEFAULT", "SELECT", "public", "r"),
            held("DEFAULT", "INSERT", "public", "r", grantor="migrator", mine=False),
            held("DEFAULT", "EXECUTE", None, "f"),
            held("MEMBER", "MEMBER", None, "pg_read_all_stats"),
            held("MEMBER", "ADMIN", None, "pg_write_all_data"),
            held("ATTRIBUTE", "", None, "CREATEDB", grantor=""),
            held("COLUMN", "UPDATE", "public", "canary.note"),
            held("ROUTINE", "EXECUTE", "public", "f()"),
        ),
        spec(),
    )
    assert set(found) >= {
        "DEFAULT SELECT ON TABLES IN SCHEMA public",
        "DEFAULT INSERT ON TABLES IN SCHEMA public FOR ROLE migrator",
        "DEFAULT EXECUTE ON FUNCTIONS",
        "MEMBER OF pg_read_all_stats",
        "MEMBER OF pg_write_all_data WITH ADMIN OPTION",
        "ATTRIBUTE CREATEDB",
        "UPDATE ON COLUMNS IN SCHEMA public",
        "EXECUTE ON ROUTINES IN SCHEMA public",
    }


def test_repair_takes_back_everything_but_drops_nothing() -> None:
    statements = [
        s.as_string()
        for s in repair_statements(
            spec(),
            observed(
                held("TABLE", "DELETE", "reports", "daily"),
                held("DEFAULT", "INSERT", "public", "r", grantor="migrator", mine=False),
                held("DEFAULT", "UPDATE", None, "r"),
                held("MEMBER", "MEMBER", None, "pg_write_all_data"),
                held("MEMBER", "ADMIN", None, "pg_read_all_stats"),
                held("ATTRIBUTE", "", None, "CREATEDB", grantor=""),
                held("ATTRIBUTE", "", None, "NOLOGIN", grantor=""),
                held("SCHEMA", "CREATE", "gone", "gone"),  # a schema not in the database any more
            ),
        )
    ]
    assert statements == [
        'REVOKE ALL ON DATABASE "app" FROM "postgres_mcp"',
        'REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "postgres_mcp"',
        'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "public" FROM "postgres_mcp"',
        'REVOKE ALL ON ALL ROUTINES IN SCHEMA "public" FROM "postgres_mcp"',
        'REVOKE ALL ON SCHEMA "public" FROM "postgres_mcp"',
        'REVOKE ALL ON ALL TABLES IN SCHEMA "reports" FROM "postgres_mcp"',
        'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "reports" FROM "postgres_mcp"',
        'REVOKE ALL ON ALL ROUTINES IN SCHEMA "reports" FROM "postgres_mcp"',
        'REVOKE ALL ON SCHEMA "reports" FROM "postgres_mcp"',
        'ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM "postgres_mcp"',
        'ALTER DEFAULT PRIVILEGES FOR ROLE "migrator" IN SCHEMA "public" REVOKE ALL ON TABLES FROM "postgres_mcp"',
        'REVOKE "pg_write_all_data" FROM "postgres_mcp"',
        'REVOKE ADMIN OPTION FOR "pg_read_all_stats" FROM "postgres_mcp"',
        'ALTER ROLE "postgres_mcp" WITH NOCREATEDB LOGIN',
    ]
    assert not any("DROP" in statement for statement in statements)


def test_converged_means_exactly_the_declared_grants() -> None:
    declared = spec()
    exact = {grant: {"admin"} for grant in expected_grants(declared)}
    assert unconverged(declared, exact) is None
    extra = {**exact, "DELETE ON ALL TABLES IN SCHEMA legacy": {"migrator"}}
    del extra["MEMBER OF pg_read_all_stats"]
    message = unconverged(declared, extra)
    assert message == (
        "still holds DELETE ON ALL TABLES IN SCHEMA legacy (granted by migrator) and lacks MEMBER OF pg_read_all_stats"
    )


# --- failures ----------------------------------------------------------------------------------


def test_only_connection_failures_that_pass_are_transient() -> None:
    assert is_transient(psycopg.OperationalError("connection failed: FATAL:  the database system is starting up"))
    assert is_transient(psycopg.OperationalError('no pg_hba.conf entry for host "1.2.3.4"'))
    assert not is_transient(psycopg.OperationalError("password authentication failed for user x"))
    assert not is_transient(ValueError("timed out"))


def test_redact_hides_each_secret() -> None:
    assert redact("token abc and pw xyz", "abc", None, "xyz", "") == "token *** and pw ***"


def test_transient_errors_are_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def refuse(**kwargs: Any) -> None:
        calls.append(kwargs["dbname"])
        raise psycopg.OperationalError("connection failed: FATAL:  the database system is starting up")

    monkeypatch.setattr(psycopg, "connect", refuse)
    sleeps: list[float] = []
    retried = spec(auth_mode="password", connect_attempts=4, retry_base_seconds=2.0)
    with pytest.raises(DatabaseAccessError, match="after 4 attempts: connection failed"):
        with database_access.Connector(retried, "pw", sleep=sleeps.append).connect("app"):
            pass
    assert calls == ["app"] * 4 and sleeps == [2.0, 4.0, 8.0]
