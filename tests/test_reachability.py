"""Who can reach the MCP endpoint, as Azure wires it: prod inside the VNet only, dev on an allow-listed
public address.

Container Apps networking (Microsoft Learn, "Networking in Azure Container Apps environment" and
"Provide a virtual network to an internal Azure Container Apps environment"): ingress `external: false`
admits only apps of the same environment; an app reachable from the VNet needs an *internal*
environment (`vnetConfiguration.internal`, create-only, no public IP) with the app's ingress
`external: true`, and a private DNS zone named after the environment's default domain with `*` and
`@` A records to its static IP, linked to the VNet.
"""

from __future__ import annotations

import functools
from typing import Any

import pulumi
import pytest
from harness import ENVIRONMENT_PUBLIC_IP, ProgramRun, RecordingMocks, run_program

pytestmark = pytest.mark.program

ENVIRONMENT = "azure-native:app:ManagedEnvironment"
CONTAINER_APP = "azure-native:app:ContainerApp"
ZONE = "azure-native:privatedns:PrivateZone"
RECORD_SET = "azure-native:privatedns:PrivateRecordSet"
LINK = "azure-native:privatedns:VirtualNetworkLink"
VNET = "azure-native:network:VirtualNetwork"
SUBNET = "azure-native:network:Subnet"


@functools.cache
def program(stack: str, mode: str = "token") -> ProgramRun:
    return run_program(stack, {"authMode": mode})


def resource_id(run: ProgramRun, resource_type: str) -> str:
    return f"/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg/providers/{resource_type}/" + (
        run.one(resource_type).name
    )


@pytest.mark.parametrize("mode", ["token", "password"])
def test_prod_is_an_internal_environment_resolved_inside_the_vnet(mode: str) -> None:
    run = program("prod", mode)
    environment = run.one(ENVIRONMENT)
    assert environment.inputs["vnetConfiguration"] == {
        "infrastructureSubnetId": resource_id(run, SUBNET),
        "internal": True,
    }
    app = run.one(CONTAINER_APP).inputs
    assert app["configuration"]["ingress"]["external"] is True  # in an internal environment: the VNet
    domain, static_ip = environment.outputs["defaultDomain"], environment.outputs["staticIp"]
    assert static_ip == "10.61.2.100"  # Azure's answer: an address of the apps subnet

    zone = run.one(ZONE).inputs
    assert zone["privateZoneName"] == domain and zone["location"] == "Global"
    records = {r.inputs["relativeRecordSetName"]: r.inputs for r in run.of_type(RECORD_SET)}
    assert set(records) == {"*", "@"}
    for record in records.values():
        assert record["privateZoneName"] == domain and record["recordType"] == "A"
        assert record["aRecords"] == [{"ipv4Address": static_ip}]
    link = run.one(LINK).inputs
    assert link["privateZoneName"] == domain
    assert link["virtualNetwork"] == {"id": resource_id(run, VNET)}
    assert link["registrationEnabled"] is False and link["location"] == "Global"
    # The app's name resolves through the wildcard record: <app>.<default domain>.
    # (prod signs in through the gateway: the URL clients call is its /mcp, the public URL it is told the same.)
    assert run.exports["mcpUrl"] == f"https://{app['containerAppName']}.{domain}/mcp"
    assert run.exports["mcpEnvironmentIp"] == static_ip


@pytest.mark.parametrize("mode", ["token", "password"])
def test_dev_keeps_its_public_allow_listed_endpoint(mode: str) -> None:
    run = program("dev", mode)
    assert run.one(ENVIRONMENT).inputs["vnetConfiguration"]["internal"] is False
    ingress = run.one(CONTAINER_APP).inputs["configuration"]["ingress"]
    assert ingress["external"] is True
    assert [(r["ipAddressRange"], r["action"]) for r in ingress["ipSecurityRestrictions"]] == [
        ("198.51.100.0/24", "Allow")
    ]
    assert run.exports["mcpEnvironmentIp"] == ENVIRONMENT_PUBLIC_IP
    assert not run.of_type(ZONE) and not run.of_type(RECORD_SET) and not run.of_type(LINK)


def test_an_environment_change_moves_to_a_new_subnet_before_the_old_one_goes() -> None:
    run = program("prod")
    environment, subnet, app = run.one(ENVIRONMENT), run.one(SUBNET), run.one(CONTAINER_APP)
    # internal (and the subnet) are create-only: a change replaces the environment, not an update.
    assert "vnetConfiguration" in (run.options[environment.name].replace_on_changes or [])
    # A new range is a new subnet; the old one is left for Azure to release.
    assert "addressPrefix" in (run.options[subnet.name].replace_on_changes or [])
    assert run.options[subnet.name].retain_on_delete is True
    # The app's name is fixed: the old app goes before the new one is created in the new environment.
    assert run.options[app.name].delete_before_replace is True


def rerun(stack: str, recorded: dict[str, Any], overrides: dict[str, Any]) -> ProgramRun:
    outputs = {**program(stack).exports, "environmentCreateOnly": recorded}
    return run_program(stack, overrides, preview=True, recording=RecordingMocks(stack_outputs=outputs))


def test_turning_internal_on_the_same_subnet_is_refused_by_name() -> None:
    # dev was deployed external on 10.60.0.0/23; making it internal without a new range cannot work.
    recorded = program("dev").exports["environmentCreateOnly"]
    assert recorded == {"internal": False, "zoneRedundant": False, "appSubnetCidr": "10.60.0.0/23"}
    with pytest.raises(pulumi.RunError) as refused:
        rerun("dev", recorded, {"ingressInternal": True, "allowedClientCidrs": []})
    message = str(refused.value)
    assert "config key 'appSubnetCidr'" in message and "internal: False -> True" in message
    assert "expected a new range inside vnetCidr" in message
    # With a new range, the preview goes through: a new subnet, a new internal environment.
    run = rerun("dev", recorded, {"ingressInternal": True, "allowedClientCidrs": [], "appSubnetCidr": "10.60.2.0/23"})
    assert run.one(ENVIRONMENT).inputs["vnetConfiguration"]["internal"] is True
    assert run.one(SUBNET).inputs["addressPrefix"] == "10.60.2.0/23"


def test_prod_moving_from_its_first_external_environment_is_accepted() -> None:
    # What prod ran before this change: an external, zonal environment on 10.61.0.0/23 (recorded
    # before zoneRedundant existed). Both create-only changes come in one replacement, on a new subnet.
    run = rerun("prod", {"internal": False, "appSubnetCidr": "10.61.0.0/23"}, {})
    environment = run.one(ENVIRONMENT).inputs
    assert environment["vnetConfiguration"]["internal"] is True and environment["zoneRedundant"] is True
    with pytest.raises(pulumi.RunError, match=r"config key 'appSubnetCidr'.*zoneRedundant: False -> True"):
        rerun("prod", {"internal": True, "zoneRedundant": False, "appSubnetCidr": "10.61.2.0/23"}, {})
