"""Drives the policy pack the way the Pulumi engine does, offline.

- The analyzer is the pack's own: `policy/__main__.py` run as the engine runs it
  (`runpy.run_path(<pack folder>, run_name="__main__")`), with the gRPC server never
  started: the servicer the SDK builds is captured, and anything that would serve or
  sleep fails at once instead of blocking.
- Configuration reaches it as the CLI sends it: each policy's schema defaults, overlaid
  with a `--policy-pack-config` file (keyed by policy name; "all" sets only an
  enforcement level), through `Configure`.
- Resources reach it as protobuf `AnalyzeRequest`/`AnalyzeStackRequest`s whose properties
  are serialized by `pulumi.runtime.rpc`: a resource's inputs for `Analyze`, its outputs
  shaped like azure-native's (input-only keys dropped, `id` and `name` present) for
  `AnalyzeStack`; in a first preview, values Azure assigns are rpc's UNKNOWN sentinel.
"""

from __future__ import annotations

import copy
import functools
import importlib
import runpy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
import pulumi_policy.policy as sdk
from google.protobuf import json_format, struct_pb2
from harness import SUBSCRIPTION_ID, ProgramRun, RecordingMocks, run_program, unwrap_secrets
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import analyzer_pb2
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "policy"
UNKNOWN = rpc.UNKNOWN


class PackWouldServeError(AssertionError):
    """The pack got past building its analyzer: it would have started a server and blocked."""


class _CaptureError(Exception):
    def __init__(self, servicer: Any) -> None:
        super().__init__()
        self.servicer = servicer


def refuse(*_: Any, **__: Any) -> Any:
    raise PackWouldServeError("policy/__main__.py tried to start or run the gRPC server")


def load_analyzer() -> Any:
    """The analyzer servicer `policy/__main__.py` builds, as the engine would start it."""
    real = sdk._PolicyAnalyzerServicer

    def capture(*args: Any, **kwargs: Any) -> Any:
        raise _CaptureError(real(*args, **kwargs))

    with (
        mock.patch.object(sdk, "_PolicyAnalyzerServicer", capture),
        mock.patch.object(grpc, "server", refuse),
        mock.patch.object(time, "sleep", refuse),
    ):
        try:
            runpy.run_path(str(PACK), run_name="__main__")
        except _CaptureError as captured:
            return captured.servicer
    raise AssertionError("policy/__main__.py did not build a PolicyPack")


# --- configuration, as the CLI reconciles and sends it ------------------------------------------


def analyzer_info(servicer: Any) -> Any:
    return servicer.GetAnalyzerInfo(None, None)


def reconcile(
    servicer: Any, config_file: Mapping[str, Any] | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """What the CLI sends to Configure: every policy's schema defaults, then the file's values;
    and the enforcement levels the file sets (by policy name, or "all").

    Stricter than the CLI (which ignores unknown keys): a key that names no policy, or a
    property a policy's schema does not declare, fails here.
    """
    info = analyzer_info(servicer)
    schemas = {p.name: json_format.MessageToDict(p.configSchema.properties) for p in info.policies}
    properties: dict[str, dict[str, Any]] = {
        name: {key: spec["default"] for key, spec in schema.items() if "default" in spec}
        for name, schema in schemas.items()
    }
    levels: dict[str, str] = {}
    for key, value in (config_file or {}).items():
        assert key == "all" or key in schemas, f"{key!r} names no policy of the pack"
        if isinstance(value, str):
            levels[key] = value
            continue
        settings = dict(value)
        if "enforcementLevel" in settings:
            levels[key] = settings.pop("enforcementLevel")
        assert key != "all" or not settings, "'all' takes only an enforcement level"
        for name in settings:
            assert name in schemas[key], f"policy {key!r} has no config property {name!r}"
        properties[key].update(settings)
    assert set(levels.values()) <= set(LEVELS), levels
    return properties, levels


LEVELS = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "remediate": analyzer_pb2.REMEDIATE,
    "disabled": analyzer_pb2.DISABLED,
}


def configure(servicer: Any, config_file: Mapping[str, Any] | None = None) -> None:
    properties, levels = reconcile(servicer, config_file)
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for policy in analyzer_info(servicer).policies:
        config = analyzer_pb2.PolicyConfig()
        level = levels.get(policy.name, levels.get("all"))
        config.enforcementLevel = LEVELS[level] if level else policy.enforcementLevel
        if properties[policy.name]:
            config.properties.update(properties[policy.name])
        request.policyConfig[policy.name].CopyFrom(config)
    servicer.Configure(request, None)


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    enforcement: str
    urn: str
    message: str


def _serialize(properties: Mapping[str, Any]) -> struct_pb2.Struct:
    serialized = _sync_await(rpc.serialize_properties(dict(properties), {}))
    assert isinstance(serialized, struct_pb2.Struct)
    return serialized


