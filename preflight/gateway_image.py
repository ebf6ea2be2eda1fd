"""The sign-in gateway's image must be known before `pulumi up` declares anything.

With `signIn: gateway` the app runs the gateway's image: a prebuilt one (`gatewayImage`) or the one the deploy
pipeline built and pushed to the stack's registry (`gatewayImageDigest`). A preview without either (a first
preview, before the pipeline built anything) shows a placeholder digest and warns; `pulumi up` stops here,
before any resource is declared, rather than create an app whose revision cannot pull its image.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from settings.model import Settings

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
DOCS = "docs/sign-in.md#the-gateway-image"


def store_subnet_warning(subnet_id: str) -> str:
    """An adopted environment's subnet is its owner's: the gateway's store admits it by a virtual network rule, which
    works only once the subnet carries the Microsoft.Storage service endpoint (components/sign_in_store.py)."""
    return (
        f"signIn 'gateway' in the adopted environment: the gateway's store admits its subnet {subnet_id} through a "
        "virtual network rule, which needs the Microsoft.Storage service endpoint on that subnet (Azure Storage "
        "ignores IP rules for requests from its own region). Ask the subnet's owner to run: az network vnet subnet "
        "update --ids <subnet ID> --service-endpoints Microsoft.Storage (keeping any endpoints it has); "
        "see docs/sign-in.md."
    )


class GatewayImageError(pulumi.RunError):
    """`pulumi up` with the gateway and no image for it."""


def gateway_image_digest(
    config: Settings, *, dry_run: bool | None = None, warn: Callable[[str], None] | None = None
) -> str:
    """The digest the gateway's image is pinned to in the stack's registry: gatewayImageDigest, or a placeholder
    in a preview; "" when the stack runs a prebuilt image (gatewayImage) or no gateway at all."""
    if config.sign_in != "gateway" or config.gateway_image:
        return ""
    if config.gateway_image_digest:
        return config.gateway_image_digest
    message = (
        "signIn 'gateway' needs the gateway's image: config key 'gatewayImageDigest' (the digest the deploy "
        "pipeline pushed to the stack's registry: on a first deploy it creates the registry with a targeted "
        "`pulumi up` of `python -m tools.gateway_image targets`, then pushes) or 'gatewayImage' (a prebuilt image "
        f"pinned by digest); see {DOCS}."
    )
    if dry_run if dry_run is not None else pulumi.runtime.is_dry_run():
        (warn or pulumi.log.warn)(f"{message} This preview shows the placeholder digest {PLACEHOLDER_DIGEST}.")
        return PLACEHOLDER_DIGEST
    raise GatewayImageError(f"{message} Nothing was declared.")
