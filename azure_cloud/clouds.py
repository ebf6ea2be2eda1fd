"""The Azure clouds this program deploys to, and which one a stack is in: one table, used everywhere.

The values are Azure CLI's cloud definitions (Azure/azure-cli, src/azure-cli-core/azure/cli/core/cloud.py:
`AZURE_PUBLIC_CLOUD`, `AZURE_US_GOV_CLOUD`, `AZURE_CHINA_CLOUD`; endpoints `active_directory`,
`resource_manager`, `active_directory_resource_id` and `ossrdbms_resource_id`), and the names are the CLI's
(`az cloud list`). azure-native names the same clouds `public`, `usgovernment` and `china`, and accepts the
aliases in its `FromName` (pulumi/pulumi-azure-native, provider/pkg/azure/cloud/cloud.go): every one of them
is accepted here too, so `ARM_ENVIRONMENT` means the same cloud to azure-native and to this program.

Which cloud: azure-native's own setting (`azure-native:environment`, else the `ARM_ENVIRONMENT` variable, as
azure-native reads them; else `AZURE_ENVIRONMENT`), else the public cloud. The config key `azureCloud` pins it
in the stack's configuration: when set, azure-native's cloud (the public one when nothing is set) must be the
same, or the run stops naming both -- the resources would be created in one cloud and the tokens asked of
another. So a sovereign stack run from a shell that lacks ARM_ENVIRONMENT stops instead of deploying to the
public cloud. Neither wins silently: the key is the stack's record, azure-native's setting is where it deploys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CONFIG_KEY = "azureCloud"


class CloudError(ValueError):
    """An unknown cloud name, or two settings that name different clouds."""


@dataclass(frozen=True)
class Cloud:
    name: str
    """Azure CLI's name of the cloud (`az cloud show --query name`); the values of `azureCloud`."""
    azure_native_names: tuple[str, ...]
    """The names azure-native's `FromName` maps to this cloud (lowercase), its documented one first."""
    active_directory: str
    """The Entra authority (`endpoints.active_directory`)."""
    resource_manager: str
    """ARM's endpoint (`endpoints.resource_manager`), without the trailing slash."""
    management_audiences: tuple[str, ...]
    """The audiences of this cloud's ARM tokens (`resource_manager` and `active_directory_resource_id`)."""
    ossrdbms_resource_id: str
    """The audience of Entra tokens for Azure Database for PostgreSQL (`endpoints.ossrdbms_resource_id`)."""
    v2_issuer_host: str
    """The host in the `iss` claim of the tenant's Entra v2 tokens, managed identity tokens among them. It is
    the authority's own host except in China, where Microsoft Learn's "Configure an application to trust a
    managed identity" (docs.azure.cn edition) gives `https://login.partner.microsoftonline.cn/{tenant}/v2.0`."""
    federation_audience: str
    """The audience of the managed identity token that a federated identity credential accepts, one per
    cloud: Microsoft Learn, "Configure an application to trust a managed identity" (learn.microsoft.com/entra/
    workload-id/workload-identity-federation-config-app-trust-managed-identity), `audiences`: public cloud
    `api://AzureADTokenExchange`, Fairfax (US Government) `api://AzureADTokenExchangeUSGov`, Mooncake (China)
    `api://AzureADTokenExchangeChina`."""

    @property
    def ossrdbms_scope(self) -> str:
        """What an Entra v2 client asks for to sign in to PostgreSQL."""
        return f"{self.ossrdbms_resource_id}/.default"

    @property
    def authority_host(self) -> str:
        """The authority's host, as azure-identity's `authority` argument takes it."""
        return self.active_directory.removeprefix("https://")

    def openid_issuer(self, tenant_id: str) -> str:
        """The issuer of the tenant's Entra v2 tokens, for Easy Auth's `openIdIssuer`."""
        return f"{self.active_directory}/{tenant_id}/v2.0"

    def entra_v2_issuer(self, tenant_id: str) -> str:
        """The `iss` of the tenant's v2 tokens: what a federated identity credential that trusts a managed
        identity names as its issuer (same Learn page: `https://login.microsoftonline.com/{tenant}/v2.0`)."""
        return f"https://{self.v2_issuer_host}/{tenant_id}/v2.0"

    @property
    def azuread_environment(self) -> str:
        """The cloud as the azuread provider's `environment` takes it: "`global` (also `public`),
        `usgovernmentl4` (also `usgovernment`) ... and `china`" (pulumi_azuread, provider.py): azure-native's
        documented name is accepted by both."""
        return self.azure_native_names[0]

    @property
    def is_public(self) -> bool:
        return self is PUBLIC