def _diagnostics(response: Any) -> list[Diagnostic]:
    levels = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory"}
    return [Diagnostic(d.policyName, levels[d.enforcementLevel], d.urn, d.message) for d in response.diagnostics]


@dataclass(frozen=True)
class Wire:
    """One resource as the engine describes it to an analyzer."""

    type: str
    name: str
    urn: str
    properties: struct_pb2.Struct


def analyze(servicer: Any, resource: Wire) -> list[Diagnostic]:
    request = analyzer_pb2.AnalyzeRequest(
        type=resource.type, name=resource.name, urn=resource.urn, properties=resource.properties
    )
    return _diagnostics(servicer.Analyze(request, None))


def analyze_stack(servicer: Any, resources: Iterable[Wire]) -> list[Diagnostic]:
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(type=r.type, name=r.name, urn=r.urn, properties=r.properties)
            for r in resources
        ]
    )
    return _diagnostics(servicer.AnalyzeStack(request, None))


# --- the program's resources, as the engine would hand them over -------------------------------


@functools.cache
def _output_keys(resource_type: str) -> frozenset[str] | None:
    """The output property names azure-native's SDK declares for a type; None for other packages."""
    package, module, name = resource_type.split(":")
    if package != "azure-native":
        return None
    cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), name)
    return frozenset(
        getattr(member.fget, "_pulumi_name", key) for key, member in vars(cls).items() if isinstance(member, property)
    )


NAME_INPUT = {
    "Server": "serverName",
    "Configuration": "configurationName",
    "FirewallRule": "firewallRuleName",
    "Vault": "vaultName",
    "ContainerApp": "containerAppName",
    "ManagedEnvironment": "environmentName",
    "ContainerAppsAuthConfig": "authConfigName",
}


def azure_outputs(resource_type: str, outputs: Mapping[str, Any], resource_id: Any) -> dict[str, Any]:
    """Outputs as azure-native reports them: only the keys its SDK declares as outputs, plus `id`."""
    keys = _output_keys(resource_type)
    shaped = dict(outputs) if keys is None else {k: v for k, v in outputs.items() if k in keys}
    shaped["id"] = resource_id
    return shaped


def _flat_id(resource_type: str, name: str) -> str:
    """The ID the mocks give a resource (tests/harness.py)."""
    return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg/providers/{resource_type}/{name}"


def _renamed(value: Any, ids: Mapping[str, str]) -> Any:
    """`value` with every string that is a key of `ids` replaced by its value, at any depth."""
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, Mapping):
        return {key: _renamed(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item, ids) for item in value]
    return value


def _arm_ids(run: ProgramRun) -> dict[str, str]:
    """Resource IDs by Pulumi name, sub-resources nested under their parent as ARM nests them."""
    # The mocks' IDs of top-level resources (the program wires these into other resources' inputs).
    ids = {r.name: _flat_id(r.type, r.name) for r in run.resources}
    servers = {r.inputs.get("serverName"): ids[r.name] for r in run.of_type("azure-native:dbforpostgresql:Server")}
    apps = {r.inputs.get("containerAppName"): ids[r.name] for r in run.of_type("azure-native:app:ContainerApp")}
    networks = {r.outputs.get("name"): ids[r.name] for r in run.of_type("azure-native:network:VirtualNetwork")}
    zones = {r.inputs.get("privateZoneName"): ids[r.name] for r in run.of_type("azure-native:privatedns:PrivateZone")}
    for r in run.resources:
        if r.type == "azure-native:network:Subnet" and r.inputs.get("virtualNetworkName") in networks:
            ids[r.name] = f"{networks[r.inputs['virtualNetworkName']]}/subnets/{r.outputs.get('name', r.name)}"
        elif r.type == "azure-native:privatedns:VirtualNetworkLink":
            ids[r.name] = f"{zones[r.inputs['privateZoneName']]}/virtualNetworkLinks/{r.outputs.get('name', r.name)}"
        elif r.type == "azure-native:privatedns:PrivateRecordSet":
            record = f"{r.inputs['recordType']}/{r.inputs['relativeRecordSetName']}"
            ids[r.name] = f"{zones[r.inputs['privateZoneName']]}/{record}"
        elif r.type == "azure-native:dbforpostgresql:Configuration":
            ids[r.name] = f"{servers[r.inputs['serverName']]}/configurations/{r.inputs['configurationName']}"
        elif r.type == "azure-native:app:ContainerAppsAuthConfig":
            ids[r.name] = f"{apps[r.inputs['containerAppName']]}/authConfigs/{r.inputs['authConfigName']}"
        elif r.type == "azure-native:monitor:DiagnosticSetting":
            target = r.inputs["resourceUri"]
            target_name = next((name for name, rid in ids.items() if rid == target), None)
            assert target_name is not None, f"diagnostic setting {r.name} targets {target}, no resource of the run"
            ids[r.name] = f"{target}/providers/Microsoft.Insights/diagnosticSettings/{r.inputs['name']}"
    return ids


