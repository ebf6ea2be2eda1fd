"""token-refresher: keeps a libpq password file filled with a fresh Entra access token.

Runs beside postgres-mcp in the same Container App replica (a sidecar). libpq reads the
password file named by PGPASSFILE on every new connection, so each connection that
postgres-mcp's pool opens signs in with a token that has not expired, and postgres-mcp
itself needs no change: its DATABASE_URI simply carries no password.

Standard library only: this file is shipped into the stock postgres-mcp image as
`python -c <its code>` (comments and docstrings stripped: sidecar/shipping.py) and runs on
its own as `python3 sidecar/token_refresher.py`.

Environment (the Container Apps managed identity contract plus libpq's own names):
  IDENTITY_ENDPOINT, IDENTITY_HEADER  the platform's token endpoint; the header value
                                      rotates, so both are re-read at every request
  AZURE_CLIENT_ID                     user-assigned identity to ask for (client_id)
  TOKEN_RESOURCE                      token audience, default the PostgreSQL one
  PGPASSFILE                          the password file to keep fresh (required)
  PGHOST, PGPORT, PGDATABASE, PGUSER  the line's fields; '*' where unset
  TOKEN_REFRESHER_HEALTH_PORT         serve GET /healthz on this port (or --health-port)

Health endpoints (loop mode only, never with --once): `GET /healthz` answers 200 while the
password file holds the token this refresher last wrote with more than
--health-min-validity-seconds left (after a restart: a predecessor's token, until the exp of
its JWT, so a restart with a valid file passes at once), and the loop keeps to its own
schedule; otherwise 503 with a one-line reason. The startup probe calls it. `GET /livez`
answers 503 only when the loop is stalled (behind its own schedule by more than the grace),
the one failure a restart cures; the liveness probe calls it. Answers and logs never contain
a token; each change of the /healthz verdict is logged once, whichever endpoint computed it.

Exit codes: 0 on SIGTERM/SIGINT or after a successful --once, 1 when --once fails,
2 on a configuration error. Transient failures never end the loop.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import http.client
import http.server
import json
import os
import random
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_RESOURCE = "https://ossrdbms-aad.database.windows.net"
API_VERSION = "2019-08-01"
# Only the characters of a JWT (base64url segments joined by dots) are written.
TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/=")
HEALTH_PORT_VARIABLE = "TOKEN_REFRESHER_HEALTH_PORT"
HEALTH_PATH = "/healthz"
LIVENESS_PATH = "/livez"
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_STALL_GRACE_SECONDS = 30.0


class ConfigurationError(Exception):
    """The environment or arguments are wrong: retrying cannot help."""


class RefreshError(Exception):
    """One refresh attempt failed; the message never contains a token."""


@dataclass(frozen=True)
class Token:
    value: str
    expires_on: float


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} token-refresher: {message}", file=sys.stderr, flush=True)


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def request_url(endpoint: str, resource: str, client_id: str | None) -> str:
    query = {"resource": resource, "api-version": API_VERSION}
    if client_id:
        query["client_id"] = client_id
    separator = "&" if "?" in endpoint else "?"
    return endpoint + separator + urllib.parse.urlencode(query)


def parse_token(body: bytes, resource: str, now: float) -> Token:
    """Validates an identity endpoint answer; raises RefreshError naming the bad field."""
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RefreshError("malformed answer: not JSON") from None
    if not isinstance(answer, dict):
        raise RefreshError("malformed answer: not a JSON object")
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise RefreshError("malformed answer: access_token missing or not a non-empty string")
    if not set(token) <= TOKEN_ALPHABET:
        raise RefreshError("malformed answer: access_token has characters a JWT cannot have")
    expires_on = answer.get("expires_on")
    if isinstance(expires_on, str) and expires_on.strip().isdigit():
        expires = float(expires_on.strip())
    elif isinstance(expires_on, int) and not isinstance(expires_on, bool):
        expires = float(expires_on)
    else:
        raise RefreshError("malformed answer: expires_on missing or not epoch seconds")
    if expires <= now:
        raise RefreshError(f"malformed answer: token already expired at {utc(expires)}")
    answered_resource = answer.get("resource")
    if answered_resource is not None and str(answered_resource).rstrip("/") != resource.rstrip("/"):
        raise RefreshError(f"malformed answer: token is for resource {answered_resource!r}, not {resource!r}")
    return Token(token, expires)


class _Watched:
    """The sockets one request opens, so that its deadline can cut them from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.cut = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if not self.cut:
                return
        self._shutdown(sock)

    def cut_all(self) -> None:
        with self._lock:
            self.cut, sockets = True, list(self._sockets)
        for sock in sockets:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # a recv blocked in another thread returns at once
        except OSError:
            pass


