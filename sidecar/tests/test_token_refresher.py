"""The token refresher as a program (a subprocess) against a local identity endpoint: each run
ends on its own or on a condition it reaches, never by waiting for a token to expire
(those runs are in test_token_refresher_clock.py). Also: what the sidecar is shipped."""

from __future__ import annotations

import itertools
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidecar import token_refresher
from sidecar.tests.refresher_run import (
    CLIENT_ID,
    FAST,
    ROOT,
    SCRIPT,
    HealthProbe,
    Refresher,
    expected_line,
    refresher_env,
    wait_for,
)
from testing.identity_endpoint import RESOURCE, IdentityEndpoint
from testing.postgres_server import free_port

pytestmark = pytest.mark.program


def test_once_writes_the_libpq_line_with_mode_0600(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    passfile = tmp_path / "shared" / "pgpass"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=refresher_env(endpoint, passfile),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    (minted,) = endpoint.minted
    assert passfile.read_text() == expected_line(minted.token)
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    (request,) = endpoint.requests
    assert request.header == endpoint.header
    assert request.query == {"resource": [RESOURCE], "api-version": ["2019-08-01"], "client_id": [CLIENT_ID]}
    assert minted.token not in result.stderr and minted.token not in result.stdout
    assert "wrote" in result.stderr
    assert list(passfile.parent.iterdir()) == [passfile]  # no temporary file left behind


def test_unset_fields_become_wildcards(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    env = refresher_env(endpoint, passfile)
    for name in ("PGHOST", "PGDATABASE"):
        del env[name]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--once"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert passfile.read_text() == f"*:5432:*:postgres_mcp:{endpoint.minted[0].token}\n"


def test_once_fails_without_touching_the_file(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text("host:5432:app:postgres_mcp:previous-good-token\n")
    passfile.chmod(0o600)
    endpoint.set("http-500")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--once"],
        cwd=ROOT,
        env=refresher_env(endpoint, passfile),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "HTTP 500" in result.stderr
    assert passfile.read_text() == "host:5432:app:postgres_mcp:previous-good-token\n"


@pytest.mark.parametrize("missing", ["PGPASSFILE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"])
def test_missing_configuration_exits_2_naming_it(endpoint: IdentityEndpoint, tmp_path: Path, missing: str) -> None:
    env = refresher_env(endpoint, tmp_path / "pgpass")
    del env[missing]
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "configuration error" in result.stderr and missing in result.stderr


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--margin-seconds=-5"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "--margin-seconds must be positive" in result.stderr


def test_endpoint_errors_are_survived_and_recovered_from(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    endpoint.lifetime = 3600
    passfile = tmp_path / "pgpass"
    # min-interval 0.2 s: a healthy refresher with an hour-long token would otherwise sleep.
    refresher = Refresher(
        refresher_env(endpoint, passfile), "--margin-seconds=3599.5", "--min-interval-seconds=0.2", *FAST
    )
    try:
        wait_for(lambda: len(endpoint.minted) == 1)
        good = endpoint.minted[0].token
        wait_for(lambda: passfile.exists() and passfile.read_text() == expected_line(good))
        for outage in ("http-500", "http-503", "http-404", "drop"):
            endpoint.set(outage)
            before = len(endpoint.requests)
            wait_for(lambda before=before: len(endpoint.requests) >= before + 3)  # several failed attempts in a row
            assert refresher.process.poll() is None, f"refresher exited during {outage}"
            assert passfile.read_text() == expected_line(good)
        endpoint.set("ok")
        wait_for(lambda: len(endpoint.minted) >= 2)
        wait_for(lambda: passfile.read_text() == expected_line(endpoint.minted[-1].token))
    finally:
        assert refresher.stop() == 0
    log = refresher.log
    assert "HTTP 500" in log and "HTTP 503" in log and "unreachable" in log
    assert "keeping last good token" in log
    assert "failure(s)" in log  # the recovery line says how many attempts failed
    # Backoff is bounded: no two consecutive failed attempts are more than the cap (+ slack) apart.
    failing = [r.at for r in endpoint.requests[1:-1]]
    assert max(b - a for a, b in itertools.pairwise(failing)) < 0.2 + 0.5
    assert not any(m.token in log for m in endpoint.minted)


def test_malformed_answers_are_rejected_and_the_last_good_file_kept(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    refresher = Refresher(
        refresher_env(endpoint, passfile), "--margin-seconds=3599.5", "--min-interval-seconds=0.2", *FAST
    )
    from testing.identity_endpoint import MALFORMED_BODIES

    try:
        wait_for(lambda: len(endpoint.minted) == 1)
        # The endpoint records a token before the refresher has written it: wait for the file.
        wait_for(lambda: passfile.exists() and passfile.read_text() == expected_line(endpoint.minted[0].token))
        good = passfile.read_text()
        for behaviour in MALFORMED_BODIES:
            endpoint.set(behaviour)
            before = len(refresher.lines)
            wait_for(lambda before=before: any("malformed answer" in line for line in refresher.lines[before:]))
            assert passfile.read_text() == good, behaviour
        endpoint.set("ok")
        wait_for(lambda: len(endpoint.minted) >= 2)
    finally:
        assert refresher.stop() == 0
    log = refresher.log
    for fragment in (
        "not JSON",
        "not a JSON object",
        "access_token missing",
        "characters a JWT cannot have",
        "expires_on missing or not epoch seconds",
        "already expired",
        "not 'https://ossrdbms",
    ):
        assert fragment in log, fragment
    assert "evil" not in log and "eyJhbGciOi" not in log  # rejected tokens are not logged either


def test_header_is_reread_at_every_request(endpoint: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", endpoint.header)
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    token_refresher.fetch_token(RESOURCE, timeout=5)
    endpoint.header = "rotated-by-the-platform"
    monkeypatch.setenv("IDENTITY_HEADER", "rotated-by-the-platform")
    token_refresher.fetch_token(RESOURCE, timeout=5)
    assert [r.header for r in endpoint.requests] == ["rotating-header-value", "rotated-by-the-platform"]
    assert "client_id" not in endpoint.requests[0].query  # system-assigned: no client_id sent


def test_runs_as_the_sidecar_runs_it_with_python_c(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # The Container App's command is `python -c <this file's text> --margin-seconds=N`.
    from components.mcp_app import refresher_command

    command = refresher_command(900)
    assert command[0] == "python"
    passfile = tmp_path / "pgpass"
    result = subprocess.run(
        [sys.executable, *command[1:], "--once"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=refresher_env(endpoint, passfile),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert passfile.read_text() == expected_line(endpoint.minted[0].token)
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600


def test_once_never_serves_the_health_endpoint(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--once"],
        cwd=ROOT,
        env=refresher_env(endpoint, tmp_path / "pgpass", TOKEN_REFRESHER_HEALTH_PORT=str(port)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "health" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--health-min-validity-seconds=900"], {}, "less than --margin-seconds"),
        (["--health-port=70000"], {}, "between 1 and 65535"),
        ([], {"TOKEN_REFRESHER_HEALTH_PORT": "http"}, "TOKEN_REFRESHER_HEALTH_PORT must be a port number"),
    ],
)
def test_bad_health_arguments_are_refused(
    endpoint: IdentityEndpoint, tmp_path: Path, arguments: list[str], environment: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        cwd=ROOT,
        env=refresher_env(endpoint, tmp_path / "pgpass", **environment),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and message in result.stderr


def test_a_taken_health_port_is_a_configuration_error(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(SCRIPT), f"--health-port={port}"],
            cwd=ROOT,
            env=refresher_env(endpoint, tmp_path / "pgpass"),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2 and f"cannot serve the health endpoint on port {port}" in result.stderr


def test_the_refresher_fits_its_memory_with_room_to_spare(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # The sidecar's share of the app's Consumption size (components/mcp_app.py). Peak RSS, with
    # the health endpoint on and answering, must stay under half of it; the figures are printed
    # by `python -m drill.benchmark`.
    from components.mcp_app import REFRESHER_RESOURCES

    allowance_kib = REFRESHER_RESOURCES.memory_gib * 1024 * 1024
    port = free_port()
    refresher = Refresher(refresher_env(endpoint, tmp_path / "pgpass", TOKEN_REFRESHER_HEALTH_PORT=str(port)), *FAST)
    probe = HealthProbe(port, interval=3600)
    try:
        wait_for(lambda: probe.get()[0] == 200, timeout=20)
        for _ in range(200):
            probe.get()
        status = Path(f"/proc/{refresher.process.pid}/status").read_text()
    finally:
        probe.stop()
        assert refresher.stop() == 0
    peak_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    assert peak_kib < allowance_kib / 2, f"peak RSS {peak_kib} KiB against an allowance of {allowance_kib:.0f} KiB"


# --- what is shipped: the program's code, named by its digest ---------------------------------


def test_a_comment_or_docstring_edit_ships_the_same_program() -> None:
    from sidecar.shipping import content_digest, shipped_source, strip

    source = SCRIPT.read_text(encoding="utf-8")
    edited = (
        source.replace('    """Validates an', '    """Reworded: validates an', 1)
        .replace("  # libpq ignores", "  # Reworded: libpq ignores", 1)
        .replace("\ndef ", "\n# Reworded: a new comment line\ndef ", 3)
        .replace("\nimport argparse\n", "\nimport argparse  # Reworded: a new trailing comment\n", 1)
    )
    assert edited.count("Reworded") == 6
    assert strip(edited) == strip(source) == shipped_source(SCRIPT)
    assert content_digest(strip(edited)) == content_digest(shipped_source(SCRIPT))


def test_a_change_of_code_is_a_new_digest_on_the_sidecar() -> None:
    from components.mcp_app import REFRESHER_DIGEST_VARIABLE, refresher_digest, refresher_source
    from sidecar.shipping import content_digest, strip

    source = SCRIPT.read_text(encoding="utf-8")
    assert REFRESHER_DIGEST_VARIABLE == "REFRESHER_DIGEST"
    assert refresher_digest() == content_digest(refresher_source()) and len(refresher_digest()) == 12
    for changed in (source + "\nSPARE = 1\n", source.replace("def main(", "def main_loop(", 1)):
        assert changed != source
        assert content_digest(strip(changed)) != refresher_digest()
    # What is shipped is smaller, and only by what never ran.
    assert "#" not in "".join(line.split('"')[0] for line in refresher_source().splitlines())
    assert len(refresher_source()) < len(source)


def test_the_shipped_code_runs_as_the_sidecar_runs_it(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # The loop, the health endpoint and a clean stop, all from the stripped text itself.
    from components.mcp_app import refresher_source

    shipped = refresher_source()
    help_text = subprocess.run(
        [sys.executable, "-c", shipped, "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert "keeps a libpq password file filled with a fresh Entra access token" in " ".join(help_text.split())
    port = free_port()
    passfile = tmp_path / "pgpass"
    refresher = Refresher(
        refresher_env(endpoint, passfile, TOKEN_REFRESHER_HEALTH_PORT=str(port)), *FAST, program=("-c", shipped)
    )
    probe = HealthProbe(port, interval=3600)
    try:
        wait_for(lambda: probe.get()[0] == 200, timeout=20)
    finally:
        probe.stop()
        assert refresher.stop() == 0
    assert passfile.read_text() == expected_line(endpoint.minted[-1].token)
    assert "stopping" in refresher.lines[-1]


# --- the health verdict racing a refresh -------------------------------------------------------


@pytest.mark.parametrize("recorded", [False, True], ids=["renamed-not-yet-recorded", "renamed-and-recorded"])
def test_a_health_check_racing_a_refresh_judges_the_new_file_as_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: bool
) -> None:
    # The verdict snapshots the state, then reads the file; a refresh can rename its new file into
    # place in between. Seen in the expiry drill on a loaded machine as a lone 503 "does not hold
    # the token this refresher last wrote" right after a healthy refresh.
    environ = {"PGHOST": "h", "PGPORT": "5432", "PGDATABASE": "app", "PGUSER": "u"}
    path = tmp_path / "pgpass"
    now = time.time()
    lines = {name: token_refresher.password_file_line(f"eyJ0.{name}.c2ln", environ) for name in ("old", "new")}
    written = {
        name: token_refresher.Written(token_refresher.digest(line.encode()), now + 600) for name, line in lines.items()
    }
    state = token_refresher.HealthState()
    state.wrote(written["old"])
    token_refresher.write_atomically(str(path), lines["old"])
    read = token_refresher.read_password_file

    def refresh_lands_between_snapshot_and_read(name: str) -> tuple[bytes, os.stat_result] | None:
        state.writing(written["new"])
        token_refresher.write_atomically(str(path), lines["new"])
        if recorded:
            state.wrote(written["new"])
        return read(name)

    monkeypatch.setattr(token_refresher, "read_password_file", refresh_lands_between_snapshot_and_read)
    prefix = token_refresher.line_prefix(environ)
    healthy, reason = token_refresher.health_verdict(str(path), prefix, state, 300, now, time.monotonic())
    assert healthy, reason
    # Someone else's line is still refused.
    monkeypatch.setattr(token_refresher, "read_password_file", read)
    token_refresher.write_atomically(str(path), token_refresher.password_file_line("eyJ0.theirs.c2ln", environ))
    healthy, reason = token_refresher.health_verdict(str(path), prefix, state, 300, now, time.monotonic())
    assert not healthy and "does not hold the token this refresher last wrote" in reason
