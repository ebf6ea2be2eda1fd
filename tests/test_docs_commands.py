"""The pytest commands the docs give collect tests: each is run as `pytest --collect-only` in a process of its own
(the helpers that find the commands are tests/test_docs.py's). In the drill tier, with the other tests that start
processes: eight pytest collections cost the default loop about 9 s."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from test_docs import ROOT, all_commands, python_module

pytestmark = pytest.mark.drill


def test_the_docs_pytest_commands_collect_tests() -> None:
    selections: set[tuple[str, ...]] = set()
    for _, command in all_commands():
        found = python_module(command)
        if found and found[0] == "pytest":
            arguments: list[str] = []
            skip = False
            for word in found[1]:
                if skip:
                    skip = False
                elif word in ("-n", "--numprocesses"):
                    skip = True  # collection alone needs no workers
                elif word not in ("-x", "-q"):
                    arguments.append(word)
            selections.add(tuple(arguments))
    assert () in selections
    for selection in selections:
        collected = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *selection],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert collected.returncode == 0, (selection, collected.stdout[-2000:], collected.stderr[-2000:])
        assert re.search(r"^\d+(/\d+)? tests? collected", collected.stdout, flags=re.MULTILINE), selection
