"""Adopting what exists: a Flexible Server and a Container Apps environment, by resource ID.

"ID in, nothing created for it" (the Azure Verified Modules pattern): the program reads the
adopted resources before it declares anything, refuses those it cannot serve safely, and
then declares only its own children on them. It never imports them (an import fails on any
difference, and an imported resource is deleted by `pulumi destroy`) and never writes their
settings: turning Entra authentication on restarts a server, so that is the owner's call.

The lookups are the synchronous invokes (`get_server`, not `get_server_output`): a refusal
ends the run before the first resource is declared, in `pulumi preview` and in
`pulumi up --skip-preview` alike.

The deciding code is pure (`server_refusals`, `environment_refusals`, `presence_refusal`);
the I/O (`adopt_server`, `adopt_environment`) only reads Azure and hands plain values over.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi
from pulumi_azure_native import app, dbforpostgresql

from settings import POSTGRES_VERSIONS, ResourceId, Settings

SECURE_TRANSPORT = "require_secure_transport"
# A firewall rule or diagnostic setting the program adds to an adopted server is named after the stack:
# `<namePrefix>-<stack>-<rule>`. The server's own rules never carry that prefix, so they stay untouched.
ADOPTED_RECORD_KEY = "existingServerId"
# In the adoption record: the children this stack created on the adopted server (a database, an Entra
# administrator). Their existence on the next run is the stack's own doing, not something to take over.
CREATED_DATABASE_KEY = "createdDatabase"
CREATED_ADMIN_KEY = "createdEntraAdminObjectId"
ENVIRONMENT_RECORD_KEY = "existingEnvironmentId"
# What an ARM 404 looks like in an invoke's error ("invoke of <token> failed: ... Status=404 Code=
# "ResourceNotFound" ..."); any other failure (no access, throttling) is not taken for an absence.
NOT_FOUND = re.compile(r"\b404\b|NotFound|DoesNotExist|was not found|does not exist", re.IGNORECASE)

T = TypeVar("T")


class AdoptionError(pulumi.RunError):
    """An adopted resource cannot be used as it is; the message names the config key and what to do."""


def owned_prefix(base_name: str) -> str:
    """The prefix of the names the program gives its own children on an adopted server."""
    return f"{base_name}-"


@dataclass(frozen=True)
class AdoptedServer:
    id: str
    resource_group: str
    name: str
    fqdn: str
    location: str
    version: str
    administrator_login: str
    """"" when the server was created without a password administrator."""
    password_auth: bool


@dataclass(frozen=True)
class AdoptedEnvironment:
    id: str
    resource_group: str
    name: str
    location: str
    workload_profile_name: str
    """The environment's Consumption profile, where the app runs."""
    internal: bool
    default_domain: str
    static_ip: str
    logs_destination: str = ""
    """Its appLogsConfiguration.destination: 'azure-monitor', 'log-analytics', 'none' or "" (none set)."""
    logs_customer_id: str = ""
    """With 'log-analytics': the customer ID (workspace ID) of the workspace its logs go to."""
    infrastructure_subnet_id: str = ""
    """Its subnet (vnetConfiguration.infrastructureSubnetId; adoption refuses an environment without one)."""


def same_region(left: str, right: str) -> bool:
    """ARM answers a location as `westeurope` or `West Europe` depending on the API."""
    return left.replace(" ", "").lower() == right.replace(" ", "").lower()


