"""The app's network: a VNet subnet for the Container Apps environment whose egress
leaves through a NAT gateway with one static public IP.

Why: the server firewall must admit the app and nothing more. A Consumption-only
environment's outbound addresses are many and may change without notice; a NAT
gateway gives one stable address that a single firewall rule can name.

The subnet has a network security group built from Microsoft's inbound allow rules for a
workload profiles environment (Microsoft Learn, "Securing a virtual network in Azure
Container Apps with Network Security Groups", NSG allow rules, inbound, workload profiles):

| Source            | Destination  | Ports          | Why                                          |
|-------------------|--------------|----------------|----------------------------------------------|
| your client IPs   | the subnet   | 443, 31443     | HTTPS; 31443 is the edge proxy behind the LB |
| your client IPs   | the subnet   | 80, 31080      | HTTP (only for the HTTP-to-HTTPS redirect)   |
| AzureLoadBalancer | the subnet   | 30000-32767    | the load balancer's probes of its backends   |

The HTTP rows are left out: the app's ingress refuses plain HTTP (`allowInsecure: false`)
and only redirects it, and MCP clients are given the https URL; a redirected POST would
not reach the server anyway.

What is denied depends on the environment:

- External: no deny at all. Its inbound traffic arrives through a public IP in the
  environment's managed resource group, not through this subnet, and Microsoft states
  that locking down inbound traffic with an NSG on an external workload profiles
  environment is not supported. The ingress allow-list (ipSecurityRestrictions) is what
  admits clients there.
- Internal: targeted denies, not a deny-all. After the allows above (and traffic within
  the subnet), the ports clients would use (80, 443 and the node port range, which holds
  31080/31443) are denied to every other source, so that the rest of the VNet, its peers
  and on-premises networks cannot reach the endpoint. Everything else keeps Azure's
  default rules (AllowVnetInBound, AllowAzureLoadBalancerInBound): Microsoft warns that
  deny rules of a priority below 65000 can interrupt the environment, so none is broader
  than these ports.

Outbound keeps Azure's defaults: the image comes from Docker Hub (no service tag), the
server is reached on its public endpoint.

Zones (Microsoft Learn, "NAT gateway and availability zones"; "Reliability in Azure NAT
Gateway"): a Standard NAT gateway is a zonal resource. Declared without a zone it is
"no zone": Azure places it in one zone, unseen, and an outage of that zone stops egress
even though the subnet and the environment span zones. `zoneRedundant` therefore makes
the public IP zone-redundant (a no-zone NAT gateway accepts a zonal, no-zone or
zone-redundant Standard IP) but not the NAT gateway: egress stays a single-zone
dependency. Zone redundancy for the gateway itself needs the StandardV2 SKU with a
StandardV2 public IP (a new address); a NAT gateway's zones cannot change after creation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict

import pulumi
from pulumi_azure_native import network

# Microsoft Learn, "Securing a virtual network in Azure Container Apps with Network Security Groups":
# AzureLoadBalancer probes the subnet on the node port range, allocated dynamically within it.
NODE_PORTS = "30000-32767"
HTTPS_PORTS = ("443", "31443")  # 443 at the load balancer, 31443 at the edge proxy behind it
HTTP_PORTS = ("80", "31080")  # the same for HTTP: not opened, the app only redirects it
AVAILABILITY_ZONES = ["1", "2", "3"]


@dataclass(frozen=True)
class InboundRule:
    name: str
    priority: int
    access: str
    protocol: str
    sources: tuple[str, ...]
    destination: str
    ports: tuple[str, ...]
    description: str


def inbound_rules(subnet_cidr: str, client_sources: tuple[str, ...], internal: bool) -> list[InboundRule]:
    """The apps subnet's inbound rules: Microsoft's workload-profiles allows for these clients, and for an
    internal environment targeted denies of the client ports to everyone else (see the module docstring)."""
    rules = [
        InboundRule(
            "allow-mcp-clients-https",
            100,
            "Allow",
            "Tcp",
            client_sources,
            subnet_cidr,
            HTTPS_PORTS,
            "MCP clients over HTTPS: 443 at the load balancer, 31443 at the edge proxy behind it",
        ),
        InboundRule(
            "allow-azure-load-balancer",
            110,
            "Allow",
            "Tcp",
            ("AzureLoadBalancer",),
            subnet_cidr,
            (NODE_PORTS,),
            "Azure Load Balancer probes of its backend pools",
        ),
        InboundRule(
            "allow-within-subnet",
            120,
            "Allow",
            "*",
            (subnet_cidr,),
            subnet_cidr,
            ("*",),
            "the environment's own nodes and apps",
        ),
    ]
    if internal:
        rules.append(
            InboundRule(
                "deny-other-sources-to-client-ports",
                4000,
                "Deny",
                "*",
                ("*",),
                subnet_cidr,
                (HTTP_PORTS[0], HTTPS_PORTS[0], NODE_PORTS),
                "the client ports (HTTP, HTTPS, the edge proxy's node ports) to no one but the sources above",
            )
        )
    return rules


def security_rule(rule: InboundRule) -> network.SecurityRuleArgs:
    """One rule as Azure takes it: a single prefix or port range in the singular field, several in the plural."""
    return network.SecurityRuleArgs(
        name=rule.name,
        priority=rule.priority,
        direction="Inbound",
        access=rule.access,
        protocol=rule.protocol,
        source_address_prefix=rule.sources[0] if len(rule.sources) == 1 else None,
        source_address_prefixes=list(rule.sources) if len(rule.sources) > 1 else None,
        source_port_range="*",
        destination_address_prefix=rule.destination,
        destination_port_range=rule.ports[0] if len(rule.ports) == 1 else None,
        destination_port_ranges=list(rule.ports) if len(rule.ports) > 1 else None,
        description=rule.description,
    )


class AppNetworkArgs(TypedDict):
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    vnet_cidr: str
    app_subnet_cidr: str
    client_sources: tuple[str, ...]
    """Who may call the MCP endpoint: allowedClientCidrs, else VirtualNetwork or Internet."""
    internal: bool
    """The environment is internal: inbound lockdown is supported, so the client ports get targeted denies."""
    zone_redundant: bool
    """The public IP across zones; the Standard NAT gateway stays "no zone" (see the module docstring)."""
    tags: dict[str, str]
    storage_service_endpoint: NotRequired[bool]
    """The subnet carries a Microsoft.Storage service endpoint, through which the sign-in gateway's store admits it
    (components/sign_in_store.py). Default: no."""


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
            # Zone-redundant: the address itself survives the loss of a zone. The NAT gateway in front of it is
            # "no zone" (zonal, in a zone Azure picks), so egress does not: see the module docstring.
            zones=AVAILABILITY_ZONES if args["zone_redundant"] else None,
            opts=child,
            resource_group_name=args["resource_group_name"],
            location=args["location"],
            tags=args["tags"],
        )
        nat = network.NatGateway(
            f"{name}-nat",
            # Standard is zonal; declared without zones it is "no zone" (Microsoft Learn, "NAT gateway and
            # availability zones"), which accepts the zone-redundant IP above.
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
                security_rule(rule)
                for rule in inbound_rules(args["app_subnet_cidr"], args["client_sources"], args["internal"])
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
            # Microsoft Learn, "Virtual network service endpoints": traffic from the subnet to Azure Storage in
            # the region then carries the subnet's identity, which a storage account's virtual network rule admits.
            service_endpoints=(
                [network.ServiceEndpointPropertiesFormatArgs(service="Microsoft.Storage")]
                if args.get("storage_service_endpoint", False)
                else None
            ),
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
