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


# --- Scheduling for `-n N --dist worksteal` (.ci/run) ------------------------------------------------------------
# worksteal hands each worker one contiguous slice of the collection (xdist's WorkStealingScheduling: the i-th
# of N idle workers gets len(pending) // (N - i) items), then idle workers steal the tail of the longest queue.
# A long test in the middle of a slice starts late and ends the run late: the gateway's >240 s sign-in alone is
# over four minutes. So modules that declare `EXPECTED_SECONDS` (measured wall time, mostly spent waiting on real
# clocks) are dealt out first, longest first, each to the slice with the least expected time, and placed at the
# head of their slice, so every long module starts at once on its own worker; the other tests fill the slices
# in their usual order. Without xdist, or with another --dist, the order is unchanged.


def _slice_sizes(count: int, workers: int) -> list[int]:
    sizes = []
    for index in range(workers):
        sizes.append(count // (workers - index))
        count -= sizes[-1]
    return sizes


def _long_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    sizes = _slice_sizes(len(items), workers)
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    expected = {
        name: float(getattr(getattr(tests[0], "module", None), "EXPECTED_SECONDS", 0))
        for name, tests in modules.items()
    }
    long_modules = sorted((name for name in modules if expected[name] > 0), key=lambda name: -expected[name])
    slices: list[list[pytest.Item]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for name in long_modules:
        fits = [i for i in range(workers) if len(slices[i]) + len(modules[name]) <= sizes[i]] or list(range(workers))
        chosen = min(fits, key=lambda i: load[i])
        slices[chosen].extend(modules[name])
        load[chosen] += expected[name]
    rest = iter(item for name, tests in modules.items() if name not in long_modules for item in tests)
    for index, size in enumerate(sizes):
        slices[index].extend(item for _, item in zip(range(size - len(slices[index])), rest, strict=False))
    ordered = [item for part in slices for item in part]
    ordered.extend(rest)  # only if a long module overfilled its slice
    return ordered


@pytest.hookimpl(trylast=True)  # after -m's deselection: xdist slices the final list
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)  # set on xdist workers, which collect the same list
    if workerinput is None or config.getoption("dist", "no") != "worksteal":
        return
    workers = int(workerinput["workercount"])
    if workers > 1:
        items[:] = _long_first(items, workers)
