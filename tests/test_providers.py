"""The resource providers the stack needs are registered, or the run stops before declaring anything.

azure-native does not register resource providers (pulumi/pulumi-azure-native#3479: a DiagnosticSetting fails
with "The subscription is not registered to use microsoft.insights"). Preflight reads each namespace's
registrationState from Resource Manager ("Providers - Get", Microsoft.Resources 2021-04-01) with the provider's
own token; tests/harness.py answers that GET as ARM does, Registered unless a test says otherwise.
"""

from __future__ import annotations

import functools
import itertools
import re

import pulumi
import pytest
from harness import SUBSCRIPTION_ID, TENANT_ID, ProgramRun, RecordingMocks, jwt, run_program

from azure_cloud import clouds as cloud
from preflight.providers import REQUIRED_PROVIDERS, arm_endpoint, registration_refusal, unregistered

pytestmark = pytest.mark.program

# azure-native names a module after the resource provider namespace, lowercased and without "Microsoft."
# (`app` is Microsoft.App, `dbforpostgresql` Microsoft.DBforPostgreSQL), except where it renames it: `monitor`
# holds Microsoft.Insights (diagnostic settings, scheduled query rules, action groups), `privatedns` holds
# Microsoft.Network's privateDnsZones, and `resources` Microsoft.Resources (resource groups).
RENAMED_MODULES = {
    "monitor": "Microsoft.Insights",
    "privatedns": "Microsoft.Network",
    "resources": "Microsoft.Resources",
}
# Registered in every subscription, and cannot be unregistered (Microsoft Learn, "Azure resource providers and
# types": registered by default).
ALWAYS_REGISTERED = {"Microsoft.Resources"}
SHIPPED = list(itertools.product(("dev", "prod"), ("token", "password")))


def namespace_of(resource_type: str, known: tuple[str, ...] = REQUIRED_PROVIDERS) -> str:
    """The resource provider namespace of an azure-native resource type token (`azure-native:<module>:<Type>`)."""
    module = resource_type.split(":")[1]
    if module in RENAMED_MODULES:
        return RENAMED_MODULES[module]
    matches = [namespace for namespace in known if namespace.removeprefix("Microsoft.").lower() == module]
    assert matches, f"{resource_type}: module {module!r} maps to no namespace the check knows; add it to the list"
    return matches[0]


def declared_namespaces(run: ProgramRun) -> set[str]:
    azure = {r.type for r in run.resources if r.type.startswith("azure-native:")}
    return {namespace_of(t) for t in azure} - ALWAYS_REGISTERED


@functools.cache
def shipped(stack: str, mode: str) -> ProgramRun:
    return run_program(stack, {"authMode": mode})


def test_the_checked_namespaces_are_those_of_the_resource_types_the_program_declares() -> None:
    declared = [declared_namespaces(shipped(stack, mode)) for stack, mode in SHIPPED]
    assert set().union(*declared) == set(REQUIRED_PROVIDERS)
    assert "Microsoft.Insights" in REQUIRED_PROVIDERS  # the one the README's list used to lack
    for run_namespaces in declared:
        assert run_namespaces <= set(REQUIRED_PROVIDERS)


def test_every_run_reads_the_registration_of_every_namespace_once_with_the_providers_token() -> None:
    run = shipped("dev", "token")
    read = sorted(re.search(r"/providers/([^?]+)\?", url).group(1) for url in run.mocks.arm_gets)  # type: ignore[union-attr]
    assert read == sorted(REQUIRED_PROVIDERS)
    assert all(
        url.startswith(f"https://management.azure.com/subscriptions/{SUBSCRIPTION_ID}/") for url in run.mocks.arm_gets
    )
    assert all(url.endswith("?api-version=2021-04-01") for url in run.mocks.arm_gets)


