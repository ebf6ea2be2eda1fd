"""The token refresher through whole token lifetimes on the real clock: refreshes before each
expiry, its health across an outage, a stalled loop, a restart. Tokens live a few seconds, so
each test runs for several; deadlines are derived from the tokens the endpoint really minted."""

from __future__ import annotations

import itertools
import os
import re
import stat
import time
from pathlib import Path

import pytest

from components import alerts
from sidecar.tests.refresher_run import (
    FAST,
    HealthProbe,
    Refresher,
    expected_line,
    hanging_writes_program,
    probe_path,
    refresher_env,
    secret_parts,
    wait_for,
)
from testing.identity_endpoint import IdentityEndpoint
from testing.postgres_server import free_port

pytestmark = pytest.mark.drill

# How late a 503 may come after the condition that causes it: the verdict is computed on each
# request, so this only absorbs scheduling on two loaded cores (the platform probes every 10 s).
CHECK_SLACK = 1.0


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
    # The transitions are logged once each, not once per probe. A probe that beats the first write
    # sees "no password file ... yet" (the start-up reason, which alerts nobody): whether one does
    # depends on the machine's load, so the count starts after start-up.
    started = [line for line in refresher.lines if not re.search(rf"\b{alerts.STARTING_REASON_WORD}\b", line)]
    assert sum("health: UNHEALTHY" in line for line in started) == 1
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
    # A request to the identity endpoint can no longer hang the loop (each has a deadline), so the
    # stall is a write to the password file that hangs, as on a stuck volume, while the health
    # threads keep answering. This is the stuck-but-alive refresher a liveness probe is for: both
    # endpoints fail on it, and the liveness probe's only on it.
    port = free_port()
    passfile = tmp_path / "pgpass"
    hang = tmp_path / "hang"
    refresher = Refresher(
        refresher_env(endpoint, passfile, TOKEN_REFRESHER_HEALTH_PORT=str(port), HANG_WHILE=str(hang)),
        "--margin-seconds=3599",
        "--min-interval-seconds=0.3",
        "--health-stall-grace-seconds=1",
        *FAST,
        program=hanging_writes_program(),
    )
    health = HealthProbe(port)
    liveness = HealthProbe(port, path=probe_path("Liveness"))
    try:
        wait_for(lambda: health.seen(200) and liveness.seen(200), timeout=20)
        hang.touch()
        stalled_at = time.time()
        wait_for(lambda: liveness.seen(503, after=stalled_at) and health.seen(503, after=stalled_at), timeout=20)
        released_at = time.time()
        hang.unlink()  # the write completes, the loop moves on
        wait_for(lambda: liveness.seen(200, after=released_at) and health.seen(200, after=released_at), timeout=15)
    finally:
        health.stop()
        liveness.stop()
        assert refresher.stop() == 0
    for probe in (health, liveness):
        _, _, reason = probe.first(503, after=stalled_at)
        assert reason.startswith("refresh loop stalled: refreshing overdue by"), reason
    # 0.3 s until the next attempt, then the request's 2 s deadline + 1 s of grace.
    assert released_at - stalled_at >= 3.0 - 0.5
    text = refresher.log + "".join(body for probe in (health, liveness) for _, _, body in probe.answers)
    assert not any(part in text for part in secret_parts(endpoint.minted))