def server_refusals(
    server_id: str,
    *,
    entra_auth: str | None,
    password_auth: str | None,
    version: str | None,
    secure_transport: str | None,
    administrator_login: str | None,
    auth_mode: str,
) -> list[str]:
    """What makes an existing server unusable as it is; each message names the key and what to do."""
    refusals: list[str] = []
    key = f"config key 'existingServerId' ({server_id})"
    if entra_auth != "Enabled":
        refusals.append(
            f"{key}: Microsoft Entra authentication is {entra_auth or 'off'} on the server; expected Enabled. "
            "Turning it on restarts the server, so this program never does it: turn it on in a maintenance "
            "window (the server's Security > Authentication page in the Azure portal; authConfig."
            "activeDirectoryAuth in the REST API), then run pulumi again."
        )
    if (secure_transport or "").lower() != "on":
        refusals.append(
            f"{key}: the server parameter {SECURE_TRANSPORT} is {secure_transport!r}; expected 'on' (the app's "
            "token or password must never travel in clear). The program never changes an adopted server's "
            "parameters: az postgres flexible-server parameter set --name require_secure_transport --value on."
        )
    if version not in POSTGRES_VERSIONS:
        refusals.append(
            f"{key}: PostgreSQL {version} is not supported; expected one of {', '.join(POSTGRES_VERSIONS)} "
            "(upgrade the server's major version first)."
        )
    if auth_mode == "password":
        if not administrator_login:
            refusals.append(
                "config key 'authMode': 'password' needs the adopted server's password administrator, and it was "
                "created without one (Azure sets that login only at creation); expected authMode 'token'."
            )
        if password_auth != "Enabled":  # noqa: S105 (a setting's state, not a password)
            refusals.append(
                f"config key 'authMode': 'password' needs password authentication on the adopted server, and it is "
                f"{password_auth or 'off'}; the program never changes an adopted server's settings: expected "
                "authMode 'token', or turn password authentication on first."
            )
    return refusals


def presence_refusal(
    key: str, declared_existing: bool, exists: bool, what: str, server: str, created_by_the_stack: bool = False
) -> str | None:
    """A child that the config says exists but does not, that exists but would be taken over, or that this
    stack created and would delete.

    Taking one over is what a create-or-update PUT does silently; then `pulumi destroy` deletes it
    (a database with its data, an administrator others rely on). Saying that one the stack created
    exists makes the stack stop declaring it, and pulumi deletes what a program stops declaring."""
    if created_by_the_stack:
        if declared_existing:
            return (
                f"config key '{key}' is true, but this stack created {what} on server {server} (recorded in its "
                "output 'serverCreateOnly'): pulumi would delete it now; expected false"
            )
        return None
    if declared_existing and not exists:
        return (
            f"config key '{key}' is true, but {what} does not exist on server {server}; expected false (the "
            "program then creates it), or the config of the one that exists"
        )
    if exists and not declared_existing:
        return (
            f"config key '{key}' is false, but {what} already exists on server {server}; expected true, so that "
            "the program references it and `pulumi destroy` never deletes it"
        )
    return None


def adoption_record(server: AdoptedServer, config: Settings) -> dict[str, str]:
    """What this update adopts and what it creates on it, for the next run to read back."""
    record = {ADOPTED_RECORD_KEY: server.id}
    if not config.existing_database:
        record[CREATED_DATABASE_KEY] = config.database_name
    if not config.entra_admin_exists and config.entra_admin.object_id:
        record[CREATED_ADMIN_KEY] = config.entra_admin.object_id
    return record


def created_on(record: Mapping[str, Any] | None, server_id: str, key: str) -> str | None:
    """What the last update recorded as created (CREATED_*_KEY) on this very server, else None."""
    adopted = recorded_adoption(record, ADOPTED_RECORD_KEY)
    if record is None or adopted is None or adopted.lower() != server_id.lower():
        return None
    value = record.get(key)
    return str(value) if isinstance(value, str) and value else None


def environment_refusals(
    environment_id: str,
    *,
    workload_profiles: Sequence[tuple[str, str]],
    infrastructure_subnet_id: str | None,
    internal: bool,
    location: str,
    config_location: str,
    ingress_internal: bool,
) -> list[str]:
    """`workload_profiles`: (name, type) pairs. Only a workload profiles environment on a VNet keeps a
    known egress (a NAT gateway or firewall on its subnet; Microsoft Learn, "Networking in Azure Container
    Apps environment": Consumption-only environments support neither), so the server firewall can name it."""
    refusals: list[str] = []
    key = f"config key 'existingEnvironmentId' ({environment_id})"
    if not workload_profiles:
        refusals.append(
            f"{key}: a Consumption-only environment, whose outbound addresses change without notice; expected a "
            "workload profiles environment on a VNet (its egress through a NAT gateway the firewall can name)"
        )
    elif not any(kind == "Consumption" for _, kind in workload_profiles):
        refusals.append(f"{key}: the environment has no Consumption workload profile; expected one for the app")
    if not infrastructure_subnet_id:
        refusals.append(
            f"{key}: the environment is not on a virtual network; expected a workload profiles environment on a "
            "VNet subnet"
        )
    if not same_region(location, config_location):
        refusals.append(
            f"config key 'location': {config_location!r} is not accepted; expected the existing environment's "
            f"region {location!r} (a Container App lives in its environment's region)"
        )
    if internal != ingress_internal:
        refusals.append(
            f"config key 'ingressInternal': {ingress_internal!r} is not accepted; expected {internal!r}, the "
            f"existing environment's kind ({'internal' if internal else 'external'}), which only its owner can "
            "change"
        )
    return refusals


