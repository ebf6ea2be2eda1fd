"""The resource providers the stack needs are registered in the subscription, or the run stops first.

A subscription must register a resource provider (`Microsoft.App`, `Microsoft.Insights`, ...) before it can
create that provider's resources, and a fresh one has few registered. The azure-native provider does not
register them (pulumi/pulumi-azure-native#3479: a DiagnosticSetting fails with "The subscription is not
registered to use microsoft.insights"), so without this check the first `pulumi up` fails halfway, with part
of the stack created. Here the run stops before the first resource, with the exact commands to run.

How the state is read: ARM's "Providers - Get" (`GET /subscriptions/{id}/providers/{namespace}`, Microsoft.
Resources REST API 2021-04-01), whose answer carries `registrationState`. azure-native has no invoke for it
(its invokes are the REST specification's GET operations of resources, plus getClientConfig and
getClientToken: provider/pkg/provider/provider.go, `Invoke`), so the program sends that GET itself, with
the token of `authorization.get_client_token()`: the same credentials and the same cloud as the provider
(the token's audience is that cloud's Resource Manager endpoint). Any principal that can deploy here can read
it (`Microsoft.Resources/subscriptions/providers/read`, in every built-in role).

`REQUIRED_PROVIDERS` is what the program declares (a test holds it equal to the namespaces of the resource
types it declares); `unregistered` and `registration_refusal` decide (pure); `registration_states` is the I/O.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pulumi
from pulumi_azure_native import authorization

from azure_cloud.clouds import Cloud, by_management_audience, stack_cloud

REQUIRED_PROVIDERS: tuple[str, ...] = (
    "Microsoft.App",  # the Container Apps environment, the app, its sign-in configuration
    "Microsoft.Authorization",  # role assignments (registered in every subscription, checked all the same)
    "Microsoft.ContainerRegistry",  # the sign-in gateway's registry (signIn: gateway without gatewayImage)
    "Microsoft.DBforPostgreSQL",  # the Flexible Server and its children
    "Microsoft.Insights",  # diagnostic settings, scheduled query rules, action groups
    "Microsoft.KeyVault",  # the vault and its secrets
    "Microsoft.Storage",  # the sign-in gateway's store (a storage account and its table)
    "Microsoft.ManagedIdentity",  # the app's user-assigned identity
    "Microsoft.Network",  # the VNet, subnet, NSG, NAT gateway, public IP, private DNS zone
    "Microsoft.OperationalInsights",  # the Log Analytics workspace
)
"""Microsoft.Resources (resource groups) is registered in every subscription and cannot be unregistered."""
REGISTERED = "Registered"
API_VERSION = "2021-04-01"
TIMEOUT_SECONDS = 30

ArmGet = Callable[[str, str], tuple[int, Mapping[str, Any]]]
"""(URL, bearer token) -> (HTTP status, JSON body)."""


class ProviderRegistrationError(pulumi.RunError):
    """A resource provider the stack needs is not registered, or its state cannot be read."""


def unregistered(states: Mapping[str, str | None], required: Iterable[str] = REQUIRED_PROVIDERS) -> list[str]:
    """The required namespaces whose state is not Registered (None: the cloud does not know the namespace)."""
    by_name = {namespace.lower(): state for namespace, state in states.items()}
    return [namespace for namespace in required if by_name.get(namespace.lower()) != REGISTERED]


def register_command(namespace: str, subscription_id: str) -> str:
    return f"az provider register --namespace {namespace} --subscription {subscription_id}"


def registration_refusal(states: Mapping[str, str | None], subscription_id: str) -> str | None:
    """The message that stops the run, or None when every required provider is registered."""
    missing = unregistered(states)
    if not missing:
        return None
    by_name = {namespace.lower(): state for namespace, state in states.items()}
    lines = [f"{namespace} is {by_name.get(namespace.lower()) or 'unknown to this cloud'}" for namespace in missing]
    commands = [register_command(namespace, subscription_id) for namespace in missing]
    return (
        f"{len(missing)} resource provider(s) this stack needs are not registered in subscription "
        f"{subscription_id} (azure-native does not register them; nothing was declared):\n  - "
        + "\n  - ".join(lines)
        + "\nRegister them (once per subscription; needs the */register/action permission, e.g. Contributor), "
        "wait until `az provider show --namespace <namespace> --query registrationState` says Registered, "
        "then run pulumi again:\n  " + "\n  ".join(commands)
    )


def arm_endpoint(token: str, cloud: Cloud | None = None) -> str:
    """The Resource Manager endpoint of the cloud the token was issued for: by its `aud` claim
    (azure_cloud/clouds.py `management_audiences`), else that of the stack's cloud (a v2 token names the Resource
    Manager application by its GUID instead)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        audience = str(claims.get("aud", ""))
    except (IndexError, ValueError) as error:
        raise ProviderRegistrationError(f"cannot read the Azure token's audience: {error}") from None
    issued_for = by_management_audience(audience)
    if issued_for is not None:
        return issued_for.resource_manager
    return (cloud or stack_cloud("")).resource_manager


def http_get(url: str, token: str) -> tuple[int, Mapping[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read() or b"{}")
        except ValueError:
            body = {}
        return error.code, body


arm_get: ArmGet = http_get
"""The GET the check sends; tests stand in for it (tests/harness.py answers as ARM does)."""


def registration_states(
    subscription_id: str, namespaces: Iterable[str] = REQUIRED_PROVIDERS, cloud: Cloud | None = None
) -> dict[str, str | None]:
    """Each namespace's registrationState, read from ARM; None for a namespace the cloud does not know (404)."""
    token = authorization.get_client_token().token
    endpoint = arm_endpoint(token, cloud)
    states: dict[str, str | None] = {}
    for namespace in namespaces:
        url = (
            f"{endpoint}/subscriptions/{urllib.parse.quote(subscription_id)}/providers/"
            f"{urllib.parse.quote(namespace)}?api-version={API_VERSION}"
        )
        try:
            status, body = arm_get(url, token)
        except OSError as error:
            raise ProviderRegistrationError(
                f"cannot read the registration of resource provider {namespace} in subscription "
                f"{subscription_id}: {error}"
            ) from None
        if status == 404:
            states[namespace] = None
        elif status == 200:
            states[namespace] = str(body.get("registrationState") or "") or None
        else:
            found = body.get("error")
            error_body: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
            raise ProviderRegistrationError(
                f"cannot read the registration of resource provider {namespace} in subscription {subscription_id}: "
                f"HTTP {status} {error_body.get('code', '')} {error_body.get('message', '')}".rstrip()
                + " (the deployer needs Microsoft.Resources/subscriptions/providers/read, in every built-in role)"
            )
    return states


def refuse_unregistered_providers(subscription_id: str, cloud: Cloud | None = None) -> None:
    """Stops the run, before anything is declared, when a provider the stack needs is not registered."""
    refusal = registration_refusal(registration_states(subscription_id, cloud=cloud), subscription_id)
    if refusal is not None:
        raise ProviderRegistrationError(refusal)
