"""Test tiers, for every test under tests/ and sidecar/tests/ (the markers are listed in pyproject.toml).

Each test module says its tier once, `pytestmark = pytest.mark.<tier>`, and every test ends up
with exactly one of them; a test without one (or with two) stops the run at collection, naming it.
The default run (pyproject's addopts, `-m 'unit or program'`) is the fast loop; `--all-tiers`
runs every tier, as .ci/run does.
"""

from __future__ import annotations

import os
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


# --- Scheduling for `-n 4 --dist load --maxschedchunk 2` (.ci/run) -------------------------------------------------
# A few test modules spend minutes waiting on real clocks (the gateway's >240 s sign-in alone is over four
# minutes) and declare it as `EXPECTED_SECONDS` (measured wall time). They go first, longest first, so each
# starts at once on a worker of its own; with `--dist load --maxschedchunk 2` a worker holds at most two tests
# (xdist's LoadScheduling: chunks of two, refilled as tests end), so the one that waits behind the longest test
# is the quick test placed right after it, and every other test flows to the other workers. (worksteal would
# leave a quarter of the suite queued behind the long test: a worker answers a steal only between tests.)
# Without xdist the order is unchanged.


def _longest_first(items: list[pytest.Item]) -> list[pytest.Item]:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    expected = {
        name: float(getattr(getattr(tests[0], "module", None), "EXPECTED_SECONDS", 0))
        for name, tests in modules.items()
    }
    long_modules = sorted((name for name in modules if expected[name] > 0), key=lambda name: -expected[name])
    if not long_modules:
        return items
    quick = [item for name, tests in modules.items() if name not in long_modules for item in tests]
    longest, *others = (item for name in long_modules for item in modules[name])
    return [longest, *quick[:1], *others, *quick[1:]]


@pytest.hookimpl(trylast=True)  # after -m's deselection: xdist schedules the final list
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Only on xdist's workers, which collect the same list and send it to the controller to schedule.
    if getattr(config, "workerinput", None) is not None:
        items[:] = _longest_first(items)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (the default run's addopts): one worker more than the cores. Some program-tier tests wait on
    sockets and subprocesses, and the extra worker fills those waits: on 2 cores the default run took
    90-94 s with 2 workers, 70-76 s with 3 (and 85 s with 4)."""
    return (os.cpu_count() or 1) + 1
