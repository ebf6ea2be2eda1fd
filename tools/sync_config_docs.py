"""Writes the `config:` block of Pulumi.yaml and docs/configuration.md from the settings model.

Run after adding or changing a key: `python tools/sync_config_docs.py`. tests/test_config_reference.py
fails when either file differs from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from settings import KEYS, PROJECT  # noqa: E402 (after the path is set)

PULUMI_YAML = ROOT / "Pulumi.yaml"
REFERENCE = ROOT / "docs" / "configuration.md"


def yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, list)):
        return json.dumps(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def config_block() -> str:
    lines = ["config:"]
    for key in KEYS:
        lines.append(f"  {key.name}:")
        lines.append(f"    type: {key.type}")
        if key.type == "array":
            lines += ["    items:", "      type: string"]
        description = f"{key.description} Accepted: {key.accepted}." if key.accepted else key.description
        lines.append(f"    description: {yaml_scalar(description)}")
        lines.append(f"    default: {yaml_scalar(key.default)}")
    return "\n".join(lines) + "\n"


def pulumi_yaml(current: str) -> str:
    """Pulumi.yaml with its `config:` block (the file's last section) written anew."""
    return current[: current.index("config:\n")] + config_block()


def _default(value: object) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list):
        return f"`{json.dumps(value)}`"
    return '`""`' if value == "" else f"`{value}`"


def _cell(text: str) -> str:
    """Plain text in a Markdown table cell: no HTML tags or emphasis; backslashes and pipes kept."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def reference() -> str:
    rows = [
        "# Configuration reference",
        "",
        "<!-- Generated from settings/model.py by `python tools/sync_config_docs.py`: edit the model, not this",
        "file. tests/test_config_reference.py holds the two equal. -->",
        "",
        f"Every key of the `{PROJECT}` project, with its type, its default, the values it accepts and what it",
        "means. Pulumi.yaml declares the same keys with the same defaults. A stack sets a key in its",
        "`Pulumi.<stack>.yaml` (or with `pulumi config set`); an array is a YAML list there, a boolean is",
        "`true` or `false`. The program validates every key before it declares anything and reports every bad",
        "value at once, each by its key. From the command line, a list item is set by path:",
        "`pulumi config set --path 'deployerCidrs[0]' 203.0.113.7`; a secret with `--secret`.",
        "",
        "| Key | Type | Default | Accepted | Description |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows += [
        f"| `{key.name}` | {key.type} | {_default(key.default)} | {_cell(key.accepted)} | {key.description} |"
        for key in KEYS
    ]
    return "\n".join(rows) + "\n"


def main() -> None:
    PULUMI_YAML.write_text(pulumi_yaml(PULUMI_YAML.read_text()))
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(reference())


if __name__ == "__main__":
    main()
