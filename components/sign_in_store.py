"""The sign-in gateway's shared store: one Azure Storage table, reached with the app's managed identity.

Why Table Storage (issue 18, item 3): the gateway keeps client registrations, pending authorizations and the
upstream Entra tokens it refreshes; every replica and every new revision must see them, and a restart must lose
none. A table is the smallest store that does this: key-value rows (py-key-value's `azure_tables` store, under a
Fernet wrapper keyed from GATEWAY_STORE_KEY, so that every row is encrypted before it leaves the gateway),
pay-per-request (cents a month at a few hundred developers), no server to size or patch, and signed in to with
the identity the app already has: no connection string or account key exists anywhere. The stack's own
PostgreSQL server was the alternative; it would put the gateway's writes on the database the MCP tools query,
and a database login on the gateway, for no gain.

The account, each rule with its source:
- `allowSharedKeyAccess: false`: every request must carry a Microsoft Entra token; account keys and SAS signed
  with them are refused (Microsoft Learn, "Prevent Shared Key authorization for an Azure Storage account").
  The stack itself declares the table through Resource Manager (control plane), which needs no key.
- `minimumTlsVersion: TLS1_2`, `supportsHttpsTrafficOnly: true`, `allowBlobPublicAccess: false`
  (Microsoft Learn, "Enforce a minimum required version of TLS", "Require secure transfer", "Prevent anonymous
  read access to blob data"); no cross-tenant replication; Entra sign-in by default in the portal.
- Network: deny by default (Microsoft Learn, "Azure Storage firewall rules": `networkAcls.defaultAction: Deny`).
  When the stack created the network, the apps subnet is admitted by a virtual network rule; the subnet carries
  a `Microsoft.Storage` service endpoint for it ("Virtual network service endpoints": a rule admits a subnet only
  with the endpoint enabled on it; the `Microsoft.Storage` endpoint reaches accounts of the subnet's own region,
  where the stack puts this one). An adopted environment brings its own network: its subnet is admitted the same
  way, and its owner must enable the endpoint on it: preflight reads the subnet and refuses one without it
  (Azure would refuse the rule with NetworkAclsValidationFailure, SubnetsHaveNoServiceEndpointsConfigured, midway
  through `pulumi up`; preflight/adoption.py; docs/sign-in.md). Not its egress addresses
  (`appEgressIps`), which admit the app at the server: Azure Storage ignores IP rules for requests from the
  account's own region ("Azure Storage firewall rules": "IP network rules have no effect on requests originating
  from the same Azure region as the storage account. Use virtual network rules to allow same-region requests"),
  and preflight only adopts an environment in the stack's region. `bypass: None`: no trusted service needs the
  data plane.
- Access: "Storage Table Data Contributor" (0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3; Microsoft Learn, "Azure
  built-in roles for Storage") for the app's user-assigned identity, scoped to the one table ("Authorize access
  to tables using Microsoft Entra ID": a role can be scoped to an individual table), so the identity can read
  and write the gateway's rows and nothing else in the account. The app waits for it to apply
  (components/role_propagation.py) before its first revision starts.
- Redundancy: zone-redundant (Standard_ZRS) with `zoneRedundant`, locally redundant otherwise.
- Not `protect`ed: the rows are sign-in state that users re-create by signing in again, and protection would stop
  a stack from leaving the gateway (`signIn: easyAuth`) without a manual step.
"""

from __future__ import annotations

import re
from typing import NotRequired, TypedDict

import pulumi
from pulumi_azure_native import storage

from components.identity_and_secrets import assign_role
from components.monitoring import send_diagnostics
from components.role_propagation import DOCUMENTED_PROPAGATION_SECONDS, wait_for_role

STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORE_TABLE = "gatewaysignins"  # 3-63 alphanumerics, starting with a letter (Table service naming rules)


def account_name(base_name: str, suffix: str) -> str:
    """3-24 lowercase letters and digits, globally unique: the base name's alphanumerics and the stack's suffix."""
    stem = re.sub(r"[^a-z0-9]", "", base_name.lower())[:14]
    return f"{stem}st{suffix}"[:24]


class SignInStoreArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    base_name: str
    name_suffix: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    principal_id: pulumi.Input[str]
    """The app's user-assigned identity."""
    subnet_id: pulumi.Input[str]
    """The apps subnet: the stack's own (with its Microsoft.Storage service endpoint), or an adopted environment's
    (its owner enables the endpoint; preflight warns)."""
    zone_redundant: bool
    workspace_id: pulumi.Input[str]
    tags: dict[str, str]
    role_wait_seconds: NotRequired[int]


class SignInStore(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    table_name: str
    ready: list[pulumi.Resource]
    """What the app's first revision waits for: the role assignment and the time Azure takes to apply it."""

    def __init__(self, name: str, args: SignInStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("postgresmcp:signin:SignInStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        subnet_id = args["subnet_id"]
        account = storage.StorageAccount(
            f"{name}-account",
            account_name=pulumi.Output.from_input(args["name_suffix"]).apply(
                lambda suffix: account_name(args["base_name"], suffix)
            ),
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name="Standard_ZRS" if args["zone_redundant"] else "Standard_LRS"),
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            enable_https_traffic_only=True,
            allow_blob_public_access=False,
            allow_cross_tenant_replication=False,
            public_network_access="Enabled",  # through the rules below only
            network_rule_set=storage.NetworkRuleSetArgs(
                default_action=storage.DefaultAction.DENY,
                bypass="None",
                virtual_network_rules=[
                    storage.VirtualNetworkRuleArgs(virtual_network_resource_id=subnet_id, action=storage.Action.ALLOW)
                ],
            ),
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
            opts=child,
        )
        # The account's table service, declared so that its logs have a target (its properties stay Azure's
        # defaults: no CORS rule, since no browser calls the table).
        table_service = storage.TableServiceProperties(
            f"{name}-table-service",
            table_service_name="default",
            account_name=account.name,
            resource_group_name=args["resource_group_name"],
            opts=child,
        )
        table = storage.Table(
            f"{name}-table",
            table_name=STORE_TABLE,
            account_name=account.name,
            resource_group_name=args["resource_group_name"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[table_service]),
        )
        assignment = assign_role(
            f"{name}-table-contributor",
            scope=table.id,
            principal_id=args["principal_id"],
            subscription_id=args["subscription_id"],
            role=STORAGE_TABLE_DATA_CONTRIBUTOR,
            description="The sign-in gateway reads and writes its sign-ins",
            opts=child,
        )
        wait = wait_for_role(
            f"{name}-table-contributor", assignment, args.get("role_wait_seconds", DOCUMENTED_PROPAGATION_SECONDS), self
        )
        # The table service's reads, writes and deletes (and metrics), like the vault's and the server's.
        send_diagnostics(
            f"{name}-table-diagnostics",
            table_service.id,
            args["workspace_id"],
            self,
        )
        # Azure's answer (the cloud's own suffix: core.windows.net, core.usgovcloudapi.net, ...), no trailing slash.
        self.endpoint = account.primary_endpoints.apply(
            lambda endpoints: ((endpoints.table if endpoints is not None else None) or "").rstrip("/")
        )
        self.table_name = STORE_TABLE
        self.ready = [assignment, wait]
        self.register_outputs({"endpoint": self.endpoint, "table_name": self.table_name})
