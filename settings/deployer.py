"""Who deploys, and the Entra administrator that defaults to them.

Apart from the model because it does I/O: it reads the claims of the Azure token the azure-native
provider signs in with. `preflight.run` calls `complete_entra_admin` first.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from settings.model import ConfigError, EntraAdmin, Settings
from settings.types import GUID


@dataclass(frozen=True)
class Deployer:
    """Who runs `pulumi`: read from the claims of the Azure token the provider signs in with."""

    object_id: str
    principal_type: Literal["User", "ServicePrincipal"]
    name: str | None
    """A user's UPN; an application's display name when its token carries one."""


FALLBACK_APP_ADMIN_NAME = "pulumi-deployer"
MAX_ROLE_NAME_BYTES = 63


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: we only read our own token to learn who we are."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error) as error:
        raise ConfigError(
            "config key 'entraAdminObjectId' is empty, so the Entra administrator is the deployer, but the "
            f"deployer's Azure token cannot be read ({error}); expected the Azure CLI or an OIDC login, "
            "or set entraAdminObjectId, entraAdminPrincipalName and entraAdminPrincipalType"
        ) from None
    if not isinstance(claims, dict):
        raise ConfigError("config key 'entraAdminObjectId': the deployer's Azure token has no claims object")
    return claims


def deployer_from_claims(claims: Mapping[str, Any]) -> Deployer:
    """User or application, from Entra access token claims.

    `idtyp` is "user" or "app" (Microsoft identity platform access token claims reference); tokens
    without it are delegated (a user's) exactly when they carry `scp`. A user's sign-in name is
    `upn` (v1.0 tokens, also `unique_name`) or `preferred_username` (v2.0); an application's display
    name is `app_displayname` when present. `oid` is the object ID in both cases.
    """
    object_id = str(claims.get("oid") or "")
    if not GUID.fullmatch(object_id):
        raise ConfigError(
            f"config key 'entraAdminObjectId' is empty, but the deployer's Azure token carries no object ID "
            f"(oid: {claims.get('oid')!r}); expected a token of a user or a service principal, or set "
            "entraAdminObjectId, entraAdminPrincipalName and entraAdminPrincipalType"
        )
    kind = claims.get("idtyp")
    is_user = kind == "user" if kind in ("user", "app") else "scp" in claims
    if is_user:
        name = next((str(claims[k]) for k in ("upn", "unique_name", "preferred_username") if claims.get(k)), None)
        return Deployer(object_id, "User", name)
    display_name = claims.get("app_displayname")
    return Deployer(object_id, "ServicePrincipal", str(display_name) if display_name else None)


def with_deployer_defaults(admin: EntraAdmin, deployer: Deployer) -> EntraAdmin:
    """Fills the administrator's empty keys from the deployer; refuses what contradicts it."""
    if admin.object_id is not None:
        return admin  # parse() already required name and type with it
    errors: list[str] = []
    principal_type = admin.principal_type or deployer.principal_type
    if admin.principal_type not in (None, deployer.principal_type):
        errors.append(
            f"config key 'entraAdminPrincipalType': {admin.principal_type!r} is not accepted; expected empty or "
            f"{deployer.principal_type!r}: with entraAdminObjectId empty the administrator is the deployer, "
            f"a {deployer.principal_type} (object ID {deployer.object_id}); set entraAdminObjectId for another "
            "principal"
        )
    name = admin.principal_name
    if name is None:
        if deployer.name is None and deployer.principal_type == "User":
            errors.append(
                "config key 'entraAdminPrincipalName' is empty and the deployer's Azure token carries no user "
                "name (upn, unique_name or preferred_username); expected the administrator's UPN"
            )
        name = deployer.name or FALLBACK_APP_ADMIN_NAME
        if len(name.encode()) > MAX_ROLE_NAME_BYTES:
            errors.append(
                f"config key 'entraAdminPrincipalName' is empty and the deployer's name {name!r} is longer than "
                f"{MAX_ROLE_NAME_BYTES} bytes (a PostgreSQL role name); expected a shorter name set explicitly"
            )
    if errors:
        raise ConfigError("the Entra administrator cannot be derived from the deployer:\n  - " + "\n  - ".join(errors))
    return EntraAdmin(deployer.object_id, name, principal_type)


def current_deployer() -> Deployer:
    """Who runs pulumi (a user on a laptop, a service principal in CI): the claims of the token the
    azure-native provider signs in with, so that the defaults are right in both places. An invoke."""
    from pulumi_azure_native import authorization

    return deployer_from_claims(token_claims(authorization.get_client_token().token))


def complete_entra_admin(config: Settings, earlier_admin_name: Callable[[], str | None] = lambda: None) -> Settings:
    """`config` with the Entra administrator's empty keys taken from the deployer.

    `earlier_admin_name`, asked only when the administrator keys are empty: the Entra administrator of a
    stack last deployed by an earlier version of this program (its `entraAdminPrincipalName` output), else
    None. Those versions filled empty keys with the name `pulumi-deployer` and the type ServicePrincipal;
    such a stack keeps them, so that upgrading never renames the administrator the role/grant step signs
    in as."""
    admin = config.entra_admin
    if admin.complete:
        return config  # no token needed
    deployer = current_deployer()
    earlier = earlier_admin_name() if admin.object_id is None else None
    if earlier:
        kept = EntraAdmin(
            deployer.object_id, admin.principal_name or earlier, admin.principal_type or "ServicePrincipal"
        )
        return config.with_entra_admin(kept)
    return config.with_entra_admin(with_deployer_defaults(admin, deployer))
