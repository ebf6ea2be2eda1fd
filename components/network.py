"""The app's network: a VNet subnet for the Container Apps environment whose egress
leaves through a NAT gateway with one static public IP.

Why: the server firewall must admit the app and nothing more. A Consumption-only
environment's outbound addresses are many and may change without notice; a NAT
gateway gives one stable address that a single firewall rule can name.

The subnet has a network security group that admits, inbound, only what Container Apps
documents for a workload profiles environment (Microsoft Learn, "Securing a custom VNET
in Azure Container Apps with Network Security Groups"): the MCP clients on 443 and the
node ports 30000-32676, Azure's load balancer probes, traffic within the subnet; then
denies the rest. Outbound keeps Azure's defaults: the image comes from Docker Hub (no
service tag), the server is reached on its public endpoint, and Microsoft warns that
deny rules before 65000 can break the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import pulumi
from pulumi_azure_native import network

NODE_PORTS = "30000-32676"  # allocated dynamically from this range (the documented NSG rules)
AVAILABILITY_ZONES = ["1", "2", "3"]


@dataclass(frozen=True)
class InboundRule:
    name: str
    priority: int
    access: str
    protocol: str
    sources: tuple[str, ...]
    destination: str
    ports: str
    description: str


def inbound_rules(subnet_cidr: str, client_sources: tuple[str, ...]) -> list[InboundRule]:
    """The apps subnet's inbound rules: what Container Apps documents, for these clients, then nothing."""
    return [
        InboundRule(
            "allow-mcp-clients-https",
            100,
            "Allow",
            "Tcp",
            client_sources,
            subnet_cidr,
            "443",
            "MCP clients to the environment's load balancer (its static IP is in this subnet)",
        ),
        InboundRule(
            "allow-mcp-clients-node-ports",
            110,
            "Allow",
            "Tcp",
            client_sources,
            subnet_cidr,
            NODE_PORTS,
            "MCP clients to the environment's nodes, behind its load balancer",
        ),
        InboundRule(
            "allow-azure-load-balancer",
            120,
            "Allow",
            "Tcp",
            ("AzureLoadBalancer",),
            subnet_cidr,
            NODE_PORTS,
            "Azure load balancer health probes",
        ),
        InboundRule(
            "allow-within-subnet",
            130,
            "Allow",
            "*",
            (subnet_cidr,),
            subnet_cidr,
            "*",
            "the environment's own nodes and apps",
        ),
        InboundRule(
            "deny-all-inbound",
            4096,
            "Deny",
            "*",
            ("*",),
            "*",
            "*",
            "nothing else: not the rest of the VNet, its peers or the internet",
        ),
    ]


class AppNetworkArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    vnet_cidr: str
    app_subnet_cidr: str
    client_sources: tuple[str, ...]
    """Who may call the MCP endpoint: allowedClientCidrs, else VirtualNetwork or Internet."""
    zone_redundant: bool
    tags: dict[str, str]


class AppNetwork(pulumi.ComponentResource):
    vnet_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    egress_ip_address: pulumi.Output[str]

    def __init__(self, name: str, args: AppNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("postgresmcp:network:AppNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        egress_ip = network.PublicIPAddress(
            f"{name}-egress-ip",
            sku=network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
            public_ip_allocation_method="Static",
            public_ip_address_version="IPv4",
            # Zone-redundant: the address survives the loss of a zone (a non-zonal NAT gateway takes it).
            zones=AVAILABILITY_ZONES if args["zone_redundant"] else None,
            opts=child,
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
        )
        nat = network.NatGateway(
            f"{name}-nat",
            sku=network.NatGatewaySkuArgs(name="Standard"),
            public_ip_addresses=[network.SubResourceArgs(id=egress_ip.id)],
            idle_timeout_in_minutes=10,
            opts=child,
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
        )
        vnet = network.VirtualNetwork(
            f"{name}-vnet",
            address_space=network.AddressSpaceArgs(address_prefixes=[args["vnet_cidr"]]),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
        )
        security_group = network.NetworkSecurityGroup(
            f"{name}-apps-nsg",
            security_rules=[
                network.SecurityRuleArgs(
                    name=rule.name,
                    priority=rule.priority,
                    direction="Inbound",
                    access=rule.access,
                    protocol=rule.protocol,
                    source_address_prefix=rule.sources[0] if len(rule.sources) == 1 else None,
                    source_address_prefixes=list(rule.sources) if len(rule.sources) > 1 else None,
                    source_port_range="*",
                    destination_address_prefix=rule.destination,
                    destination_port_range=rule.ports,
                    description=rule.description,
                )
                for rule in inbound_rules(args["app_subnet_cidr"], args["client_sources"])
            ],
            opts=child,
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
        )
        subnet = network.Subnet(
            f"{name}-apps",
            resource_group_name=args["resource_group_name"],
            virtual_network_name=vnet.name,
            address_prefix=args["app_subnet_cidr"],
            delegations=[network.DelegationArgs(name="container-apps", service_name="Microsoft.App/environments")],
            nat_gateway=network.SubResourceArgs(id=nat.id),
            network_security_group=network.NetworkSecurityGroupArgs(id=security_group.id),
            opts=pulumi.ResourceOptions(
                parent=self,
                # A new range is a new subnet, created before the environment that moves onto it
                # (an environment cannot change subnets in place). The old one is left to Azure rather
                # than deleted: a deleted environment keeps its subnet reserved for a long time, and a
                # failing delete would fail the update; the VNet's deletion removes it in the end.
                replace_on_changes=["addressPrefix"],
                retain_on_delete=True,
            ),
        )

        self.vnet_id = vnet.id
        self.subnet_id = subnet.id
        self.egress_ip_address = egress_ip.ip_address.apply(lambda address: address or "")
        self.register_outputs(
            {"vnet_id": self.vnet_id, "subnet_id": self.subnet_id, "egress_ip_address": self.egress_ip_address}
        )
