"""Pulumi.yaml, settings.py, the docs and CI say the same thing, and what the docs tell you to
run still runs: the commands of the README and docs/ are checked offline (modules, paths,
config keys, pytest selections) and the links between the pages resolve."""

from __future__ import annotations

import importlib.util
import itertools
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

import settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# What the docs name that is not a file of this repository: made at run time (and .venv/...), by
# the user, or on another machine. Anything else that looks like a repository path must exist.
NOT_IN_THE_REPOSITORY = {
    ".drill/postgres-mcp-0.3.0",
    "policy/venv",
    "policy-config.json",
    ".vscode/mcp.json",
    "tools/list",  # an MCP method (JSON-RPC), not the tools/ folder
}
TOP_LEVEL = {path.name for path in ROOT.iterdir() if not path.name.startswith(".git")} | {".ci", ".github"}


def test_pulumi_yaml_builds_its_own_virtualenv() -> None:
    runtime = PROJECT["runtime"]
    assert runtime["name"] == "python"
    assert runtime["options"]["virtualenv"] == ".venv"
    assert PROJECT["name"] == settings.PROJECT


def test_stack_files_only_set_known_keys() -> None:
    for stack in ("dev", "prod"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key in config:
            namespace, name = key.split(":", 1)
            assert namespace == settings.PROJECT and name in settings.DEFAULTS, key


# The README and the docs -----------------------------------------------------------------------


def readme_test_commands() -> dict[str, str]:
    """The README's test commands: comment -> command, from the code block of its Test section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Test\n", 1)[1].split("\n## ", 1)[0]
    commands: dict[str, str] = {}
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL):
        for line in block.splitlines():
            command, _, comment = line.partition("#")
            commands[comment.strip()] = command.strip()
    return commands


def test_ci_runs_the_readme_test_command() -> None:
    # The README's test block marks the command that runs every tier "what .ci/run runs".
    (command,) = [command for comment, command in readme_test_commands().items() if "what .ci/run runs" in comment]
    assert command.startswith("python -m pytest"), command
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_stays_short() -> None:
    # The README is the front door (what, why, try, deploy, test, links); the manual is docs/.
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def without_fences(text: str) -> str:
    return re.sub(r"^ *```.*?^ *```", "", text, flags=re.DOTALL | re.MULTILINE)


def shell_commands(page: Path) -> list[list[str]]:
    """The simple commands of a page's bash blocks, each as its words: continuation lines joined,
    comments dropped, split at `&&`, `||`, `|`, `;` and parentheses; plus inline code that
    starts with a command the checks know (`python ...`, `pulumi config set ...`)."""
    lines: list[str] = []
    for block in re.findall(r"^ *```(?:bash|sh)\n(.*?)^ *```", page.read_text(), flags=re.DOTALL | re.MULTILINE):
        lines += block.replace("\\\n", " ").splitlines()
    lines += [
        code
        for code in re.findall(r"`([^`\n]+)`", without_fences(page.read_text()))
        if code.startswith(("python -m ", "python3 -m ", "pulumi config set "))
    ]
    commands: list[list[str]] = []
    pending = ""  # a quoted argument that spans lines (an SQL text given to psql -c) is one word
    for line in lines:
        line = pending + re.sub(r"<[^<>]*>", "<placeholder>", line)  # `<the environment's subnet>` is prose
        lexer = shlex.shlex(line, posix=True, punctuation_chars="();&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError:  # "No closing quotation": the argument goes on on the next line
            pending = line + "\n"
            continue
        pending = ""
        command: list[str] = []
        for word in words:
            if word and set(word) <= set("();&|"):
                commands.append(command)
                command = []
            else:
                command.append(word)
        commands.append(command)
    assert not pending, f"{page.name}: a quotation is never closed: {pending!r}"
    return [command for command in commands if command]


def all_commands() -> list[tuple[str, list[str]]]:
    return [(page.name, command) for page in PAGES for command in shell_commands(page)]


def python_module(command: list[str]) -> tuple[str, list[str]] | None:
    """`python -m module args` (also python3, .venv/bin/python, env assignments first)."""
    words = [word for word in command if not re.fullmatch(r"[A-Z_]+=.*", word)]
    if len(words) >= 3 and re.fullmatch(r"(\.venv/bin/)?python3?", words[0]) and words[1] == "-m":
        return words[2], words[3:]
    return None


def test_the_docs_commands_name_modules_that_exist() -> None:
    modules = {python_module(command)[0] for _, command in all_commands() if python_module(command)}  # type: ignore[index]
    assert {"drill", "pytest", "drill.benchmark"} <= modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_the_drill_commands_in_the_docs_are_accepted() -> None:
    from drill.__main__ import NAMES

    drill_commands = [
        found for _, command in all_commands() if (found := python_module(command)) and found[0] == "drill"
    ]
    assert drill_commands
    for _, arguments in drill_commands:
        for option, value in itertools.pairwise([*arguments, ""]):
            if option == "--only":
                assert value in NAMES, value
        assert set(arguments) - set(NAMES) <= {"--faults", "--only", "--help"}, arguments
    help_text = subprocess.run(
        [sys.executable, "-m", "drill", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "--only" in help_text and all(name in help_text for name in NAMES)


def test_the_docs_commands_set_only_known_config_keys() -> None:
    keys = []
    for page, command in all_commands():
        named = [word for word in command[3:] if not word.startswith("--")]
        if command[:3] == ["pulumi", "config", "set"] and named:  # `pulumi config set --secret` in prose names none
            keys.append((page, re.sub(r"\[\d+\]$", "", named[0])))
    assert len(keys) >= 10
    for page, key in keys:
        assert key == "<placeholder>" or key in settings.DEFAULTS, (page, key)


def repository_paths(page: Path) -> set[str]:
    """What a page names that looks like a path in this repository: in code spans, code blocks and
    commands; relative, starting at a top-level entry of the repository."""
    text = page.read_text()
    candidates = set(re.findall(r"`([^`\n]+)`", text))
    candidates |= {word for command in shell_commands(page) for word in command}
    paths = set()
    for candidate in candidates:
        for word in candidate.split():
            word = word.strip("\"'(),:;")
            # .venv and .drill are built by the set-up and the drill, not part of a clone.
            built = word.startswith((".venv", ".drill"))
            if {"<", "*", "$", "="} & set(word) or word in NOT_IN_THE_REPOSITORY or built:
                continue
            first = word.split("/", 1)[0]
            if first in TOP_LEVEL and ("/" in word or "." in word):
                paths.add(word)
    return paths


def test_the_paths_the_docs_name_exist() -> None:
    named = {(page.name, path) for page in PAGES for path in repository_paths(page)}
    assert ("README.md", "requirements-dev.txt") in named
    missing = sorted((page, path) for page, path in named if not (ROOT / path.rstrip("/")).exists())
    assert not missing


@cache
def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces as hyphens, -1, -2 for repeats."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", without_fences(page.read_text()), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, repeat = slug, 0
        while candidate in found:
            repeat += 1
            candidate = f"{slug}-{repeat}"
        found.add(candidate)
    return found


def test_links_between_the_pages_resolve() -> None:
    checked = 0
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", without_fences(page.read_text())):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), (page.name, target)
            if anchor:
                assert anchor in anchors(linked), (page.name, target)
            checked += 1
    assert checked >= 20


def test_every_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, page.name


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


def test_the_testing_page_says_what_each_test_file_proves() -> None:
    page = (ROOT / "docs" / "testing.md").read_text()
    files = sorted([*ROOT.glob("tests/test_*.py"), *ROOT.glob("sidecar/tests/test_*.py")])
    assert len(files) > 20
    unlisted = [str(path.relative_to(ROOT)) for path in files if path.stem not in page]
    assert not unlisted, unlisted