def _refuse(refusals: list[str]) -> None:
    if refusals:
        raise AdoptionError(
            f"{len(refusals)} problem(s) with what this stack adopts; nothing was changed:\n  - "
            + "\n  - ".join(refusals)
        )


def _lookup(read: Callable[[], T], key: str, what: str) -> T | None:
    """The resource, or None when Azure says it does not exist; any other failure is refused by name."""
    try:
        return read()
    except Exception as error:  # noqa: BLE001 (an invoke raises a plain Exception with the provider's message)
        if NOT_FOUND.search(str(error)):
            return None
        raise AdoptionError(f"config key '{key}': cannot read {what}: {error}") from None


def _subscription_refusal(key: str, adopted: ResourceId, subscription_id: str) -> list[str]:
    if adopted.subscription_id != subscription_id.lower():
        return [
            f"config key '{key}': {adopted.id} is in subscription {adopted.subscription_id}; expected the "
            f"subscription this stack deploys to ({subscription_id}): set azure-native:subscriptionId, or use "
            "a stack in that subscription"
        ]
    return []


def _get(value: Any, key: str) -> Any:
    return getattr(value, key, None) if value is not None else None


def adopt_server(config: Settings, subscription_id: str, record: Mapping[str, Any] | None = None) -> AdoptedServer:
    """Reads the adopted server, its TLS parameter, database and Entra administrator; refuses what cannot be served.

    `record`: the last update's `serverCreateOnly`, which says what the stack itself created on the server."""
    adopted = config.existing_server
    assert adopted is not None
    _refuse(_subscription_refusal("existingServerId", adopted, subscription_id))
    group, name = adopted.resource_group, adopted.name
    server = _lookup(
        lambda: dbforpostgresql.get_server(resource_group_name=group, server_name=name),
        "existingServerId",
        f"Flexible Server {adopted.id}",
    )
    if server is None:
        _refuse([f"config key 'existingServerId': no Flexible Server {adopted.id}; expected an existing server's ID"])
    assert server is not None
    transport = _lookup(
        lambda: dbforpostgresql.get_configuration(
            configuration_name=SECURE_TRANSPORT, resource_group_name=group, server_name=name
        ),
        "existingServerId",
        f"the {SECURE_TRANSPORT} parameter of {adopted.id}",
    )
    refusals = server_refusals(
        adopted.id,
        entra_auth=_get(server.auth_config, "active_directory_auth"),
        password_auth=_get(server.auth_config, "password_auth"),
        version=server.version,
        secure_transport=_get(transport, "value"),
        administrator_login=server.administrator_login,
        auth_mode=config.auth_mode,
    )
    database = _lookup(
        lambda: dbforpostgresql.get_database(
            database_name=config.database_name, resource_group_name=group, server_name=name
        ),
        "existingDatabase",
        f"database {config.database_name!r} of {adopted.id}",
    )
    refusal = presence_refusal(
        "existingDatabase",
        config.existing_database,
        database is not None,
        f"database {config.database_name!r}",
        name,
        created_by_the_stack=created_on(record, adopted.id, CREATED_DATABASE_KEY) == config.database_name,
    )
    refusals += [refusal] if refusal else []
    admin = config.entra_admin
    if admin.object_id is not None:
        object_id = admin.object_id
        present = _lookup(
            lambda: dbforpostgresql.get_administrators_microsoft_entra(
                object_id=object_id, resource_group_name=group, server_name=name
            ),
            "entraAdminExists",
            f"the Entra administrators of {adopted.id}",
        )
        refusal = presence_refusal(
            "entraAdminExists",
            config.entra_admin_exists,
            present is not None,
            f"the Entra administrator {admin.principal_name!r} (object ID {object_id})",
            name,
            created_by_the_stack=created_on(record, adopted.id, CREATED_ADMIN_KEY) == object_id,
        )
        refusals += [refusal] if refusal else []
        if present is not None and present.principal_name and present.principal_name != admin.principal_name:
            # The role/grant step signs in as the administrator's role, which carries the server's name for it.
            refusals.append(
                f"config key 'entraAdminPrincipalName': {admin.principal_name!r} is not accepted; expected "
                f"{present.principal_name!r}, the name server {name} has for object ID {object_id}"
            )
    _refuse(refusals)
    return AdoptedServer(
        id=server.id or adopted.id,
        resource_group=group,
        name=server.name or name,
        fqdn=server.fully_qualified_domain_name or "",
        location=server.location,
        version=server.version or "",
        administrator_login=server.administrator_login or "",
        password_auth=_get(server.auth_config, "password_auth") == "Enabled",
    )


