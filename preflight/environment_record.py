"""The environment's record: the create-only values a Container Apps environment was created with.

`internal` and `zoneRedundant` are create-only: changing one replaces the environment, and the new
one cannot take the subnet its predecessor still holds. The values are a stack output
(`environmentCreateOnly`) that the next run reads back before it declares anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

ENVIRONMENT_OUTPUT = "environmentCreateOnly"
# Properties a Container Apps environment takes only at creation; a change replaces it.
ENVIRONMENT_CREATE_ONLY = ("internal", "zoneRedundant", "appSubnetCidr")


class EnvironmentReplacementError(pulumi.RunError):
    """The environment would be replaced onto the subnet its predecessor still holds."""


def environment_create_only_values(internal: bool, zone_redundant: bool, subnet_cidr: str) -> dict[str, Any]:
    return {"internal": internal, "zoneRedundant": zone_redundant, "appSubnetCidr": subnet_cidr}


def refuse_environment_replacement_in_place(
    recorded: Mapping[str, Any] | None, declared: Mapping[str, Any]
) -> dict[str, Any]:
    """Returns `declared`, or raises when the environment would be replaced on the same subnet.

    A new environment is created before the old one is deleted, and Azure keeps a deleted
    environment's subnet reserved for a long time: the replacement needs a subnet of its own.
    """
    if isinstance(recorded, Mapping):
        changed = [
            f"{key}: {recorded[key]!r} -> {declared[key]!r}"
            for key in ENVIRONMENT_CREATE_ONLY
            if key != "appSubnetCidr" and key in recorded and recorded[key] != declared[key]
        ]
        if changed and recorded.get("appSubnetCidr") == declared["appSubnetCidr"]:
            raise EnvironmentReplacementError(
                "config key 'appSubnetCidr': the Container Apps environment is replaced when these change ("
                + "; ".join(changed)
                + f"), and the new environment cannot share subnet {declared['appSubnetCidr']} with the old one "
                "(Azure keeps a deleted environment's subnet reserved); expected a new range inside vnetCidr "
                "that does not overlap the current one. Nothing was changed."
            )
    return dict(declared)
