"""Fixtures for the refresher's tests: the identity endpoint it asks for tokens."""

from collections.abc import Iterator

import pytest

from testing.identity_endpoint import IdentityEndpoint


@pytest.fixture
def endpoint() -> Iterator[IdentityEndpoint]:
    server = IdentityEndpoint().start()
    yield server
    server.stop()
