"""Runs the Pulumi program under mocks, with config layered the way the CLI does it.

The CLI gives a program: Pulumi.yaml defaults, overridden by Pulumi.<stack>.yaml,
overridden by `pulumi config set` (here: `overrides`). Values reach the program as
strings (arrays as JSON), exactly as below. Under mocks nothing applies the defaults,
so this module does.
"""

from __future__ import annotations

import base64
import gc
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]

SUBSCRIPTION_ID = "00000000-0000-0000-0000-0000000000aa"
TENANT_ID = "00000000-0000-0000-0000-0000000000bb"
DEPLOYER_OBJECT_ID = "00000000-0000-0000-0000-0000000000cc"
SECRET_SIGNATURE_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIGNATURE = "1b47061264138c4ac30d75fd1eb44270"
LOG_ANALYTICS_SHARED_KEY = "mock-shared-key-Zm9vYmFyYmF6"
EGRESS_IP = "20.50.60.70"
ENVIRONMENT_PUBLIC_IP = "20.50.60.80"
DEPLOYER_CLIENT_ID = "44444444-4444-4444-4444-444444444444"

# Claims of ARM access tokens (v1.0, as the Azure CLI and azure-identity get them for
# https://management.azure.com/), per the Microsoft identity platform's access token claims
# reference: `idtyp` says user or app, `scp` is present only in delegated (user) tokens, `upn`/
# `unique_name` name a user, `app_displayname` the calling application, `oid` the principal.
CI_APP_CLAIMS: dict[str, Any] = {
    "aud": "https://management.azure.com/",
    "iss": f"https://sts.windows.net/{TENANT_ID}/",
    "ver": "1.0",
    "idtyp": "app",
    "appid": DEPLOYER_CLIENT_ID,
    "app_displayname": "pgmcp-deploy",
    "oid": DEPLOYER_OBJECT_ID,
    "sub": DEPLOYER_OBJECT_ID,
    "tid": TENANT_ID,
}
LAPTOP_USER_CLAIMS: dict[str, Any] = {
    "aud": "https://management.azure.com/",
    "iss": f"https://sts.windows.net/{TENANT_ID}/",
    "ver": "1.0",
    "idtyp": "user",
    "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",  # the Azure CLI
    "app_displayname": "Azure CLI",
    "scp": "user_impersonation",
    "upn": "alice@contoso.example",
    "unique_name": "alice@contoso.example",
    "name": "Alice",
    "oid": DEPLOYER_OBJECT_ID,
    "tid": TENANT_ID,
}


def jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned-looking JWT with these claims (the program only reads its own token's payload)."""

    def part(value: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'typ': 'JWT', 'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def _as_config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def layered_config(stack: str, overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Pulumi.yaml defaults < Pulumi.<stack>.yaml < overrides, as fully qualified keys."""
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    values: dict[str, str] = {
        f"{PROJECT}:{key}": _as_config_string(spec["default"])
        for key, spec in project.get("config", {}).items()
        if "default" in spec
    }
    stack_file = ROOT / f"Pulumi.{stack}.yaml"
    if stack_file.exists():
        for key, value in (yaml.safe_load(stack_file.read_text()).get("config") or {}).items():
            values[key] = _as_config_string(value)
    for key, value in (overrides or {}).items():
        full_key = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            values.pop(full_key, None)
        else:
            values[full_key] = _as_config_string(value)
    return values


@dataclass
class Declared:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    raw_inputs: dict[str, Any] = field(default_factory=dict)
    """Inputs as they came over the wire, secrets still marked."""


@dataclass(frozen=True)
class Registration:
    """A RegisterResource request as the engine receives it: the URN, its parent's URN and the URNs it depends on
    (explicit `depends_on` and every resource whose outputs its inputs use)."""

    urn: str
    type: str
    parent: str
    dependencies: tuple[str, ...]


ROLE_ASSIGNED_AT = "2026-12-02T10:00:00.1234567Z"
PIPELINE_GATEWAY_DIGEST = "sha256:" + "ab" * 32
"""What the deploy pipeline passes as `gatewayImageDigest` (`-c`); `run_program` sets it like the pipeline does
unless a test gives `gatewayImage` or `gatewayImageDigest` itself (None: unset)."""
# What Entra answers for a created app registration (pulumi-azuread's Application: `id` is the resource ID
# `/applications/<object id>`, `clientId` the application (client) ID, `objectId` the object ID).
CREATED_APP_CLIENT_ID = "55555555-5555-4555-8555-555555555555"
CREATED_APP_OBJECT_ID = "66666666-6666-4666-8666-666666666666"
CREATED_SP_OBJECT_ID = "77777777-7777-4777-8777-777777777777"
SCOPE_UUID = "88888888-8888-4888-8888-888888888888"
# The login server suffix per cloud (Microsoft Learn, Azure Container Registry in sovereign clouds: azurecr.io,
# azurecr.us, azurecr.cn); the mocks answer the public one.
REGISTRY_DOMAIN = "azurecr.io"


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like Azure would for the outputs the program reads, and records everything."""

    def __init__(
        self, stack_outputs: Mapping[str, Any] | None = None, deployer_claims: Mapping[str, Any] | None = None
    ) -> None:
        self.deployer_claims = dict(CI_APP_CLAIMS if deployer_claims is None else deployer_claims)
        """Who runs pulumi: the claims of the token the azure-native provider signs in with."""
        self.stack_outputs = dict(stack_outputs or {})
        """What the backend holds as this stack's outputs from its last update (read by a stack reference)."""
        self.resources: list[Declared] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._subnet_prefixes: dict[str, str] = {}
        self._environment_domains: dict[str, str] = {}
        self.generated_secrets: list[str] = []
        self.azure: dict[str, dict[str, Any]] = {}
        """What already exists in Azure, by lowercased ARM ID: each resource as the provider's invoke answers a
        GET (azure-native flattens `properties` into the result, camelCase). See `add_existing`."""
        self.azure_errors: dict[str, str] = {}
        """ARM errors other than a 404, by lowercased ARM ID (e.g. a 403 for what the deployer may not read)."""
        self.provider_states: dict[str, str] = {}
        """Resource providers' registrationState by namespace; a namespace not named here is Registered."""
        self.arm_gets: list[str] = []
        """The URLs of the GETs the program sent to Resource Manager itself (the resource provider check)."""
        self.registrations: dict[str, Registration] = {}
        """By URN, what the engine hears of each resource beside its inputs: its parent and dependencies."""

    def arm_get(self, url: str, token: str) -> tuple[int, dict[str, Any]]:
        """Resource Manager's answer to "Providers - Get" (Microsoft.Resources 2021-04-01), as it answers it:
        stricter than ARM, it accepts only the token the provider's getClientToken gave, the subscription the
        provider deploys to and the documented URL shape."""
        self.arm_gets.append(url)
        if token != jwt(self.deployer_claims):
            return 401, {"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}}
        parsed = urllib.parse.urlsplit(url)
        match = re.fullmatch(r"/subscriptions/([^/]+)/providers/([A-Za-z.]+)", parsed.path)
        query = urllib.parse.parse_qs(parsed.query)
        if parsed.scheme != "https" or parsed.netloc != "management.azure.com" or match is None:
            return 404, {"error": {"code": "NotFound", "message": f"No route for {url}."}}
        if query.get("api-version") != ["2021-04-01"]:
            return 400, {"error": {"code": "InvalidApiVersionParameter", "message": "Bad api-version."}}
        subscription, namespace = match.groups()
        if subscription != SUBSCRIPTION_ID:
            return 403, {"error": {"code": "AuthorizationFailed", "message": "No access to that subscription."}}
        state = self.provider_states.get(namespace, "Registered")
        return 200, {
            "id": f"/subscriptions/{subscription}/providers/{namespace}",
            "namespace": namespace,
            "registrationState": state,
            "registrationPolicy": "RegistrationRequired",
            "resourceTypes": [],
        }

    def add_existing(self, resource_id: str, answer: Mapping[str, Any]) -> None:
        self.azure[resource_id.lower()] = {"id": resource_id, "name": resource_id.rsplit("/", 1)[-1], **answer}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = unwrap_secrets(dict(args.inputs))
        resource_id = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg/providers/{args.typ}/{args.name}"
        typ = args.typ
        if typ.startswith("azuread:"):
            resource_id = self._entra_object(typ, outputs)
        if typ == "random:index/randomUuid:RandomUuid":
            outputs["result"] = SCOPE_UUID
        elif typ == "azure-native:containerregistry:Registry":
            # Azure answers the login server, `<registry name>.azurecr.io` in lowercase.
            outputs["loginServer"] = f"{str(args.inputs.get('registryName', args.name)).lower()}.{REGISTRY_DOMAIN}"
        elif typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"Pw-{args.name}-x7Q~9z_{len(self.generated_secrets)}"
            self.generated_secrets.append(outputs["result"])
        elif typ == "random:index/randomString:RandomString":
            outputs["result"] = "a1b2c3"
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            outputs["clientId"] = "11111111-1111-1111-1111-111111111111"
            outputs["principalId"] = "22222222-2222-2222-2222-222222222222"
        elif typ == "azure-native:network:PublicIPAddress":
            outputs["ipAddress"] = EGRESS_IP
        elif typ == "azure-native:network:Subnet":
            self._subnet_prefixes[resource_id] = str(args.inputs["addressPrefix"])
        elif typ == "azure-native:app:ManagedEnvironment":
            # Azure answers with the environment's DNS suffix, <unique>.<region>.azurecontainerapps.io, and
            # its address: a public IP for an external environment, one of its subnet's for an internal one
            # (Microsoft Learn, Container Apps networking: "internal environments ... no public IP").
            outputs["defaultDomain"] = f"{args.name}-7f3a9c.westeurope.azurecontainerapps.io"
            vnet = dict(args.inputs.get("vnetConfiguration", {}))
            if vnet.get("internal"):
                # In a first preview the subnet's ID is unknown, and so is the address Azure will pick.
                subnet_id = vnet.get("infrastructureSubnetId")
                prefix = self._subnet_prefixes.get(subnet_id) if isinstance(subnet_id, str) else None
                if prefix is not None:
                    outputs["staticIp"] = str(ipaddress.ip_network(prefix).network_address + 100)
            else:
                outputs["staticIp"] = ENVIRONMENT_PUBLIC_IP
            self._environment_domains[resource_id] = outputs["defaultDomain"]
        elif typ == "azure-native:dbforpostgresql:Server":
            outputs["fullyQualifiedDomainName"] = (
                f"{args.inputs.get('serverName', args.name)}.postgres.database.azure.com"
            )
            # Azure picks the zones when none is asked for (REST API: availabilityZone defaults to "").
            outputs["availabilityZone"] = outputs.get("availabilityZone") or "1"
            high_availability = dict(outputs.get("highAvailability", {}))
            if high_availability.get("mode") in ("ZoneRedundant", "SameZone"):
                high_availability["standbyAvailabilityZone"] = high_availability.get("standbyAvailabilityZone") or "2"
            outputs["highAvailability"] = high_availability
        elif typ == "azure-native:storage:StorageAccount":
            # Azure answers with the account's endpoints (its cloud's suffix), with a trailing slash.
            account = args.inputs.get("accountName", args.name)
            outputs["primaryEndpoints"] = {
                "table": f"https://{account}.table.core.windows.net/",
                "blob": f"https://{account}.blob.core.windows.net/",
            }
        elif typ == "azure-native:keyvault:Vault":
            properties = dict(outputs.get("properties", {}))
            properties["vaultUri"] = f"https://{args.inputs.get('vaultName', args.name)}.vault.azure.net/"
            outputs["properties"] = properties
        elif typ == "azure-native:keyvault:Secret":
            vault = args.inputs.get("vaultName", "vault")
            properties = {k: v for k, v in dict(outputs.get("properties", {})).items() if k != "value"}
            properties["secretUri"] = f"https://{vault}.vault.azure.net/secrets/{args.inputs['secretName']}"
            properties["secretUriWithVersion"] = properties["secretUri"] + "/0123456789abcdef"
            outputs["properties"] = properties
        elif typ == "azure-native:authorization:RoleAssignment":
            # ARM answers `properties.createdOn` (read-only), in its own format: seven fractional digits, Z.
            outputs["createdOn"] = ROLE_ASSIGNED_AT
        elif typ == "azure-native:operationalinsights:Workspace":
            outputs["customerId"] = "33333333-3333-3333-3333-333333333333"
        elif typ == "azure-native:app:ContainerApp":
            configuration = dict(outputs.get("configuration", {}))
            ingress = dict(configuration.get("ingress", {}))
            # In a first preview the environment's ID is unknown, and so is the app's FQDN.
            environment_id = args.inputs.get("managedEnvironmentId")
            domain = (
                self._environment_domains.get(environment_id, "unknown.invalid")
                if isinstance(environment_id, str)
                else "unknown.invalid"
            )
            ingress["fqdn"] = f"{args.inputs.get('containerAppName', args.name)}.{domain}"
            configuration["ingress"] = ingress
            configuration.pop("secrets", None)  # Azure never answers with secret values
            outputs["configuration"] = configuration
            # Azure answers the identity list as a map keyed by resource ID.
            identity = dict(outputs.get("identity", {}))
            if isinstance(identity.get("userAssignedIdentities"), list):
                identity["userAssignedIdentities"] = {
                    identity_id: {
                        "clientId": "11111111-1111-1111-1111-111111111111",
                        "principalId": "22222222-2222-2222-2222-222222222222",
                    }
                    for identity_id in identity["userAssignedIdentities"]
                }
            outputs["identity"] = identity
        if "name" not in outputs:
            outputs["name"] = args.inputs.get(_name_input(typ), args.name)
        self.resources.append(Declared(typ, args.name, unwrap_secrets(dict(args.inputs)), outputs, dict(args.inputs)))
        return resource_id, outputs

    def _entra_object(self, typ: str, outputs: dict[str, Any]) -> str:
        """pulumi-azuread's IDs and computed outputs, as Microsoft Graph and the provider give them."""
        if typ == "azuread:index/application:Application":
            outputs["clientId"] = CREATED_APP_CLIENT_ID
            outputs["objectId"] = CREATED_APP_OBJECT_ID
            return f"/applications/{CREATED_APP_OBJECT_ID}"
        if typ == "azuread:index/servicePrincipal:ServicePrincipal":
            outputs["objectId"] = CREATED_SP_OBJECT_ID
            return f"/servicePrincipals/{CREATED_SP_OBJECT_ID}"
        if typ == "azuread:index/applicationIdentifierUri:ApplicationIdentifierUri":
            encoded = base64.b64encode(str(outputs.get("identifierUri", "")).encode()).decode()
            return f"{outputs.get('applicationId')}/identifierUris/{encoded}"
        if typ == "azuread:index/applicationFederatedIdentityCredential:ApplicationFederatedIdentityCredential":
            outputs["credentialId"] = "99999999-9999-4999-8999-999999999999"
            return f"{outputs.get('applicationId')}/federatedIdentityCredential/{outputs['credentialId']}"
        return f"/{typ.rsplit(':', 1)[-1]}/00000000-0000-4000-8000-000000000000"

    def call(  # type: ignore[override]  # the SDK takes a bare dict too
        self, args: pulumi.runtime.MockCallArgs
    ) -> dict[str, Any] | tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append((args.token, dict(args.args)))
        if args.token == "azure-native:authorization:getClientConfig":
            return {
                "clientId": self.deployer_claims.get("appid", DEPLOYER_CLIENT_ID),
                "objectId": self.deployer_claims.get("oid", DEPLOYER_OBJECT_ID),
                "subscriptionId": SUBSCRIPTION_ID,
                "tenantId": TENANT_ID,
            }
        if args.token == "azure-native:authorization:getClientToken":
            return {"token": jwt(self.deployer_claims)}
        if args.token == "pulumi:pulumi:readStackOutputs":
            # The engine's built-in provider answers with the named stack's outputs (pulumi/pulumi
            # pkg/resource/deploy/builtins.go, readStackReference); here the backend holds only this stack.
            assert args.args["name"] == f"organization/{PROJECT}/{pulumi.get_stack()}", args.args
            return {"name": args.args["name"], "outputs": self.stack_outputs, "secretOutputNames": []}
        if args.token == "azure-native:operationalinsights:getSharedKeys":
            return {"primarySharedKey": LOG_ANALYTICS_SHARED_KEY, "secondarySharedKey": "unused"}
        if args.token in LOOKUPS:
            resource_id = LOOKUPS[args.token](args.args)
            if resource_id.lower() in self.azure_errors:
                return {}, [("", self.azure_errors[resource_id.lower()])]
            found = self.azure.get(resource_id.lower())
            if found is None:
                # ARM's answer to a GET of something that does not exist, as the provider relays it; the SDK
                # raises it as "invoke of <token> failed: <reason> (<property>)".
                reason = f'Status=404 Code="ResourceNotFound" Message="The Resource \'{resource_id}\' was not found."'
                return {}, [("", reason)]
            if args.token == "azure-native:app:getManagedEnvironment":
                self._environment_domains[found["id"]] = found.get("defaultDomain", "unknown.invalid")
            return dict(found)
        return {}


def server_id(resource_group: str, server: str, subscription: str = SUBSCRIPTION_ID) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.DBforPostgreSQL/flexibleServers/{server}"
    )


def environment_id(resource_group: str, environment: str, subscription: str = SUBSCRIPTION_ID) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.App/managedEnvironments/{environment}"
    )


def workspace_id(resource_group: str, workspace: str, subscription: str = SUBSCRIPTION_ID) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
        f"Microsoft.OperationalInsights/workspaces/{workspace}"
    )


