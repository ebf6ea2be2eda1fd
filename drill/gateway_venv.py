"""A virtualenv with the sign-in gateway's locked dependencies, as its image installs them.

`gateway/requirements.txt` (pip-compile with hashes, Python 3.12) installed with
`--require-hashes --no-deps`, exactly the Dockerfile's command, into `.drill/gateway-venv`
with a Python 3.12 (the image's). Built once and reused while the lock is unchanged; under a
file lock, so pytest-xdist workers asking at once build it once. `python -m drill.gateway_venv`
builds it (and prints its path): what `.ci/run` calls before type-checking `gateway/`.

The gateway itself is not installed: it runs as `python -m gateway` from the repository root
(the image copies the package next to the same lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import sys
import time
from pathlib import Path

from drill.postgres_mcp_venv import _run_step, find_python

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".drill" / "gateway-venv"
LOCK = ROOT / "gateway" / "requirements.txt"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(log: bool = True) -> Path:
    """Returns the venv's directory, building it when missing or built from another lock."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f"{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = hashlib.sha256(LOCK.read_bytes()).hexdigest()
        marker = VENV / ".drill-stamp"
        if marker.exists() and marker.read_text() == stamp and python().exists():
            return VENV
        interpreter = find_python()
        if log:
            print(f"drill: building {VENV.relative_to(ROOT)} from {LOCK.relative_to(ROOT)} ({interpreter})", flush=True)
        started = time.monotonic()
        shutil.rmtree(VENV, ignore_errors=True)
        _run_step([interpreter, "-m", "venv", str(VENV)], "1/2 creating the virtualenv", log, timeout=300)
        _run_step(
            [
                str(python()),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--progress-bar=off",
                "--require-hashes",
                "--no-deps",
                "-r",
                str(LOCK),
            ],
            "2/2 installing the gateway's lock (--require-hashes --no-deps)",
            log,
            timeout=900,
        )
        marker.write_text(stamp)
        if log:
            print(f"drill: {VENV.relative_to(ROOT)} ready in {time.monotonic() - started:.0f}s", flush=True)
        return VENV


if __name__ == "__main__":
    print(ensure_venv(log="--quiet" not in sys.argv))
