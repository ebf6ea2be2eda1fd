"""The sign-in gateway's image in the deploy pipeline: its digest, the first deploy's targets, the registry.

    python -m tools.gateway_image digest gateway-image.tar       # sha256:<hex> of the image built to an OCI archive
    python -m tools.gateway_image targets --stack dev            # the --target URNs that create the registry first
    pulumi stack export --stack dev | python -m tools.gateway_image login-server --stack dev
    python -m tools.gateway_image builds --stack dev             # true: signIn gateway without gatewayImage

The pipeline (.github/workflows/deploy.yml; docs/sign-in.md#the-gateway-image) builds `gateway/Dockerfile` with
`docker buildx build --provenance=false --sbom=false --output type=oci,dest=gateway-image.tar`: an OCI image layout
in a tar. Its `index.json` is the layout's entry point and its `manifests` list the image's manifest descriptor,
whose `digest` is the SHA-256 of the manifest's bytes (OCI Image Layout Specification, "index.json file" and
"Blobs": github.com/opencontainers/image-spec/blob/main/image-layout.md; descriptors: descriptor.md). With
provenance and SBOM attestations off, buildx writes one single-platform manifest there, so that digest is the
image's. `skopeo copy --preserve-digests oci-archive:... docker://...` pushes the same manifest bytes, so the digest
in the registry is the same one (skopeo-copy(1): `--preserve-digests` "Preserve the digests during copying. Fail
if the digest cannot be preserved"), and the stack runs `<login server>/postgres-mcp-gateway@<digest>`.

`targets`: on a stack's first deploy the registry does not exist yet, so the image cannot be pushed before `pulumi
up`, and the app cannot be created before the image is pushed. A targeted `pulumi up` creates only the registry and
what it needs; the engine refuses a target whose parent or dependency is neither in the targets nor already
created (pulumi/pulumi#5869), so the list holds every one of those: the resource group, the stack's random suffix
(part of the registry's name), the app's identity (AcrPull's assignee) and the components they sit in.
tests/test_gateway_registry.py proves under mocks that these are exactly the URNs the program declares and that
nothing else is needed.

It runs in the program's virtualenv (PyYAML comes with pulumi), from the repository's root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
IMAGE_MEDIA_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DEFAULT_NAME_PREFIX = "pgmcp"


class ImageError(ValueError):
    """The archive is not the single-image OCI layout the pipeline builds."""


def archive_digest(path: Path) -> str:
    """The digest of the one image manifest in an OCI layout tar, checked against the manifest blob's bytes."""
    try:
        with tarfile.open(path) as archive:
            members = {member.name.removeprefix("./"): member for member in archive.getmembers()}

            def read(name: str) -> bytes:
                member = members.get(name)
                extracted = archive.extractfile(member) if member is not None else None
                if extracted is None:
                    raise ImageError(f"{path}: no {name} in the archive (not an OCI image layout)")
                return extracted.read()

            layout = json.loads(read("oci-layout"))
            if not str(layout.get("imageLayoutVersion", "")).startswith("1."):
                raise ImageError(f"{path}: oci-layout's imageLayoutVersion is {layout.get('imageLayoutVersion')!r}")
            index = json.loads(read("index.json"))
            manifests = index.get("manifests") or []
            if len(manifests) != 1:
                raise ImageError(
                    f"{path}: index.json lists {len(manifests)} manifests, expected exactly one (build with "
                    "--provenance=false --sbom=false for one platform)"
                )
            descriptor = manifests[0]
            digest = str(descriptor.get("digest", ""))
            if not DIGEST.fullmatch(digest):
                raise ImageError(f"{path}: index.json's manifest digest {digest!r} is not sha256:<64 hex digits>")
            if descriptor.get("mediaType") not in IMAGE_MEDIA_TYPES:
                raise ImageError(
                    f"{path}: index.json's manifest is a {descriptor.get('mediaType')!r}, not one image's manifest "
                    "(attestations or several platforms make an image index)"
                )
            blob = read(f"blobs/sha256/{digest.removeprefix('sha256:')}")
    except (tarfile.TarError, json.JSONDecodeError, OSError) as error:
        raise ImageError(f"{path}: not a readable OCI layout tar ({error})") from error
    if "sha256:" + hashlib.sha256(blob).hexdigest() != digest:
        raise ImageError(f"{path}: the manifest blob's SHA-256 is not its digest {digest}")
    if len(blob) != descriptor.get("size"):
        raise ImageError(f"{path}: the manifest blob is {len(blob)} bytes, index.json says {descriptor.get('size')}")
    return digest