# The lookups the program makes of what it adopts: invoke token -> the ARM ID its arguments name.
LOOKUPS: dict[str, Any] = {
    "azure-native:dbforpostgresql:getServer": lambda a: server_id(a["resourceGroupName"], a["serverName"]),
    "azure-native:dbforpostgresql:getConfiguration": lambda a: (
        server_id(a["resourceGroupName"], a["serverName"]) + f"/configurations/{a['configurationName']}"
    ),
    "azure-native:dbforpostgresql:getDatabase": lambda a: (
        server_id(a["resourceGroupName"], a["serverName"]) + f"/databases/{a['databaseName']}"
    ),
    "azure-native:dbforpostgresql:getAdministratorsMicrosoftEntra": lambda a: (
        server_id(a["resourceGroupName"], a["serverName"]) + f"/administrators/{a['objectId']}"
    ),
    "azure-native:app:getManagedEnvironment": lambda a: environment_id(a["resourceGroupName"], a["environmentName"]),
    "azure-native:operationalinsights:getWorkspace": lambda a: workspace_id(a["resourceGroupName"], a["workspaceName"]),
}


SIGN_IN_GATEWAY_TYPES = "postgresmcp:gateway:"
"""The type prefix of the sign-in gateway's components (its registry, its app registration) and so of every URN
under them."""