@dataclass(frozen=True)
class Deployment:
    """A stack as the engine describes it to the pack during `pulumi up`."""

    inputs: tuple[Wire, ...]  # Analyze: each resource's inputs
    outputs: tuple[Wire, ...]  # AnalyzeStack: each resource's outputs, azure-native's shape
    run: ProgramRun


def _urn(run: ProgramRun, resource_type: str, name: str) -> str:
    return run.urns.get(name) or f"urn:pulumi:test::pgmcp::{resource_type}::{name}"


def deployment(stack: str, mode: str, **overrides: Any) -> Deployment:
    run = run_program(stack, {"authMode": mode, **overrides}, recording=RecordingMocks())
    ids = _arm_ids(run)
    # The mocks gave every resource a flat ID; where ARM nests one (a subnet under its VNet), the outputs
    # that refer to it (an environment's infrastructureSubnetId) carry the nested one, as Azure's do.
    flat = {r.name: _flat_id(r.type, r.name) for r in run.resources}
    nested = {flat[name]: arm_id for name, arm_id in ids.items() if name in flat and flat[name] != arm_id}
    inputs, outputs = [], []
    for r in run.resources:
        urn = _urn(run, r.type, r.name)
        inputs.append(Wire(r.type, r.name, urn, _serialize(r.raw_inputs)))
        shaped = azure_outputs(r.type, _renamed(unwrap_secrets(r.outputs), nested), ids[r.name])
        outputs.append(Wire(r.type, r.name, urn, _serialize(shaped)))
    return Deployment(tuple(inputs), tuple(outputs), run)


def _only_inputs(outputs: Any, inputs: Any) -> Any:
    """What a preview knows of a new resource's outputs: what its inputs say (nothing Azure computes).
    A map keyed by values not known yet (the app's identities) is unknown as a whole."""
    if isinstance(outputs, dict) and isinstance(inputs, dict):
        return {
            key: _only_inputs(value, inputs[key])
            for key, value in outputs.items()
            if key in inputs and not (isinstance(value, dict) and any(not isinstance(k, str) for k in value))
        }
    return outputs


class FirstPreviewMocks(RecordingMocks):
    """A first `pulumi preview`: nothing exists, so IDs and every value Azure computes are unknown."""

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        _, outputs = super().new_resource(args)
        return "", _only_inputs(outputs, unwrap_secrets(dict(args.inputs)))


def first_preview(stack: str, mode: str, **overrides: Any) -> Deployment:
    """The inputs the program sends in a first preview, exactly as the SDK serialized them (unknowns
    as rpc's UNKNOWN), and the outputs a preview reports: known inputs, unknown `id`."""
    sent: list[tuple[str, str, struct_pb2.Struct]] = []
    register = pulumi_mocks.MockMonitor.RegisterResource

    def recording(self: Any, request: Any) -> Any:
        properties = struct_pb2.Struct()
        properties.CopyFrom(request.object)
        sent.append((request.type, request.name, properties))
        return register(self, request)  # type: ignore[no-untyped-call]  # the SDK's mock monitor is untyped

    with mock.patch.object(pulumi_mocks.MockMonitor, "RegisterResource", recording):
        run = run_program(stack, {"authMode": mode, **overrides}, preview=True, recording=FirstPreviewMocks())
    inputs, outputs = [], []
    for resource_type, name, properties in sent:
        if resource_type == "pulumi:pulumi:Stack":
            continue
        urn = _urn(run, resource_type, name)
        inputs.append(Wire(resource_type, name, urn, properties))
        known = unwrap_secrets(json_format.MessageToDict(properties))
        shaped = azure_outputs(resource_type, known, UNKNOWN)
        name_input = NAME_INPUT.get(resource_type.rsplit(":", 1)[-1])
        if name_input and name_input in known:
            shaped["name"] = known[name_input]
        outputs.append(Wire(resource_type, name, urn, _serialize(shaped)))
    return Deployment(tuple(inputs), tuple(outputs), run)


def decoded(wire: Wire) -> dict[str, Any]:
    """A wire resource's properties as plain data (to make a mutated copy)."""
    return copy.deepcopy(json_format.MessageToDict(wire.properties))


def mutated(wire: Wire, change: Any) -> Wire:
    """A copy of `wire` whose properties `change(properties)` edited in place."""
    properties = decoded(wire)
    change(properties)
    return Wire(wire.type, wire.name, wire.urn, _serialize(properties))
