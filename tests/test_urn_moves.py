"""Resources that moved to another component keep their state: an existing stack sees no replacement.

`urns_before_environment_component.json` is `default_urns.json` as it was before the Container Apps
environment became its own component (commit df1abe1). Every URN in it must still be declared, or be
named by an alias of a declared resource, so that the engine moves the resource instead of replacing it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import before_the_gateway, run_program

from components.environment import FORMER_PARENT_TYPE, with_last_type

pytestmark = pytest.mark.program

HERE = Path(__file__).parent
URNS_BEFORE_THE_MOVE = json.loads((HERE / "urns_before_environment_component.json").read_text())
URNS_NOW = json.loads((HERE / "default_urns.json").read_text())


@pytest.mark.parametrize("case", sorted(URNS_BEFORE_THE_MOVE))
def test_every_earlier_urn_is_declared_or_aliased(case: str) -> None:
    stack, mode = case.split("-")
    run = run_program(stack, {"authMode": mode})
    declared = set(run.urns.values())
    assert before_the_gateway(declared) == URNS_NOW[case]  # the sign-in gateway only adds its own
    aliased = {urn for urns in run.aliases.values() for urn in urns}
    assert set(URNS_BEFORE_THE_MOVE[case]) - declared - aliased == set()
    # An alias names what moved, never a URN that is declared too (the engine would refuse the update).
    assert aliased & declared == set()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_environment_and_its_private_dns_moved_only_their_parent(stack: str) -> None:
    run = run_program(stack, {"authMode": "token"})
    moved = {name: urns for name, urns in run.aliases.items() if urns}
    assert moved, "the environment's resources carry aliases"
    for name, (alias,) in moved.items():
        now = run.urns[name]
        assert now.split("::")[2].startswith("postgresmcp:app:Environment$")
        # Same name, same resource type: only the parent component's type differs.
        assert alias == now.replace("postgresmcp:app:Environment$", "postgresmcp:app:McpApp$", 1)
    # The app is declared under McpApp, as before.
    assert run.urns[f"pgmcp-{stack}-mcp-app"].split("::")[2] == "postgresmcp:app:McpApp$azure-native:app:ContainerApp"


def test_the_former_parent_is_the_apps_urn_as_the_engine_names_it() -> None:
    # The engine leaves the root stack out of a URN's type (the mocks keep it); either way only the last type
    # changes. The engine then builds the alias as <parent's qualified type>$<type>::<name>
    # (pkg/resource/deploy/step_generator.go, collapseAliasToUrn): the URN the resource had under McpApp.
    engine = "urn:pulumi:prod::postgres-mcp-azure::postgresmcp:app:Environment::pgmcp-prod-mcp"
    assert (
        with_last_type(engine, FORMER_PARENT_TYPE)
        == "urn:pulumi:prod::postgres-mcp-azure::postgresmcp:app:McpApp::pgmcp-prod-mcp"
    )
    mocked = "urn:pulumi:dev::p::pulumi:pulumi:Stack$postgresmcp:app:Environment::pgmcp-dev-mcp"
    assert (
        with_last_type(mocked, FORMER_PARENT_TYPE)
        == "urn:pulumi:dev::p::pulumi:pulumi:Stack$postgresmcp:app:McpApp::pgmcp-dev-mcp"
    )
