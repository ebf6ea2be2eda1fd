"""The token refresher as a program (a subprocess) against a local identity endpoint,
plus its pure decisions in-process."""

from __future__ import annotations

import itertools
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import token_refresher
from drill.identity_endpoint import RESOURCE, IdentityEndpoint

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "components" / "token_refresher.py"
CLIENT_ID = "11111111-1111-1111-1111-111111111111"
FAST = ["--backoff-base-seconds=0.05", "--backoff-max-seconds=0.2", "--timeout-seconds=2"]


@pytest.fixture
def endpoint() -> Iterator[IdentityEndpoint]:
    server = IdentityEndpoint().start()
    yield server
    server.stop()


def refresher_env(endpoint: IdentityEndpoint, passfile: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(
        {
            "IDENTITY_ENDPOINT": endpoint.url,
            "IDENTITY_HEADER": endpoint.header,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "PGPASSFILE": str(passfile),
            "PGHOST": "pgmcp-dev.postgres.database.azure.com",
            "PGPORT": "5432",
            "PGDATABASE": "app",
            "PGUSER": "postgres_mcp",
        }
    )
    env.update(extra)
    return env


class Refresher:
    """The refresher running as `python3 components/token_refresher.py`, its log captured."""

    def __init__(self, env: dict[str, str], *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *arguments],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        return code

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def wait_for(condition, timeout: float = 10.0, interval: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def expected_line(token: str) -> str:
    return f"pgmcp-dev.postgres.database.azure.com:5432:app:postgres_mcp:{token}\n"


# --- as a program ---------------------------------------------------------------------------


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


def test_refreshes_before_each_expiry(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    endpoint.lifetime = 4
    passfile = tmp_path / "pgpass"
    refresher = Refresher(refresher_env(endpoint, passfile), "--margin-seconds=2", "--min-interval-seconds=0.1", *FAST)
    try:
        wait_for(lambda: len(endpoint.minted) >= 4, timeout=15)
    finally:
        assert refresher.stop() == 0
    minted, requests = endpoint.minted, endpoint.requests
    for previous, following in zip(minted, requests[1:], strict=False):
        # The next token is fetched before the current one expires, and not long before.
        assert following.at < previous.expires_on
        assert following.at >= previous.expires_on - 2 - 0.5
    assert passfile.read_text() == expected_line(minted[-1].token)
    assert sum("wrote" in line for line in refresher.lines) == len(minted)
    assert not any(m.token in refresher.log for m in minted)
    assert "stopping" in refresher.lines[-1]


def test_a_concurrent_reader_never_sees_a_torn_or_empty_file(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    endpoint.lifetime = 3
    passfile = tmp_path / "pgpass"
    refresher = Refresher(
        refresher_env(endpoint, passfile), "--margin-seconds=2.95", "--min-interval-seconds=0.02", *FAST
    )
    seen: list[str] = []
    problems: list[str] = []
    try:
        wait_for(passfile.exists)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                with open(passfile) as handle:  # as libpq does: open, read, close
                    mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
                    content = handle.read()
            except FileNotFoundError:
                problems.append("file missing")
                continue
            if mode != 0o600:
                problems.append(f"mode {oct(mode)}")
            seen.append(content)
    finally:
        assert refresher.stop() == 0
    valid = {expected_line(m.token) for m in endpoint.minted}
    torn = [content for content in seen if content not in valid]
    assert problems == [] and torn == []
    assert len(endpoint.minted) >= 20, "too few rewrites to prove anything"
    assert len(set(seen)) >= 10, "the reader saw too few rewrites to prove anything"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "pgpass"]
    assert leftovers == []


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
    from drill.identity_endpoint import MALFORMED_BODIES

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


# --- pure decisions -------------------------------------------------------------------------


def test_parse_token_accepts_azure_answers() -> None:
    now = 1_800_000_000.0
    token = token_refresher.parse_token(
        b'{"access_token":"eyJ0.eyJ1.c2ln","expires_on":"1800003600","resource":"https://ossrdbms-aad.database.windows.net/",'
        b'"token_type":"Bearer"}',
        RESOURCE,
        now,
    )
    assert token == token_refresher.Token("eyJ0.eyJ1.c2ln", 1_800_003_600.0)
    assert (
        token_refresher.parse_token(b'{"access_token":"a.b.c","expires_on":1800003600}', RESOURCE, now).expires_on
        == 1_800_003_600
    )


def test_password_file_line_escapes_separators() -> None:
    line = token_refresher.password_file_line("tok", {"PGHOST": "h:1", "PGUSER": "a\\b"})
    assert line == "h\\:1:*:*:a\\\\b:tok\n"


def test_next_refresh_delay_is_bounded() -> None:
    token = token_refresher.Token("t", expires_on=1000.0)
    assert token_refresher.next_refresh_delay(token, now=0.0, margin=100, min_interval=30, max_interval=3600) == 900
    assert token_refresher.next_refresh_delay(token, now=950.0, margin=100, min_interval=30, max_interval=3600) == 30
    long_lived = token_refresher.Token("t", expires_on=86_400.0)
    assert token_refresher.next_refresh_delay(long_lived, 0.0, 900, 30, 3600) == 3600


def test_backoff_grows_and_is_capped() -> None:
    delays = [token_refresher.backoff_delay(n, base=1, cap=60) for n in range(1, 12)]
    assert delays[0] <= 1 and delays[3] > 5 and max(delays) <= 60


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
