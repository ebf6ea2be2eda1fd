"""prod against the Well-Architected baseline (PSRule for Azure, Azure.Default), as declared under mocks.

The rules these tests stand for: Azure.VNET.UseNSGs (a subnet has a network security group),
Azure.ContainerApp.AvailabilityZone (zone-redundant environment), Azure.ContainerApp.RestrictIngress
(IP restrictions, Allow rules only), Azure.PostgreSQL.MaintenanceWindow (a custom maintenance window),
Azure.PublicIP.AvailabilityZone (a zone-redundant public IP). What prod leaves out on purpose (one
replica, the EmptyDir token volume, workspace replication) is in docs/architecture.md's exceptions.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import cast

import pytest
from harness import ProgramRun, run_program

import components.environment as environment_module
from components.network import InboundRule, inbound_rules
from settings.model import Settings

pytestmark = pytest.mark.program

SUBNET = "azure-native:network:Subnet"
NSG = "azure-native:network:NetworkSecurityGroup"
ENVIRONMENT = "azure-native:app:ManagedEnvironment"
CONTAINER_APP = "azure-native:app:ContainerApp"
SERVER = "azure-native:dbforpostgresql:Server"
PUBLIC_IP = "azure-native:network:PublicIPAddress"
NAT = "azure-native:network:NatGateway"
ROOT = Path(__file__).resolve().parent.parent


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


# Microsoft Learn, "Securing a virtual network in Azure Container Apps with Network Security Groups", NSG allow
# rules, inbound, workload profiles environment: (protocol, source, destination, destination ports).
DOCUMENTED_HTTPS = ("TCP", "your client IPs", "your container app's subnet", ("443", "31443"))
DOCUMENTED_HTTP = ("TCP", "your client IPs", "your container app's subnet", ("80", "31080"))
DOCUMENTED_LOAD_BALANCER = ("TCP", "AzureLoadBalancer", "your container app's subnet", ("30000-32767",))
NODE_PORT_RANGE = range(30000, 32768)  # every node port Kubernetes may allocate (30000-32767)


def ports_of(rule: dict[str, object]) -> tuple[str, ...]:
    """A rule's destination ports as Azure holds them: one range, or a list of them (never both)."""
    single, several = rule.get("destinationPortRange"), rule.get("destinationPortRanges")
    assert (single is None) != (several is None), rule
    return (str(single),) if single is not None else tuple(str(port) for port in cast(list[object], several))


def covers(ports: tuple[str, ...], port: int) -> bool:
    for spec in ports:
        if spec == "*":
            return True
        low, _, high = spec.partition("-")
        if int(low) <= port <= int(high or low):
            return True
    return False


def sources_of(rule: dict[str, object]) -> tuple[str, ...]:
    single, several = rule.get("sourceAddressPrefix"), rule.get("sourceAddressPrefixes")
    assert (single is None) != (several is None), rule
    return (str(single),) if single is not None else tuple(str(s) for s in cast(list[object], several))


def as_documented(rule: InboundRule, clients: tuple[str, ...], subnet: str) -> tuple[str, str, str, tuple[str, ...]]:
    source = "your client IPs" if rule.sources == clients else " ".join(rule.sources)
    destination = "your container app's subnet" if rule.destination == subnet else rule.destination
    return (rule.protocol.upper(), source, destination, rule.ports)


@pytest.mark.parametrize("internal", [False, True], ids=["external", "internal"])
def test_the_rule_builder_allows_exactly_the_documented_inbound_rows(internal: bool) -> None:
    subnet, clients = "10.60.0.0/23", ("203.0.113.0/24",)
    rules = inbound_rules(subnet, clients, internal)
    allows = [as_documented(rule, clients, subnet) for rule in rules if rule.access == "Allow"]
    # The documented HTTPS and load balancer rows, to the letter (the load balancer up to 32767, not 32676)...
    assert DOCUMENTED_HTTPS in allows and DOCUMENTED_LOAD_BALANCER in allows
    # ...not the HTTP row: the ingress refuses plain HTTP (allowInsecure false) and would only redirect it...
    from_outside = [r for r in rules if r.access == "Allow" and r.sources != (subnet,)]
    assert DOCUMENTED_HTTP not in allows and not any(covers(r.ports, 80) for r in from_outside)
    # ...and besides them only the subnet to itself (the documented "Any, subnet to subnet" row).
    assert [a for a in allows if a not in (DOCUMENTED_HTTPS, DOCUMENTED_LOAD_BALANCER)] == [
        ("*", subnet, "your container app's subnet", ("*",))
    ]
    # Clients get 443/31443 and nothing else: no other node port, no other port at all.
    client_rules = [r for r in rules if r.access == "Allow" and r.sources == clients]
    assert [r.ports for r in client_rules] == [("443", "31443")]
    assert len({r.priority for r in rules}) == len(rules) and all(100 <= r.priority <= 4096 for r in rules)


