"""A virtualenv with the real postgres-mcp 0.3.0, as its container image runs it.

postgres-mcp needs Python >= 3.12. PyPI's postgres-mcp 0.3.0 pins pglast==7.2.0, which
the registry lacks, so its dependencies are installed first, at the versions that the
crystaldba/postgres-mcp:0.3.0 image locks (pglast as the nearest 7.x), and postgres-mcp
last without dependencies: installed in that order pip has no pin of postgres-mcp's to
check the newer pglast against, and prints no resolver `ERROR:` about it. Built once under
.drill/ and reused while this list is unchanged; the build shows each step and its time,
and pip's own output only when a step fails.
"""

from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".drill" / "postgres-mcp-0.3.0"
POSTGRES_MCP = "postgres-mcp==0.3.0"
PROGRESS_SECONDS = 5
DEPENDENCIES = (
    "mcp[cli]==1.6.0",
    "psycopg[binary]==3.2.6",
    "psycopg-pool==3.2.6",
    "pglast>=7.2,<8",
    "humanize==4.12.2",
    "attrs==25.3.0",
    "instructor==1.7.9",
    "pydantic==2.11.1",
    "pydantic-core==2.33.0",
    "pydantic-settings==2.8.1",
    "starlette==0.46.1",
    "sse-starlette==2.2.1",
    "uvicorn==0.34.0",
    "anyio==4.9.0",
    "httpx==0.28.1",
    "httpx-sse==0.4.0",
)


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out[0]), int(out[1])


def find_python() -> str:
    """A Python >= 3.12, 3.12 first (the image's): $DRILL_PYTHON, PATH, then pyenv's versions."""
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [os.environ.get("DRILL_PYTHON", ""), shutil.which("python3.12") or ""]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3"), reverse=True)
    candidates += [shutil.which("python3.13") or "", shutil.which("python3") or ""]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.1[3-9]*/bin/python3"), reverse=True)
    for candidate in filter(None, candidates):
        version = _version(candidate)
        if version is not None and version >= (3, 12):
            return candidate
    raise RuntimeError("postgres-mcp needs Python >= 3.12: install one (pyenv install 3.12) or set DRILL_PYTHON")


class BuildError(RuntimeError):
    """A step of the virtualenv's build failed; the message carries the step's own output."""


def _run_step(command: list[str], label: str, log: bool, timeout: float) -> None:
    """Runs one build step with its output captured: a progress line every few seconds while it
    runs (what pip is at), the whole output only if it fails."""
    started = time.monotonic()
    if log:
        print(f"drill:   {label} ...", flush=True)
    output: list[str] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
    reader.start()
    while True:
        try:
            process.wait(timeout=PROGRESS_SECONDS)
            break
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                process.kill()
                process.wait()
                reader.join(timeout=5)
                raise BuildError(f"{label}: no result after {timeout:.0f}s\n" + "".join(output)) from None
            if log:
                print(f"drill:     {elapsed:3.0f}s  {_activity(output)}", flush=True)
    reader.join(timeout=5)
    if process.returncode != 0:
        raise BuildError(f"{label} failed (exit code {process.returncode}):\n" + "".join(output))
    if log:
        print(f"drill:   {label}: done in {time.monotonic() - started:.0f}s", flush=True)


def _activity(output: list[str]) -> str:
    """The last thing pip said it was doing (collecting, downloading, installing)."""
    for line in reversed(output[-50:]):
        text = line.strip()
        if text.startswith(("Collecting", "Downloading", "Installing", "Building", "Using cached")):
            return text if len(text) <= 90 else text[:87] + "..."
    return "working"


Build = TypeVar("Build", bound=Callable[..., Path])


def _one_builder_at_a_time(build: Build) -> Build:
    """Test workers (pytest-xdist) may all ask for the venv at once: the first builds, the others wait."""

    @functools.wraps(build)
    def locked(*args: Any, **kwargs: Any) -> Path:
        VENV.parent.mkdir(parents=True, exist_ok=True)
        with open(VENV.parent / f"{VENV.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return build(*args, **kwargs)

    return cast(Build, locked)


@_one_builder_at_a_time
def ensure_venv(log: bool = True) -> Path:
    """Returns the venv's directory, building it when missing or out of date."""
    stamp = hashlib.sha256("\n".join((POSTGRES_MCP, *DEPENDENCIES)).encode()).hexdigest()
    marker = VENV / ".drill-stamp"
    if marker.exists() and marker.read_text() == stamp and (VENV / "bin" / "postgres-mcp").exists():
        return VENV
    python = find_python()
    if log:
        print(
            f"drill: first run: building {VENV.relative_to(ROOT)}, the real postgres-mcp 0.3.0 from PyPI "
            f"({python}), once",
            flush=True,
        )
    started = time.monotonic()
    shutil.rmtree(VENV, ignore_errors=True)
    _run_step([python, "-m", "venv", str(VENV)], "1/3 creating the virtualenv", log, timeout=300)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar=off"]
    _run_step(
        [*pip, *DEPENDENCIES],
        f"2/3 installing its {len(DEPENDENCIES)} dependencies at the image's versions",
        log,
        timeout=900,
    )
    _run_step([*pip, "--no-deps", POSTGRES_MCP], "3/3 installing postgres-mcp 0.3.0 itself", log, timeout=900)
    marker.write_text(stamp)
    if log:
        print(f"drill: {VENV.relative_to(ROOT)} ready in {time.monotonic() - started:.0f}s\n", flush=True)
    return VENV
