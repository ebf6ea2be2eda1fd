"""A `postgresVersion` change on the stack's own server: an upgrade only with `allowMajorVersionUpgrade`, a
downgrade never (Microsoft Learn, "Major version upgrades in Azure Database for PostgreSQL flexible server": an
in-place upgrade is offline and cannot be reverted; Azure has no downgrade). Both stop before any resource.

The record is fed the way the engine hands it over: the last update's outputs, read back by
`pulumi:pulumi:readStackOutputs` (see tests/test_create_only.py)."""

from __future__ import annotations

import functools
from typing import Any

import pulumi
import pytest
from harness import ProgramRun, RecordingMocks, run_program

pytestmark = pytest.mark.program

SERVER = "azure-native:dbforpostgresql:Server"


@functools.cache
def deployed(version: str) -> ProgramRun:
    return run_program("dev", {"postgresVersion": version})


def record_of(version: str) -> dict[str, Any]:
    return dict(deployed(version).exports["serverCreateOnly"])


def preview(record: dict[str, Any], overrides: dict[str, Any]) -> tuple[RecordingMocks, ProgramRun]:
    recording = RecordingMocks(stack_outputs={"serverCreateOnly": record})
    return recording, run_program("dev", overrides, preview=True, recording=recording)


def test_every_update_records_the_version_it_deploys() -> None:
    assert record_of("16")["postgresVersion"] == "16"
    assert deployed("16").one(SERVER).inputs["version"] == "16"


def test_the_same_version_passes() -> None:
    _, run = preview(record_of("16"), {"postgresVersion": "16"})
    assert run.one(SERVER).inputs["version"] == "16"


def test_an_upgrade_stops_at_preview_without_the_opt_in() -> None:
    recording = RecordingMocks(stack_outputs={"serverCreateOnly": record_of("16")})
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", {"postgresVersion": "17"}, preview=True, recording=recording)
    message = str(refused.value)
    assert "config key 'postgresVersion': '16' -> '17'" in message
    assert "allowMajorVersionUpgrade" in message and "offline" in message
    assert recording.resources == []


def test_the_opt_in_lets_the_upgrade_through_and_records_the_new_version() -> None:
    _, run = preview(record_of("16"), {"postgresVersion": "17", "allowMajorVersionUpgrade": True})
    assert run.one(SERVER).inputs["version"] == "17"
    assert run.exports["serverCreateOnly"]["postgresVersion"] == "17"
    # The next run compares with 17, and going back is a downgrade.
    with pytest.raises(pulumi.RunError, match="cannot downgrade"):
        preview(dict(run.exports["serverCreateOnly"]), {"postgresVersion": "16", "allowMajorVersionUpgrade": True})


@pytest.mark.parametrize("allow", [False, True])
def test_a_downgrade_is_always_refused_by_name(allow: bool) -> None:
    recording = RecordingMocks(stack_outputs={"serverCreateOnly": record_of("17")})
    with pytest.raises(pulumi.RunError) as refused:
        run_program(
            "dev", {"postgresVersion": "15", "allowMajorVersionUpgrade": allow}, preview=True, recording=recording
        )
    message = str(refused.value)
    assert "config key 'postgresVersion': '15' is not accepted" in message
    assert "PostgreSQL 17" in message and "cannot downgrade" in message
    assert recording.resources == []


def test_a_record_from_before_the_version_key_does_not_break() -> None:
    older = {key: value for key, value in record_of("17").items() if key != "postgresVersion"}
    _, run = preview(older, {"postgresVersion": "16"})  # nothing to compare with: deployed, and recorded
    assert run.exports["serverCreateOnly"]["postgresVersion"] == "16"


def test_an_adopted_server_is_not_versioned_by_the_stack() -> None:
    from preflight.version_upgrade import major_version_refusal, recorded_version

    # The adoption record carries no version: the adopted server's version is its owner's (adopt_server
    # only refuses one outside 14-17).
    assert recorded_version({"existingServerId": "/subscriptions/x/..."}) is None
    assert major_version_refusal(None, "14", allow_upgrade=False) is None
