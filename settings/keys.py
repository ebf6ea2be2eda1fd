"""The keys as Pulumi.yaml and the configuration reference state them, read from the model's fields."""

from __future__ import annotations

import ipaddress
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from settings.model import Settings
from settings.types import Accepts, MaintenanceWindow, whole_number


@dataclass(frozen=True)
class Key:
    """A project config key: its type in Pulumi.yaml, its default as a stack file writes it, what it accepts
    and what it means (all read from the model)."""

    name: str
    type: Literal["string", "integer", "boolean", "array"]
    default: Any
    accepted: str
    description: str


def _parts(annotation: Any, metadata: list[Any]) -> tuple[list[Any], list[Any]]:
    """The types an annotation is built from, and every piece of metadata on the way (outermost first)."""
    found_types: list[Any] = []
    found_metadata = list(metadata)
    pending = [annotation]
    while pending:
        current = pending.pop(0)
        if typing.get_origin(current) is typing.Annotated:
            found_metadata += list(current.__metadata__)
            pending.insert(0, current.__origin__)
        elif typing.get_origin(current) in (typing.Union, types.UnionType, tuple):
            pending[:0] = [arg for arg in typing.get_args(current) if arg not in (type(None), Ellipsis)]
        else:
            found_types.append(current)
    return found_types, found_metadata


def _choices(annotation: Any) -> tuple[Any, ...]:
    choices: list[Any] = []
    for arg in typing.get_args(annotation):
        choices += _choices(arg) if typing.get_origin(arg) is Literal else [arg]
    return tuple(choices)


def accepted(field: FieldInfo) -> str:
    """What a key accepts, in words, from its type and constraints: each stated once, in the model."""
    found_types, metadata = _parts(field.annotation, field.metadata)
    words: list[str] = []
    for kind in found_types:
        if typing.get_origin(kind) is Literal:
            choices = _choices(kind)
            listed = "one of " + ", ".join(str(c) for c in choices if c != "")
            words.append(("empty or " if "" in choices else "") + listed)
    low = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    if low is not None and high is not None:
        words.append(f"{low} to {high}")
    # "a whole number" goes without saying beside the bounds or choices of an integer.
    words += [m.text for m in metadata if isinstance(m, Accepts) and m is not whole_number]
    words = list(dict.fromkeys(words))
    return "; ".join(w for w in words if not any(w != other and w in other for other in words))


def _pulumi_type(field: FieldInfo) -> Literal["string", "integer", "boolean", "array"]:
    annotation: Any = field.annotation
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = annotation.__origin__
    if typing.get_origin(annotation) is tuple:
        return "array"
    if annotation is bool:
        return "boolean"
    if annotation is int or (
        typing.get_origin(annotation) is Literal and all(type(c) is int for c in _choices(annotation))
    ):
        return "integer"
    return "string"


def as_written(value: Any) -> Any:
    """A value as a stack file writes it (a test holds that it parses back to the same value)."""
    if isinstance(value, tuple):
        return [as_written(item) for item in value]
    if value is None:
        return ""  # an optional resource ID left empty
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv4Address, MaintenanceWindow)):
        return str(value)
    return value


KEY_OF_FIELD: dict[str, str] = {name: field.alias or name for name, field in Settings.model_fields.items()}
FIELD_OF_KEY: dict[str, str] = {key: name for name, key in KEY_OF_FIELD.items()}
FIELDS_BY_KEY: dict[str, FieldInfo] = {KEY_OF_FIELD[name]: field for name, field in Settings.model_fields.items()}
KEYS: tuple[Key, ...] = tuple(
    Key(
        name=KEY_OF_FIELD[name],
        type=_pulumi_type(field),
        default=as_written(field.default),
        accepted=accepted(field),
        description=field.description or "",
    )
    for name, field in Settings.model_fields.items()
)
DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS}
