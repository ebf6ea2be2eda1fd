"""Reading the stack's config: validation errors become one readable line per bad key, all in one run.

`load()` only reads what the Pulumi CLI handed over and validates it: no I/O. Completing the Entra
administrator from whoever deploys is `settings.deployer.complete_entra_admin`, a separate step.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from typing import Any

import pulumi
from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails

from settings.keys import DEFAULTS, FIELD_OF_KEY, FIELDS_BY_KEY, KEY_OF_FIELD, accepted
from settings.model import GIVEN, PROJECT, ConfigError, Settings
from settings.types import NOT_ACCEPTED, RULE

SECRET_KEYS = frozenset(key for key, field in FIELDS_BY_KEY.items() if field.annotation is SecretStr)


def _strip(raw: Mapping[str, str | None]) -> dict[str, Any]:
    """Missing keys take their defaults; values lose surrounding spaces, secrets excepted (verbatim)."""
    return {
        key: value if key in SECRET_KEYS or not isinstance(value, str) else value.strip()
        for key, value in raw.items()
        if value is not None
    }


def _unknown_key(key: str) -> str:
    by_folded = {known.lower(): known for known in DEFAULTS}
    close = difflib.get_close_matches(key.lower(), list(by_folded), n=1)
    hint = f"did you mean '{by_folded[close[0]]}'?" if close else "the keys are listed in docs/configuration.md"
    return f"config key '{key}' is not a key of this project; {hint}"


def _shown(value: Any) -> Any:
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv4Address)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_shown(item) for item in value]
    return value


def problem(error: ErrorDetails) -> str:
    """One readable line for one validation error: the key, the value given and what is accepted."""
    key = str(error["loc"][0]) if error["loc"] else ""
    key = KEY_OF_FIELD.get(key, key)  # a default is reported by its field's name
    context = error.get("ctx") or {}
    if error["type"] == "extra_forbidden":
        return _unknown_key(key)
    if error["type"] == RULE:
        return error["msg"]
    value = _shown(context.get("value", error["input"]))
    if key in SECRET_KEYS:
        value = "<secret>" if value else ""
    if error["type"] == NOT_ACCEPTED:
        expected = error["msg"]
    elif error["type"] == "int_parsing":
        expected = f"a whole number: {accepted(FIELDS_BY_KEY[key])}"
    else:  # pydantic's own checks: a Literal's choices, a Field's bounds
        expected = accepted(FIELDS_BY_KEY[key])
    return f"config key '{key}': {value!r} is not accepted; expected {expected}"


def parse(raw: Mapping[str, str | None], stack: str) -> Settings:
    """Builds Settings from raw config strings (as the Pulumi CLI hands them over).

    Missing keys take their defaults. Raises ConfigError listing every invalid key.
    """
    try:
        given = _strip(raw)
        context = {GIVEN: {FIELD_OF_KEY[key] for key, text in given.items() if key in FIELD_OF_KEY and text}}
        settings = Settings.model_validate(given, context=context)
    except ValidationError as invalid:
        problems = [problem(error) for error in invalid.errors()]
        raise ConfigError(
            f"stack '{stack}' has {len(problems)} invalid config value(s); nothing was deployed:\n  - "
            + "\n  - ".join(problems)
        ) from None
    return settings.for_stack(stack)


def load() -> Settings:
    """Reads this stack's project config through the Pulumi SDK and validates it (no I/O)."""
    from pulumi.runtime import config as runtime_config

    config = pulumi.Config(PROJECT)
    prefix = f"{PROJECT}:"
    # The CLI hands config over either through the runtime map or PULUMI_CONFIG.
    present = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    names = {key[len(prefix) :] for key in present if key.startswith(prefix)} | set(DEFAULTS)
    # Config.get() also resolves keys that were set as secrets.
    raw = {name: config.get(name) for name in sorted(names)}
    parsed = parse(raw, pulumi.get_stack())
    for key in sorted(SECRET_KEYS):
        if raw.get(key) and not runtime_config.is_config_secret(prefix + key):
            raise ConfigError(
                f"stack '{parsed.stack}': config key '{key}' is set in plain text; expected a secret: pulumi config "
                f"set --secret {key} (then the stack file holds it encrypted). Nothing was deployed."
            )
    return parsed
