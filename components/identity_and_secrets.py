"""The app's user-assigned identity, the Key Vault and the generated secrets.

The identity is user-assigned because Container Apps resolves Key Vault references
while it creates a revision: the identity must already hold Key Vault Secrets User by
then, and a system-assigned identity does not exist until the app does.

The deployer holds no data-plane role on the vault: secrets are written through ARM
(Microsoft.KeyVault/vaults/secrets, a control-plane write), so a pipeline's identity
can store the generated passwords without ever being able to read them back.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization, keyvault, managedidentity

from components.monitoring import send_diagnostics
from components.role_propagation import DOCUMENTED_PROPAGATION_SECONDS, wait_for_role

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

GATEWAY_KEY_LENGTH = 64  # the gateway takes >= 32 characters; 64 of [A-Za-z0-9] are about 380 bits
ADMIN_PASSWORD_SECRET = "postgres-admin-password"  # noqa: S105 (a secret name, not a secret)
APP_PASSWORD_SECRET = "app-database-password"  # noqa: S105 (a secret name, not a secret)


def role_definition_id(subscription_id: str, role_guid: str) -> str:
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"


def assign_role(
    name: str,
    *,
    scope: pulumi.Input[str],
    principal_id: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
    role: str,
    description: str,
    opts: pulumi.ResourceOptions,
) -> authorization.RoleAssignment:
    """A built-in role (its GUID) for a managed identity (a service principal) on `scope`."""
    return authorization.RoleAssignment(
        name,
        scope=scope,
        principal_id=principal_id,
        principal_type="ServicePrincipal",
        role_definition_id=pulumi.Output.from_input(subscription_id).apply(
            lambda subscription: role_definition_id(subscription, role)
        ),
        description=description,
        opts=opts,
    )


def generated_password(name: str, opts: pulumi.ResourceOptions) -> random.RandomPassword:
    # URL-safe specials only: the password also goes into a postgresql:// URI.
    return random.RandomPassword(
        name,
        length=40,
        special=True,
        override_special="-_.~",
        min_lower=2,
        min_upper=2,
        min_numeric=2,
        min_special=2,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])),
    )


def generated_key(name: str, opts: pulumi.ResourceOptions) -> random.RandomPassword:
    """A key the gateway derives its own keys from (signing, store encryption): random, stable across runs (the
    state keeps it), alphanumeric so that no environment or URL quoting can change it."""
    return random.RandomPassword(
        name,
        length=GATEWAY_KEY_LENGTH,
        special=False,
        min_lower=4,
        min_upper=4,
        min_numeric=4,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])),
    )


class IdentityAndSecretsArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    base_name: str
    name_suffix: pulumi.Input[str]
    tenant_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    with_passwords: bool
    """Password mode: also generate the app's database password (the server admin's always exists)."""
    purge_protection: bool
    soft_delete_retention_days: int
    protect: bool
    tags: dict[str, str]
    workspace_id: pulumi.Input[str]
    references_vault: NotRequired[bool]
    """The app references the vault's secrets in any auth mode (the sign-in gateway's keys): the role propagation
    wait is declared as in password mode. Default: `with_passwords`."""
    key_vault_role_wait_seconds: NotRequired[int]
    """Password mode: how long the app waits for Key Vault Secrets User to apply (components/role_propagation.py);
    the documented bound, 600, unless set."""
    adopted_admin_password: NotRequired[pulumi.Input[str] | None]
    """An adopted server's administrator password (secret config, "" in token mode): used as it is, neither
    generated nor copied into the vault, since the server's owner keeps it."""


