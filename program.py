"""The program, importable: `main()` declares the stack (`__main__.py` calls it; the tests import it).

config --> preflight --> monitoring --> network + environment --> identity + Key Vault --> database
       --> role and grants --> [sign-in: gateway image, app registration, gateway keys, shared store]
       --> MCP app (+ token refresher, + sign-in gateway) --> token alerts --> outputs, records

Preflight decides everything before a resource is declared: the stack's records, what it adopts
(existingServerId, existingEnvironmentId: looked up, never declared) and the create-only guards.
"""

from __future__ import annotations

from typing import TypedDict

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization, resources

import preflight
import settings
from components.alerts import RESOURCE_SPECIFIC, TokenAlerts
from components.app_registration import AppRegistration
from components.client_configs import client_configurations
from components.database import Database
from components.database_access import DatabaseAccess
from components.environment import Environment
from components.gateway_registry import GatewayRegistry
from components.identity_and_secrets import IdentityAndSecrets
from components.mcp_app import (
    DATABASE_URI_SECRET,
    ENTRA_CLIENT_SECRET_SECRET,
    GATEWAY_SIGNING_KEY_SECRET,
    GATEWAY_STORE_KEY_SECRET,
    Admission,
    Gateway,
    McpApp,
    entra_scope,
    mcp_client_configuration,
    public_url,
)
from components.mcp_app import secret_password_database_uri as password_uri
from components.monitoring import Monitoring
from components.network import AppNetwork
from components.sign_in_store import SignInStore
from preflight.adoption import AdoptedEnvironment, owned_prefix
from preflight.created_database import retains_created_database
from preflight.server_record import server_name_prefix


class Placement(TypedDict):
    """Where every component goes: the arguments they all share."""

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    tags: dict[str, str]


