"""postgres-mcp on Azure Container Apps against a Flexible Server, signed in with Entra ID.

config --> network --> identity + Key Vault --> database --> MCP app (+ token refresher) --> token alerts

An existing server or environment (existingServerId, existingEnvironmentId) is looked up before anything
is declared and never declared itself: the program adds only its own children to it.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization, resources

import settings
from components.adoption import (
    ADOPTED_RECORD_KEY,
    ENVIRONMENT_RECORD_KEY,
    AdoptedEnvironment,
    AdoptedServer,
    adopt_environment,
    adopt_server,
    adoption_record,
    owned_prefix,
    recorded_adoption,
    refuse_adopting_over_an_owned_server,
)
from components.alerts import TokenAlerts
from components.database import (
    CREATE_ONLY_OUTPUT,
    Database,
    administrator_login,
    create_only_values,
    earlier_entra_admin,
    recorded_create_only_values,
    refuse_create_only_changes,
    refuse_password_mode_without_login,
    server_name_prefix,
)
from components.database_access import DatabaseAccess
from components.identity_and_secrets import IdentityAndSecrets
from components.mcp_app import (
    ENVIRONMENT_OUTPUT,
    Admission,
    McpApp,
    entra_scope,
    environment_create_only_values,
    mcp_client_configuration,
    refuse_environment_replacement_in_place,
)
from components.monitoring import Monitoring
from components.network import AppNetwork
from components.stack_record import own_stack_outputs
from settings.deployer import complete_entra_admin

# Refuses bad values before anything is read or declared.
config = complete_entra_admin(settings.load(), lambda: earlier_entra_admin(own_stack_outputs()))
name = config.base_name
client = authorization.get_client_config_output()

# A change that Azure can only make by replacement (the server, and its data; the environment, on the
# subnet it still holds) stops the run here, before any resource is declared.
recorded = own_stack_outputs()  # the last update's outputs
server_record = recorded_create_only_values(recorded)
# What the stack adopts (existingServerId, existingEnvironmentId) is read, and refused if it cannot be served
# as it is, here too: before any resource is declared. The program never declares an adopted resource.
adopted_server: AdoptedServer | None = None
adopted_environment: AdoptedEnvironment | None = None
if config.existing_server is not None or config.existing_environment is not None:
    subscription_id = authorization.get_client_config().subscription_id
    if config.existing_server is not None:
        refuse_adopting_over_an_owned_server(server_record, config)
        adopted_server = adopt_server(config, subscription_id, server_record)
    if config.existing_environment is not None:
        adopted_environment = adopt_environment(config, subscription_id)
if adopted_server is None:
    # The create-only guard protects the server this stack creates; an adopted one is not the stack's.
    admin_login = administrator_login(None if recorded_adoption(server_record, ADOPTED_RECORD_KEY) else server_record)
    refuse_password_mode_without_login(admin_login, config.auth_mode)
    create_only = refuse_create_only_changes(
        server_record, create_only_values(name, config.location, config.geo_redundant_backup, admin_login)
    )
else:
    admin_login = adopted_server.administrator_login  # the server's own (adopt_server refused none in password mode)
    create_only = adoption_record(adopted_server, config)
if adopted_environment is None:
    environment_create_only = refuse_environment_replacement_in_place(
        recorded.get(ENVIRONMENT_OUTPUT),
        environment_create_only_values(config.ingress_internal, config.zone_redundant, str(config.app_subnet_cidr)),
    )
else:
    environment_create_only = {ENVIRONMENT_RECORD_KEY: adopted_environment.id}
resource_group = resources.ResourceGroup(f"{name}-rg", location=config.location, tags=config.tags)
# Server and vault names are global: a stable random suffix keeps stacks apart.
suffix = random.RandomString(f"{name}-suffix", length=6, special=False, upper=False).result

monitoring = Monitoring(
    f"{name}-monitoring",
    {
        "resource_group_name": resource_group.name,
        "location": resource_group.location,
        "retention_days": config.log_retention_days,
        "tags": config.tags,
    },
)

# An existing environment brings its own network; its egress addresses come from appEgressIps.
network = (
    AppNetwork(
        f"{name}-network",
        {
            "resource_group_name": resource_group.name,
            "location": resource_group.location,
            "vnet_cidr": str(config.vnet_cidr),
            "app_subnet_cidr": str(config.app_subnet_cidr),
            "client_sources": config.mcp_client_sources,
            "zone_redundant": config.zone_redundant,
            "tags": config.tags,
        },
    )
    if adopted_environment is None
    else None
)

secrets = IdentityAndSecrets(
    f"{name}-identity",
    {
        "resource_group_name": resource_group.name,
        "location": resource_group.location,
        "base_name": name,
        "name_suffix": suffix,
        "tenant_id": client.tenant_id,
        "subscription_id": client.subscription_id,
        "with_passwords": config.auth_mode == "password",
        "purge_protection": config.key_vault_purge_protection,
        "soft_delete_retention_days": config.key_vault_soft_delete_retention_days,
        "protect": config.protect_resources,
        "tags": config.tags,
        "workspace_id": monitoring.workspace_id,
        # An adopted server's administrator password is the owner's (secret config); none is generated.
        "adopted_admin_password": (
            pulumi.Output.secret(config.existing_server_admin_password) if adopted_server is not None else None
        ),
    },
)

database = Database(
    f"{name}-database",
    {
        "resource_group_name": resource_group.name,
        "location": resource_group.location,
        "server_name": pulumi.Output.concat(server_name_prefix(name), suffix),
        "tenant_id": client.tenant_id,
        "entra_admin": config.entra_admin,
        "password_auth": config.auth_mode == "password",
        "administrator_login": admin_login,
        "administrator_password": secrets.admin_password,
        "version": config.postgres_version,
        "sku_name": config.sku_name,
        "sku_tier": config.sku_tier,
        "storage_size_gb": config.storage_size_gb,
        "backup_retention_days": config.backup_retention_days,
        "geo_redundant_backup": config.geo_redundant_backup,
        "high_availability": config.high_availability,
        "maintenance_window": config.maintenance_window,
        "database_name": config.database_name,
        "deployer_networks": config.deployer_networks,
        "app_egress_ip": (
            network.egress_ip_address if network is not None else tuple(str(ip) for ip in config.app_egress_ips)
        ),
        "allow_azure_services": config.allow_azure_services,
        "ci_runner_ip": config.ci_runner_ip,
        "protect": config.protect_resources,
        "tags": config.tags,
        "workspace_id": monitoring.workspace_id,
        "adopted": adopted_server,
        "owned_prefix": owned_prefix(name),
        "existing_database": config.existing_database,
        "entra_admin_exists": config.entra_admin_exists,
    },
)

# The app's role and grants, converged by a dynamic provider signed in as the admin.
app_needs: list[pulumi.Resource] = list(database.ready)
if config.manage_database_access:
    access = DatabaseAccess(
        f"{name}-access",
        {
            "host": database.fqdn,
            # Password mode: the program's login (ADMIN_LOGIN), or an adopted server's own.
            "admin_user": database.entra_admin_principal_name if config.auth_mode == "token" else admin_login,
            "auth_mode": config.auth_mode,
            "database": database.database_name,
            "role": config.app_role_name,
            "schemas": list(config.grant_schemas),
            "owner_roles": list(config.grant_on_objects_owned_by),
            "privilege_level": config.privilege_level,
            "principal_id": secrets.identity_principal_id if config.auth_mode == "token" else None,
            "admin_password": secrets.admin_password,
            "role_password": secrets.app_password,
        },
        opts=pulumi.ResourceOptions(depends_on=database.ready),
    )
    app_needs.append(access)

mcp = McpApp(
    f"{name}-mcp",
    {
        "resource_group_name": resource_group.name,
        "location": resource_group.location,
        "base_name": name,
        "auth_mode": config.auth_mode,
        "image": config.mcp_image,
        "access_mode": config.mcp_access_mode,
        "token_refresh_margin_seconds": config.token_refresh_margin_seconds,
        "vnet_id": network.vnet_id if network is not None else "",
        "subnet_id": network.subnet_id if network is not None else "",
        "identity": secrets,
        "database_host": database.fqdn,
        "database_name": database.database_name,
        "app_role_name": config.app_role_name,
        "monitoring": monitoring,
        "zone_redundant": config.zone_redundant,
        "tags": config.tags,
        "admission": Admission(
            internal=config.ingress_internal,
            allowed_cidrs=tuple(str(network) for network in config.allowed_client_networks),
            entra_client_id=config.entra_auth_client_id,
            allowed_client_ids=config.entra_auth_allowed_client_ids,
            tenant_id=client.tenant_id,
        ),
        "depends_on": app_needs,
        "container_app_name": config.app_name,
        "existing_environment": adopted_environment,
    },
)

if config.auth_mode == "token" and adopted_environment is not None:
    # The app's logs go to the existing environment's workspace, which the program does not know by ID.
    pulumi.log.warn(
        "existingEnvironmentId: the token alerts are not created (the app's logs go to the existing "
        "environment's Log Analytics workspace); see the README, 'Fix an existing deployment'"
    )
elif config.auth_mode == "token":  # alerts on the token path: expiry, refresher failures and restarts
    TokenAlerts(
        f"{name}-alerts",
        {
            "resource_group_name": resource_group.name,
            "location": resource_group.location,
            "base_name": name,
            "workspace_id": monitoring.workspace_id,
            "container_app_name": mcp.container_app_name,
            "emails": config.alert_emails,
            "tags": config.tags,
        },
    )

pulumi.export("authMode", config.auth_mode)
pulumi.export("mcpSseUrl", mcp.sse_url)
pulumi.export("serverFqdn", database.fqdn)
pulumi.export("databaseName", database.database_name)
pulumi.export("appRoleName", config.app_role_name)
pulumi.export("appIdentityClientId", secrets.identity_client_id)
pulumi.export("appIdentityPrincipalId", secrets.identity_principal_id)
pulumi.export("entraAdminPrincipalName", database.entra_admin_principal_name)
if network is not None:
    pulumi.export("appEgressIp", network.egress_ip_address)
else:
    pulumi.export("appEgressIps", [str(ip) for ip in config.app_egress_ips])
pulumi.export("keyVaultUri", secrets.vault_uri)
# Read back by the next run: a change of a create-only server property stops it (see components/database.py).
pulumi.export(CREATE_ONLY_OUTPUT, create_only)
pulumi.export(ENVIRONMENT_OUTPUT, environment_create_only)
pulumi.export("mcpEnvironmentIp", mcp.static_ip)
pulumi.export("mcpAdmission", config.admission)
pulumi.export("mcpEntraScope", entra_scope(config.entra_auth_client_id))
pulumi.export(
    "mcpClientConfig",
    mcp.sse_url.apply(
        lambda url: mcp_client_configuration(f"postgres-{config.stack}", url, config.entra_auth_client_id)
    ),
)
