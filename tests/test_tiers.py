"""The test tiers hold: every test has exactly one, and the default run is the fast loop.

Runs pytest itself in a subprocess, on a throwaway test file beside a copy of the repository's
conftest.py and pyproject.toml, and on the repository's own tests (collection only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The drill tier, with the other tests that start processes: each test here runs pytest in a process of its
# own (about 1.5 s each), too slow for the default loop.
pytestmark = pytest.mark.drill

ROOT = Path(__file__).resolve().parent.parent


def pytest_in(directory: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    # The repository on the path: the copied conftest loads fixtures from tests/.
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *arguments],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )


def project_with(tmp_path: Path, test_file: str) -> Path:
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "test_sample.py").write_text(test_file)
    return tmp_path


# The default run spreads tests over pytest-xdist's workers (addopts `-n auto`); `-n 0` runs in one process.
# Either way a wrong tier is a collection error of its module, and no test of the run passes unnoticed.
WORKERS = pytest.mark.parametrize("workers", ["-nauto", "-n0"])
COLLECTION_FAILED = (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.TESTS_FAILED)  # without xdist, with it


@WORKERS
def test_a_test_without_a_tier_fails_collection_naming_it(tmp_path: Path, workers: str) -> None:
    project = project_with(
        tmp_path,
        "import pytest\n\n\n"
        "@pytest.mark.unit\ndef test_with_a_tier():\n    pass\n\n\n"
        "def test_forgotten():\n    pass\n",
    )
    result = pytest_in(project, workers, "test_sample.py")
    assert result.returncode in COLLECTION_FAILED, result.stdout + result.stderr
    assert "ERROR collecting test_sample.py" in result.stdout and "1 error" in result.stdout
    assert "test_sample.py::test_forgotten: no tier" in result.stdout
    assert "test_with_a_tier:" not in result.stdout and "passed" not in result.stdout


@WORKERS
def test_a_test_with_two_tiers_fails_collection_naming_both(tmp_path: Path, workers: str) -> None:
    project = project_with(
        tmp_path,
        "import pytest\n\npytestmark = pytest.mark.program\n\n\n@pytest.mark.unit\ndef test_both():\n    pass\n",
    )
    result = pytest_in(project, workers, "test_sample.py")
    assert result.returncode in COLLECTION_FAILED, result.stdout + result.stderr
    assert "test_sample.py::test_both: program and unit" in result.stdout


def test_an_untiered_test_is_not_deselected_silently_by_the_default_selection(tmp_path: Path) -> None:
    # `-m 'unit or program'` would drop a test with no tier without a word: the check runs first.
    project = project_with(tmp_path, "def test_forgotten():\n    pass\n")
    result = pytest_in(project, "test_sample.py")
    assert result.returncode in COLLECTION_FAILED, result.stdout + result.stderr
    assert "test_sample.py::test_forgotten: no tier" in result.stdout


def test_a_test_with_one_tier_runs(tmp_path: Path) -> None:
    project = project_with(tmp_path, "import pytest\n\npytestmark = pytest.mark.unit\n\n\ndef test_fine():\n    pass\n")
    result = pytest_in(project, "test_sample.py")
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert "1 passed" in result.stdout


# One module or folder of each tier: collecting the whole suite twice would cost the fast loop seconds.
SAMPLE = ("tests/test_docs.py", "tests/test_database_access_tls.py", "tests/test_expiry_drill.py", "sidecar/tests")


def collected(*arguments: str) -> set[str]:
    result = pytest_in(ROOT, "--collect-only", "-q", *arguments, *SAMPLE)
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_the_default_run_leaves_the_slow_tiers_out() -> None:
    default = collected()
    slow = collected("-m", "postgres or drill")
    assert default and slow and default.isdisjoint(slow)
    for module in ("tests/test_expiry_drill.py", "tests/test_database_access_tls.py", "test_token_refresher_clock.py"):
        assert any(module in test for test in slow) and not any(module in test for test in default), module
    for module in ("tests/test_docs.py", "test_token_refresher.py", "test_token_refresher_decisions.py"):
        assert any(module in test for test in default), module


def test_modules_that_declare_their_expected_seconds_start_first_on_their_workers(tmp_path: Path) -> None:
    # conftest.py runs long modules first (collected last, they still start at once) and, behind the longest,
    # one quick test: a worker under `--dist load --maxschedchunk 2` holds two tests, and only one waits.
    record = tmp_path / "order.txt"
    quick = "\n".join(f"def test_quick_{n}():\n    log('quick_{n}')\n" for n in range(30))
    helper = (
        "import os\nimport pytest\n\npytestmark = pytest.mark.unit\n\n\n"
        f"def log(name):\n    with open({str(record)!r}, 'a') as f:\n"
        "        f.write(os.environ.get('PYTEST_XDIST_WORKER', '-') + ' ' + name + '\\n')\n\n\n"
    )
    project = project_with(tmp_path, helper + quick)
    (project / "test_z_long.py").write_text(
        helper + "EXPECTED_SECONDS = 60\n\n\n" + "def test_long():\n    log('long')\n"
    )
    (project / "test_z_longer.py").write_text(
        helper + "EXPECTED_SECONDS = 90\n\n\n" + "def test_longer():\n    log('longer')\n"
    )
    files = ("test_sample.py", "test_z_long.py", "test_z_longer.py")
    result = pytest_in(project, "-n", "2", "--dist", "load", "--maxschedchunk", "2", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    runs: dict[str, list[str]] = {}
    for line in record.read_text().splitlines():
        worker, name = line.split()
        runs.setdefault(worker, []).append(name)
    # The longest is the first test its worker runs, the other long one among its worker's first three
    # (collection order would run both last, after the 30 quick tests).
    (longer_runs,) = [names for names in runs.values() if "longer" in names]
    (long_runs,) = [names for names in runs.values() if "long" in names]
    assert longer_runs[0] == "longer" and "long" in long_runs[:3], runs
