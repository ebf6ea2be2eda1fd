"""The small reusable types that config keys are built from.

Each type says in words what it accepts (`Accepts`), and that text is both the error a bad value gets and
the "accepted" column of the configuration reference: a constraint is stated once, beside its check.
Config values reach the program as strings (arrays as JSON, booleans as `true`/`false`), so the types
that need it convert from those strings first.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

NOT_ACCEPTED = "not_accepted"
"""The error type of a value a key does not accept; its message is what the key accepts."""
RULE = "config_rule"
"""The error type of a rule across keys whose message is a whole sentence of its own."""


def not_accepted(accepted: str, value: object = None) -> PydanticCustomError:
    """The error of a value that is not accepted: `accepted` says what would be; `value` what to show, when
    it is not the input itself (an item of a list, a parsed range)."""
    context: dict[str, Any] = {"accepted": accepted}
    if value is not None:
        context["value"] = value
    return PydanticCustomError(NOT_ACCEPTED, "{accepted}", context)


def rule_broken(sentence: str) -> PydanticCustomError:
    return PydanticCustomError(RULE, "{sentence}", {"sentence": sentence})


@dataclass(frozen=True)
class Accepts:
    """What a value must be, in words (`text`), held by `check` (after the type's own validation) or by
    `convert` (before it: from the string Pulumi hands over; a ValueError means not accepted)."""

    text: str
    check: Callable[[Any], bool] | None = None
    convert: Callable[[Any], Any] | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        schema = handler(source)
        if self.convert is not None:
            schema = core_schema.no_info_before_validator_function(self._convert, schema)
        if self.check is not None:
            schema = core_schema.no_info_after_validator_function(self._check, schema)
        return schema

    def _convert(self, value: Any) -> Any:
        assert self.convert is not None
        try:
            return self.convert(value)
        except PydanticCustomError:
            raise  # a more precise message than `text`
        except ValueError:
            raise not_accepted(self.text) from None

    def _check(self, value: Any) -> Any:
        assert self.check is not None
        if not self.check(value):
            raise not_accepted(self.text, value)
        return value


def _boolean(value: Any) -> bool:
    # Pulumi hands a YAML boolean over as the string "true" or "false"; "yes", "on" and 1 are refused.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(value)


def _whole_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise PydanticCustomError("int_parsing", "a whole number") from None
    return value


def _json_list(value: Any) -> Any:
    if isinstance(value, str):
        value = json.loads(value)  # a JSONDecodeError is a ValueError
    if not isinstance(value, Sequence) or isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(value)
    return list(value)


def _unique(fold: Callable[[str], str] = str) -> Callable[[Sequence[Any]], bool]:
    return lambda values: len({fold(str(v)) for v in values}) == len(values)


Boolean = Annotated[bool, Accepts("true or false", convert=_boolean)]
whole_number = Accepts("a whole number", convert=_whole_number)
"""From the string Pulumi hands over: "15m" and "3.0" are refused."""
WholeNumber = Annotated[int, whole_number]


def list_of(items: str) -> Accepts:
    """A JSON array of strings (how Pulumi hands an array over), named by its `items` for the errors."""
    return Accepts(f"a list of {items}", convert=_json_list)


def unique(noun: str, fold: Callable[[str], str] = str) -> Accepts:
    return Accepts(f"each {noun} once", check=_unique(fold))


def matching(pattern: str | re.Pattern[str], text: str, *, empty: bool = False) -> Accepts:
    """A string matching `pattern` (or empty, with `empty`)."""
    compiled = re.compile(pattern)
    return Accepts(text, check=lambda v: (empty and v == "") or bool(compiled.fullmatch(v)))


GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
Guid = Annotated[str, matching(GUID, "a GUID")]

# --- PostgreSQL names -------------------------------------------------------------------------------------

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RESERVED_ROLE_NAMES = frozenset(
    {
        "postgres",
        "public",
        "azure_superuser",
        "azure_pg_admin",
        "azuresu",
        "replication",
        "template0",
        "template1",
        "azure_maintenance",
        "azure_sys",
    }
)
PostgresIdentifier = Annotated[
    str,
    Accepts(
        "a lowercase PostgreSQL identifier: a-z, 0-9 and _, starting with a letter or _, at most 63 characters, "
        "not reserved (postgres, public, azure_*, pg_*)",
        check=lambda v: bool(IDENTIFIER.fullmatch(v)) and v not in RESERVED_ROLE_NAMES and not v.startswith("pg_"),
    ),
]
SchemaName = Annotated[
    str,
    Accepts(
        "lowercase PostgreSQL identifiers (not pg_* or information_schema)",
        check=lambda v: bool(IDENTIFIER.fullmatch(v)) and not v.startswith("pg_") and v != "information_schema",
    ),
]

# --- addresses ---------------------------------------------------------------------------------------------

IPV4_RANGE = "an IPv4 address or CIDR range such as 203.0.113.7 or 203.0.113.0/24"


def _ipv4_network(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        network = ipaddress.ip_network(value)  # strict: no host bits beside the prefix
    except ValueError:
        raise not_accepted(IPV4_RANGE) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise not_accepted("an IPv4 address or range (the server firewall is IPv4 only)")
    return network


Ipv4Range = Annotated[ipaddress.IPv4Network, Accepts(IPV4_RANGE, convert=_ipv4_network)]
"""An IPv4 address (a /32) or CIDR range."""
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
PRIVATE_RANGES = "10/8, 172.16/12, 192.168/16"


def is_public_ipv4(value: str) -> bool:
    try:
        return ipaddress.IPv4Address(value).is_global
    except ValueError:
        return False


def _ipv4_address(value: Any) -> Any:
    return ipaddress.IPv4Address(value) if isinstance(value, str) else value  # an AddressValueError is a ValueError


PublicIpv4 = Annotated[
    ipaddress.IPv4Address,
    Accepts("public IPv4 addresses (one address each, no ranges)", convert=_ipv4_address, check=lambda v: v.is_global),
]

EMAIL = re.compile(r"[^@\s,;<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
Email = Annotated[str, matching(EMAIL, "e-mail addresses such as oncall@example.com")]

# --- Azure -------------------------------------------------------------------------------------------------

AzureLocation = Annotated[str, matching(r"[a-z][a-z0-9]{2,30}", "an Azure region name such as westeurope")]


@dataclass(frozen=True)
class ResourceId:
    """An Azure resource ID, split into the parts the program targets."""

    id: str
    subscription_id: str
    resource_group: str
    name: str


# ARM resource IDs: resource group names are 1-90 characters (letters, digits, _ ( ) - . and Unicode
# letters) and never end with a period; provider namespaces and types are case-insensitive.
_RESOURCE_ID = (
    r"/subscriptions/(?P<subscription>{guid})/resourceGroups/(?P<group>[^/]{{1,89}}[^/.])/providers/{provider}/"
    r"(?P<name>{name})"
)


def resource_id_of(kind: str, provider: str, name: str) -> Accepts:
    """An optional resource ID of one kind: None when empty."""
    pattern = re.compile(_RESOURCE_ID.format(guid=GUID.pattern, provider=provider, name=name), re.IGNORECASE)

    def convert(value: Any) -> ResourceId | None:
        if not isinstance(value, str):
            return value  # type: ignore[no-any-return]  # a ResourceId, or None: validated already
        if value == "":
            return None
        match = pattern.fullmatch(value)
        if match is None:
            raise ValueError(value)
        return ResourceId(value, match.group("subscription").lower(), match.group("group"), match.group("name"))

    shape = f"/subscriptions/<GUID>/resourceGroups/<group>/providers/{provider}/<name>"
    return Accepts(f"empty or {kind}'s resource ID: {shape}", convert=convert)


FlexibleServerId = Annotated[
    ResourceId | None,
    resource_id_of("a Flexible Server", "Microsoft.DBforPostgreSQL/flexibleServers", r"[a-z0-9](?:-?[a-z0-9]){2,62}"),
]
# Log Analytics workspace names: 4-63 letters, digits and hyphens, starting and ending with a letter or digit.
WorkspaceId = Annotated[
    ResourceId | None,
    resource_id_of(
        "a Log Analytics workspace",
        "Microsoft.OperationalInsights/workspaces",
        r"[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]",
    ),
]
EnvironmentId = Annotated[
    ResourceId | None,
    resource_id_of(
        "a Container Apps environment", "Microsoft.App/managedEnvironments", r"[a-z][a-z0-9-]{0,58}[a-z0-9]"
    ),
]

# --- the maintenance window --------------------------------------------------------------------------------

WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # Flexible Server's dayOfWeek: 0 is Sunday


@dataclass(frozen=True)
class MaintenanceWindow:
    """A one-hour custom maintenance window of the server, in UTC."""

    day_of_week: int
    """0 is Sunday, as Flexible Server counts."""
    start_hour: int
    start_minute: int

    def __str__(self) -> str:
        """As config writes it: `Sun 02:00`."""
        return f"{WEEKDAYS[self.day_of_week]} {self.start_hour:02}:{self.start_minute:02}"


_WINDOW = re.compile(r"(?P<day>[A-Z][a-z]{2}) (?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)")


def _maintenance_window(value: Any) -> MaintenanceWindow | None:
    if not isinstance(value, str):
        return value  # type: ignore[no-any-return]  # a MaintenanceWindow, or None: validated already
    if value == "system":
        return None
    match = _WINDOW.fullmatch(value)
    if not match or match.group("day") not in WEEKDAYS:
        raise ValueError(value)
    return MaintenanceWindow(WEEKDAYS.index(match.group("day")), int(match.group("hour")), int(match.group("minute")))


MaintenanceWindowSpec = Annotated[
    MaintenanceWindow | None,
    Accepts(
        "system, or a weekday and a UTC start time such as 'Sun 02:00' (days: " + ", ".join(WEEKDAYS) + ")",
        convert=_maintenance_window,
    ),
]
"""None: Azure's system-managed window."""

PrincipalType = Literal["User", "Group", "ServicePrincipal"]
