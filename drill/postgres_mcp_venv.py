"""A virtualenv with the real postgres-mcp 0.3.0, as its container image runs it.

postgres-mcp needs Python >= 3.12. PyPI's postgres-mcp 0.3.0 pins pglast==7.2.0, which
the registry lacks, so it is installed without dependencies and its dependencies are
installed at the versions that the crystaldba/postgres-mcp:0.3.0 image locks (pglast
as the nearest 7.x). Built once under .drill/ and reused while this list is unchanged.
"""

from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".drill" / "postgres-mcp-0.3.0"
POSTGRES_MCP = "postgres-mcp==0.3.0"
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
    if log:
        print(f"drill: building {VENV.relative_to(ROOT)} (postgres-mcp 0.3.0 on Python >= 3.12) ...", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([find_python(), "-m", "venv", str(VENV)], check=True, timeout=300)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", POSTGRES_MCP], check=True, timeout=900)
    subprocess.run([*pip, *DEPENDENCIES], check=True, timeout=900)
    marker.write_text(stamp)
    return VENV