def adopt_environment(config: Settings, subscription_id: str) -> AdoptedEnvironment:
    """Reads the existing Container Apps environment; refuses one whose egress the server firewall cannot name."""
    adopted = config.existing_environment
    assert adopted is not None
    _refuse(_subscription_refusal("existingEnvironmentId", adopted, subscription_id))
    environment = _lookup(
        lambda: app.get_managed_environment(environment_name=adopted.name, resource_group_name=adopted.resource_group),
        "existingEnvironmentId",
        f"Container Apps environment {adopted.id}",
    )
    if environment is None:
        _refuse([f"config key 'existingEnvironmentId': no environment {adopted.id}; expected an existing one's ID"])
    assert environment is not None
    profiles = [(profile.name, profile.workload_profile_type) for profile in environment.workload_profiles or []]
    vnet = environment.vnet_configuration
    internal = bool(_get(vnet, "internal"))
    _refuse(
        environment_refusals(
            adopted.id,
            workload_profiles=profiles,
            infrastructure_subnet_id=_get(vnet, "infrastructure_subnet_id"),
            internal=internal,
            location=environment.location,
            config_location=config.location,
            ingress_internal=config.ingress_internal,
        )
    )
    return AdoptedEnvironment(
        id=environment.id or adopted.id,
        resource_group=adopted.resource_group,
        name=environment.name or adopted.name,
        location=environment.location,
        workload_profile_name=next(name for name, kind in profiles if kind == "Consumption"),
        internal=internal,
        default_domain=environment.default_domain or "",
        static_ip=environment.static_ip or "",
        logs_destination=_get(environment.app_logs_configuration, "destination") or "",
        logs_customer_id=_get(_get(environment.app_logs_configuration, "log_analytics_configuration"), "customer_id")
        or "",
        infrastructure_subnet_id=_get(vnet, "infrastructure_subnet_id") or "",
    )


def recorded_adoption(record: Mapping[str, Any] | None, key: str) -> str | None:
    """The ID a record says the last update adopted, else None (it created its own, or nothing yet)."""
    if isinstance(record, Mapping) and isinstance(record.get(key), str):
        return str(record[key])
    return None


def refuse_adopting_over_an_owned_server(record: Mapping[str, Any] | None, config: Settings) -> None:
    """A stack whose last update created its own server must not start adopting another one: the update
    would stop declaring its server, and pulumi deletes what a program stops declaring, data and all."""
    if config.existing_server is None or record is None or recorded_adoption(record, ADOPTED_RECORD_KEY):
        return
    raise AdoptionError(
        "config key 'existingServerId': this stack created its own server (recorded in its output "
        "'serverCreateOnly'), and adopting another one would make pulumi delete that server and its data. "
        "Nothing was changed. Expected existingServerId empty here; adopt a server from a new stack "
        "(pulumi stack init), as docs/fix-existing-deployment.md shows."
    )