def main() -> None:
    # Load the config: every bad value is refused, by its key, before anything is read or declared.
    # Preflight: who deploys (the Entra administrator's defaults); a change Azure can only make by replacement,
    # or an adopted resource that cannot be served as it is, stops the run here.
    checked = preflight.run(settings.load())
    config = checked.config
    name = config.base_name
    client = authorization.get_client_config_output()

    # Deploy the resource group; server and vault names are global: a stable random suffix keeps stacks apart.
    resource_group = resources.ResourceGroup(f"{name}-rg", location=config.location, tags=config.tags)
    suffix = random.RandomString(f"{name}-suffix", length=6, special=False, upper=False).result
    placed = Placement(resource_group_name=resource_group.name, location=resource_group.location, tags=config.tags)
    gateway_sign_in = config.sign_in == "gateway"

    # Deploy monitoring
    monitoring = Monitoring(f"{name}-monitoring", {**placed, "retention_days": config.log_retention_days})

    # Deploy the network and the Container Apps environment, unless the stack joins an existing environment,
    # which brings its own network (its egress addresses come from appEgressIps).
    network: AppNetwork | None = None
    environment: Environment | AdoptedEnvironment
    if checked.adopted_environment is None:
        network = AppNetwork(
            f"{name}-network",
            {
                **placed,
                "vnet_cidr": str(config.vnet_cidr),
                "app_subnet_cidr": str(config.app_subnet_cidr),
                "client_sources": config.mcp_client_sources,
                "internal": config.ingress_internal,
                "zone_redundant": config.zone_redundant,
                # The sign-in gateway's store admits the apps subnet through its service endpoint.
                "storage_service_endpoint": gateway_sign_in,
            },
        )
        environment = Environment(
            f"{name}-mcp",  # the app's name: the environment's resources keep the names they had under McpApp
            {
                **placed,
                "subnet_id": network.subnet_id,
                "vnet_id": network.vnet_id,
                "internal": config.ingress_internal,
                "zone_redundant": config.zone_redundant,
                "workspace_id": monitoring.workspace_id,
            },
        )
    else:
        environment = checked.adopted_environment

    # Deploy the app's identity and the Key Vault with the generated passwords
    secrets = IdentityAndSecrets(
        f"{name}-identity",
        {
            **placed,
            "base_name": name,
            "name_suffix": suffix,
            "tenant_id": client.tenant_id,
            "subscription_id": client.subscription_id,
            "with_passwords": config.auth_mode == "password",
            "references_vault": gateway_sign_in,  # the gateway's keys are Key Vault references in both modes
            "purge_protection": config.key_vault_purge_protection,
            "soft_delete_retention_days": config.key_vault_soft_delete_retention_days,
            "key_vault_role_wait_seconds": config.key_vault_role_wait_seconds,
            "protect": config.protect_resources,
            "workspace_id": monitoring.workspace_id,
            # An adopted server's administrator password is the owner's (secret config); none is generated.
            "adopted_admin_password": (
                pulumi.Output.secret(config.existing_server_admin_password) if checked.adopted_server else None
            ),
        },
    )

    # Deploy the database: the server, or the stack's own children on an adopted one
    database = Database(
        f"{name}-database",
        {
            **placed,
            "server_name": pulumi.Output.concat(server_name_prefix(name), suffix),
            "tenant_id": client.tenant_id,
            "entra_admin": config.entra_admin,
            "password_auth": config.auth_mode == "password",
            "administrator_login": checked.administrator_login,
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
            "workspace_id": monitoring.workspace_id,
            "adopted": checked.adopted_server,
            "owned_prefix": owned_prefix(name),
            "existing_database": config.existing_database,
            "entra_admin_exists": config.entra_admin_exists,
            "retain_database": retains_created_database(config, adopted=checked.adopted_server is not None),
        },
    )

    # Deploy the app's role and grants, converged by a dynamic provider signed in as the administrator
    token_mode = config.auth_mode == "token"
    app_needs: list[pulumi.Resource] = [*secrets.secrets_readable, *database.ready]
    if config.manage_database_access:
        access = DatabaseAccess(
            f"{name}-access",
            {
                "host": database.fqdn,
                # Password mode: the program's login (ADMIN_LOGIN), or an adopted server's own.
                "admin_user": database.entra_admin_principal_name if token_mode else checked.administrator_login,
                "auth_mode": config.auth_mode,
                "database": database.database_name,
                "role": config.app_role_name,
                "schemas": list(config.grant_schemas),
                "owner_roles": list(config.grant_on_objects_owned_by),
                "privilege_level": config.privilege_level,
                "principal_id": secrets.identity_principal_id if token_mode else None,
                "admin_password": secrets.admin_password,
                "role_password": secrets.app_password,
                "entra_scope": checked.cloud.ossrdbms_scope,
            },
            opts=pulumi.ResourceOptions(depends_on=database.ready),
        )
        app_needs.append(access)

    # The app's public URL, known before the app exists (its name and the environment's default domain): the
    # gateway's GATEWAY_PUBLIC_URL and the app registration's redirect URI, <gateway_public_url>/auth/callback.
    gateway_public_url: pulumi.Output[str] = public_url(config.app_name, environment.default_domain)

    easy_auth_client_id = config.entra_auth_client_id if config.sign_in == "easyAuth" else ""
    sign_in_client_id: pulumi.Output[str] = pulumi.Output.from_input("")
    gateway: Gateway | None = None
    gateway_registry: GatewayRegistry | None = None
    app_registration: AppRegistration | None = None
    if gateway_sign_in:
        # Deploy the gateway's image source: the stack's own registry (the deploy pipeline pushes the image there
        # and sets gatewayImageDigest) unless gatewayImage names a prebuilt image
        gateway_image: pulumi.Output[str]
        if config.gateway_image:
            gateway_image = pulumi.Output.from_input(config.gateway_image)
        else:
            gateway_registry = GatewayRegistry(
                f"{name}-gateway-registry",
                {
                    **placed,
                    "base_name": name,
                    "name_suffix": suffix,
                    "subscription_id": client.subscription_id,
                    "identity_principal_id": secrets.identity_principal_id,
                    "image_digest": checked.gateway_image_digest,
                    "role_wait_seconds": config.key_vault_role_wait_seconds,
                },
            )
            gateway_image = gateway_registry.image
            app_needs.extend(gateway_registry.pull_ready)

        # Deploy the Entra app registration users sign in to: created with pulumi-azuread (a federated credential
        # trusting the app's identity), or adopted from entraAuthClientId (docs/sign-in.md#the-app-registration)
        app_registration = AppRegistration(
            f"{name}-sign-in",
            {
                "display_name": f"postgres-mcp {name}",
                "tenant_id": client.tenant_id,
                "deployer_object_id": client.object_id,
                "cloud": checked.cloud,
                "public_url": gateway_public_url,
                "identity_principal_id": secrets.identity_principal_id,
                "adopted_client_id": config.entra_auth_client_id,
                "credential": config.gateway_credential,
            },
        )
        sign_in_client_id = app_registration.client_id
        app_needs.extend(app_registration.ready)

        # Deploy the gateway's keys in Key Vault: generated (stable across replicas and revisions), and the
        # adopted registration's client secret when gatewayCredential is `secret`
        signing_key_url = secrets.add_generated_key(f"{name}-gateway-signing-key", GATEWAY_SIGNING_KEY_SECRET)
        store_key_url = secrets.add_generated_key(f"{name}-gateway-store-key", GATEWAY_STORE_KEY_SECRET)
        client_secret_url = (
            secrets.add_referenced_secret(
                f"{name}-gateway-client-secret",
                ENTRA_CLIENT_SECRET_SECRET,
                pulumi.Output.secret(config.gateway_client_secret_value),
            )
            if config.gateway_credential == "secret"
            else None
        )

        # Deploy the gateway's shared store: a table the app's identity reads and writes, admitted from the
        # apps subnet (the stack's, or an adopted environment's: preflight warned that its owner enables the endpoint)
        store_subnet: pulumi.Input[str]
        if network is not None:
            store_subnet = network.subnet_id
        else:
            assert checked.adopted_environment is not None
            store_subnet = checked.adopted_environment.infrastructure_subnet_id
        store = SignInStore(
            f"{name}-sign-in-store",
            {
                **placed,
                "base_name": name,
                "name_suffix": suffix,
                "subscription_id": client.subscription_id,
                "principal_id": secrets.identity_principal_id,
                "subnet_id": store_subnet,
                "zone_redundant": config.zone_redundant,
                "workspace_id": monitoring.workspace_id,
                # The same bound as Key Vault's (Azure RBAC's "up to 10 minutes"), under the same key.
                "role_wait_seconds": config.key_vault_role_wait_seconds,
            },
        )
        app_needs.extend(store.ready)
        gateway = Gateway(
            image=gateway_image,
            public_url=gateway_public_url,
            client_id=sign_in_client_id,
            tenant_id=client.tenant_id,
            signing_key_secret_url=signing_key_url,
            store_key_secret_url=store_key_url,
            store_endpoint=store.endpoint,
            store_table=store.table_name,
            credential=config.gateway_credential,
            client_secret_url=client_secret_url,
            allowed_agent_client_ids=config.entra_auth_allowed_client_ids,
            registry=gateway_registry.registry_credentials(secrets.identity_id) if gateway_registry else None,
        )

    # Deploy the MCP app, with the token refresher in token mode; in password mode its DATABASE_URI is a Key
    # Vault secret that the app references.
    database_uri = (
        secrets.add_referenced_secret(
            f"{name}-mcp-database-uri",
            DATABASE_URI_SECRET,
            password_uri(config.app_role_name, secrets.app_password, database.fqdn, database.database_name),
        )
        if secrets.app_password is not None
        else None
    )
    mcp = McpApp(
        f"{name}-mcp",
        {
            **placed,
            "base_name": name,
            "auth_mode": config.auth_mode,
            "image": config.mcp_image,
            "access_mode": config.mcp_access_mode,
            "token_refresh_margin_seconds": config.token_refresh_margin_seconds,
            "environment_id": environment.id,
            "environment_static_ip": environment.static_ip,
            "workload_profile_name": environment.workload_profile_name,
            "identity_id": secrets.identity_id,
            "identity_client_id": secrets.identity_client_id,
            "database_host": database.fqdn,
            "database_name": database.database_name,
            "database_uri_secret_url": database_uri,
            "app_role_name": config.app_role_name,
            "cloud": checked.cloud,
            "admission": Admission(
                allowed_cidrs=tuple(str(cidr) for cidr in config.allowed_client_networks),
                entra_client_id=config.entra_auth_client_id,
                allowed_client_ids=config.entra_auth_allowed_client_ids,
                tenant_id=client.tenant_id,
                ci_runner_ip=config.ci_runner_ip,
            ),
            "depends_on": app_needs,
            "container_app_name": config.app_name,
            "sign_in": config.sign_in,
            "gateway": gateway,
            "replicas": config.replicas,
        },
    )

    # Deploy the token alerts: expiry, refresher failures and restarts, on the workspace that receives the app's
    # logs: the stack's own, or an adopted environment's (alertWorkspaceId; without it preflight warned)
    if token_mode:
        if checked.adopted_environment is None:
            alerts_workspace: pulumi.Input[str] | None = monitoring.workspace_id
            log_schema = RESOURCE_SPECIFIC
        elif checked.alert_workspace is not None:
            alerts_workspace, log_schema = checked.alert_workspace.id, checked.alert_workspace.log_schema
        else:
            alerts_workspace = None
        if alerts_workspace is not None:
            TokenAlerts(
                f"{name}-alerts",
                {
                    **placed,
                    "base_name": name,
                    "workspace_id": alerts_workspace,
                    "container_app_name": mcp.container_app_name,
                    "emails": config.alert_emails,
                    "log_schema": log_schema,
                },
            )

    # The user's outputs
    pulumi.export("authMode", config.auth_mode)
    # What clients call: the gateway's Streamable HTTP endpoint (https://<fqdn>/mcp), or postgres-mcp's SSE one.
    pulumi.export("mcpUrl", mcp.mcp_url)
    # postgres-mcp's SSE endpoint through the ingress: empty behind the gateway, where the ingress reaches only
    # the gateway (clients use mcpUrl; the SSE URL would answer 404).
    pulumi.export("mcpSseUrl", mcp.sse_url if not gateway_sign_in else "")
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
    pulumi.export("mcpEnvironmentIp", mcp.static_ip)
    pulumi.export("mcpAdmission", config.admission)
    # What the deploy workflow's post-deploy verification reads (tools/verify_deployment.py).
    pulumi.export("mcpContainerAppId", mcp.container_app_id)
    # The scope an agent asks Entra for (client credentials): Easy Auth's registration, or the gateway's.
    pulumi.export(
        "mcpEntraScope",
        sign_in_client_id.apply(entra_scope) if gateway is not None else entra_scope(easy_auth_client_id),
    )
    server_name = f"postgres-{config.stack}"
    # The `mcpServers` entry as before: SSE with Easy Auth's pasted token or none; Streamable HTTP behind the gateway.
    client_config = mcp.mcp_url.apply(
        lambda url: mcp_client_configuration(server_name, url, easy_auth_client_id, config.sign_in)
    )
    pulumi.export("mcpClientConfig", client_config)
    # Ready configurations for VS Code, Claude Code, Cursor, mcp-remote and the MCP Python SDK (no token in any).
    pulumi.export(
        "mcpClientConfigs",
        mcp.mcp_url.apply(lambda url: client_configurations(server_name, url, config.sign_in, easy_auth_client_id)),
    )

    if gateway is not None:
        pulumi.export("gatewayImage", gateway.image)
        pulumi.export("signInClientId", sign_in_client_id)
    # The sign-in gateway's app registration, for the people who configure clients and the administrator who
    # adopts it (no secret among them), and the registry the pipeline pushes the gateway image to.
    if app_registration is not None:
        pulumi.export("signInIdentifierUri", app_registration.identifier_uri)
        pulumi.export("signInScope", app_registration.scope)
        pulumi.export("signInRedirectUri", app_registration.redirect_uri)
        pulumi.export("signInRegistrationCreated", app_registration.created)
        if config.gateway_credential == "federated":  # declared by the stack, or the administrator's to add
            pulumi.export("signInFederatedCredential", app_registration.federation.as_output())
    if gateway_registry is not None:
        pulumi.export("gatewayRegistryLoginServer", gateway_registry.login_server)

    # The machine's records, apart: what the next run reads back before it declares anything (serverCreateOnly,
    # environmentCreateOnly, entraAdminRecord). Their names are part of every existing stack's state.
    preflight.export_records(checked)