def test_an_external_environment_gets_no_deny_at_all() -> None:
    # "locking down inbound traffic via NSG ... on an external workload profiles environment isn't supported":
    # its traffic comes through a public IP in the managed resource group, not through the subnet.
    rules = inbound_rules("10.60.0.0/23", ("Internet",), internal=False)
    assert [r for r in rules if r.access == "Deny"] == []


def test_an_internal_environment_denies_the_client_ports_to_everyone_else_and_nothing_more() -> None:
    subnet, clients = "10.61.2.0/23", ("10.61.8.0/24",)
    rules = inbound_rules(subnet, clients, internal=True)
    (deny,) = [r for r in rules if r.access == "Deny"]
    # Targeted, not a deny-all: the ports a client could use, every node port, but not e.g. 22 or 8080.
    for port in (80, 443, 31080, 31443, 30000, 32767):
        assert covers(deny.ports, port), port
    assert not any(covers(deny.ports, port) for port in (22, 53, 1194, 8080, 65000))
    assert deny.ports != ("*",) and deny.destination == subnet and deny.sources == ("*",)
    # Every allow comes first, so the documented sources still get through.
    assert all(r.priority < deny.priority for r in rules if r.access == "Allow")


def test_prod_internal_admits_its_clients_and_the_load_balancer_and_denies_the_rest_of_the_vnet() -> None:
    rules = rules_of(program("prod"))
    assert list(rules) == [
        "allow-mcp-clients-https",
        "allow-azure-load-balancer",
        "allow-within-subnet",
        "deny-other-sources-to-client-ports",
    ]
    assert all(rule["direction"] == "Inbound" for rule in rules.values())
    clients = rules["allow-mcp-clients-https"]
    assert (sources_of(clients), clients["destinationAddressPrefix"], ports_of(clients), clients["protocol"]) == (
        ("10.61.8.0/24",),
        "10.61.2.0/23",
        ("443", "31443"),
        "Tcp",
    )
    balancer = rules["allow-azure-load-balancer"]
    assert (sources_of(balancer), ports_of(balancer), balancer["destinationAddressPrefix"]) == (
        ("AzureLoadBalancer",),
        ("30000-32767",),
        "10.61.2.0/23",
    )
    assert all(covers(ports_of(balancer), port) for port in NODE_PORT_RANGE)
    deny = rules["deny-other-sources-to-client-ports"]
    assert (deny["access"], sources_of(deny), deny["destinationAddressPrefix"]) == ("Deny", ("*",), "10.61.2.0/23")
    assert ports_of(deny) == ("80", "443", "30000-32767")

    def admitted(source: str, port: int) -> bool:
        """Azure's evaluation: the first rule by priority that matches decides; then the defaults
        (AllowVnetInBound admits the VNet, AllowAzureLoadBalancerInBound the load balancer)."""
        for rule in sorted(rules.values(), key=lambda r: float(str(r["priority"]))):
            if covers(ports_of(rule), port) and (set(sources_of(rule)) & {source, "*"}):
                return rule["access"] == "Allow"
        return source in ("VirtualNetwork", "10.61.8.0/24", "10.61.2.0/23", "AzureLoadBalancer")

    assert admitted("10.61.8.0/24", 443) and admitted("10.61.8.0/24", 31443)
    assert admitted("AzureLoadBalancer", 30000) and admitted("AzureLoadBalancer", 32767)
    assert not admitted("10.61.8.0/24", 80) and not admitted("10.61.8.0/24", 31080)
    assert not admitted("VirtualNetwork", 443) and not admitted("VirtualNetwork", 31443)
    assert not admitted("VirtualNetwork", 32000)
    assert admitted("10.61.2.0/23", 31443)  # the environment's own traffic