PUBLIC = Cloud(
    name="AzureCloud",
    azure_native_names=("public", "azurecloud"),
    active_directory="https://login.microsoftonline.com",
    resource_manager="https://management.azure.com",
    management_audiences=("https://management.azure.com/", "https://management.core.windows.net/"),
    ossrdbms_resource_id="https://ossrdbms-aad.database.windows.net",
    v2_issuer_host="login.microsoftonline.com",
    federation_audience="api://AzureADTokenExchange",
)
US_GOVERNMENT = Cloud(
    name="AzureUSGovernment",
    azure_native_names=("usgovernment", "usgov", "azureusgovernment", "azureusgovernmentcloud", "usgovernmentl4"),
    active_directory="https://login.microsoftonline.us",
    resource_manager="https://management.usgovcloudapi.net",
    management_audiences=("https://management.usgovcloudapi.net/", "https://management.core.usgovcloudapi.net/"),
    ossrdbms_resource_id="https://ossrdbms-aad.database.usgovcloudapi.net",
    v2_issuer_host="login.microsoftonline.us",
    federation_audience="api://AzureADTokenExchangeUSGov",
)
CHINA = Cloud(
    name="AzureChinaCloud",
    azure_native_names=("china", "azurechinacloud"),
    active_directory="https://login.chinacloudapi.cn",
    resource_manager="https://management.chinacloudapi.cn",
    management_audiences=("https://management.chinacloudapi.cn/", "https://management.core.chinacloudapi.cn/"),
    ossrdbms_resource_id="https://ossrdbms-aad.database.chinacloudapi.cn",
    v2_issuer_host="login.partner.microsoftonline.cn",
    federation_audience="api://AzureADTokenExchangeChina",
)
CLOUDS: tuple[Cloud, ...] = (PUBLIC, US_GOVERNMENT, CHINA)
CLOUD_NAMES: tuple[str, ...] = tuple(cloud.name for cloud in CLOUDS)


def accepted_names() -> str:
    return ", ".join(f"{cloud.name} ({'/'.join(cloud.azure_native_names)})" for cloud in CLOUDS)


def by_name(name: str, source: str = CONFIG_KEY) -> Cloud:
    """The cloud an Azure CLI or azure-native name means (case-insensitive); `source` names the setting."""
    wanted = name.strip().lower()
    for cloud in CLOUDS:
        if wanted == cloud.name.lower() or wanted in cloud.azure_native_names:
            return cloud
    raise CloudError(f"{source} is {name!r}, not an Azure cloud this program knows; expected one of {accepted_names()}")


def by_ossrdbms_scope(scope: str) -> Cloud | None:
    """The cloud whose PostgreSQL token scope (or resource) this is; None for another value."""
    resource = scope.removesuffix("/.default").rstrip("/")
    return next((cloud for cloud in CLOUDS if cloud.ossrdbms_resource_id == resource), None)


def by_management_audience(audience: str) -> Cloud | None:
    """The cloud whose ARM tokens carry this `aud` claim; None for another value (a v2 token names a GUID)."""
    wanted = audience if audience.endswith("/") else audience + "/"
    return next((cloud for cloud in CLOUDS if wanted in cloud.management_audiences), None)


def azure_native_setting(environ: Mapping[str, str], provider_environment: str | None = None) -> tuple[str, str]:
    """(setting, value) of the cloud azure-native is configured for: its `environment` config, else
    ARM_ENVIRONMENT (azure-native's `getConfig("environment", "ARM_ENVIRONMENT")`), else AZURE_ENVIRONMENT;
    ("", "") when none is set."""
    for setting, value in (
        ("azure-native:environment", provider_environment or ""),
        ("ARM_ENVIRONMENT", environ.get("ARM_ENVIRONMENT", "")),
        ("AZURE_ENVIRONMENT", environ.get("AZURE_ENVIRONMENT", "")),
    ):
        if value.strip():
            return setting, value.strip()
    return "", ""


def resolve(configured: str, environ: Mapping[str, str], provider_environment: str | None = None) -> Cloud:
    """The stack's cloud: azure-native's setting, else public; `azureCloud` (`configured`), when set, must
    name the same cloud (CloudError naming both otherwise)."""
    setting, value = azure_native_setting(environ, provider_environment)
    native = by_name(value, setting) if setting else PUBLIC
    if not configured.strip():
        return native
    chosen = by_name(configured, CONFIG_KEY)
    if native is not chosen:
        where = (
            f"{setting} is {value!r} ({native.name})"
            if setting
            else "neither azure-native:environment nor ARM_ENVIRONMENT is set"
        )
        hint = chosen.azure_native_names[0]
        raise CloudError(
            f"{CONFIG_KEY} is {configured!r} ({chosen.name}) but {where}, so azure-native deploys to {native.name} "
            f"while this program would ask {chosen.name} for tokens. Set `pulumi config set azure-native:environment "
            f"{hint}` (or ARM_ENVIRONMENT={hint}), or change {CONFIG_KEY}"
        )
    return chosen


def stack_cloud(configured: str) -> Cloud:
    """The running stack's cloud (`resolve` with this process's environment and azure-native's config);
    a CloudError becomes the settings' ConfigError: Pulumi ends the run with the message alone."""
    import os

    import pulumi

    from settings.model import ConfigError

    try:
        return resolve(configured, os.environ, pulumi.Config("azure-native").get("environment"))
    except CloudError as error:
        raise ConfigError(f"config key '{CONFIG_KEY}': {error}") from None