def before_the_gateway(urns: Any) -> list[str]:
    """The URNs other than the sign-in gateway's, sorted: what the snapshots taken before it hold."""
    return sorted(urn for urn in urns if SIGN_IN_GATEWAY_TYPES not in urn.split("::")[2])


def unwrap_secrets(value: Any) -> Any:
    """Mock inputs carry secrets as Pulumi's wire marker; the tests want plain values."""
    if isinstance(value, dict):
        if value.get(SECRET_SIGNATURE_KEY) == SECRET_SIGNATURE:
            return unwrap_secrets(value.get("value"))
        return {key: unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(item) for item in value]
    return value


def is_wire_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIGNATURE_KEY) == SECRET_SIGNATURE


def is_secret_at(raw: Any, *path: str) -> bool:
    """True when the value at `path` travels as a secret (marked itself or inside a marked parent)."""
    node = raw
    for key in path:
        if is_wire_secret(node):
            return True
        node = node[key]
    return is_wire_secret(node)


def _name_input(typ: str) -> str:
    resource = typ.rsplit(":", 1)[-1]
    return {
        "Server": "serverName",
        "Vault": "vaultName",
        "Secret": "secretName",
        "Database": "databaseName",
        "ContainerApp": "containerAppName",
        "ManagedEnvironment": "environmentName",
        "FirewallRule": "firewallRuleName",
        "Configuration": "configurationName",
        "UserAssignedIdentity": "resourceName",
        "PrivateZone": "privateZoneName",
    }.get(resource, "__none__")


