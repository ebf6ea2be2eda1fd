"""Pulumi.yaml, settings.py, the README and CI say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import settings
from tools.sync_config_docs import readme_default

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def test_pulumi_yaml_declares_every_key_with_type_default_and_description() -> None:
    declared = PROJECT["config"]
    assert list(declared) == [key.name for key in settings.KEYS]
    for key in settings.KEYS:
        spec = declared[key.name]
        assert spec["type"] == key.type, key.name
        assert spec["default"] == key.default, key.name
        assert spec["description"] == key.description, key.name


def test_pulumi_yaml_builds_its_own_virtualenv() -> None:
    runtime = PROJECT["runtime"]
    assert runtime["name"] == "python"
    assert runtime["options"]["virtualenv"] == ".venv"
    assert PROJECT["name"] == settings.PROJECT


def test_readme_lists_every_key_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| \w+ \| `([^`]*)` \|", readme, flags=re.MULTILINE))
    assert rows == {key.name: readme_default(key.default) for key in settings.KEYS}


def test_stack_files_only_set_known_keys() -> None:
    for stack in ("dev", "prod"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key in config:
            namespace, name = key.split(":", 1)
            assert namespace == settings.PROJECT and name in settings.DEFAULTS, key


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_section = readme.split("## Test", 1)[1].split("##", 1)[0]
    command = re.search(r"^(python -m pytest --all-tiers\b.*)$", test_section, flags=re.MULTILINE)
    assert command is not None
    assert command.group(1) in ci.splitlines()
