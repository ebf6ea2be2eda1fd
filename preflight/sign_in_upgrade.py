"""An upgrade does not move a deployed stack to the sign-in gateway unless its config says so.

`signIn` empty means the gateway. A stack deployed by a version from before the gateway admitted its clients
by Easy Auth (`entra`), an allow-list or internal ingress, and its clients call `/sse`. Taking the new default
silently would move every client to `/mcp` and reconfigure (or create) an Entra app registration: the last
update's `mcpAdmission` output tells whether the gateway was there, and a stack without it must choose.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

import pulumi

from preflight.server_record import LEGACY_SERVER_OUTPUT
from settings.model import Settings

ADMISSION_OUTPUT = "mcpAdmission"
"""program.py exports `Settings.admission`: the admission modes joined by `+`."""
GATEWAY_ADMISSION = "entra-gateway"
EASY_AUTH_ADMISSION = "entra"
DOCS = "docs/sign-in.md#what-changed-for-users"


class SignInUpgradeError(pulumi.RunError):
    """A stack deployed without the gateway would move to it only because the default changed."""


def _recorded_host(recorded: Mapping[str, Any]) -> str:
    for output in ("mcpSseUrl", "mcpUrl"):
        host = urllib.parse.urlsplit(str(recorded.get(output) or "")).netloc
        if host:
            return host
    return "<app fqdn>"


def refuse_silent_gateway_switch(recorded: Mapping[str, Any], config: Settings) -> None:
    """Raises when the stack has a last update without the gateway and its config leaves `signIn` empty.

    A new stack (no update completed yet) and a stack that sets `signIn` itself pass.
    """
    if config.sign_in != "gateway" or config.sign_in_chosen:
        return
    # Every version of the program exported the server's FQDN, and `mcpAdmission` since long before the gateway:
    # neither means no update completed yet (a new stack).
    if ADMISSION_OUTPUT not in recorded and LEGACY_SERVER_OUTPUT not in recorded:
        return
    admission = str(recorded.get(ADMISSION_OUTPUT) or "")
    modes = admission.split("+")
    if GATEWAY_ADMISSION in modes:
        return
    host = _recorded_host(recorded)
    if EASY_AUTH_ADMISSION in modes and config.entra_auth_client_id:
        registration = (
            f"the Easy Auth app registration {config.entra_auth_client_id} (entraAuthClientId) would be adopted by "
            f"the gateway: it then needs the redirect URI https://{host}/auth/callback (platform Web) and, with "
            "gatewayCredential 'federated', a federated identity credential trusting the app's managed identity "
            "(stack output signInFederatedCredential), else the sign-in fails"
        )
    else:
        registration = (
            "the stack would create an Entra app registration with pulumi-azuread, which needs the deployer to "
            "hold Microsoft Graph Application.ReadWrite.OwnedBy (a pipeline) or the Application Developer role "
            "(a person), else `pulumi up` stops at the Application resource"
        )
    raise SignInUpgradeError(
        f"this stack was deployed without the sign-in gateway (its last update's {ADMISSION_OUTPUT} is "
        f"{admission or 'not recorded'!r}), and config key 'signIn' is not set, so this version would switch it to "
        f"signIn 'gateway': MCP clients would move from https://{host}/sse to https://{host}/mcp (Streamable HTTP; "
        f"every client configuration changes), and {registration}. Nothing was changed. Either move on purpose: "
        f"`pulumi config set signIn gateway` (see {DOCS}); or keep today's behaviour: `pulumi config set signIn "
        f"{'easyAuth' if EASY_AUTH_ADMISSION in modes else 'none'}`"
        + (" (or 'none')." if EASY_AUTH_ADMISSION in modes else " (or 'easyAuth' with entraAuthClientId).")
    )