def moved_from(resource: pulumi.CustomResource, opts: pulumi.ResourceOptions) -> list[str]:
    """The URNs the aliases with a `parent` name (where the resource was declared before it moved), built by
    the rule the mocks name resources by (the parent's own type, then `$`, then the resource's type):
    the rule the URN snapshot was taken with. The engine builds them from the same alias spec."""
    urns = []
    for alias in opts.aliases or []:
        if not isinstance(alias, pulumi.Alias) or not isinstance(alias.parent, (pulumi.Resource, str, pulumi.Output)):
            continue  # no parent named: the alias is of another kind (azure-native's API-version types)
        parent = alias.parent.urn if isinstance(alias.parent, pulumi.Resource) else alias.parent
        parent_urn = str(_sync_await(pulumi.Output.from_input(parent).future()))
        parent_type = parent_urn.split("::")[2].split("$")[-1]
        name = alias.name if isinstance(alias.name, str) else resource._name
        type_ = alias.type_ if isinstance(alias.type_, str) else resource._type
        urns.append(f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{parent_type}${type_}::{name}")
    return urns


@dataclass
class ProgramRun:
    mocks: RecordingMocks
    exports: dict[str, Any]
    secret_exports: set[str]
    options: dict[str, pulumi.ResourceOptions]
    """Resource options by resource name: mocks never see `protect` or `depends_on`."""
    urns: dict[str, str]
    """URNs by resource name, as the engine would name them."""
    aliases: dict[str, list[str]] = field(default_factory=dict)
    """By resource name, the URNs its `Alias(parent=...)` options name: a moved resource's former URNs."""

    @property
    def resources(self) -> list[Declared]:
        return self.mocks.resources

    def of_type(self, resource_type: str) -> list[Declared]:
        return [r for r in self.resources if r.type == resource_type]

    def depends_on(self, name: str) -> list[str]:
        """Names of the resources that `name` explicitly waits for."""
        depends = self.options[name].depends_on or []
        assert isinstance(depends, list)
        return [str(getattr(resource, "_name", resource)) for resource in depends]

    def one(self, resource_type: str) -> Declared:
        found = self.of_type(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {[r.name for r in found]}"
        return found[0]


def run_program(
    stack: str = "dev",
    overrides: Mapping[str, Any] | None = None,
    *,
    preview: bool = False,
    recording: RecordingMocks | None = None,
    secret_keys: tuple[str, ...] = (),
) -> ProgramRun:
    """Runs the program (`program.main()`, what __main__.py calls) under mocks; returns what it declared and exported.

    `secret_keys`: the keys set with `pulumi config set --secret` (the CLI tells the program which)."""
    recording = recording or RecordingMocks()
    pulumi.runtime.set_mocks(recording, project=PROJECT, stack=stack, preview=preview, organization="organization")
    given = dict(overrides or {})
    if "gatewayImage" not in given and "gatewayImageDigest" not in given:
        given["gatewayImageDigest"] = PIPELINE_GATEWAY_DIGEST  # what the deploy pipeline passes with -c
    pulumi.runtime.set_all_config(
        layered_config(stack, given), [key if ":" in key else f"{PROJECT}:{key}" for key in secret_keys]
    )
    exported: dict[str, Any] = {}
    options: dict[str, pulumi.ResourceOptions] = {}
    original_init = pulumi.CustomResource.__init__

    created: dict[str, pulumi.CustomResource] = {}

    def recording_init(self: Any, t: str, name: str, props: Any = None, opts: Any = None, *a: Any, **kw: Any) -> None:
        options[name] = opts or pulumi.ResourceOptions()
        original_init(self, t, name, props, opts, *a, **kw)
        created[name] = self

    original_register: Callable[[MockMonitor, Any], Any] = MockMonitor.RegisterResource

    def recording_register(monitor: MockMonitor, request: Any) -> Any:
        response = original_register(monitor, request)
        recording.registrations[response.urn] = Registration(
            response.urn, request.type, request.parent, tuple(request.dependencies)
        )
        return response

    # Imported once mocks are set (Pulumi's testing-unit-py order); importing declares nothing, main() does.
    import preflight.providers
    import program

    def body() -> None:
        with (
            mock.patch.object(pulumi, "export", lambda key, value: exported.__setitem__(key, value)),
            mock.patch.object(pulumi.CustomResource, "__init__", recording_init),
            # The resource provider check's GET to Resource Manager, answered as ARM answers it.
            mock.patch.object(preflight.providers, "arm_get", recording.arm_get),
        ):
            program.main()

    from pulumi.runtime.stack import run_pulumi_func

    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    # The engine hears of a resource after main() returns, as the SDK sends its registration.
    with mock.patch.object(MockMonitor, "RegisterResource", recording_register):
        _sync_await(run_pulumi_func(body))
    exports: dict[str, Any] = {}
    secret_exports: set[str] = set()
    for key, value in exported.items():
        output = pulumi.Output.from_input(value)
        exports[key] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            secret_exports.add(key)
    urns = {name: str(_sync_await(resource.urn.future())) for name, resource in created.items()}
    aliases = {name: moved_from(resource, options[name]) for name, resource in created.items()}
    _freeze_what_the_program_imported()
    return ProgramRun(recording, exports, secret_exports, options, urns, aliases)


_frozen = False


def _freeze_what_the_program_imported() -> None:
    """After the first run, once: the modules the program imported (azure-native's among them) leave the
    garbage collector's view. Each run allocates enough Outputs and tasks to trigger full collections,
    and every one of them walked those modules' objects: half of a run's time. Measured: 0.49 s a run
    before, 0.21 s after (prod, token mode). What later runs allocate is collected as usual."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
