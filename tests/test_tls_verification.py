"""The app's DATABASE_URI verifies the server, with the psycopg that the postgres-mcp image runs.

`sslmode=require` encrypts but accepts any certificate: the app's token or password would go to
whoever answers. The URIs now say `sslmode=verify-full&sslrootcert=system` (libpq 16+: trust
OpenSSL's default store, check the host name), and the container gets `SSL_CERT_FILE`, because the
image's psycopg-binary 3.2.6 bundles its own OpenSSL whose default store is its build directory,
not Debian's `/etc/ssl/certs` (measured below). Against a local PostgreSQL whose certificate comes
from a local CA: the connection succeeds when that CA is the trust store (`SSL_CERT_FILE`) and the
host name matches, and is refused otherwise.

The same checks run with the deployer's psycopg (this project's virtualenv), which the role/grant
provider uses: its bundled OpenSSL does not look in Debian's store either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import run_program

from components.mcp_app import SYSTEM_TRUST_STORE, password_database_uri, passwordless_database_uri
from drill.postgres_mcp_venv import ensure_venv
from testing.local_ca import LocalCA
from testing.postgres_server import PostgresServer, running_postgres

pytestmark = pytest.mark.postgres

ROLE, PASSWORD, DATABASE = "mcp_app", "s3cret-Pass_word", "app"
DEBIAN_TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"

# Connects with the URI in argv[1] and reports, as the app's psycopg sees it.
CLIENT = """
import json, sys
import psycopg
try:
    with psycopg.connect(sys.argv[1], connect_timeout=5) as connection:
        ssl = connection.pgconn.ssl_in_use
        user = connection.execute("select current_user").fetchone()[0]
    print(json.dumps({"ok": True, "ssl": bool(ssl), "user": user}))
except psycopg.OperationalError as error:
    print(json.dumps({"ok": False, "error": str(error)}))
