"""The dynamic provider as the Pulumi engine runs it, for the tests.

`ProviderHost` starts the provider process the way the CLI's `pulumi-resource-pulumi-python`
launcher does (`python -u -m pulumi.dynamic`, in the program's folder; it prints its gRPC
port) and speaks gRPC to the SDK's own servicer with protobuf requests whose properties are
serialized by `pulumi.runtime.rpc`. The provider object travels as the `__provider` input,
pickled by the SDK's `serialize_provider`, and is loaded by dill inside that process.

`Engine` steps one resource the way the engine does: Check with the old inputs; no state ->
Create; else Diff with the old outputs -> nothing, Update, or a replacement: Create then
Delete, or Delete then Create when the provider asks for `deleteBeforeReplace`. Refresh is
Read with the old outputs and inputs (an empty ID means the resource is gone). The provider
answers with `acceptSecrets: false`, so the engine sends it plain values: so do we.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.database_access import DatabaseAccessProvider

ROOT = Path(__file__).resolve().parent.parent
TYPE = "pulumi-python:dynamic:Resource"
URN = f"urn:pulumi:dev::postgres-mcp-azure::{TYPE}::app-database-access"
PROVIDER = serialize_provider(DatabaseAccessProvider())
# What the deployer's environment must not leak into the provider process in these tests.
_SCRUBBED = ("AZURE_", "ARM_", "ACTIONS_", "IDENTITY_", "MSI_")


class ProviderError(Exception):
    """The provider failed a call; `details` is what the engine would print (the provider's traceback)."""

    def __init__(self, method: str, details: str) -> None:
        super().__init__(f"{method} failed: {details}")
        self.method = method
        self.details = details


def to_struct(properties: Mapping[str, Any]) -> struct_pb2.Struct:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(dict(properties), {}))
    finally:
        loop.close()


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return dict(rpc.deserialize_properties(struct, keep_unknowns=True))


class ProviderHost:
    """One provider process, as the engine starts it once per deployment."""

    def __init__(self, env: Mapping[str, str]) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
        environment.update(env)
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic", "127.0.0.1:0"],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port.isdigit():
            self.process.kill()
            raise RuntimeError(f"the provider process did not print its port: {port!r} {self.process.stderr}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        configured = self._call("Configure", provider_pb2.ConfigureRequest(args=to_struct({}), acceptSecrets=True))
        assert configured.acceptSecrets is False  # so the engine hands it plain values

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=180)
        except grpc.RpcError as error:
            raise ProviderError(method, str(error.details())) from None

    def check(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        response = self._call(
            "Check",
            provider_pb2.CheckRequest(urn=URN, olds=to_struct(olds), news=to_struct(news), type=TYPE),
        )
        return from_struct(response.inputs), {failure.property: failure.reason for failure in response.failures}

    def diff(self, id_: str, old_outputs: Mapping[str, Any], news: Mapping[str, Any]) -> Any:
        return self._call(
            "Diff", provider_pb2.DiffRequest(id=id_, urn=URN, olds=to_struct(old_outputs), news=to_struct(news))
        )

    def create(self, properties: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        response = self._call("Create", provider_pb2.CreateRequest(urn=URN, properties=to_struct(properties)))
        return str(response.id), from_struct(response.properties)

    def read(self, id_: str, outputs: Mapping[str, Any], inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        response = self._call(
            "Read",
            provider_pb2.ReadRequest(id=id_, urn=URN, properties=to_struct(outputs), inputs=to_struct(inputs)),
        )
        return str(response.id), from_struct(response.properties)

    def update(self, id_: str, old_outputs: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
        response = self._call(
            "Update", provider_pb2.UpdateRequest(id=id_, urn=URN, olds=to_struct(old_outputs), news=to_struct(news))
        )
        return from_struct(response.properties)

    def delete(self, id_: str, outputs: Mapping[str, Any]) -> None:
        self._call("Delete", provider_pb2.DeleteRequest(id=id_, urn=URN, properties=to_struct(outputs)))

    def close(self) -> None:
        self.channel.close()
        self.process.kill()
        self.process.wait(timeout=30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class CheckFailedError(Exception):
    pass


@dataclass
class State:
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


@dataclass
class Engine:
    """One dynamic resource's life, stepped as the engine steps it."""

    host: ProviderHost
    state: State | None = None
    steps: list[str] = field(default_factory=list)
    provider: str = PROVIDER
    """The pickled provider the engine sends as `__provider` (another dynamic provider's, to step that one)."""

    def preview(self, inputs: Mapping[str, Any]) -> Any:
        """Check, then Diff when there is state: what `pulumi preview` asks of the provider."""
        checked, failures = self.host.check(
            self.state.inputs if self.state else {}, {**inputs, "__provider": self.provider}
        )
        if failures:
            raise CheckFailedError(failures)
        return None if self.state is None else self.host.diff(self.state.id, self.state.outputs, checked)

    def up(self, inputs: Mapping[str, Any]) -> list[str]:
        """Brings the resource to `inputs`; returns the steps taken."""
        steps: list[str] = []
        checked, failures = self.host.check(
            self.state.inputs if self.state else {}, {**inputs, "__provider": self.provider}
        )
        if failures:
            raise CheckFailedError(failures)
        if self.state is None:
            self._create(checked, steps)
        else:
            diff = self.host.diff(self.state.id, self.state.outputs, checked)
            if diff.replaces:
                old = self.state
                if diff.deleteBeforeReplace:
                    self.host.delete(old.id, old.outputs)
                    steps.append("delete-replaced")
                    self.state = None
                    self._create(checked, steps)
                else:
                    self._create(checked, steps)
                    self.host.delete(old.id, old.outputs)
                    steps.append("delete-replaced")
            elif diff.changes == provider_pb2.DiffResponse.DIFF_SOME:
                outputs = self.host.update(self.state.id, self.state.outputs, checked)
                self.state = State(self.state.id, checked, outputs)
                steps.append("update")
        self.steps += steps
        return steps

    def _create(self, checked: dict[str, Any], steps: list[str]) -> None:
        id_, outputs = self.host.create(checked)
        self.state = State(id_, checked, outputs)
        steps.append("create")

    def refresh(self) -> None:
        assert self.state is not None
        id_, outputs = self.host.read(self.state.id, self.state.outputs, self.state.inputs)
        self.state = None if id_ == "" else State(id_, self.state.inputs, outputs)

    def destroy(self) -> None:
        if self.state is not None:
            self.host.delete(self.state.id, self.state.outputs)
            self.state = None
