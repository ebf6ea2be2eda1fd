"""Stack configuration: read once, validated once, frozen.

Every project key is declared once, in `settings.model.Settings`: its name, type, default, what it accepts
and what it means. `Pulumi.yaml`'s `config:` block and docs/configuration.md are generated from it. Every
other module receives a `Settings` object, never `pulumi.Config()`.

Validation runs before any resource is declared and reports every bad key at once: each message names the
key, the value given and what would be accepted. Loading does no I/O; the Entra administrator that defaults
to the deployer is completed by `settings.deployer.complete_entra_admin`.
"""

from settings.deployer import (
    Deployer,
    complete_entra_admin,
    deployer_from_claims,
    token_claims,
    with_deployer_defaults,
)
from settings.keys import DEFAULTS, KEYS, Key
from settings.model import POSTGRES_VERSIONS, PROJECT, ConfigError, EntraAdmin, Settings
from settings.reading import load, parse
from settings.types import MaintenanceWindow, ResourceId

__all__ = [
    "DEFAULTS",
    "KEYS",
    "POSTGRES_VERSIONS",
    "PROJECT",
    "ConfigError",
    "Deployer",
    "EntraAdmin",
    "Key",
    "MaintenanceWindow",
    "ResourceId",
    "Settings",
    "complete_entra_admin",
    "deployer_from_claims",
    "load",
    "parse",
    "token_claims",
    "with_deployer_defaults",
]