print(json.dumps({"psycopg": psycopg.__version__, "impl": psycopg.pq.__impl__, "libpq": psycopg.pq.version()}))
"""


# Where the OpenSSL bundled in psycopg-binary looks for the default trust store (its OPENSSLDIR).
DEFAULT_STORE = """
import ctypes, glob, os, psycopg, psycopg_binary
site = os.path.dirname(os.path.dirname(psycopg_binary.__file__))
library = ctypes.CDLL(glob.glob(os.path.join(site, "psycopg_binary.libs", "libcrypto*"))[0])
library.X509_get_default_cert_file.restype = ctypes.c_char_p
print(library.X509_get_default_cert_file().decode())
"""


@pytest.fixture(scope="module")
def server_ca() -> LocalCA:
    return LocalCA.create("server CA")


@pytest.fixture(scope="module")
def server(server_ca: LocalCA) -> Iterator[PostgresServer]:
    # The certificate names "localhost" only, as Azure's names only <server>.postgres.database.azure.com.
    with running_postgres(
        issue_certificate=lambda data: server_ca.issue_server_certificate(data, ("localhost",))
    ) as pg:
        with pg.superuser() as su:
            su.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            su.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        yield pg


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory, server_ca: LocalCA) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("trust")
    return {
        "server": server_ca.write_bundle(directory / "server-ca.pem"),
        "impostor": LocalCA.create("impostor CA").write_bundle(directory / "impostor-ca.pem"),
    }


@pytest.fixture(scope="module", params=["image", "deployer"])
def python(request: pytest.FixtureRequest) -> str:
    """The image's interpreter (psycopg[binary]==3.2.6, as postgres-mcp 0.3.0 locks it), or the deployer's."""
    if request.param == "image":
        return str(ensure_venv(log=False) / "bin" / "python")
    return sys.executable


def connect(python: str, uri: str, env: dict[str, str]) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "SSL_CERT_"))}
    out = subprocess.run(
        [python, "-c", CLIENT, uri], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=True
    )
    result, versions = (json.loads(line) for line in out.stdout.splitlines())
    return {**result, **versions}


def uris(host: str, port: int) -> dict[str, str]:
    return {
        "password": password_database_uri(ROLE, PASSWORD, host, DATABASE, port),
        "token": passwordless_database_uri(ROLE, host, DATABASE, port),
    }


@pytest.fixture
def pgpass(tmp_path: Path, server: PostgresServer) -> Path:
    # Token mode: the password comes from PGPASSFILE, as the refresher writes it.
    path = tmp_path / "pgpass"
    path.write_text(f"*:{server.port}:{DATABASE}:{ROLE}:{PASSWORD}\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("mode", ["password", "token"])
def test_the_trusted_server_under_its_own_name_is_accepted(
    python: str, server: PostgresServer, trust: dict[str, Path], pgpass: Path, mode: str
) -> None:
    uri = uris("localhost", server.port)[mode]
    assert "sslmode=verify-full&sslrootcert=system" in uri
    result = connect(python, uri, {"SSL_CERT_FILE": str(trust["server"]), "PGPASSFILE": str(pgpass)})
    assert result["ok"] is True, result
    assert result["ssl"] is True and result["user"] == ROLE
    assert result["libpq"] >= 160000  # sslrootcert=system needs libpq 16


@pytest.mark.parametrize("mode", ["password", "token"])
def test_a_certificate_from_another_authority_is_refused(
    python: str, server: PostgresServer, trust: dict[str, Path], pgpass: Path, mode: str
) -> None:
    uri = uris("localhost", server.port)[mode]
    result = connect(python, uri, {"SSL_CERT_FILE": str(trust["impostor"]), "PGPASSFILE": str(pgpass)})
    assert result["ok"] is False and "certificate verify failed" in result["error"], result
    # What the old URI did with the same impostor: encrypted, and accepted.
    old = uri.replace("sslmode=verify-full&sslrootcert=system", "sslmode=require")
    assert connect(python, old, {"SSL_CERT_FILE": str(trust["impostor"]), "PGPASSFILE": str(pgpass)})["ok"] is True


def test_a_host_name_the_certificate_does_not_carry_is_refused(
    python: str, server: PostgresServer, trust: dict[str, Path]
) -> None:
    uri = uris("127.0.0.1", server.port)["password"]  # the same server, by an address its certificate lacks
    result = connect(python, uri, {"SSL_CERT_FILE": str(trust["server"])})
    assert result["ok"] is False and "does not match host name" in result["error"], result


def test_without_ssl_cert_file_the_bundled_openssl_trusts_nothing_of_debians(
    python: str, server: PostgresServer, trust: dict[str, Path]
) -> None:
    # The wheel's libcrypto reports its own default store: not Debian's, so the container needs SSL_CERT_FILE.
    default_store = subprocess.run(
        [python, "-c", DEFAULT_STORE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert default_store != DEBIAN_TRUST_STORE and not default_store.startswith("/etc/ssl/"), default_store
    result = connect(python, uris("localhost", server.port)["password"], {})
    assert result["ok"] is False and "certificate verify failed" in result["error"], result


@pytest.mark.parametrize("mode", ["token", "password"])
def test_the_container_verifies_the_server_against_debians_store(mode: str) -> None:
    run = run_program("dev", {"authMode": mode})
    template = run.one("azure-native:app:ContainerApp").inputs["template"]
    mcp = next(c for c in template["containers"] if c["name"] == "postgres-mcp")
    env = {variable["name"]: variable for variable in mcp["env"]}
    # python:3.12-slim-bookworm (the postgres-mcp 0.3.0 base) installs Debian's ca-certificates, whose
    # bundle holds the public roots Azure's PostgreSQL certificates chain to.
    assert env["SSL_CERT_FILE"]["value"] == SYSTEM_TRUST_STORE == DEBIAN_TRUST_STORE
    if mode == "token":
        assert env["DATABASE_URI"]["value"].endswith("/app?sslmode=verify-full&sslrootcert=system")
    else:
        (stored,) = [s for s in run.of_type("azure-native:keyvault:Secret") if s.inputs["secretName"] == "database-uri"]
        assert stored.inputs["properties"]["value"].endswith("/app?sslmode=verify-full&sslrootcert=system")


def test_an_explicit_trust_store_file_needs_no_environment(server: PostgresServer, trust: dict[str, Path]) -> None:
    # For the role/grant provider, which runs on laptops and CI runners alike: naming the bundle in
    # sslrootcert (e.g. certifi.where(), which holds the roots Azure's certificates chain to) verifies
    # the server without SSL_CERT_FILE, whatever OpenSSL the psycopg wheel bundles.
    base = f"postgresql://{ROLE}:{PASSWORD}@localhost:{server.port}/{DATABASE}?sslmode=verify-full&sslrootcert="
    assert connect(sys.executable, base + str(trust["server"]), {})["ok"] is True
    refused = connect(sys.executable, base + str(trust["impostor"]), {})
    assert refused["ok"] is False and "certificate verify failed" in refused["error"], refused
