"""token-refresher: keeps a libpq password file filled with a fresh Entra access token.

Runs beside postgres-mcp in the same Container App replica (a sidecar). libpq reads the
password file named by PGPASSFILE on every new connection, so each connection that
postgres-mcp's pool opens signs in with a token that has not expired, and postgres-mcp
itself needs no change: its DATABASE_URI simply carries no password.

Standard library only: this file is shipped verbatim into the stock postgres-mcp image
(`python -c <this file's text>`) and runs as `python3 components/token_refresher.py`.

Environment (the Container Apps managed identity contract plus libpq's own names):
  IDENTITY_ENDPOINT, IDENTITY_HEADER  the platform's token endpoint; the header value
                                      rotates, so both are re-read at every request
  AZURE_CLIENT_ID                     user-assigned identity to ask for (client_id)
  TOKEN_RESOURCE                      token audience, default the PostgreSQL one
  PGPASSFILE                          the password file to keep fresh (required)
  PGHOST, PGPORT, PGDATABASE, PGUSER  the line's fields; '*' where unset

Exit codes: 0 on SIGTERM/SIGINT or after a successful --once, 1 when --once fails,
2 on a configuration error. Transient failures never end the loop.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

DEFAULT_RESOURCE = "https://ossrdbms-aad.database.windows.net"
API_VERSION = "2019-08-01"
# Only the characters of a JWT (base64url segments joined by dots) are written.
TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/=")


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


def fetch_token(resource: str, timeout: float) -> Token:
    endpoint = os.environ.get("IDENTITY_ENDPOINT", "")
    header = os.environ.get("IDENTITY_HEADER", "")
    if not endpoint or not header:
        raise ConfigurationError(
            "IDENTITY_ENDPOINT and IDENTITY_HEADER must be set (the Container App needs a managed identity)"
        )
    url = request_url(endpoint, resource, os.environ.get("AZURE_CLIENT_ID") or None)
    request = urllib.request.Request(url, headers={"X-IDENTITY-HEADER": header, "Metadata": "true"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(1_000_000)
    except urllib.error.HTTPError as error:
        raise RefreshError(f"identity endpoint answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise RefreshError(f"identity endpoint unreachable: {reason}") from None
    return parse_token(body, resource, time.time())


def escape_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def password_file_line(token: str, environ: dict[str, str] | None = None) -> str:
    environ = dict(os.environ) if environ is None else environ
    fields = [
        escape_field(environ[name]) if environ.get(name) else "*"
        for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")
    ]
    return ":".join([*fields, escape_field(token)]) + "\n"


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
        default=10.0,
        help="HTTP timeout of one request to the identity endpoint (default 10)",
    )
    arguments = parser.parse_args(argv)
    for name in (
        "margin_seconds",
        "min_interval_seconds",
        "max_interval_seconds",
        "backoff_base_seconds",
        "backoff_max_seconds",
        "timeout_seconds",
    ):
        if getattr(arguments, name) < 0 or (name != "margin_seconds" and getattr(arguments, name) == 0):
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if arguments.min_interval_seconds > arguments.max_interval_seconds:
        parser.error("--min-interval-seconds must not exceed --max-interval-seconds")
    return arguments


def refresh(path: str, resource: str, timeout: float) -> Token:
    token = fetch_token(resource, timeout)
    try:
        write_atomically(path, password_file_line(token.value))
    except OSError as error:
        raise RefreshError(f"could not write {path}: {error.strerror or error}") from None
    return token


def run(arguments: argparse.Namespace, stop: threading.Event) -> int:
    path = os.environ.get("PGPASSFILE", "")
    if not path:
        raise ConfigurationError("PGPASSFILE must name the password file to write")
    if arguments.once:
        token = refresh(path, arguments.resource, arguments.timeout_seconds)
        log(f"wrote {path}; token expires {utc(token.expires_on)}")
        return 0

    last_good: Token | None = None
    failures = 0
    while not stop.is_set():
        try:
            token = refresh(path, arguments.resource, arguments.timeout_seconds)
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
        else:
            now = time.time()
            delay = next_refresh_delay(
                token, now, arguments.margin_seconds, arguments.min_interval_seconds, arguments.max_interval_seconds
            )
            recovered = f" after {failures} failure(s)" if failures else ""
            log(
                f"wrote {path}{recovered}; token expires {utc(token.expires_on)} "
                f"(in {token.expires_on - now:.0f}s); next refresh in {delay:.1f}s"
            )
            last_good, failures = token, 0
        stop.wait(delay)
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
