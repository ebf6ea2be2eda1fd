"""What this stack's last completed update exported: the record that create-only guards compare with.

Azure replaces a resource when one of its create-only properties changes, and a replaced
server starts empty; a replaced Container Apps environment cannot reuse its subnet. A Pulumi
program does not see the previous state, so each run exports the create-only values it
declares, and the next run reads them back before it declares anything.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi

READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"

# How a DIY backend in the legacy layout (no project folders, `.pulumi/meta.yaml` absent or version 0)
# refuses a qualified name: its `legacyReferenceStore.ParseReference` hands the whole name to
# `tokens.ParseStackName` (pulumi/pulumi pkg/backend/diy/store.go, sdk/go/common/tokens/stack_name.go), which
# accepts only [A-Za-z0-9_.-] and reports the first other character ("a stack name may only contain
# alphanumeric, hyphens, underscores, or periods: invalid character '/' at position ..."); older
# versions said "stack names may not contain slashes". The project layout (store version 1) and Pulumi
# Cloud accept `organization/project/stack`.
QUALIFIED_NAME_REFUSED = re.compile(
    r"may only contain alphanumeric|may not contain slashes|invalid character '/'", re.IGNORECASE
)


class StackRecordError(pulumi.RunError):
    """The stack's own outputs cannot be read: the guards would have nothing to compare with."""


def _read(name: str) -> dict[str, Any]:
    result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": name})
    outputs = (result.value or {}).get("outputs")
    return dict(outputs) if isinstance(outputs, dict) else {}


def own_stack_outputs() -> dict[str, Any]:
    """The outputs of this stack's last completed update; empty before the first one.

    `pulumi:pulumi:readStackOutputs` is the engine's built-in invoke behind stack references
    (pulumi/pulumi pkg/resource/deploy/builtins.go): it reads a stack's outputs from the backend,
    here this very stack's. An update writes its own outputs only when the program ends, so this
    is the previous update's record, in `pulumi preview` as in `pulumi up`. The invoke is
    synchronous: a refusal happens before the program declares any resource, so not even
    `pulumi up --skip-preview` (the Automation API behind pulumi/actions) changes anything.

    The name is `organization/project/stack` (Pulumi Cloud, and DIY backends in the project layout, whose
    organization is always `organization`); a DIY backend in the legacy layout knows stacks by their bare
    name only and refuses the qualified one, so that one is asked for by its bare name. Any other failure
    stops the run: a guard without its record would let a replacement through.
    """
    own_stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    try:
        return _read(own_stack)
    except Exception as error:  # noqa: BLE001 (an invoke raises a plain Exception with the engine's message)
        if not QUALIFIED_NAME_REFUSED.search(str(error)):
            raise StackRecordError(
                f"cannot read this stack's own outputs ({own_stack}), which hold the records the create-only "
                f"guards compare with: {error}. Nothing was changed."
            ) from None
        qualified_error = error
    try:
        return _read(pulumi.get_stack())
    except Exception as error:  # noqa: BLE001
        raise StackRecordError(
            f"cannot read this stack's own outputs: the backend refused '{own_stack}' ({qualified_error}) and "
            f"'{pulumi.get_stack()}' ({error}). A DIY backend in the legacy layout names stacks without their "
            "project: run `pulumi state upgrade` once to move it to the project layout, then run pulumi again. "
            "Nothing was changed."
        ) from None