def project_name(root: Path = ROOT) -> str:
    return str(yaml.safe_load((root / "Pulumi.yaml").read_text())["name"])


def stack_setting(stack: str, key: str, default: str, root: Path = ROOT) -> str:
    """A config key as the stack has it (`pulumi config set` writes Pulumi.<stack>.yaml), else Pulumi.yaml's
    default, else `default`."""
    project = project_name(root)
    stack_file = root / f"Pulumi.{stack}.yaml"
    if stack_file.exists():
        config = yaml.safe_load(stack_file.read_text()).get("config") or {}
        if f"{project}:{key}" in config:
            return str(config[f"{project}:{key}"] or "")
    spec = yaml.safe_load((root / "Pulumi.yaml").read_text()).get("config", {}).get(key, {})
    return str(spec.get("default", default) or "")


def name_prefix(stack: str, root: Path = ROOT) -> str:
    return stack_setting(stack, "namePrefix", DEFAULT_NAME_PREFIX, root)


def builds_its_image(stack: str, root: Path = ROOT) -> bool:
    """Whether the stack runs the gateway from its own registry: `signIn: gateway` and no prebuilt `gatewayImage`
    (then the pipeline builds, pushes and passes `gatewayImageDigest`)."""
    sign_in = stack_setting(stack, "signIn", "gateway", root)
    return sign_in == "gateway" and not stack_setting(stack, "gatewayImage", "", root)


def registry_targets(stack: str, root: Path = ROOT) -> list[str]:
    """The URNs a first deploy targets to create the gateway's registry and AcrPull before the image exists."""
    from components.gateway_registry import COMPONENT_TYPE
    from settings.model import stack_base_name

    project = project_name(root)
    base = stack_base_name(name_prefix(stack, root), stack)

    def urn(type_: str, name: str) -> str:
        return f"urn:pulumi:{stack}::{project}::{type_}::{name}"

    identity = "postgresmcp:identity:IdentityAndSecrets"
    return [
        urn("azure-native:resources:ResourceGroup", f"{base}-rg"),
        urn("random:index/randomString:RandomString", f"{base}-suffix"),
        urn(identity, f"{base}-identity"),
        urn(f"{identity}$azure-native:managedidentity:UserAssignedIdentity", f"{base}-identity-app-identity"),
        urn(COMPONENT_TYPE, f"{base}-gateway-registry"),
        urn(f"{COMPONENT_TYPE}$azure-native:containerregistry:Registry", f"{base}-gateway-registry"),
        urn(f"{COMPONENT_TYPE}$azure-native:authorization:RoleAssignment", f"{base}-gateway-registry-acr-pull"),
    ]


def registry_urn(stack: str, root: Path = ROOT) -> str:
    (urn,) = [target for target in registry_targets(stack, root) if ":containerregistry:Registry::" in target]
    return urn


def login_server(export: dict[str, Any], stack: str, root: Path = ROOT) -> str:
    """The registry's login server from `pulumi stack export` (the state the targeted `up` wrote)."""
    wanted = registry_urn(stack, root)
    for resource in (export.get("deployment") or {}).get("resources") or []:
        if resource.get("urn") == wanted:
            server = (resource.get("outputs") or {}).get("loginServer")
            if server:
                return str(server)
    raise LookupError(f"no registry {wanted} with a loginServer in the stack's state: run the targeted `up` first")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gateway_image", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    digest = commands.add_parser("digest", help="the image manifest's digest in an OCI layout tar")
    digest.add_argument("archive", type=Path)
    targets = commands.add_parser("targets", help="the --target URNs that create the registry before the image")
    targets.add_argument("--stack", required=True)
    server = commands.add_parser(
        "login-server", help="the registry's login server, from `pulumi stack export` on stdin"
    )
    server.add_argument("--stack", required=True)
    builds = commands.add_parser("builds", help="true when the stack runs the gateway image from its own registry")
    builds.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "digest":
            print(archive_digest(args.archive))
        elif args.command == "targets":
            print("\n".join(registry_targets(args.stack)))
        elif args.command == "builds":
            print("true" if builds_its_image(args.stack) else "false")
        else:
            print(login_server(json.load(sys.stdin), args.stack))
    except (ImageError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
