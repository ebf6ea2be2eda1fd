"""prod against the Well-Architected baseline (PSRule for Azure, Azure.Default), as declared under mocks.

The rules these tests stand for: Azure.VNET.UseNSGs (a subnet has a network security group),
Azure.ContainerApp.AvailabilityZone (zone-redundant environment), Azure.ContainerApp.RestrictIngress
(IP restrictions, Allow rules only), Azure.PostgreSQL.MaintenanceWindow (a custom maintenance window),
Azure.PublicIP.AvailabilityZone (a zone-redundant public IP). What prod leaves out on purpose (one
replica, the EmptyDir token volume, workspace replication) is in the README's exceptions.
"""

from __future__ import annotations

import functools

import pytest
from harness import ProgramRun, run_program

from components.network import inbound_rules

pytestmark = pytest.mark.program

SUBNET = "azure-native:network:Subnet"
NSG = "azure-native:network:NetworkSecurityGroup"
ENVIRONMENT = "azure-native:app:ManagedEnvironment"
CONTAINER_APP = "azure-native:app:ContainerApp"
SERVER = "azure-native:dbforpostgresql:Server"
PUBLIC_IP = "azure-native:network:PublicIPAddress"
NAT = "azure-native:network:NatGateway"


@functools.cache
def program(stack: str, mode: str = "token") -> ProgramRun:
    return run_program(stack, {"authMode": mode})


def rules_of(run: ProgramRun) -> dict[str, dict[str, object]]:
    return {rule["name"]: rule for rule in run.one(NSG).inputs["securityRules"]}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_apps_subnet_has_a_network_security_group(stack: str) -> None:
    run = program(stack)
    subnet = run.one(SUBNET).inputs
    assert subnet["networkSecurityGroup"]["id"].endswith("/" + run.one(NSG).name)


def test_prod_admits_inbound_only_what_container_apps_documents_for_its_clients() -> None:
    # Microsoft Learn, "Securing a custom VNET in Azure Container Apps with Network Security Groups",
    # workload profiles environment, inbound: your clients -> 443 on the environment's static IP and
    # 30000-32676 on the subnet; AzureLoadBalancer -> 30000-32676 on the subnet.
    rules = rules_of(program("prod"))
    assert list(rules) == [
        "allow-mcp-clients-https",
        "allow-mcp-clients-node-ports",
        "allow-azure-load-balancer",
        "allow-within-subnet",
        "deny-all-inbound",
    ]
    assert all(rule["direction"] == "Inbound" for rule in rules.values())
    clients = rules["allow-mcp-clients-https"]
    assert (clients["sourceAddressPrefix"], clients["destinationAddressPrefix"], clients["destinationPortRange"]) == (
        "10.61.8.0/24",
        "10.61.2.0/23",
        "443",
    )
    assert rules["allow-mcp-clients-node-ports"]["destinationPortRange"] == "30000-32676"
    assert rules["allow-azure-load-balancer"]["sourceAddressPrefix"] == "AzureLoadBalancer"
    deny = rules["deny-all-inbound"]
    assert (deny["access"], deny["sourceAddressPrefix"], deny["destinationAddressPrefix"]) == ("Deny", "*", "*")
    allows = [rule for rule in rules.values() if rule["access"] == "Allow"]
    assert all(float(str(rule["priority"])) < float(str(deny["priority"])) for rule in allows)
    # Nothing from the internet, nor from the rest of the VNet: the clients' range is the only outside source.
    sources = {str(rule.get("sourceAddressPrefix")) for rule in allows}
    assert sources == {"10.61.8.0/24", "AzureLoadBalancer", "10.61.2.0/23"}


def test_the_security_group_follows_the_admitted_clients() -> None:
    assert rules_of(program("dev"))["allow-mcp-clients-https"]["sourceAddressPrefix"] == "198.51.100.0/24"
    two = inbound_rules("10.60.0.0/23", ("203.0.113.7/32", "198.51.100.0/24"))[0]
    assert two.sources == ("203.0.113.7/32", "198.51.100.0/24")
    run = run_program("dev", {"allowedClientCidrs": ["203.0.113.7", "192.0.2.0/28"]})
    https = rules_of(run)["allow-mcp-clients-https"]
    assert https["sourceAddressPrefixes"] == ["203.0.113.7/32", "192.0.2.0/28"] and "sourceAddressPrefix" not in https
    internal = run_program("dev", {"allowedClientCidrs": [], "ingressInternal": True, "appSubnetCidr": "10.60.2.0/23"})
    assert rules_of(internal)["allow-mcp-clients-https"]["sourceAddressPrefix"] == "VirtualNetwork"


@pytest.mark.parametrize("mode", ["token", "password"])
def test_prod_is_zone_redundant_and_dev_is_not(mode: str) -> None:
    prod, dev = program("prod", mode), program("dev", mode)
    assert prod.one(ENVIRONMENT).inputs["zoneRedundant"] is True
    assert dev.one(ENVIRONMENT).inputs["zoneRedundant"] is False
    # The egress IP the server firewall admits survives a zone's loss; a non-zonal NAT gateway takes it.
    egress = prod.one(PUBLIC_IP).inputs
    assert egress["zones"] == ["1", "2", "3"] and egress["sku"] == {"name": "Standard", "tier": "Regional"}
    assert "zones" not in prod.one(NAT).inputs
    assert "zones" not in dev.one(PUBLIC_IP).inputs


@pytest.mark.parametrize("mode", ["token", "password"])
def test_prod_ingress_admits_only_its_clients_range(mode: str) -> None:
    ingress = program("prod", mode).one(CONTAINER_APP).inputs["configuration"]["ingress"]
    assert ingress["ipSecurityRestrictions"] == [
        {"name": "client-0", "ipAddressRange": "10.61.8.0/24", "action": "Allow", "description": "allowedClientCidrs"}
    ]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_server_has_a_custom_maintenance_window(stack: str) -> None:
    # Flexible Server counts dayOfWeek from 0 = Sunday (REST API MaintenanceWindow).
    window = program(stack).one(SERVER).inputs["maintenanceWindow"]
    assert window == {"customWindow": "Enabled", "dayOfWeek": 0, "startHour": 2, "startMinute": 0}
    system = run_program("dev", {"maintenanceWindow": "system"}).one(SERVER).inputs["maintenanceWindow"]
    assert system["customWindow"] == "Disabled"  # Azure picks the window
