"""The token refresher as a program (a subprocess) against a local identity endpoint,
plus its pure decisions in-process."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import token_refresher
from testing.identity_endpoint import RESOURCE, IdentityEndpoint, Minted
from testing.postgres_server import free_port

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


# --- the health endpoint, as the platform's probes see it -----------------------------------

# How late a 503 may come after the condition that causes it: the verdict is computed on each
# request, so this only absorbs scheduling on two loaded cores (the platform probes every 10 s).
CHECK_SLACK = 1.0


class HealthProbe:
    """Calls GET /healthz every `interval` seconds, as a probe does, and keeps every answer."""

    def __init__(self, port: int, interval: float = 0.1) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.interval = interval
        self.answers: list[tuple[float, int | str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def get(self) -> tuple[int | str, str]:
        try:
            with urllib.request.urlopen(self.url, timeout=3) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return "down", str(error)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self.get()
            self.answers.append((time.time(), status, body))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def first(self, status: int | str, after: float = 0.0) -> tuple[float, int | str, str]:
        return next(answer for answer in list(self.answers) if answer[0] >= after and answer[1] == status)

    def seen(self, status: int | str, after: float = 0.0) -> bool:
        return any(answer[0] >= after and answer[1] == status for answer in list(self.answers))


def secret_parts(minted: list[Minted]) -> list[str]:
    """Each token and its claims and signature segments (the JWT header is the same for all)."""
    return [part for m in minted for part in (m.token, *m.token.split(".")[1:])]


def test_health_follows_the_token_through_an_outage_and_back(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    endpoint.lifetime = 6
    port = free_port()
    passfile = tmp_path / "pgpass"
    refresher = Refresher(
        refresher_env(endpoint, passfile, TOKEN_REFRESHER_HEALTH_PORT=str(port)),
        "--margin-seconds=3",
        "--health-min-validity-seconds=1.5",
        "--min-interval-seconds=0.1",
        *FAST,
    )
    probe = HealthProbe(port)
    try:
        wait_for(lambda: len(endpoint.minted) >= 2 and probe.seen(200), timeout=20)
        endpoint.set("http-503")
        time.sleep(0.3)  # an attempt already answered still lands in the file
        last_good = endpoint.minted[-1]
        wait_for(lambda: passfile.read_text() == expected_line(last_good.token))
        crossing = last_good.expires_on - 1.5  # from here on the token has 1.5 s or less
        wait_for(lambda: time.time() > last_good.expires_on + 0.5, timeout=15)
        endpoint.set("ok")
        recovered_at = time.time()
        wait_for(lambda: probe.seen(200, after=recovered_at), timeout=15)
    finally:
        probe.stop()
        assert refresher.stop() == 0
    answers = probe.answers
    first_ok = probe.first(200)[0]
    before = [a for a in answers if first_ok <= a[0] < crossing - 0.3]
    assert before and all(status == 200 for _, status, _ in before), before
    assert all(body.startswith("ok: token valid for") for _, _, body in before)
    unhealthy_at, _, reason = probe.first(503, after=first_ok)
    assert crossing - 0.3 <= unhealthy_at <= crossing + CHECK_SLACK, (unhealthy_at - crossing, reason)
    assert "expires in" in reason and "less than the 1.5s required" in reason
    assert any("EXPIRED" in body for when, status, body in answers if status == 503 and when > last_good.expires_on)
    _, _, back = probe.first(200, after=recovered_at)
    assert back.startswith("ok: token valid for")
    # The transitions are logged once each, not once per probe.
    assert sum("health: UNHEALTHY" in line for line in refresher.lines) == 1
    assert sum("health: healthy" in line for line in refresher.lines) == 2
    text = refresher.log + "".join(body for _, _, body in answers)
    assert not any(part in text for part in secret_parts(endpoint.minted))


def test_health_checks_the_file_that_libpq_will_read(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    endpoint.lifetime = 4
    port = free_port()
    passfile = tmp_path / "pgpass"
    refresher = Refresher(
        refresher_env(endpoint, passfile, TOKEN_REFRESHER_HEALTH_PORT=str(port)),
        "--margin-seconds=2",
        "--min-interval-seconds=0.1",
        *FAST,
    )
    probe = HealthProbe(port, interval=3600)  # called by hand below, right after each breakage

    def remove() -> None:
        passfile.unlink()

    def symlink_loop() -> None:  # unreadable even for root, unlike a chmod 000
        passfile.unlink()
        passfile.symlink_to(passfile)

    def open_to_others() -> None:
        passfile.chmod(0o644)

    def someone_elses_token() -> None:
        passfile.write_text(expected_line("eyJhbGciOi.not-ours.sig"))

    def not_a_password_line() -> None:
        passfile.write_text("# nothing here\n")

    breakages = {
        remove: "no password file at",
        symlink_loop: "unreadable: Too many levels of symbolic links",
        open_to_others: "has mode 0o644, open to others: libpq ignores it",
        someone_elses_token: "does not hold the token this refresher last wrote",
        not_a_password_line: "does not hold the expected line (pgmcp-dev.postgres.database.azure.com:5432:app:",
    }
    seen: dict[str, tuple[int | str, str]] = {}
    try:
        wait_for(lambda: probe.get()[0] == 200, timeout=20)
        for breakage, reason in breakages.items():
            # Right after a write (the last 200 came from it), with the next one seconds away.
            breakage()
            seen[breakage.__name__] = probe.get()
            assert reason in seen[breakage.__name__][1], seen
            # Recovery: the next refresh writes the file afresh, 0600, by rename.
            wait_for(lambda: probe.get()[0] == 200, timeout=10)
    finally:
        probe.stop()
        assert refresher.stop() == 0
    assert {status for status, _ in seen.values()} == {503}
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600 and not passfile.is_symlink()
    text = refresher.log + "".join(body for _, body in seen.values())
    assert not any(part in text for part in secret_parts(endpoint.minted))


def test_health_reports_a_stalled_refresh_loop(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # The endpoint answers one byte every 0.2 s: every read beats the 2 s socket timeout, so the
    # attempt never ends by itself. This is the stuck-but-alive refresher a liveness probe is for.
    port = free_port()
    passfile = tmp_path / "pgpass"
    refresher = Refresher(
        refresher_env(endpoint, passfile, TOKEN_REFRESHER_HEALTH_PORT=str(port)),
        "--margin-seconds=3599",
        "--min-interval-seconds=0.3",
        "--health-stall-grace-seconds=1",
        *FAST,
    )
    probe = HealthProbe(port)
    try:
        wait_for(lambda: probe.seen(200), timeout=20)
        endpoint.set("stall")
        stalled_at = time.time()
        wait_for(lambda: probe.seen(503, after=stalled_at), timeout=20)
        released_at = time.time()
        endpoint.set("ok")  # the hung answer completes
        wait_for(lambda: probe.seen(200, after=released_at), timeout=15)
    finally:
        probe.stop()
        assert refresher.stop() == 0
    _, _, reason = probe.first(503, after=stalled_at)
    assert reason.startswith("refresh loop stalled: refreshing overdue by")
    # 0.3 s until the next attempt, then 2 x 2 s (connect + read timeouts) + 1 s of grace.
    assert released_at - stalled_at >= 5.0 - 0.5
    text = refresher.log + "".join(body for _, _, body in probe.answers)
    assert not any(part in text for part in secret_parts(endpoint.minted))


def test_a_restarted_refresher_judges_the_file_by_its_token_expiry(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # A liveness restart during an identity endpoint outage: the new process finds the token its
    # predecessor wrote, judges it by the JWT's exp, and keeps it healthy until it really expires
    # (restarting again before that would only keep the replica out of rotation).
    endpoint.lifetime = 6
    passfile = tmp_path / "pgpass"
    first = Refresher(refresher_env(endpoint, passfile), "--margin-seconds=3", *FAST)
    wait_for(lambda: passfile.exists() and passfile.read_text() == expected_line(endpoint.minted[0].token))
    first.process.kill()
    first.stop()
    endpoint.set("http-503")
    inherited = endpoint.minted[0]
    port = free_port()
    second = Refresher(
        refresher_env(endpoint, passfile, TOKEN_REFRESHER_HEALTH_PORT=str(port)),
        "--margin-seconds=5.5",
        "--health-min-validity-seconds=5",  # a token of its own would already be "expiring"
        *FAST,
    )
    probe = HealthProbe(port)
    try:
        wait_for(lambda: probe.seen(200), timeout=20)
        wait_for(lambda: time.time() > inherited.expires_on + 0.5, timeout=15)
        endpoint.set("ok")
        recovered_at = time.time()
        wait_for(lambda: probe.seen(200, after=recovered_at), timeout=15)
    finally:
        probe.stop()
        assert second.stop() == 0
    before = [a for a in probe.answers if a[1] != "down" and a[0] < inherited.expires_on - 0.3]
    assert before and all(status == 200 for _, status, _ in before), before
    assert all(body.startswith("ok: inherited token valid for") for _, _, body in before)
    _, _, expired = probe.first(503)
    assert expired.startswith("inherited token EXPIRED at")
    assert probe.first(200, after=recovered_at)[2].startswith("ok: token valid for")
    assert any("found a token from an earlier run" in line for line in second.lines)
    text = second.log + first.log + "".join(body for _, _, body in probe.answers)
    assert not any(part in text for part in secret_parts(endpoint.minted))


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


# --- the health verdict's pure parts ------------------------------------------------------------


def test_jwt_expiry_reads_the_exp_claim_and_nothing_else() -> None:
    from testing.identity_endpoint import jwt_like_token

    assert token_refresher.jwt_expiry(jwt_like_token(1_800_000_000.0, 1_799_990_000.0, 1)) == 1_800_000_000.0
    for not_a_jwt in ("a.b.c", "abc", "eyJ0eXAiOiJKV1QifQ.eyJleHAiOiJzb29uIn0.sig", "x.eyJleHAiOnRydWV9.y"):
        assert token_refresher.jwt_expiry(not_a_jwt) is None, not_a_jwt


def test_the_alert_queries_match_what_the_refresher_logs(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # components/alerts.py searches the console log for these words; a change of wording here
    # would silence the alert there, so the refresher's real lines are checked against them.
    from components import alerts

    def alerts_on(line: str) -> bool:  # the refresher's branch of alerts.token_failure_query()
        failed = re.search(alerts.REFRESH_FAILED_PATTERN, line)
        return (
            any(marker in line for marker in alerts.REFRESHER_FAILURE_MARKERS)
            or (failed is not None and int(failed.group(1)) >= alerts.FAILURES_IN_A_ROW_TO_ALERT)
            or (alerts.REFRESHER_UNHEALTHY in line and not re.search(rf"\b{alerts.STARTING_REASON_WORD}\b", line))
        )

    endpoint.lifetime = 4
    endpoint.set("http-503")  # down at start-up: unhealthy until the first token, which must not alert
    port = free_port()
    refresher = Refresher(
        refresher_env(endpoint, tmp_path / "pgpass", TOKEN_REFRESHER_HEALTH_PORT=str(port)),
        "--margin-seconds=2",
        "--min-interval-seconds=0.1",
        *FAST,
    )
    probe = HealthProbe(port, interval=3600)
    try:
        wait_for(lambda: probe.get()[0] == 503 and any("refresh failed" in line for line in refresher.lines))
        probe.get()
        endpoint.set("ok")
        wait_for(lambda: probe.get()[0] == 200, timeout=15)
        time.sleep(2.5)  # a refresh or two while healthy
        probe.get()
        endpoint.set("http-503")
        outage_from = len(refresher.lines)
        wait_for(lambda: probe.get()[0] == 503 and any("EXPIRED" in line for line in refresher.lines), timeout=15)
    finally:
        probe.stop()
        assert refresher.stop() == 0
    quiet = refresher.lines[:outage_from]
    starting = [line for line in quiet if alerts.REFRESHER_UNHEALTHY in line]
    assert starting and all(alerts.STARTING_REASON_WORD in line for line in starting)
    # Being unhealthy while starting, refreshing and answering probes raise nothing (failed
    # refreshes at start-up do alert once five are in a row: the endpoint really is down).
    assert not [line for line in quiet if alerts_on(line) and "refresh failed" not in line]
    assert any("wrote" in line for line in quiet) and any("health: healthy" in line for line in quiet)
    outage = refresher.lines[outage_from:]
    assert any(alerts_on(line) and "in a row" in line for line in outage)
    assert any(alerts_on(line) and "EXPIRED" in line for line in outage)
    assert any(alerts_on(line) and alerts.REFRESHER_UNHEALTHY in line for line in outage)