@pytest.mark.parametrize("state", ["NotRegistered", "Registering", "Unregistered"])
def test_an_unregistered_provider_stops_the_run_with_the_commands_before_any_resource(state: str) -> None:
    recording = RecordingMocks()
    recording.provider_states = {"Microsoft.Insights": state}
    with pytest.raises(pulumi.RunError) as refused:
        run_program("dev", {}, recording=recording)
    message = str(refused.value)
    assert f"Microsoft.Insights is {state}" in message
    assert f"az provider register --namespace Microsoft.Insights --subscription {SUBSCRIPTION_ID}" in message
    assert message.count("az provider register") == 1  # only what is missing
    assert recording.resources == []
    # Stopped before anything else was looked up: the stack's records are read after the check.
    assert "pulumi:pulumi:readStackOutputs" not in [token for token, _ in recording.calls]


def test_every_missing_provider_is_named_at_once() -> None:
    recording = RecordingMocks()
    recording.provider_states = {"Microsoft.App": "NotRegistered", "Microsoft.DBforPostgreSQL": "NotRegistered"}
    with pytest.raises(pulumi.RunError, match=r"2 resource provider\(s\)") as refused:
        run_program("prod", {}, recording=recording)
    for namespace in ("Microsoft.App", "Microsoft.DBforPostgreSQL"):
        assert f"az provider register --namespace {namespace} --subscription {SUBSCRIPTION_ID}" in str(refused.value)
    assert recording.resources == []


def test_a_registration_that_cannot_be_read_stops_the_run_and_says_why() -> None:
    recording = RecordingMocks()

    def forbidden(url: str, token: str) -> tuple[int, dict[str, object]]:
        return 403, {"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization."}}

    recording.arm_get = forbidden  # type: ignore[method-assign]
    with pytest.raises(pulumi.RunError, match=r"HTTP 403 AuthorizationFailed.*providers/read"):
        run_program("dev", {}, recording=recording)
    assert recording.resources == []


# --- the pure decisions -------------------------------------------------------------------------


def test_the_decision_reads_namespaces_case_insensitively_and_takes_only_registered() -> None:
    states: dict[str, str | None] = {namespace.lower(): "Registered" for namespace in REQUIRED_PROVIDERS}
    assert unregistered(states) == [] and registration_refusal(states, SUBSCRIPTION_ID) is None
    states["microsoft.app"] = "Registering"  # not usable until Registered
    states["microsoft.insights"] = None  # a cloud that does not know the namespace (ARM 404)
    assert unregistered(states) == ["Microsoft.App", "Microsoft.Insights"]
    refusal = registration_refusal(states, SUBSCRIPTION_ID)
    assert refusal is not None and "Microsoft.Insights is unknown to this cloud" in refusal


@pytest.mark.parametrize(
    ("audience", "endpoint"),
    [
        ("https://management.azure.com/", "https://management.azure.com"),
        ("https://management.core.windows.net/", "https://management.azure.com"),
        ("https://management.usgovcloudapi.net/", "https://management.usgovcloudapi.net"),
        ("https://management.chinacloudapi.cn", "https://management.chinacloudapi.cn"),
    ],
)
def test_the_check_asks_the_resource_manager_of_the_cloud_the_token_is_for(audience: str, endpoint: str) -> None:
    assert arm_endpoint(jwt({"aud": audience, "tid": TENANT_ID})) == endpoint


def test_a_token_that_names_no_endpoint_falls_back_to_azure_natives_cloud_setting() -> None:
    # A v2 token's audience is the Resource Manager application's GUID, not a URI.
    token = jwt({"aud": "797f4846-ba00-4fd7-ba43-dac1f8f63013"})
    assert arm_endpoint(token, cloud.resolve("", {})) == "https://management.azure.com"
    assert arm_endpoint(token, cloud.resolve("", {"ARM_ENVIRONMENT": "usgovernment"})) == (
        "https://management.usgovcloudapi.net"
    )
    with pytest.raises(cloud.CloudError, match=r"azure-native:environment is 'germany'"):
        arm_endpoint(token, cloud.resolve("", {}, provider_environment="germany"))
