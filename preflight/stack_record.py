"""What this stack's last completed update exported: the record that create-only guards compare with.

Azure replaces a resource when one of its create-only properties changes, and a replaced
server starts empty; a replaced Container Apps environment cannot reuse its subnet. A Pulumi
program does not see the previous state, so each run exports the create-only values it
declares, and the next run reads them back before it declares anything.
"""

from __future__ import annotations

from typing import Any

import pulumi

READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"


def own_stack_outputs() -> dict[str, Any]:
    """The outputs of this stack's last completed update; empty before the first one.

    `pulumi:pulumi:readStackOutputs` is the engine's built-in invoke behind stack references
    (pulumi/pulumi pkg/resource/deploy/builtins.go): it reads a stack's outputs from the backend,
    here this very stack's. An update writes its own outputs only when the program ends, so this
    is the previous update's record, in `pulumi preview` as in `pulumi up`. The invoke is
    synchronous: a refusal happens before the program declares any resource, so not even
    `pulumi up --skip-preview` (the Automation API behind pulumi/actions) changes anything.
    """
    own_stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": own_stack})
    outputs = (result.value or {}).get("outputs")
    return dict(outputs) if isinstance(outputs, dict) else {}
