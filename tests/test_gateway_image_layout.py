"""The gateway image's file layout runs the gateway: gateway/ copied as gateway/Dockerfile copies its build context
(`COPY . /app/gateway`, minus what gateway/.dockerignore leaves out) and `python -m gateway` (the image's CMD) run
from WORKDIR /app with the locked interpreter (the gateway's virtualenv, as /opt/venv in the image). With one
variable missing it must stop with the gateway's own configuration error (exit 2, naming it): `-m gateway` found
the package copied into /app, not another module (the repository's __main__.py, a `gateway` elsewhere on the path).
No Docker here: the layout is rebuilt from the Dockerfile's and .dockerignore's own lines.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from drill.gateway_venv import ensure_venv as ensure_gateway_venv
from testing.gateway_stack import ROOT

pytestmark = pytest.mark.drill

CONTEXT = ROOT / "gateway"
ENVIRONMENT = {
    "GATEWAY_PUBLIC_URL": "https://mcp.example.azurecontainerapps.io",
    "ENTRA_TENANT_ID": "11111111-1111-1111-1111-111111111111",
    "ENTRA_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
    "AZURE_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
    "GATEWAY_SIGNING_KEY": "s" * 40,
    "GATEWAY_STORE_KEY": "k" * 40,
    "GATEWAY_STORE_ENDPOINT": "https://account.table.core.windows.net",
    "GATEWAY_STORE_TABLE": "gatewaySignIns",
}


def dockerignore_patterns() -> list[str]:
    lines = (CONTEXT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert not any(pattern.startswith("!") for pattern in patterns), "exceptions are not handled here"
    return patterns


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's matching (filepath.Match per pattern, `**` any number of directories), on the path and its parents."""
    parts = relative.split("/")
    for end in range(1, len(parts) + 1):
        path = "/".join(parts[:end])
        for pattern in patterns:
            if pattern.startswith("**/"):
                tail = pattern[3:]
                if any(fnmatch.fnmatchcase("/".join(parts[start:end]), tail) for start in range(end)):
                    return True
            elif fnmatch.fnmatchcase(path, pattern.lstrip("/")):
                return True
    return False


def copy_like_the_dockerfile(app: Path) -> Path:
    dockerfile = (CONTEXT / "Dockerfile").read_text()
    # The lines this copy reproduces; if they change, so must this test.
    assert re.search(r"^WORKDIR /app$", dockerfile, re.MULTILINE)
    assert re.search(r"^COPY --chown=root:root \. /app/gateway$", dockerfile, re.MULTILINE)
    assert re.search(r'^CMD \["python", "-m", "gateway"\]$', dockerfile, re.MULTILINE)
    patterns = dockerignore_patterns()
    target = app / "gateway"
    for source in sorted(CONTEXT.rglob("*")):
        relative = source.relative_to(CONTEXT).as_posix()
        if source.is_file() and not ignored(relative, patterns):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
    return target


def test_the_dockerignore_matching_leaves_out_what_it_names() -> None:
    patterns = dockerignore_patterns()
    assert ignored("Dockerfile", patterns) and ignored("requirements.in", patterns)
    assert ignored("__pycache__/config.cpython-312.pyc", patterns) and ignored("sub/x.pyc", patterns)
    assert not ignored("__main__.py", patterns) and not ignored("requirements.txt", patterns)


def test_python_m_gateway_from_the_images_workdir_is_the_gateways_own_config_error(tmp_path: Path) -> None:
    python = ensure_gateway_venv(log=False) / "bin" / "python"
    app = tmp_path / "app"
    package = copy_like_the_dockerfile(app)
    copied = {path.relative_to(package).as_posix() for path in package.rglob("*") if path.is_file()}
    assert {"__init__.py", "__main__.py", "config.py", "app.py", "requirements.txt"} <= copied
    assert not {"Dockerfile", ".dockerignore", "requirements.in"} & copied
    assert not any("__pycache__" in name for name in copied)
    environment = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}

    located = subprocess.run(
        [str(python), "-c", "import gateway, gateway.__main__; print(gateway.__main__.__file__)"],
        cwd=app,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(located.stdout.strip()) == package / "__main__.py"

    missing = {key: value for key, value in ENVIRONMENT.items() if key != "ENTRA_CLIENT_ID"}
    completed = subprocess.run(
        [str(python), "-m", "gateway"],
        cwd=app,
        env={**environment, **missing},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert completed.stdout == ""
    assert completed.stderr.splitlines() == [
        "gateway: ENTRA_CLIENT_ID is missing: expected the app registration's client ID (a GUID)"
    ]