def _opener(watched: _Watched) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies and all), its connections reporting their sockets to `watched`."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            watched.add(self.sock)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            watched.add(self.sock)

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Connection, req)

    class SecureHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(SecureConnection, req)

    return urllib.request.build_opener(Handler, SecureHandler)


def _exchange(request: urllib.request.Request, timeout: float, watched: _Watched) -> bytes:
    try:
        with _opener(watched).open(request, timeout=timeout) as response:
            return bytes(response.read(1_000_000))
    except urllib.error.HTTPError as error:
        raise RefreshError(f"identity endpoint answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise RefreshError(f"identity endpoint unreachable: {reason}") from None


def fetch_token(resource: str, timeout: float) -> Token:
    """One request, over within `timeout` seconds whatever the endpoint does.

    A socket timeout bounds each connect and each read, not the exchange: an endpoint that sends
    a byte every few seconds would hold it forever. So the exchange runs on a worker thread that
    the caller waits for `timeout` seconds at most; then the request's socket is shut down, which
    ends the worker's blocked read, and the attempt counts as failed."""
    endpoint = os.environ.get("IDENTITY_ENDPOINT", "")
    header = os.environ.get("IDENTITY_HEADER", "")
    if not endpoint or not header:
        raise ConfigurationError(
            "IDENTITY_ENDPOINT and IDENTITY_HEADER must be set (the Container App needs a managed identity)"
        )
    url = request_url(endpoint, resource, os.environ.get("AZURE_CLIENT_ID") or None)
    request = urllib.request.Request(url, headers={"X-IDENTITY-HEADER": header, "Metadata": "true"})
    watched = _Watched()
    outcome: list[bytes | RefreshError] = []

    def exchange() -> None:
        try:
            outcome.append(_exchange(request, timeout, watched))
        except RefreshError as error:
            outcome.append(error)

    worker = threading.Thread(target=exchange, name="fetch", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        watched.cut_all()
        raise RefreshError(f"identity endpoint gave no complete answer within the {timeout:g}s deadline")
    if not outcome:  # the worker died of something unforeseen; its traceback is on stderr
        raise RefreshError("identity endpoint request failed unexpectedly")
    answer = outcome[0]
    if isinstance(answer, RefreshError):
        raise answer
    return parse_token(answer, resource, time.time())


def escape_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def line_prefix(environ: dict[str, str] | None = None) -> str:
    """`host:port:database:user:` of the line, each field escaped, '*' where unset."""
    environ = dict(os.environ) if environ is None else environ
    fields = [
        escape_field(environ[name]) if environ.get(name) else "*"
        for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")
    ]
    return ":".join(fields) + ":"


def password_file_line(token: str, environ: dict[str, str] | None = None) -> str:
    return line_prefix(environ) + escape_field(token) + "\n"


def digest(content: bytes) -> str:
    """How the health check recognises the file it wrote without keeping the token around."""
    return hashlib.sha256(content).hexdigest()


def is_password_line(content: bytes, prefix: str) -> bool:
    """One line, this refresher's fields, a non-empty token of JWT characters."""
    text = content.decode("utf-8", "replace")
    if not (text.startswith(prefix) and text.endswith("\n")):
        return False
    token = text[len(prefix) : -1]
    return bool(token) and set(token) <= TOKEN_ALPHABET


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, unverified: only used to judge a file a predecessor wrote."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)):
        return None
    return float(expiry)


def write_atomically(path: str, content: str) -> None:
    """Replaces `path` in one rename: readers see the old file or the new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".pgpass.")
    try:
        os.fchmod(descriptor, 0o600)  # libpq ignores a password file others can read
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def next_refresh_delay(token: Token, now: float, margin: float, min_interval: float, max_interval: float) -> float:
    """Seconds until the next fetch: `margin` before expiry, within the interval bounds."""
    return max(min_interval, min(max_interval, token.expires_on - margin - now))


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter, never above `cap`."""
    return float(min(cap, base * (2 ** min(failures - 1, 20)))) * random.uniform(0.8, 1.0)  # noqa: S311 (jitter, not cryptography)


@dataclass(frozen=True)
class Written:
    """The line the loop last put in the file: its digest (never the token) and its expiry."""

    digest: str
    expires_on: float
    inherited: bool = False  # found at start-up, written by an earlier run


class HealthState:
    """What the refresh loop has done, shared with the health endpoint's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: Written | None = None
        self._pending: Written | None = None  # announced before the rename, until wrote()
        self._activity = "starting"
        self._deadline: float | None = None  # time.monotonic() by which the loop must move on

    def writing(self, written: Written) -> None:
        """The loop is about to rename this into place: from then on the file may already hold it."""
        with self._lock:
            self._pending = written

    def wrote(self, written: Written) -> None:
        with self._lock:
            self._written, self._pending = written, None

    def latest(self) -> tuple[Written | None, Written | None]:
        """What was last written and what is being written, as of now."""
        with self._lock:
            return self._written, self._pending

    def expect_progress(self, activity: str, within: float) -> None:
        """The loop promises to be done with `activity` within `within` seconds."""
        with self._lock:
            self._activity, self._deadline = activity, time.monotonic() + within

    def snapshot(self) -> tuple[Written | None, str, float | None]:
        with self._lock:
            return self._written, self._activity, self._deadline


def read_password_file(path: str) -> tuple[bytes, os.stat_result] | None:
    """As libpq does (open, read, close), but never blocking on a FIFO: None if not a plain file."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            return None
        return os.read(descriptor, 65_536), status
    finally:
        os.close(descriptor)


def stalled(state: HealthState, clock: float) -> str | None:
    """Why the refresh loop counts as stuck (past the deadline it set itself), or None.

    The only verdict a restart can cure, so the only one the liveness endpoint fails on."""
    _, activity, deadline = state.snapshot()
    if deadline is not None and clock > deadline:
        return f"refresh loop stalled: {activity} overdue by {clock - deadline:.0f}s"
    return None


def health_verdict(
    path: str, prefix: str, state: HealthState, min_validity: float, now: float, clock: float
) -> tuple[bool, str]:
    """(healthy, one-line reason) for the file at `path` and the loop's state; never the token."""
    stall = stalled(state, clock)
    if stall is not None:
        return False, stall
    written, activity, _ = state.snapshot()
    try:
        read = read_password_file(path)
    except FileNotFoundError:
        return False, f"no password file at {path} yet"
    except OSError as error:
        return False, f"password file {path} unreadable: {error.strerror or error}"
    if read is None:
        return False, f"password file {path} is not a plain file: libpq ignores it"
    content, status = read
    if written is None or digest(content) != written.digest:
        # The file is read after the snapshot: a refresh may have renamed its new file into place
        # since. Then the loop has announced it (writing) or recorded it (wrote) by now.
        for candidate in state.latest():
            if candidate is not None and digest(content) == candidate.digest:
                written = candidate
    if status.st_mode & 0o077:
        mode = oct(stat.S_IMODE(status.st_mode))
        return False, f"password file {path} has mode {mode}, open to others: libpq ignores it"
    if written is None or digest(content) != written.digest:
        if not is_password_line(content, prefix):
            return False, f"password file {path} does not hold the expected line ({prefix}<token>)"
        if written is None:
            return False, "no token written by this refresher yet"
        return False, f"password file {path} does not hold the token this refresher last wrote"
    remaining = written.expires_on - now
    source = "inherited token" if written.inherited else "token"
    if remaining <= 0:
        return False, f"{source} EXPIRED at {utc(written.expires_on)}"
    # A predecessor's token is judged by its own expiry: a refresher that just started has had no
    # chance to refresh it yet, and the startup probe must pass at once on it (the restart case).
    if remaining <= min_validity and not written.inherited:
        return False, (
            f"{source} expires in {remaining:.0f}s (at {utc(written.expires_on)}), "
            f"less than the {min_validity:g}s required"
        )
    return True, f"ok: {source} valid for {remaining:.0f}s more (until {utc(written.expires_on)}); {activity}"


class HealthServer:
    """GET /healthz and /livez on their own threads, so that a hung refresh cannot hang the answer.

    /healthz: the whole verdict (the token in the file, the loop), for the startup probe and people.
    /livez: 503 only when the loop is stalled, for the liveness probe. A restart cures a stuck loop,
    nothing else: not an identity endpoint outage, and it costs the replica its readiness (a replica
    is ready when all its containers are). It still computes the whole verdict, so that changes of
    it are logged (and alerted on) while the liveness probe is the only caller."""

    def __init__(
        self, host: str, port: int, judge: Callable[[], tuple[bool, str]], stall: Callable[[], str | None]
    ) -> None:
        self._judge = judge
        self._stall = stall
        self._lock = threading.Lock()
        self._last_healthy: bool | None = None
        health = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:  # one line per change of verdict instead
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == HEALTH_PATH:
                    healthy, reason = health.verdict()
                    self._answer(200 if healthy else 503, reason)
                elif path == LIVENESS_PATH:
                    _, reason = health.verdict()
                    stall = health.stall()
                    if stall is not None:
                        self._answer(503, stall)
                    else:
                        self._answer(200, f"alive; {reason}")
                else:
                    self._answer(404, f"not found; the health endpoints are {HEALTH_PATH} and {LIVENESS_PATH}")

            def _answer(self, status: int, text: str) -> None:
                body = (text + "\n").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        try:
            self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise ConfigurationError(f"cannot serve the health endpoint on port {port}: {error.strerror}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stall(self) -> str | None:
        return self._stall()

    def verdict(self) -> tuple[bool, str]:
        healthy, reason = self._judge()
        with self._lock:
            changed, self._last_healthy = healthy != self._last_healthy, healthy
        if changed:
            log(f"health: {'healthy' if healthy else 'UNHEALTHY'}: {reason}")
        return healthy, reason

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def inherit(path: str, prefix: str, state: HealthState) -> None:
    """After a restart: judge the file an earlier run wrote by its token's own expiry."""
    try:
        read = read_password_file(path)
    except OSError:
        return
    if read is None or not is_password_line(read[0], prefix):
        return
    content = read[0]
    expiry = jwt_expiry(content.decode()[len(prefix) : -1])
    if expiry is not None:
        state.wrote(Written(digest(content), expiry, inherited=True))
        log(f"found a token from an earlier run in {path}; it expires {utc(expiry)}")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="token-refresher", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="fetch one token, write the file and exit")
    parser.add_argument(
        "--resource",
        default=os.environ.get("TOKEN_RESOURCE") or DEFAULT_RESOURCE,
        help="token audience (default: TOKEN_RESOURCE or %(default)s)",
    )
    parser.add_argument(
        "--margin-seconds",
        type=float,
        default=900.0,
        help="fetch the next token this long before the current one expires (default 900)",
    )
    parser.add_argument(
        "--min-interval-seconds",
        type=float,
        default=30.0,
        help="never fetch more often than this while healthy (default 30)",
    )
    parser.add_argument(
        "--max-interval-seconds",
        type=float,
        default=3600.0,
        help="fetch at least this often, whatever the expiry (default 3600)",
    )
    parser.add_argument(
        "--backoff-base-seconds", type=float, default=1.0, help="first retry delay after a failure (default 1)"
    )
    parser.add_argument(
        "--backoff-max-seconds", type=float, default=60.0, help="longest retry delay after failures (default 60)"
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="deadline of one request to the identity endpoint, first byte to last (default %(default)g)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=None,
        help=f"serve GET {HEALTH_PATH} on this port (default: ${HEALTH_PORT_VARIABLE}; none: no endpoint)",
    )
    parser.add_argument(
        "--health-host", default="0.0.0.0", help="address the health endpoint listens on (default %(default)s)"
    )
    parser.add_argument(
        "--health-min-validity-seconds",
        type=float,
        default=None,
        help="unhealthy when the token has this long left or less (default: half of --margin-seconds)",
    )
    parser.add_argument(
        "--health-stall-grace-seconds",
        type=float,
        default=DEFAULT_STALL_GRACE_SECONDS,
        help="stalled (and not alive) when the loop is this much later than its own schedule (default %(default)g)",
    )
    arguments = parser.parse_args(argv)
    for name in (
        "margin_seconds",
        "min_interval_seconds",
        "max_interval_seconds",
        "backoff_base_seconds",
        "backoff_max_seconds",
        "timeout_seconds",
        "health_stall_grace_seconds",
    ):
        if getattr(arguments, name) < 0 or (name != "margin_seconds" and getattr(arguments, name) == 0):
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if arguments.min_interval_seconds > arguments.max_interval_seconds:
        parser.error("--min-interval-seconds must not exceed --max-interval-seconds")
    if arguments.health_port is None and os.environ.get(HEALTH_PORT_VARIABLE):
        try:
            arguments.health_port = int(os.environ[HEALTH_PORT_VARIABLE])
        except ValueError:
            parser.error(f"{HEALTH_PORT_VARIABLE} must be a port number, not {os.environ[HEALTH_PORT_VARIABLE]!r}")
    if arguments.health_port is not None and not 1 <= arguments.health_port <= 65535:
        parser.error("--health-port must be between 1 and 65535")
    if arguments.health_min_validity_seconds is None:
        arguments.health_min_validity_seconds = arguments.margin_seconds / 2
    if not 0 < arguments.health_min_validity_seconds < arguments.margin_seconds:
        # At or above the margin, a healthy refresher would report unhealthy before each refresh.
        parser.error("--health-min-validity-seconds must be positive and less than --margin-seconds")
    return arguments


def refresh(path: str, resource: str, timeout: float, announce: Callable[[Token], None] = lambda _: None) -> Token:
    token = fetch_token(resource, timeout)
    announce(token)  # before the rename, for the health check
    try:
        write_atomically(path, password_file_line(token.value))
    except OSError as error:
        raise RefreshError(f"could not write {path}: {error.strerror or error}") from None
    return token


def run(arguments: argparse.Namespace, stop: threading.Event) -> int:
    path = os.environ.get("PGPASSFILE", "")
    if not path:
        raise ConfigurationError("PGPASSFILE must name the password file to write")
    if arguments.once:  # a one-shot run never serves the health endpoint
        token = refresh(path, arguments.resource, arguments.timeout_seconds)
        log(f"wrote {path}; token expires {utc(token.expires_on)}")
        return 0

    state = HealthState()
    health: HealthServer | None = None
    if arguments.health_port is not None:
        prefix = line_prefix()
        inherit(path, prefix, state)
        min_validity = arguments.health_min_validity_seconds
        health = HealthServer(
            arguments.health_host,
            arguments.health_port,
            lambda: health_verdict(path, prefix, state, min_validity, time.time(), time.monotonic()),
            lambda: stalled(state, time.monotonic()),
        )
        health.start()
        log(
            f"health endpoint on port {arguments.health_port}{HEALTH_PATH}: unhealthy when the token has "
            f"{min_validity:g}s left or less, or the loop is {arguments.health_stall_grace_seconds:g}s late; "
            f"{LIVENESS_PATH}: failing only when the loop is late"
        )
    grace = arguments.health_stall_grace_seconds
    last_good: Token | None = None
    failures = 0
    try:
        while not stop.is_set():
            # One attempt: a request over within its deadline (the timeout), then a local write.
            state.expect_progress("refreshing", arguments.timeout_seconds + grace)
            try:
                token = refresh(
                    path,
                    arguments.resource,
                    arguments.timeout_seconds,
                    lambda new: state.writing(Written(digest(password_file_line(new.value).encode()), new.expires_on)),
                )
            except RefreshError as error:
                failures += 1
                delay = backoff_delay(failures, arguments.backoff_base_seconds, arguments.backoff_max_seconds)
                if last_good is None:
                    kept = "no token written yet"
                elif last_good.expires_on > time.time():
                    kept = f"keeping last good token (expires {utc(last_good.expires_on)})"
                else:
                    kept = f"last good token EXPIRED at {utc(last_good.expires_on)}; new connections fail"
                log(f"refresh failed ({failures} in a row): {error}; {kept}; retry in {delay:.1f}s")
                activity = f"retry {failures + 1} due {utc(time.time() + delay)}"
            else:
                now = time.time()
                delay = next_refresh_delay(
                    token, now, arguments.margin_seconds, arguments.min_interval_seconds, arguments.max_interval_seconds
                )
                state.wrote(Written(digest(password_file_line(token.value).encode()), token.expires_on))
                recovered = f" after {failures} failure(s)" if failures else ""
                log(
                    f"wrote {path}{recovered}; token expires {utc(token.expires_on)} "
                    f"(in {token.expires_on - now:.0f}s); next refresh in {delay:.1f}s"
                )
                last_good, failures = token, 0
                activity = f"next refresh due {utc(now + delay)}"
            state.expect_progress(activity, delay + grace)
            stop.wait(delay)
    finally:
        if health is not None:
            health.stop()
    log("stopping")
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    try:
        return run(arguments, stop)
    except ConfigurationError as error:
        log(f"configuration error: {error}")
        return 2
    except RefreshError as error:  # only --once lets one escape
        log(f"refresh failed: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
