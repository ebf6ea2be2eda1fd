"""tools/gateway_image.py: the digest of an OCI layout tar as `docker buildx build --output type=oci` writes it (a
real layout built here: config, one gzip layer, manifest, index.json, oci-layout, blobs by digest; OCI Image Layout
Specification, image-layout.md), refusals of anything else, the targets' stack naming, and the login server from a
stack export."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tools import gateway_image
from tools.gateway_image import ImageError, archive_digest, builds_its_image, login_server, main, registry_targets

pytestmark = pytest.mark.unit

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def image_layout(
    *, manifests: int = 1, media_type: str = MANIFEST, tamper: bool = False, layout_version: str = "1.0.0"
) -> dict[str, bytes]:
    """The files of an OCI image layout holding one small image (a layer with one file)."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as layer:
        content = b"print('gateway')\n"
        info = tarfile.TarInfo("app/main.py")
        info.size = len(content)
        layer.addfile(info, io.BytesIO(content))
    layer_digest, layer_bytes = blob(gzip.compress(layer_tar.getvalue(), mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": "10001", "Cmd": ["python", "-m", "gateway"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar.getvalue()).hexdigest()]},
    }
    config_digest, config_bytes = blob(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": len(layer_bytes),
            }
        ],
    }
    manifest_digest, manifest_bytes = blob(json.dumps(manifest).encode())
    descriptor = {"mediaType": media_type, "digest": manifest_digest, "size": len(manifest_bytes)}
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [descriptor] * manifests}
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": layout_version}).encode(),
        "index.json": json.dumps(index).encode(),
    }
    for digest, data in ((layer_digest, layer_bytes), (config_digest, config_bytes), (manifest_digest, manifest_bytes)):
        files[f"blobs/sha256/{digest.removeprefix('sha256:')}"] = data + (
            b" " if tamper and data is manifest_bytes else b""
        )
    return files


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def the_manifest_digest(files: dict[str, bytes]) -> str:
    return str(json.loads(files["index.json"])["manifests"][0]["digest"])


def test_the_digest_is_the_one_manifests_sha256(tmp_path: Path) -> None:
    files = image_layout()
    archive = write_tar(tmp_path / "gateway-image.tar", files)
    digest = archive_digest(archive)
    manifest_blob = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
    assert digest == the_manifest_digest(files) == "sha256:" + hashlib.sha256(manifest_blob).hexdigest()
    assert json.loads(manifest_blob)["mediaType"] == MANIFEST


def test_the_command_prints_the_digest_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = image_layout()
    archive = write_tar(tmp_path / "gateway-image.tar", files)
    assert main(["digest", str(archive)]) == 0
    assert capsys.readouterr().out == the_manifest_digest(files) + "\n"


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({"manifests": 2}, "lists 2 manifests, expected exactly one"),
        ({"media_type": INDEX}, "not one image's manifest (attestations or several platforms"),
        ({"tamper": True}, "SHA-256 is not its digest"),
        ({"layout_version": "2.0.0"}, "imageLayoutVersion"),
    ],
)
def test_anything_but_one_single_platform_image_is_refused(
    tmp_path: Path, layout: dict[str, Any], expected: str
) -> None:
    archive = write_tar(tmp_path / "image.tar", image_layout(**layout))
    with pytest.raises(ImageError, match=re.escape(expected)):
        archive_digest(archive)


def test_a_docker_save_archive_or_garbage_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = image_layout()
    del files["index.json"]  # `docker save`'s legacy layout has manifest.json instead
    files["manifest.json"] = b"[]"
    with pytest.raises(ImageError, match=r"no index\.json"):
        archive_digest(write_tar(tmp_path / "saved.tar", files))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar")
    assert main(["digest", str(garbage)]) == 1
    assert "not a readable OCI layout tar" in capsys.readouterr().err


def test_the_targets_follow_the_stacks_name_prefix(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: postgres-mcp-azure\nconfig:\n  namePrefix:\n    type: string\n    default: pgmcp\n"
    )
    (tmp_path / "Pulumi.qa.yaml").write_text("config:\n  postgres-mcp-azure:namePrefix: team7\n")
    assert registry_targets("dev", tmp_path)[0] == (
        "urn:pulumi:dev::postgres-mcp-azure::azure-native:resources:ResourceGroup::pgmcp-dev-rg"
    )
    assert all("::team7-qa-" in urn for urn in registry_targets("qa", tmp_path))


def test_the_login_server_comes_from_the_registry_in_the_stack_export(capsys: pytest.CaptureFixture[str]) -> None:
    registry = gateway_image.registry_urn("dev")
    export = {
        "version": 3,
        "deployment": {
            "resources": [
                {
                    "urn": registry.replace("-gateway-registry", "-other"),
                    "outputs": {"loginServer": "wrong.azurecr.io"},
                },
                {
                    "urn": registry,
                    "type": "azure-native:containerregistry:Registry",
                    "outputs": {"loginServer": "x.azurecr.io"},
                },
            ]
        },
    }
    assert login_server(export, "dev") == "x.azurecr.io"
    with pytest.raises(LookupError, match="run the targeted `up` first"):
        login_server({"deployment": {"resources": []}}, "dev")


def test_a_stack_builds_its_image_unless_it_names_a_prebuilt_one_or_runs_no_gateway(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: postgres-mcp-azure\nconfig:\n  signIn:\n    default: gateway\n  gatewayImage:\n    default: ''\n"
    )
    prebuilt = "x.azurecr.io/g@sha256:" + "0" * 64
    (tmp_path / "Pulumi.prebuilt.yaml").write_text(f"config:\n  postgres-mcp-azure:gatewayImage: {prebuilt}\n")
    (tmp_path / "Pulumi.easy.yaml").write_text("config:\n  postgres-mcp-azure:signIn: easyAuth\n")
    assert builds_its_image("dev", tmp_path) is True  # no stack file: the defaults
    assert builds_its_image("prebuilt", tmp_path) is False
    assert builds_its_image("easy", tmp_path) is False
    # The shipped stacks build theirs.
    assert builds_its_image("dev") and builds_its_image("prod")
