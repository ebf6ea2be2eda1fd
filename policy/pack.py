"""The CrossGuard policies, built from the plain rules in rules.py.

Building policies is free; building a PolicyPack starts the pack's server and blocks,
so that happens only in __main__.py. Tests call each policy's `validate` directly.
"""

from __future__ import annotations

from collections.abc import Mapping
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

from policy.rules import RULES, Options, Resource, Rule

CONFIG_SCHEMA = PolicyConfigSchema(
    properties={
        "allowAzureServicesRule": {"type": "boolean", "default": False},
        "requiredTags": {"type": "array", "items": {"type": "string"}, "default": ["environment", "owner"]},
        "productionEnvironments": {"type": "array", "items": {"type": "string"}, "default": ["prod", "production"]},
    }
)


def options_from(config: Mapping[str, Any]) -> Options:
    defaults = Options()
    return Options(
        allow_azure_services_rule=bool(config.get("allowAzureServicesRule", defaults.allow_azure_services_rule)),
        required_tags=tuple(config.get("requiredTags", defaults.required_tags)),
        production_environments=tuple(config.get("productionEnvironments", defaults.production_environments)),
    )


def _enforcement(rule: Rule) -> EnforcementLevel:
    return EnforcementLevel.MANDATORY if rule.enforcement == "mandatory" else EnforcementLevel.ADVISORY


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    check = rule.check_resource
    assert check is not None

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = Resource(args.resource_type, args.name, args.props)
        for message in check(resource, options_from(args.get_config())):
            report_violation(message, None)

    return ResourceValidationPolicy(
        rule.name, rule.description, validate, _enforcement(rule), config_schema=CONFIG_SCHEMA
    )


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    check = rule.check_stack
    assert check is not None

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        by_name = {r.name: r for r in args.resources}
        resources = [Resource(r.resource_type, r.name, r.props) for r in args.resources]
        for name, message in check(resources, options_from(args.get_config())):
            report_violation(message, getattr(by_name.get(name), "urn", None))

    return StackValidationPolicy(rule.name, rule.description, validate, _enforcement(rule), config_schema=CONFIG_SCHEMA)


def policies() -> list[Policy]:
    return [_resource_policy(rule) if rule.check_resource is not None else _stack_policy(rule) for rule in RULES]
