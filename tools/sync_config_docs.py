"""Rewrites the `config:` block of Pulumi.yaml and the configuration reference's table
(docs/configuration.md) from settings.KEYS.

Run after adding or changing a key: `python tools/sync_config_docs.py`. tests/test_docs.py
fails when the three disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402 (after the path is set)

TABLE_HEADER = "| Key | Type | Default | Meaning |"


def yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, list)):
        return json.dumps(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def readme_default(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return '""' if value == "" else str(value)


def config_block() -> str:
    lines = ["config:"]
    for key in settings.KEYS:
        lines.append(f"  {key.name}:")
        lines.append(f"    type: {key.type}")
        if key.type == "array":
            lines += ["    items:", "      type: string"]
        lines.append(f"    description: {yaml_scalar(key.description)}")
        lines.append(f"    default: {yaml_scalar(key.default)}")
    return "\n".join(lines) + "\n"


def config_table() -> str:
    rows = [TABLE_HEADER, "| --- | --- | --- | --- |"]
    rows += [f"| `{k.name}` | {k.type} | `{readme_default(k.default)}` | {k.description} |" for k in settings.KEYS]
    return "\n".join(rows) + "\n"


def main() -> None:
    project = ROOT / "Pulumi.yaml"
    text = project.read_text()
    project.write_text(text[: text.index("config:\n")] + config_block())
    reference = ROOT / "docs" / "configuration.md"
    text = reference.read_text()
    start = text.index(TABLE_HEADER)
    end = text.find("\n\n", start)
    reference.write_text(text[:start] + config_table() + (text[end + 1 :] if end != -1 else ""))


if __name__ == "__main__":
    main()