def test_an_identity_endpoint_outage_never_fails_the_liveness_probe(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # A token running out during an outage is reported (/healthz 503, logged, alerted on), but the
    # path the deployed liveness probe calls keeps answering 200: a restart cannot fix the outage
    # and would take the replica out of rotation (issue 19, item 7).
    endpoint.lifetime = 5
    port = free_port()
    passfile = tmp_path / "pgpass"
    refresher = Refresher(
        refresher_env(endpoint, passfile, TOKEN_REFRESHER_HEALTH_PORT=str(port)),
        "--margin-seconds=3",
        "--health-min-validity-seconds=1.5",
        "--min-interval-seconds=0.1",
        "--health-stall-grace-seconds=1",
        *FAST,
    )
    health = HealthProbe(port, path=probe_path("Startup"))
    liveness = HealthProbe(port, path=probe_path("Liveness"))
    try:
        wait_for(lambda: health.seen(200) and liveness.seen(200), timeout=20)
        endpoint.set("drop")
        time.sleep(0.3)
        last_good = endpoint.minted[-1]
        wait_for(lambda: time.time() > last_good.expires_on + 1.0, timeout=15)
        endpoint.set("ok")
        recovered_at = time.time()
        wait_for(lambda: health.seen(200, after=recovered_at), timeout=15)
    finally:
        health.stop()
        liveness.stop()
        assert refresher.stop() == 0
    reasons = [body for _, status, body in health.answers if status == 503]
    assert any("less than the 1.5s required" in body for body in reasons)
    assert any("EXPIRED" in body for body in reasons)
    listening = liveness.first(200)[0]
    during = [a for a in liveness.answers if a[0] >= listening]
    assert {status for _, status, _ in during} == {200}, [a for a in during if a[1] != 200]
    assert any("EXPIRED" in body for _, _, body in during)  # the body still says what is wrong
    # The change of verdict is logged (the alert's source) even with only the probes calling.
    assert any("health: UNHEALTHY: token expires in" in line for line in refresher.lines)


def test_a_restarted_refresher_judges_the_file_by_its_token_expiry(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # A restart (a crash, a stalled loop) during an identity endpoint outage: the new process finds
    # the token its predecessor wrote, judges it by the JWT's exp, and passes its startup probe at
    # once on it; healthy until the token really expires.
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
    probe = HealthProbe(port, interval=0.02, path=probe_path("Startup"))
    try:
        wait_for(lambda: probe.seen(200), timeout=20)
        # The startup probe passes at once: the first answer the new process gives is a 200, with
        # no fetch answered (the endpoint is down), so the replica is back in rotation as soon as
        # the platform's next startup probe comes.
        answered = [a for a in probe.answers if a[1] != "down"]
        assert answered[0][1] == 200, answered[0]
        assert not endpoint.minted[1:]
        probe.interval = 0.1
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


def test_the_alert_queries_match_what_the_refresher_logs(endpoint: IdentityEndpoint, tmp_path: Path) -> None:
    # components/alerts.py searches the console log for these words; a change of wording here
    # would silence the alert there, so the refresher's real lines are checked against them.

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


# --- a trickling identity endpoint: each request ends at its deadline (on the real clock) ------------------------


def test_a_trickling_identity_endpoint_is_cut_at_the_deadline_and_the_loop_goes_on(
    endpoint: IdentityEndpoint, tmp_path: Path
) -> None:
    # One byte of the answer (status line and headers included) every 0.3 s: every read beats the
    # refresher's socket timeout, so only a deadline on the whole request ends it (issue 19, 12c).
    endpoint.trickle_interval = 0.3
    deadline = 1.5
    port = free_port()
    passfile = tmp_path / "pgpass"
    refresher = Refresher(
        refresher_env(endpoint, passfile, TOKEN_REFRESHER_HEALTH_PORT=str(port)),
        "--margin-seconds=3599.5",
        "--min-interval-seconds=0.2",
        "--health-stall-grace-seconds=1",
        *FAST,
        f"--timeout-seconds={deadline}",
    )
    liveness = HealthProbe(port, path="/livez")
    try:
        wait_for(lambda: len(endpoint.minted) == 1 and passfile.exists(), timeout=20)
        good = passfile.read_text()
        endpoint.set("trickle")
        trickled_from = len(endpoint.requests)
        wait_for(lambda: len(endpoint.requests) >= trickled_from + 4, timeout=20)
        assert refresher.process.poll() is None
        assert passfile.read_text() == good  # the last good token is kept
        endpoint.set("ok")
        wait_for(lambda: passfile.read_text() != good, timeout=10)
    finally:
        liveness.stop()
        assert refresher.stop() == 0
    trickled = [r.at for r in endpoint.requests[trickled_from : trickled_from + 4]]
    for started, next_started in itertools.pairwise(trickled):
        # The attempt ends at its deadline (not earlier: the endpoint never refused), then the
        # backoff (at most 0.2 s) and the next attempt: the loop goes on.
        # The upper bound only has to tell a cut request from an uncut one: the whole answer, a byte every
        # 0.3 s, would take over a minute; a loaded machine may add seconds to the backoff.
        assert deadline - 0.1 <= next_started - started <= deadline + 0.2 + 5.0, next_started - started
    assert sum(f"no complete answer within the {deadline:g}s deadline" in line for line in refresher.lines) >= 3
    assert "refresh failed (3 in a row)" in refresher.log  # each cut request counts as a failed attempt
    # Never a stalled loop: once listening, the liveness probe's endpoint answered 200 throughout.
    listening = liveness.first(200)[0]
    assert {status for when, status, _ in liveness.answers if when >= listening} == {200}
    assert expected_line(endpoint.minted[-1].token) == passfile.read_text()
