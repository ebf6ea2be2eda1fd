"""The database-access provider's token in a sovereign cloud, asked of Entra as GitHub Actions with OIDC asks it
(the local stand-ins of testing/oidc_endpoints.py; fixtures in tests/deployer_sign_in.py): the scope is the one
the provider's `entra_scope` input names (azure_cloud/clouds.py, from Azure CLI's `ossrdbms_resource_id`)."""

from __future__ import annotations

import pytest

from azure_cloud.clouds import PUBLIC, US_GOVERNMENT
from components import database_access
from components.database_access import AccessSpec
from testing.oidc_endpoints import EntraTokenEndpoint

pytestmark = pytest.mark.program

DECLARED = {
    "host": "db.postgres.database.usgovcloudapi.net",
    "admin_user": "admins",
    "auth_mode": "token",
    "database": "app",
    "role": "postgres_mcp",
}


def test_the_provider_asks_entra_for_its_clouds_postgresql_scope(
    actions_job: dict[str, str], entra: EntraTokenEndpoint
) -> None:
    us_government = AccessSpec.from_props({**DECLARED, "entra_scope": US_GOVERNMENT.ossrdbms_scope})
    assert database_access.Connector(us_government, None).password() == entra.issued[0]
    assert entra.scopes == ["https://ossrdbms-aad.database.usgovcloudapi.net/.default"]


def test_a_state_from_before_the_input_asks_for_the_public_scope(
    actions_job: dict[str, str], entra: EntraTokenEndpoint
) -> None:
    assert database_access.Connector(AccessSpec.from_props(DECLARED), None).password() == entra.issued[0]
    assert entra.scopes == [PUBLIC.ossrdbms_scope] == ["https://ossrdbms-aad.database.windows.net/.default"]
