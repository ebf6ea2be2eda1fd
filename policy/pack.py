"""The CrossGuard policies, built from the plain rules in rules.py.

Building policies is free; building a PolicyPack starts the pack's server and blocks,
so that happens only in __main__.py. The tests build the pack's analyzer from
__main__.py with the server stubbed and drive it with the engine's requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from policy.rules import RULES, Options, Resource, Rule, Undecided, Unknown

PACK_NAME = "postgres-mcp-azure"

# Every configuration key the rules read, with its JSON schema; each policy declares the keys it reads.
CONFIG_PROPERTIES: dict[str, dict[str, Any]] = {
    "allowAzureServicesRule": {"type": "boolean", "default": False},
    "requiredTags": {"type": "array", "items": {"type": "string"}, "default": ["environment", "owner"]},
    "productionEnvironments": {"type": "array", "items": {"type": "string"}, "default": ["prod", "production"]},
}


def options_from(config: Mapping[str, Any] | None, rule: Rule | None = None) -> Options:
    """The rules' options from a policy's configuration (None when the policy has none).

    The CLI validates a config file against each policy's schema but ignores keys the schema
    does not declare; a setting given to the wrong policy would silently do nothing, so the
    pack refuses it.
    """
    config = config or {}
    if rule is not None:
        unknown = sorted(set(config) - set(rule.config))
        if unknown:
            accepted = ", ".join(rule.config) or "no settings"
            raise ValueError(
                f"policy config for {rule.name!r} sets {', '.join(unknown)}, which it does not read "
                f"(it accepts: {accepted}); give each setting to the policies that read it (see docs/policy.md)"
            )
    defaults = Options()
    return Options(
        allow_azure_services_rule=bool(config.get("allowAzureServicesRule", defaults.allow_azure_services_rule)),
        required_tags=tuple(config.get("requiredTags", defaults.required_tags)),
        production_environments=tuple(config.get("productionEnvironments", defaults.production_environments)),
    )


def plain(value: Any, path: str = "") -> Any:
    """CrossGuard's properties (read-only proxies that raise on unknown values) as plain data,
    each unknown value replaced by an `Unknown` that the rules handle deliberately."""
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key in value:
            child = f"{path}.{key}" if path else str(key)
            try:
                result[key] = plain(value[key], child)
            except UnknownValueError:
                result[key] = Unknown(child)
        return result
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        elements: list[Any] = []
        for index in range(len(value)):
            child = f"{path}[{index}]"
            try:
                elements.append(plain(value[index], child))
            except UnknownValueError:
                elements.append(Unknown(child))
        return elements
    return value


class _NotYetKnownError(UnknownValueError):
    """What a rule could not decide in a preview: CrossGuard reports it as an advisory note."""

    def __init__(self, notes: Sequence[str]) -> None:
        super().__init__(UNKNOWN_STRING_VALUE, [])
        self.message = "; ".join(notes)


def _report(messages: Sequence[tuple[str, str]], report_violation: ReportViolation) -> None:
    """Violations are reported; undecided notes go last, through the SDK's own preview path."""
    notes = []
    for urn, message in messages:
        if isinstance(message, Undecided):
            notes.append(str(message))
        else:
            report_violation(message, urn or None)
    if notes:
        raise _NotYetKnownError(notes)


def _enforcement(rule: Rule) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if rule.enforcement == "mandatory" else EnforcementLevel.ADVISORY


def _schema(rule: Rule) -> PolicyConfigSchema | None:
    if not rule.config:
        return None
    return PolicyConfigSchema(properties={key: dict(CONFIG_PROPERTIES[key]) for key in rule.config})


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    check = rule.check_resource
    assert check is not None

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = Resource(args.resource_type, args.name, plain(args.props), args.urn)
        found = check(resource, options_from(args.get_config(), rule))
        _report([(args.urn, message) for message in found], report_violation)

    return ResourceValidationPolicy(rule.name, rule.description, validate, _enforcement(rule), _schema(rule))


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    check = rule.check_stack
    assert check is not None

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [Resource(r.resource_type, r.name, plain(r.props), r.urn) for r in args.resources]
        found = check(resources, options_from(args.get_config(), rule))
        _report([(resource.urn, message) for resource, message in found], report_violation)

    return StackValidationPolicy(rule.name, rule.description, validate, _enforcement(rule), _schema(rule))


def policies() -> list[Policy]:
    return [_resource_policy(rule) if rule.check_resource is not None else _stack_policy(rule) for rule in RULES]
