"""The stack reads its own record on every backend: Pulumi Cloud, a DIY backend in the project layout and one
in the legacy layout, which knows stacks by their bare name only.

The mocks answer `pulumi:pulumi:readStackOutputs` the way each backend's `ParseStackReference` does
(pulumi/pulumi pkg/backend/diy/store.go): the legacy layout hands the whole name to `tokens.ParseStackName`
(sdk/go/common/tokens/stack_name.go), which refuses a '/' with "a stack name may only contain alphanumeric,
hyphens, underscores, or periods: invalid character '/' at position N"; the project layout takes
`organization/<project>/<stack>` (its organization is always `organization`) or a bare name.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from harness import PROJECT, RecordingMocks, run_program

pytestmark = pytest.mark.program

RECORD = {
    "serverNamePrefix": "pgmcp-dev-pg-",
    "location": "westeurope",
    "administratorLogin": "pgadmin",
    "backup.geoRedundantBackup": "Disabled",
}


def parse_stack_name(name: str) -> str | None:
    """tokens.ParseStackName's refusal, or None."""
    for position, character in enumerate(name):
        if not (character.isalnum() or character in "-_."):
            return (
                "a stack name may only contain alphanumeric, hyphens, underscores, or periods: "
                f"invalid character '{character}' at position {position}"
            )
    return None


class Backend(RecordingMocks):
    """Answers `readStackOutputs` like one backend holding this stack's outputs."""

    def __init__(self, layout: str, stack_outputs: dict[str, Any] | None = None) -> None:
        super().__init__(stack_outputs=stack_outputs)
        self.layout = layout
        self.names_asked: list[str] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        if args.token != "pulumi:pulumi:readStackOutputs":
            return super().call(args)
        self.calls.append((args.token, dict(args.args)))
        name = str(args.args["name"])
        self.names_asked.append(name)
        stack = pulumi.get_stack()
        if self.layout == "forbidden":
            return {}, [("", "[403] Forbidden: the token may not read stacks")]
        if self.layout == "diy-legacy":
            refusal = parse_stack_name(name)
            if refusal is not None:
                return {}, [("", refusal)]
            if name != stack:
                return {}, [("", f"no stack named '{name}' found")]
        elif self.layout == "diy-legacy-renamed":  # the qualified name refused, the bare one not found
            refusal = parse_stack_name(name)
            return {}, [("", refusal or f"no stack named '{name}' found")]
        elif name not in (f"organization/{PROJECT}/{stack}", stack):  # Pulumi Cloud, DIY project layout
            return {}, [("", f"no stack named '{name}' found")]
        return {"name": name, "outputs": self.stack_outputs, "secretOutputNames": []}


@pytest.mark.parametrize("layout", ["cloud", "diy-project"])
def test_the_qualified_name_is_read_where_the_backend_takes_it(layout: str) -> None:
    backend = Backend(layout, {"serverCreateOnly": RECORD})
    run_program("dev", {}, preview=True, recording=backend)
    assert backend.names_asked == [f"organization/{PROJECT}/dev"]


def test_a_legacy_diy_backend_is_asked_by_the_bare_stack_name() -> None:
    backend = Backend("diy-legacy", {"serverCreateOnly": RECORD})
    run = run_program("dev", {}, preview=True, recording=backend)
    assert backend.names_asked == [f"organization/{PROJECT}/dev", "dev"]
    assert run.exports["serverCreateOnly"]["serverNamePrefix"] == "pgmcp-dev-pg-"


def test_the_guards_still_hold_on_a_legacy_diy_backend() -> None:
    # The record read by the bare name is the one the create-only guard compares with.
    backend = Backend("diy-legacy", {"serverCreateOnly": RECORD})
    with pytest.raises(pulumi.RunError, match=r"location: 'westeurope' -> 'northeurope'"):
        run_program("dev", {"location": "northeurope"}, preview=True, recording=backend)
    assert backend.resources == []


def test_a_backend_that_refuses_both_names_stops_with_the_upgrade_advice() -> None:
    backend = Backend("diy-legacy-renamed")
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", {}, preview=True, recording=backend)
    message = str(refused.value)
    assert "pulumi state upgrade" in message and "invalid character '/'" in message
    assert backend.resources == []


def test_any_other_failure_stops_the_run_instead_of_guarding_nothing() -> None:
    backend = Backend("forbidden")
    with pytest.raises(pulumi.RunError, match=r"cannot read this stack's own outputs.*403"):
        run_program("dev", {}, preview=True, recording=backend)
    assert backend.names_asked == [f"organization/{PROJECT}/dev"]  # no second guess on a failure of access
    assert backend.resources == []