class IdentityAndSecrets(pulumi.ComponentResource):
    identity_id: pulumi.Output[str]
    identity_client_id: pulumi.Output[str]
    identity_principal_id: pulumi.Output[str]
    vault_id: pulumi.Output[str]
    vault_name: pulumi.Output[str]
    vault_uri: pulumi.Output[str]
    secrets_user_assignment: authorization.RoleAssignment
    secrets_readable: list[pulumi.Resource]
    """What an app that references the vault's secrets waits for: the role assignment, and in password mode the
    time Azure takes to apply it (a revision created before fails to resolve its Key Vault reference)."""
    admin_password: pulumi.Output[str]
    app_password: pulumi.Output[str] | None

    def __init__(self, name: str, args: IdentityAndSecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("postgresmcp:identity:IdentityAndSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        identity = managedidentity.UserAssignedIdentity(
            f"{name}-app-identity",
            resource_name_=f"{args['base_name']}-app",
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
            opts=child,
        )

        properties = keyvault.VaultPropertiesArgs(
            tenant_id=args["tenant_id"],
            sku=keyvault.SkuArgs(family="A", name=keyvault.SkuName.STANDARD),
            enable_rbac_authorization=True,
            enable_soft_delete=True,
            soft_delete_retention_in_days=args["soft_delete_retention_days"],
            # Azure refuses an explicit `false` once set, and `false` is the absence of it.
            enable_purge_protection=True if args["purge_protection"] else None,
            public_network_access="Enabled",
            network_acls=keyvault.NetworkRuleSetArgs(bypass="AzureServices", default_action="Allow"),
        )
        vault = keyvault.Vault(
            f"{name}-vault",
            vault_name=pulumi.Output.concat(args["base_name"][:13].rstrip("-"), "-kv-", args["name_suffix"]),
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            properties=properties,
            tags=args["tags"],
            opts=pulumi.ResourceOptions(parent=self, protect=args["protect"]),
        )

        self.secrets_user_assignment = assign_role(
            f"{name}-app-secrets-user",
            scope=vault.id,
            principal_id=identity.principal_id,
            subscription_id=args["subscription_id"],
            role=KEY_VAULT_SECRETS_USER,
            description="postgres-mcp reads its Key Vault references",
            opts=child,
        )
        self.secrets_readable = [self.secrets_user_assignment]
        # Password mode's app references the vault, and so does the sign-in gateway's in both modes.
        if args["with_passwords"] or args.get("references_vault", False):
            self.secrets_readable.append(
                wait_for_role(
                    f"{name}-app-secrets-user",
                    self.secrets_user_assignment,
                    args.get("key_vault_role_wait_seconds", DOCUMENTED_PROPAGATION_SECONDS),
                    self,
                )
            )
        self._vault = vault
        self._resource_group_name = args["resource_group_name"]
        # The server's password administrator exists in both modes: `administratorLogin` can only be set
        # when the server is created, so a login that came and went with `authMode` would replace the server.
        # In token mode password authentication is off and the login cannot sign in; its password waits here.
        adopted_password = args.get("adopted_admin_password")
        if adopted_password is not None:
            self.admin_password = pulumi.Output.secret(adopted_password)
        else:
            admin = generated_password(f"{name}-admin-password", child)
            self.admin_password = pulumi.Output.secret(admin.result)
            self.add_secret(f"{name}-{ADMIN_PASSWORD_SECRET}", ADMIN_PASSWORD_SECRET, self.admin_password)
        self._child = child
        self.app_password = None
        if args["with_passwords"]:
            app = generated_password(f"{name}-app-password", child)
            self.app_password = pulumi.Output.secret(app.result)
            self.add_secret(f"{name}-{APP_PASSWORD_SECRET}", APP_PASSWORD_SECRET, self.app_password)

        send_diagnostics(f"{name}-vault-diagnostics", vault.id, args["workspace_id"], self)
        self.identity_id = identity.id
        self.identity_client_id = identity.client_id
        self.identity_principal_id = identity.principal_id
        self.vault_id = vault.id
        self.vault_name = vault.name
        self.vault_uri = vault.properties.apply(lambda p: p.vault_uri or "")
        self.register_outputs(
            {
                "identity_id": self.identity_id,
                "identity_client_id": self.identity_client_id,
                "identity_principal_id": self.identity_principal_id,
                "vault_id": self.vault_id,
                "vault_uri": self.vault_uri,
            }
        )

    def add_secret(self, resource_name: str, secret_name: str, value: pulumi.Input[str]) -> keyvault.Secret:
        """Stores a secret in the vault; also for values computed later (such as a URI with the server's host)."""
        return keyvault.Secret(
            resource_name,
            secret_name=secret_name,
            vault_name=self._vault.name,
            resource_group_name=self._resource_group_name,
            properties=keyvault.SecretPropertiesArgs(value=pulumi.Output.secret(value), content_type="text/plain"),
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["properties"]),
        )

    def add_generated_key(self, name: str, secret_name: str) -> pulumi.Output[str]:
        """Generates a key (`generated_key`), stores it and returns its versionless URI for a Key Vault reference;
        the value itself stays in the state (secret) and the vault."""
        key = generated_key(name, self._child)
        return self.add_referenced_secret(f"{name}-secret", secret_name, pulumi.Output.secret(key.result))

    def add_referenced_secret(
        self, resource_name: str, secret_name: str, value: pulumi.Input[str]
    ) -> pulumi.Output[str]:
        """Stores a secret that an app references: its versionless URI, which Container Apps re-reads when the
        secret is rotated."""
        secret = self.add_secret(resource_name, secret_name, value)
        return secret.properties.apply(lambda properties: properties.secret_uri or "")
