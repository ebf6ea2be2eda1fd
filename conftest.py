"""Test tiers, for every test under tests/ and sidecar/tests/ (the markers are listed in pyproject.toml).

Each test module says its tier once, `pytestmark = pytest.mark.<tier>`, and every test ends up
with exactly one of them; a test without one (or with two) stops the run at collection, naming it.
The default run (pyproject's addopts, `-m 'unit or program'`) is the fast loop; `--all-tiers`
runs every tier, as .ci/run does.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
# The program's modules, and the tests' own helpers (harness, engine, crossguard) by their bare names.
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

TIERS = ("unit", "program", "postgres", "drill")

# Fixtures shared by test modules (tests/): the deployer credential's, fast and across expiry; the
# Flexible-Server-shaped PostgreSQL servers of the provider's tests.
pytest_plugins = ["deployer_sign_in", "flexible_server_fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-tiers",
        action="store_true",
        help=f"run every tier ({', '.join(TIERS)}); without it, and without -m, only unit and program run",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--all-tiers"):
        config.option.markexpr = ""  # drops addopts' `-m 'unit or program'`


def _tiers(item: pytest.Item) -> list[str]:
    return sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A module with a test of no tier (or two) is a collection error that names each such test.

    At collection, before `-m` deselects anything, so an unmarked test never vanishes silently; as a
    collection report, so that it reads the same with pytest-xdist's workers (the default run) as without
    (a UsageError raised in a worker is only an INTERNALERROR at the controller)."""
    report = yield
    if report.passed:
        wrong = [
            f"{item.nodeid}: {' and '.join(_tiers(item)) or 'no tier'}"
            for item in report.result
            if isinstance(item, pytest.Item) and len(_tiers(item)) != 1
        ]
        if wrong:
            report.outcome = "failed"
            report.longrepr = (
                f"every test is marked with exactly one tier of {', '.join(TIERS)} "
                "(a module-level `pytestmark = pytest.mark.<tier>`; see pyproject.toml):\n  " + "\n  ".join(wrong)
            )
            report.result = []
    return report
