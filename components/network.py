"""The app's network: a VNet subnet for the Container Apps environment whose egress
leaves through a NAT gateway with one static public IP.

Why: the server firewall must admit the app and nothing more. A Consumption-only
environment's outbound addresses are many and may change without notice; a NAT
gateway gives one stable address that a single firewall rule can name.
"""

from __future__ import annotations

from typing import TypedDict

import pulumi
from pulumi_azure_native import network


class AppNetworkArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    vnet_cidr: str
    app_subnet_cidr: str
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
        subnet = network.Subnet(
            f"{name}-apps",
            resource_group_name=args["resource_group_name"],
            virtual_network_name=vnet.name,
            address_prefix=args["app_subnet_cidr"],
            delegations=[network.DelegationArgs(name="container-apps", service_name="Microsoft.App/environments")],
            nat_gateway=network.SubResourceArgs(id=nat.id),
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
