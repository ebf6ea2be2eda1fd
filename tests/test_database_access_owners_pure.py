"""Owner roles (config key grantOnObjectsOwnedBy) without a server: the validation the settings model
shares, the SQL sent as each owner, the refusal's text, and how `describe` counts owners' objects."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.output import Unknown

from components.database_access import (
    AccessSpec,
    Held,
    Observed,
    describe,
    expected_grants,
    plan_diff,
    repair_statements,
    unconverged,
    validate,
    with_owner_scope,
)
from components.database_owners import (
    OWNERS_CONFIG_KEY,
    Acting,
    OwnedObjects,
    act_as,
    fix_statement,
    missing_rights_message,
    owner_grant_statements,
    owner_revoke_statements,
    validate_owner_roles,
)

pytestmark = pytest.mark.unit


def text(statements: list[Any]) -> list[str]:
    return [statement.as_string() for statement in statements]


def inputs(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "host": "db.postgres.database.azure.com",
        "port": 5432,
        "admin_user": "pulumi-deployer",
        "auth_mode": "token",
        "database": "app",
        "role": "postgres_mcp",
        "schemas": ["public", "reports"],
        "privilege_level": "read_only",
        "principal_id": "22222222-2222-2222-2222-222222222222",
        "owner_roles": ["app_owner", "Flyway"],
    }
    values.update(overrides)
    return values


# --- validation (shared with the settings model) -------------------------------------------------


def test_valid_owner_lists() -> None:
    assert validate_owner_roles([]) == []
    assert validate_owner_roles(["app_owner", "Flyway", "rôle ünï", "x" * 63]) == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("app_owner", "must be a list of role names"),
        ([""], "non-empty role names"),
        ([7], "non-empty role names"),
        (["x" * 64], "64 bytes"),
        (["a\x00b"], "NUL"),
        (["PUBLIC"], "reserved word"),
        (["current_user"], "reserved word"),
        (["pg_read_all_data"], "predefined role"),
        (["app_owner", "app_owner"], "names 'app_owner' twice"),
    ],
)
def test_invalid_owner_lists_name_the_key(value: Any, fragment: str) -> None:
    problems = validate_owner_roles(value)
    assert problems and fragment in " ".join(problems)
    assert all(problem.startswith(OWNERS_CONFIG_KEY) for problem in problems)


def test_provider_check_refuses_the_administrator_and_the_app_role_and_skips_unknowns() -> None:
    assert validate(inputs()) == []
    assert validate(inputs(owner_roles=[Unknown(), "app_owner"])) == []  # type: ignore[no-untyped-call]
    assert validate(inputs(owner_roles=Unknown())) == []  # type: ignore[no-untyped-call]
    assert [f.property for f in validate(inputs(owner_roles=["pulumi-deployer"]))] == ["owner_roles"]
    assert [f.property for f in validate(inputs(owner_roles=["postgres_mcp"]))] == ["owner_roles"]


# --- what a preview shows, and what counts as a change ------------------------------------------


def test_owner_scope_is_added_only_when_owners_are_known() -> None:
    assert with_owner_scope(inputs())["owner_scope"] == [
        "app_owner in schema public",
        "app_owner in schema reports",
        "Flyway in schema public",
        "Flyway in schema reports",
    ]
    assert "owner_scope" not in with_owner_scope(inputs(owner_roles=[]))
    assert "owner_scope" not in with_owner_scope(inputs(owner_roles=["a", Unknown()]))  # type: ignore[no-untyped-call]
    without = {key: value for key, value in inputs().items() if key != "owner_roles"}
    assert with_owner_scope(without) == without  # no owners: the inputs exactly as before


def test_changing_owners_is_an_update_in_place() -> None:
    olds = with_owner_scope(inputs())
    olds["grants"] = expected_grants(AccessSpec.from_props(olds))
    assert plan_diff(olds, with_owner_scope(inputs())).changes is False
    removed = plan_diff(olds, with_owner_scope(inputs(owner_roles=["app_owner"])))
    assert removed.changes is True and removed.replaces == []
    plain = {key: value for key, value in inputs().items() if key != "owner_roles"}
    plain_olds = {**plain, "grants": expected_grants(AccessSpec.from_props(plain))}
    assert plan_diff(plain_olds, {**plain, "owner_roles": []}).changes is False


def test_expected_grants_name_each_owner_and_schema() -> None:
    grants = expected_grants(AccessSpec.from_props(inputs(owner_roles=["app_owner"])))
    for schema in ("public", "reports"):
        assert f"SELECT ON ALL TABLES IN SCHEMA {schema} OWNED BY app_owner" in grants
        assert f"SELECT ON ALL SEQUENCES IN SCHEMA {schema} OWNED BY app_owner" in grants
        assert f"DEFAULT SELECT ON TABLES IN SCHEMA {schema} FOR ROLE app_owner" in grants
        assert f"DEFAULT SELECT ON SEQUENCES IN SCHEMA {schema} FOR ROLE app_owner" in grants
    no_owners = expected_grants(AccessSpec.from_props(inputs(owner_roles=[])))
    assert not any("app_owner" in grant for grant in no_owners)


# --- the SQL sent as an owner --------------------------------------------------------------------


def test_grants_as_an_owner_cover_its_objects_and_its_future_ones() -> None:
    owned = OwnedObjects(
        relations=(("public", "orders", "TABLE"), ("reports", "Daily", "TABLE"), ("public", "ids", "SEQUENCE")),
        schemas=("reports",),
    )
    statements = text(owner_grant_statements("mcp", ["public", "reports"], ["SELECT"], ["SELECT"], owned))
    assert statements == [
        'GRANT USAGE ON SCHEMA "reports" TO "mcp"',
        'GRANT SELECT ON TABLE "public"."orders", "reports"."Daily" TO "mcp"',
        'GRANT SELECT ON SEQUENCE "public"."ids" TO "mcp"',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "public" GRANT SELECT ON TABLES TO "mcp"',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "public" GRANT SELECT ON SEQUENCES TO "mcp"',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "reports" GRANT SELECT ON TABLES TO "mcp"',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "reports" GRANT SELECT ON SEQUENCES TO "mcp"',
    ]


def test_revokes_as_an_owner_take_back_everything_it_granted() -> None:
    owned = OwnedObjects(
        held_relations=(("public", "orders", "TABLE"), ("public", "ids", "SEQUENCE")),
        held_schemas=("reports",),
        held_routines=("public.f(integer)",),
        held_defaults=(("public", "TABLES"), ("", "SEQUENCES")),
    )
    assert text(owner_revoke_statements('m"cp', owned)) == [
        'REVOKE ALL ON TABLE "public"."orders" FROM "m""cp"',
        'REVOKE ALL ON SEQUENCE "public"."ids" FROM "m""cp"',
        'REVOKE ALL ON ROUTINE public.f(integer) FROM "m""cp"',
        'REVOKE ALL ON SCHEMA "reports" FROM "m""cp"',
        'ALTER DEFAULT PRIVILEGES IN SCHEMA "public" REVOKE ALL ON TABLES FROM "m""cp"',
        'ALTER DEFAULT PRIVILEGES REVOKE ALL ON SEQUENCES FROM "m""cp"',
    ]


def test_acting_as_an_owner_leaves_no_membership_behind() -> None:
    inner = owner_revoke_statements("mcp", OwnedObjects(held_schemas=("s",)))
    assert text(act_as(Acting("Owner", "set"), inner)) == [
        'SET ROLE "Owner"',
        'REVOKE ALL ON SCHEMA "s" FROM "mcp"',
        "RESET ROLE",
    ]
    assert text(act_as(Acting("Owner", "admin"), inner)) == [
        'GRANT "Owner" TO CURRENT_USER WITH INHERIT FALSE, SET TRUE',
        'SET ROLE "Owner"',
        'REVOKE ALL ON SCHEMA "s" FROM "mcp"',
        "RESET ROLE",
        'REVOKE "Owner" FROM CURRENT_USER GRANTED BY CURRENT_USER',
    ]
    assert text(act_as(Acting("Owner", "admin", self_granted=True), inner))[-1] == (
        'REVOKE SET OPTION FOR "Owner" FROM CURRENT_USER GRANTED BY CURRENT_USER'
    )


def test_repair_as_the_administrator_leaves_owners_defaults_to_the_owners() -> None:
    spec = AccessSpec.from_props(inputs())
    held = (
        Held("DEFAULT", "SELECT", "public", "r", "app_owner", mine=False),
        Held("DEFAULT", "SELECT", "public", "r", "someone_else", mine=False),
    )
    statements = " ".join(text(repair_statements(spec, Observed(held, frozenset({"public"}), {}), ["app_owner"])))
    assert 'FOR ROLE "someone_else"' in statements and "app_owner" not in statements


# --- the refusal ---------------------------------------------------------------------------------


def test_the_fix_is_one_statement_per_owner_for_each_version() -> None:
    assert fix_statement("app_owner", "pulumi-deployer", 170004) == (
        'GRANT "app_owner" TO "pulumi-deployer" WITH INHERIT FALSE, SET TRUE;'
    )
    assert fix_statement("app_owner", "pulumi-deployer", 150010) == 'GRANT "app_owner" TO "pulumi-deployer";'
    message = missing_rights_message("where", "pgadmin", 170004, ["flyway", "app_owner"], ["Ghost"], ["azuresu"])
    assert message.startswith(f"where: cannot act for the owner roles in config key '{OWNERS_CONFIG_KEY}'")
    assert "nothing was changed" in message and "'Ghost'" in message and "'azuresu'" in message
    assert "WITH SET TRUE or the ADMIN OPTION" in message and "'app_owner', 'flyway'" in message
    assert 'GRANT "app_owner" TO "pgadmin" WITH INHERIT FALSE, SET TRUE;' in message
    assert 'GRANT "flyway" TO "pgadmin" WITH INHERIT FALSE, SET TRUE;' in message
    assert "CREATEROLE" in missing_rights_message("where", "pgadmin", 150010, ["flyway"], [], [])


# --- how describe counts owners' objects --------------------------------------------------------


def observed(held: tuple[Held, ...], counts: dict[str, int]) -> Observed:
    by_owner = {("public", "TABLES", owner): count for owner, count in counts.items()}
    return Observed(
        held,
        frozenset({"public", "reports"}),
        {("public", "TABLES"): sum(counts.values())},
        by_owner,
        frozenset({"pulumi-deployer"}),
    )


def table(name: str, owner: str, privilege: str = "SELECT") -> Held:
    return Held("TABLE", privilege, "public", name, owner, owner=owner)


def test_describe_counts_each_owners_tables_apart() -> None:
    spec = AccessSpec.from_props(inputs(schemas=["public"], owner_roles=["app_owner"]))
    held = (table("a", "app_owner"), table("mine", "pulumi-deployer"))
    found = describe(observed(held, {"app_owner": 2, "pulumi-deployer": 1}), spec)
    assert "SELECT ON SOME TABLES IN SCHEMA public OWNED BY app_owner" in found
    assert "SELECT ON ALL TABLES IN SCHEMA public" in found  # the administrator's own, counted apart
    assert "SELECT ON SOME TABLES IN SCHEMA public" not in found
    # A role that is neither configured nor the administrator's: counted apart, never expected.
    found = describe(observed((table("t", "stranger"),), {"stranger": 1}), spec)
    assert "SELECT ON ALL TABLES IN SCHEMA public OWNED BY stranger" in found
    difference = unconverged(spec, found)
    assert difference is not None and "OWNED BY stranger" in difference


def test_without_owners_describe_reads_as_before() -> None:
    spec = AccessSpec.from_props(inputs(schemas=["public"], owner_roles=[]))
    found = describe(observed((table("a", "app_owner"),), {"app_owner": 2}), spec)
    assert "SELECT ON SOME TABLES IN SCHEMA public" in found
    assert not any("OWNED BY" in grant for grant in found)
