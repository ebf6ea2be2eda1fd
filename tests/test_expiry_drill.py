"""Token mode against the real postgres-mcp 0.3.0: the expiry drill as a test.

Each scenario runs postgres-mcp (its own Python >= 3.12 virtualenv, built on first use),
the MCP client over SSE, a local PostgreSQL whose tokens expire, the local identity
endpoint and, in token mode, the project's refresher exactly as the sidecar runs it.
"""

from __future__ import annotations

import fcntl
import functools
import os
import pickle
from pathlib import Path

import pytest

from drill import scenarios
from drill.postgres_mcp_venv import ensure_venv

pytestmark = pytest.mark.drill
# Wall time, mostly real-clock waits (the drill's scenarios on real clocks):
# conftest.py starts this module first under xdist.
EXPECTED_SECONDS = 150


@pytest.fixture(scope="session")
def venv() -> Path:
    return ensure_venv(log=False)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a scenario's run is kept for every test process: pytest-xdist's workers share the parent."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


PROGRESS: dict[str, list[str]] = {}


@functools.cache
def drilled(name: str, venv: Path, runs: Path) -> scenarios.Result:
    """One run per scenario, whichever test (and worker) asks first; the others read it."""
    stored = runs / f"drill-{name}.pickle"
    with open(runs / f"drill-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stored.exists():
            kept: tuple[scenarios.Result, list[str]] = pickle.loads(stored.read_bytes())  # noqa: S301 (this run's own)
            result, progress = kept
        else:
            progress = []
            result = scenarios.run(scenarios.SCENARIOS[name], venv, progress.append)
            stored.write_bytes(pickle.dumps((result, progress)))
    PROGRESS[name] = progress
    return result


def test_the_drill_reports_progress_while_the_calls_run(venv: Path, runs: Path) -> None:
    result = drilled("refresher", venv, runs)
    lines = PROGRESS["refresher"]
    assert any("PostgreSQL up" in line for line in lines) and any("postgres-mcp serving" in line for line in lines)
    # One line every 10 s of the 30 s run, with the counts so far.
    ticks = [line for line in lines if ": +" in line and "calls" in line and "tokens minted" in line]
    assert len(ticks) >= int(result.scenario.duration // scenarios.PROGRESS_EVERY) - 1, lines


def test_token_baked_into_the_uri_fails_after_expiry_and_never_recovers(venv: Path, runs: Path) -> None:
    result = drilled("baked", venv, runs)
    assert scenarios.judge(result) == [], scenarios.timeline(result)
    assert len(result.minted) == 1
    assert all("couldn't get a connection" in call.detail for call in result.failed)
    assert any("EXPIRED" in text for _, source, text in result.events if source == "postgres")
    assert not result.calls[-1].ok


def test_refresher_keeps_every_call_working_across_many_expiries(venv: Path, runs: Path) -> None:
    result = drilled("refresher", venv, runs)
    assert scenarios.judge(result) == [], scenarios.timeline(result)
    assert result.failed == []
    assert len(result.minted) >= 6  # 30 s of 6 s tokens
    assert result.reconnections() >= 8  # the pool really logged in again and again, each time from the file
    # Probed all along, the healthy refresher never says otherwise.
    first_ok = next(when for when, status, _ in result.health if status == "200")
    assert {status for when, status, _ in result.health if when >= first_ok} == {"200"}
    assert len(result.health) >= 60


@pytest.mark.parametrize("name", ["short-outage", "garbage", "refresher-restart"])
def test_faults_shorter_than_a_token_cost_no_call(venv: Path, runs: Path, name: str) -> None:
    result = drilled(name, venv, runs)
    assert scenarios.judge(result) == [], scenarios.timeline(result)
    assert result.failed == []


def test_long_outage_fails_while_down_then_recovers_without_restart(venv: Path, runs: Path) -> None:
    result = drilled("long-outage", venv, runs)
    assert scenarios.judge(result) == [], scenarios.timeline(result)
    assert result.failed
    assert any("wrote" in line and "failure(s)" in line for line in result.refresher_log)  # it recovered itself
    # The health endpoint (what the sidecar's liveness probe calls) turned unhealthy before the
    # first call failed, naming the expiring token, and healthy again once the endpoint was back.
    first_failure = result.failed[0].t
    unhealthy = [(when, reason) for when, status, reason in result.health if status == "503"]
    assert unhealthy and unhealthy[0][0] < first_failure, scenarios.timeline(result)
    assert "expires in" in unhealthy[0][1]
    back = result.start + next(fault.at for fault in result.scenario.faults if fault.action == "ok")
    assert any(status == "200" and when > back for when, status, _ in result.health)
    assert result.health[-1][1] == "200"
    assert [status for _, status, _ in result.health_changes()][-2:] == ["503", "200"]
    print(f"health 503 {first_failure - unhealthy[0][0]:.1f}s before the first failed call")