def test_dev_external_has_the_documented_allows_and_no_deny() -> None:
    rules = rules_of(program("dev"))
    assert list(rules) == ["allow-mcp-clients-https", "allow-azure-load-balancer", "allow-within-subnet"]
    assert all(rule["access"] == "Allow" for rule in rules.values())
    assert ports_of(rules["allow-mcp-clients-https"]) == ("443", "31443")
    assert ports_of(rules["allow-azure-load-balancer"]) == ("30000-32767",)
    assert program("dev").one(ENVIRONMENT).inputs["vnetConfiguration"]["internal"] is False


def test_the_security_group_follows_the_admitted_clients() -> None:
    assert sources_of(rules_of(program("dev"))["allow-mcp-clients-https"]) == ("198.51.100.0/24",)
    two = inbound_rules("10.60.0.0/23", ("203.0.113.7/32", "198.51.100.0/24"), internal=False)[0]
    assert two.sources == ("203.0.113.7/32", "198.51.100.0/24")
    run = run_program("dev", {"allowedClientCidrs": ["203.0.113.7", "192.0.2.0/28"]})
    https = rules_of(run)["allow-mcp-clients-https"]
    assert https["sourceAddressPrefixes"] == ["203.0.113.7/32", "192.0.2.0/28"] and "sourceAddressPrefix" not in https
    internal = run_program("dev", {"allowedClientCidrs": [], "ingressInternal": True, "appSubnetCidr": "10.60.2.0/23"})
    assert sources_of(rules_of(internal)["allow-mcp-clients-https"]) == ("VirtualNetwork",)
    assert "deny-other-sources-to-client-ports" in rules_of(internal)


@pytest.mark.parametrize("mode", ["token", "password"])
def test_prod_is_zone_redundant_and_dev_is_not(mode: str) -> None:
    prod, dev = program("prod", mode), program("dev", mode)
    assert prod.one(ENVIRONMENT).inputs["zoneRedundant"] is True
    assert dev.one(ENVIRONMENT).inputs["zoneRedundant"] is False
    # The egress IP the server firewall admits is zone-redundant; the Standard NAT gateway in front of it is
    # "no zone" (zonal, in a zone Azure picks), which accepts a zone-redundant IP (Microsoft Learn, "NAT gateway
    # and availability zones").
    egress = prod.one(PUBLIC_IP).inputs
    assert egress["zones"] == ["1", "2", "3"] and egress["sku"] == {"name": "Standard", "tier": "Regional"}
    assert "zones" not in prod.one(NAT).inputs and prod.one(NAT).inputs["sku"] == {"name": "Standard"}
    assert "zones" not in dev.one(PUBLIC_IP).inputs


def test_what_zone_redundancy_claims_matches_what_is_built() -> None:
    # Microsoft Learn, "NAT gateway and availability zones" / "Reliability in Azure NAT Gateway": a Standard NAT
    # gateway is zonal; without a zone it is "no zone" and an outage of its zone stops egress. prod builds
    # exactly that, so nothing may claim that zoneRedundant makes egress survive a zone's loss.
    prod = program("prod")
    assert prod.one(NAT).inputs["sku"] == {"name": "Standard"} and "zones" not in prod.one(NAT).inputs
    described = Settings.model_fields["zone_redundant"].description or ""
    assert "NAT gateway" in described and "zonal" in described and "Egress is not" in described
    assert "NAT gateway" in (ROOT / "Pulumi.yaml").read_text().split("zoneRedundant:", 1)[1].split("default:", 1)[0]
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert '"no zone"' in page and "NAT gateway and availability zones" in page
    # The private DNS `@` record is optional: Microsoft's guide creates only the `*` record.
    assert "`@` (apex) record" in page and "optional" in page
    assert "Microsoft's guide creates" in (environment_module.__doc__ or "") + (
        environment_module.Environment._private_dns.__doc__ or ""
    )


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
