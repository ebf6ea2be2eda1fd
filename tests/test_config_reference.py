"""Pulumi.yaml's config block and docs/configuration.md are generated from the settings model, and stay so."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import settings
from tools import sync_config_docs

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
FIX = "the model changed: run python tools/sync_config_docs.py"


def test_pulumi_yaml_config_block_is_the_generated_one() -> None:
    current = (ROOT / "Pulumi.yaml").read_text()
    assert current == sync_config_docs.pulumi_yaml(current), FIX


def test_configuration_reference_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == sync_config_docs.reference(), FIX


def test_pulumi_yaml_declares_every_key_with_the_models_type_and_default() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert list(declared) == [key.name for key in settings.KEYS]
    for key in settings.KEYS:
        assert (declared[key.name]["type"], declared[key.name]["default"]) == (key.type, key.default), key.name


def test_each_key_has_a_description_and_says_what_it_accepts() -> None:
    for key in settings.KEYS:
        assert key.description.endswith((".", ")")), key.name
        assert key.accepted, key.name


def test_a_constraint_is_stated_once() -> None:
    # Issue 21: backupRetentionDays' "7 to 35" was in its description, its accepted-values text and a lambda.
    source = (ROOT / "settings" / "model.py").read_text()
    assert source.count("ge=7, le=35") == 1 and "7 to 35" not in source
    (key,) = [key for key in settings.KEYS if key.name == "backupRetentionDays"]
    assert key.accepted == "7 to 35" and "35" not in key.description
    reference = (ROOT / "docs" / "configuration.md").read_text()
    (row,) = [line for line in reference.splitlines() if line.startswith("| `backupRetentionDays` |")]
    assert row.count("7 to 35") == 1


def test_documented_defaults_parse_to_the_models_defaults() -> None:
    closed = {"ingressInternal": "true"}  # no config at all is refused: an anonymous public endpoint
    as_written = {key.name: sync_config_docs.yaml_scalar(key.default).strip('"') for key in settings.KEYS}
    as_written = {name: value.replace('\\"', '"') for name, value in as_written.items()}
    assert settings.parse({**as_written, **closed}, "x") == settings.parse(closed, "x")
