"""Everything decided before a resource is declared, in one call: `run(config) -> Preflight`.

The order is the one a refusal needs: read the stack's records (its last update's outputs), look
up what the stack adopts (existingServerId, existingEnvironmentId), then compare what the program
would declare with what Azure can only change by replacement (the server and its data; the
environment, on the subnet it still holds), and with what nobody asked to change (the Entra
administrator when only the deployer changed, the server's major version, a database the stack
created on an adopted server). Every lookup is a synchronous invoke, so a refusal ends the run
before the first resource exists, in `pulumi preview` and `pulumi up --skip-preview` alike. Then
the records for the next run are exported, apart from the user's outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_azure_native import authorization

from azure_cloud.clouds import PUBLIC, Cloud, stack_cloud
from preflight.adoption import (
    ADOPTED_RECORD_KEY,
    ENVIRONMENT_RECORD_KEY,
    AdoptedEnvironment,
    AdoptedServer,
    adopt_environment,
    adopt_server,
    adoption_record,
    recorded_adoption,
    refuse_adopting_over_an_owned_server,
)
from preflight.alert_workspace import AlertWorkspace, alert_workspace
from preflight.created_database import refuse_dropping_a_created_database, retention_record
from preflight.entra_admin_record import (
    ENTRA_ADMIN_OUTPUT,
    entra_admin_record,
    keep_recorded_entra_admin,
    refuse_silent_entra_admin_change,
)
from preflight.environment_record import (
    ENVIRONMENT_OUTPUT,
    environment_create_only_values,
    refuse_environment_replacement_in_place,
)
from preflight.gateway_image import gateway_image_digest, store_subnet_warning
from preflight.providers import refuse_unregistered_providers
from preflight.server_record import (
    CREATE_ONLY_OUTPUT,
    administrator_login,
    create_only_values,
    earlier_entra_admin,
    recorded_create_only_values,
    refuse_create_only_changes,
    refuse_password_mode_without_login,
)
from preflight.stack_record import own_stack_outputs
from preflight.version_upgrade import check_major_version
from settings import Settings, complete_entra_admin


@dataclass(frozen=True)
class Preflight:
    """What the components are declared with, once nothing stands in the way."""

    config: Settings
    """The stack's settings, with the Entra administrator's empty keys taken from the deployer."""
    adopted_server: AdoptedServer | None
    """The existing server (existingServerId), read and accepted; None when the stack has its own."""
    adopted_environment: AdoptedEnvironment | None
    """The existing Container Apps environment (existingEnvironmentId); None when the stack creates one."""
    administrator_login: str
    """The server's password administrator: the program's ADMIN_LOGIN, NO_LOGIN for a server an earlier
    version created without one, or an adopted server's own."""
    server_record: Mapping[str, Any]
    """Exported as `serverCreateOnly`: the server's create-only values, or what the stack adopts."""
    environment_record: Mapping[str, Any]
    """Exported as `environmentCreateOnly`: the environment's create-only values, or its adopted ID."""
    alert_workspace: AlertWorkspace | None = None
    """Token mode in an adopted environment: the workspace that receives its logs (alertWorkspaceId), where the
    token alerts go; None otherwise (the stack's own environment logs to the stack's own workspace)."""
    cloud: Cloud = PUBLIC
    """The Azure cloud the stack lives in (azure_cloud/clouds.py): its token audiences, authority and endpoints."""
    gateway_image_digest: str = ""
    """signIn gateway without gatewayImage: the gateway image's digest in the stack's registry (gatewayImageDigest,
    or a placeholder in a preview: preflight/gateway_image.py); "" otherwise."""


def run(loaded: Settings) -> Preflight:
    """Reads who deploys, the records and what is adopted, and refuses what Azure could only do by replacement."""
    # First, every resource provider the stack declares resources of is registered (azure-native never registers
    # one): the lookups below would otherwise fail on an unregistered namespace with a less helpful message.
    # The gateway's image: `pulumi up` without one stops before anything else is read or declared.
    gateway_digest = gateway_image_digest(loaded)
    cloud = stack_cloud(loaded.azure_cloud)  # azureCloud and azure-native's cloud agree, or the run stops here
    refuse_unregistered_providers(authorization.get_client_config().subscription_id, cloud)
    recorded = own_stack_outputs()  # the last update's outputs, read once
    # Who deploys: an empty Entra administrator key defaults to the principal of the deployer's Azure token
    # (an invoke, so apart from settings.load, which does no I/O); the recorded administrator stays unless a key
    # says otherwise.
    config = keep_recorded_entra_admin(
        recorded, loaded, complete_entra_admin(loaded, lambda: earlier_entra_admin(recorded))
    )
    refuse_silent_entra_admin_change(recorded, loaded, config)  # a deployer's change is no administrator's change
    server_record = recorded_create_only_values(recorded)
    adopted_server: AdoptedServer | None = None
    adopted_environment: AdoptedEnvironment | None = None
    refuse_dropping_a_created_database(server_record, config)  # before adoption: the old server's database
    if config.existing_server is not None or config.existing_environment is not None:
        subscription_id = authorization.get_client_config().subscription_id
        if config.existing_server is not None:
            refuse_adopting_over_an_owned_server(server_record, config)
            adopted_server = adopt_server(config, subscription_id, server_record)
        if config.existing_environment is not None:
            adopted_environment = adopt_environment(config, subscription_id)

    if adopted_server is None:
        # The create-only guard protects the server this stack creates; an adopted one is not the stack's.
        own_record = None if recorded_adoption(server_record, ADOPTED_RECORD_KEY) else server_record
        login = administrator_login(own_record)
        refuse_password_mode_without_login(login, config.auth_mode)
        declared = create_only_values(config.base_name, config.location, config.geo_redundant_backup, login)
        new_server_record: Mapping[str, Any] = {
            **refuse_create_only_changes(server_record, declared),
            **check_major_version(own_record, config.postgres_version, config.allow_major_version_upgrade),
        }
    else:
        login = adopted_server.administrator_login  # the server's own (adopt_server refused none in password mode)
        new_server_record = {**adoption_record(adopted_server, config), **retention_record(config, adopted=True)}

    watched: AlertWorkspace | None = None
    if adopted_environment is None:
        environment_record: Mapping[str, Any] = refuse_environment_replacement_in_place(
            recorded.get(ENVIRONMENT_OUTPUT),
            environment_create_only_values(config.ingress_internal, config.zone_redundant, str(config.app_subnet_cidr)),
        )
    else:
        environment_record = {ENVIRONMENT_RECORD_KEY: adopted_environment.id}
        # The app's logs go to the existing environment's workspace: alertWorkspaceId names it, or a warning
        # says that no token alerts are created.
        watched = alert_workspace(config, adopted_environment)
        if config.sign_in == "gateway":
            pulumi.log.warn(store_subnet_warning(adopted_environment.infrastructure_subnet_id))

    return Preflight(
        config,
        adopted_server,
        adopted_environment,
        login,
        new_server_record,
        environment_record,
        watched,
        cloud,
        gateway_image_digest=gateway_digest,
    )


def export_records(checked: Preflight) -> None:
    """The records the next run reads back (`own_stack_outputs`). Their names are part of every existing
    stack's state: renaming one would make the next run see no record, and guard nothing."""
    pulumi.export(CREATE_ONLY_OUTPUT, dict(checked.server_record))
    pulumi.export(ENVIRONMENT_OUTPUT, dict(checked.environment_record))
    pulumi.export(ENTRA_ADMIN_OUTPUT, entra_admin_record(checked.config.entra_admin))
