"""Components take Inputs and plain values, never other components (issue 21: "components are components").

A component that receives another one reaches into its attributes, so the two can only change together;
an Input (an ID, an address, an Output) is the whole contract, as in Azure Verified Modules.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from types import ModuleType

import pulumi
import pytest

import components
import preflight.adoption

pytestmark = pytest.mark.unit


def component_modules() -> list[ModuleType]:
    return [importlib.import_module(f"components.{info.name}") for info in pkgutil.iter_modules(components.__path__)]


def args_types() -> dict[str, type]:
    found: dict[str, type] = {}
    for module in component_modules():
        for name, value in vars(module).items():
            if name.endswith("Args") and typing.is_typeddict(value) and value.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def named_types(annotation: object) -> list[object]:
    """The annotation and every type inside it (unions, generics, Input[...])."""
    return [annotation, *[inner for arg in typing.get_args(annotation) for inner in named_types(arg)]]


def test_every_component_has_typed_args() -> None:
    assert {"components.mcp_app.McpAppArgs", "components.environment.EnvironmentArgs"} <= set(args_types())


@pytest.mark.parametrize("name", sorted(args_types()))
def test_args_name_no_component(name: str) -> None:
    args = args_types()[name]
    module = importlib.import_module(args.__module__)
    # The annotations are strings (`from __future__ import annotations`), read in the module's namespace; a type
    # imported for checking only (AdoptedServer) comes from preflight.
    namespace = {**vars(preflight.adoption), **vars(module)}
    hints = {
        field: eval(str(getattr(annotation, "__forward_arg__", annotation)), namespace)  # noqa: S307 (our source)
        for field, annotation in args.__annotations__.items()
    }
    components_named = {
        field: inner
        for field, annotation in hints.items()
        for inner in named_types(annotation)
        if isinstance(inner, type) and issubclass(inner, pulumi.ComponentResource)
    }
    assert components_named == {}
