"""The database-access provider verifies the server it hands the administrator's credential to.

A PostgreSQL 15 server whose certificate a local CA issued for "localhost" only, as Azure's name
only <server>.postgres.database.azure.com: the provider connects when the trust store it is given
holds that CA and the host name matches, and refuses an impostor's CA or another name, at once
(a refusal is not retried) and without showing the password.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest

from components.database_access import AccessSpec, DatabaseAccessError, DatabaseAccessProvider, trust_store
from testing.flexible_server import (
    APP_PASSWORD,
    SERVER_ADMIN,
    SERVER_ADMIN_PASSWORD,
    access_props,
    make_flexible,
    new_database,
    new_name,
    role_exists,
)
from testing.local_ca import LocalCA
from testing.postgres_server import PostgresServer, running_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server_ca() -> LocalCA:
    return LocalCA.create("server CA")


@pytest.fixture(scope="module")
def postgres(server_ca: LocalCA) -> Iterator[PostgresServer]:
    issue = lambda data: server_ca.issue_server_certificate(data, ("localhost",))  # noqa: E731
    with running_postgres(issue_certificate=issue) as server:
        make_flexible(server)
        yield server


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, server_ca: LocalCA) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("trust")
    return {
        "server": server_ca.write_bundle(directory / "server-ca.pem"),
        "impostor": LocalCA.create("impostor CA").write_bundle(directory / "impostor-ca.pem"),
    }


def verified(postgres: PostgresServer, database: str, role: str, host: str, bundle: Path) -> dict[str, Any]:
    return access_props(postgres, database, "password", role, host=host, sslmode="verify-full", sslrootcert=str(bundle))


def test_the_provider_connects_only_to_a_server_its_trust_store_vouches_for(
    postgres: PostgresServer, bundles: dict[str, Path]
) -> None:
    database, provider = new_database(postgres, SERVER_ADMIN), DatabaseAccessProvider()
    role = new_name("mcp")
    created = provider.create(verified(postgres, database, role, "localhost", bundles["server"]))
    assert created.outs is not None and role_exists(postgres, role)
    for host, bundle, reason in (
        ("localhost", bundles["impostor"], "certificate verify failed"),
        ("127.0.0.1", bundles["server"], "127.0.0.1"),  # the certificate names localhost only
    ):
        other = new_name("mcp")
        with pytest.raises(DatabaseAccessError) as refused:
            provider.create({**verified(postgres, database, other, host, bundle), "connect_attempts": 5})
        message = str(refused.value)
        assert "refused" in message and reason in message, message
        assert "after 5 attempts" not in message  # a refused certificate is not retried
        assert SERVER_ADMIN_PASSWORD not in message and APP_PASSWORD not in message
        assert not role_exists(postgres, other)


def test_by_default_the_provider_verifies_against_certifis_bundle_of_azures_roots() -> None:
    spec = AccessSpec.from_props({"host": "h", "admin_user": "a", "auth_mode": "token", "database": "d", "role": "r"})
    assert (spec.sslmode, spec.sslrootcert) == ("verify-full", "certifi")
    bundle = Path(trust_store(spec.sslrootcert))
    assert bundle == Path(certifi.where())
    # Microsoft Learn (security-tls-how-to-connect): Flexible Server certificates chain to these roots.
    text = bundle.read_text()
    for root in ("DigiCert Global Root G2", "Microsoft RSA Root Certificate Authority 2017"):
        assert f"CN={root}" in text, root
