"""The refresher in a sovereign cloud: it asks the managed identity endpoint for the audience TOKEN_RESOURCE
names (components/mcp_app.py sets it from the stack's cloud, azure_cloud/clouds.py), here the US Government one,
from Azure CLI's cloud definitions (`ossrdbms_resource_id` of AZURE_US_GOV_CLOUD). Run as the sidecar runs it:
the shipped text, `python -c`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.tests.refresher_run import CLIENT_ID, expected_line, refresher_env
from testing.identity_endpoint import IdentityEndpoint

pytestmark = pytest.mark.program

US_GOVERNMENT = "https://ossrdbms-aad.database.usgovcloudapi.net"


@pytest.fixture
def us_government_identity() -> Iterator[IdentityEndpoint]:
    """A managed identity endpoint that, like a US Government one for this server, issues PostgreSQL tokens only
    for the usgovcloudapi audience."""
    server = IdentityEndpoint(resource=US_GOVERNMENT).start()
    yield server
    server.stop()


def once(endpoint: IdentityEndpoint, passfile: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    from components.mcp_app import refresher_command

    return subprocess.run(
        [sys.executable, *refresher_command(900)[1:], "--once"],
        cwd=passfile.parent,
        capture_output=True,
        text=True,
        env=refresher_env(endpoint, passfile, **extra),
        timeout=30,
    )


def test_the_refresher_asks_for_token_resource(us_government_identity: IdentityEndpoint, tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    result = once(us_government_identity, passfile, TOKEN_RESOURCE=US_GOVERNMENT)
    assert result.returncode == 0, result.stderr
    (request,) = us_government_identity.requests
    assert request.query == {"resource": [US_GOVERNMENT], "api-version": ["2019-08-01"], "client_id": [CLIENT_ID]}
    assert passfile.read_text() == expected_line(us_government_identity.minted[0].token)


def test_without_token_resource_it_asks_for_the_public_audience_and_gets_nothing_here(
    us_government_identity: IdentityEndpoint, tmp_path: Path
) -> None:
    passfile = tmp_path / "pgpass"
    result = once(us_government_identity, passfile)
    assert result.returncode != 0
    (request,) = us_government_identity.requests
    assert request.query["resource"] == ["https://ossrdbms-aad.database.windows.net"]
    assert not passfile.exists()
