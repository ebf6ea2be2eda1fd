"""The GitHub Actions workflows: least privilege, pinned actions, one run per stack, OIDC,
and a runner firewall rule that the removal step really targets."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import run_program

from tools import verify_deployment

pytestmark = pytest.mark.program

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on:` as True
    return dict(document)


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in steps(job) if str(step.get("uses", "")).startswith(action + "@")]


def test_every_workflow_is_least_privilege_and_pins_its_actions() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        workflow = load(path.name)
        assert workflow["permissions"] == {"contents": "read"}, path.name
        for job_name, job in workflow["jobs"].items():
            for permission, level in (job.get("permissions") or {}).items():
                assert (permission, level) in {
                    ("contents", "read"),
                    ("id-token", "write"),
                    ("pull-requests", "write"),
                }, (path.name, job_name)
            for step in steps(job):
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False


def test_pull_requests_run_the_tests_then_preview_each_stack_with_the_policy_pack() -> None:
    workflow = load("pull-request.yml")
    assert "pull_request" in workflow["on"]
    test_job, preview = workflow["jobs"]["test"], workflow["jobs"]["preview"]
    assert any(step.get("run") == "bash .ci/run" for step in steps(test_job))
    assert preview["needs"] == "test" and preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert preview["permissions"]["id-token"] == "write"
    (pulumi,) = uses(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["policyPacks"] == "policy"
    assert pulumi["with"]["comment-on-pr"] is True
    assert "${{ matrix.stack }}" in preview["concurrency"]["group"]


def test_main_deploys_dev_then_prod_one_run_per_stack_with_oidc() -> None:
    workflow = load("deploy.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    up = workflow["jobs"]["up"]
    assert up["strategy"]["matrix"]["stack"] == ["dev", "prod"] and up["strategy"]["max-parallel"] == 1
    assert up["environment"] == "${{ matrix.stack }}"  # prod waits for its environment's reviewers
    assert up["concurrency"] == {"group": "pulumi-${{ matrix.stack }}", "cancel-in-progress": False}
    assert up["env"]["ARM_USE_OIDC"] == "true"
    assert not any("secret" in key.lower() and "client" in key.lower() for key in up["env"])  # no client secret
    assert uses(up, "Azure/login")[0]["with"]["client-id"] == "${{ vars.AZURE_CLIENT_ID }}"


def test_the_runner_is_admitted_for_the_run_and_its_rule_removed_after() -> None:
    up = load("deploy.yml")["jobs"]["up"]
    _, deploy, remove = uses(up, "pulumi/actions")
    assert deploy["with"]["command"] == "up" and "ciRunnerIp" in deploy["with"]["config-map"]
    assert "steps.runner.outputs.ip" in deploy["with"]["config-map"]
    assert remove["if"].startswith("always()")
    assert "value: ''" in remove["with"]["config-map"]
    for stack in ("dev", "prod"):
        run = run_program(stack, {"ciRunnerIp": "20.1.2.3"})
        (rule,) = [name for name in run.urns if name.endswith("-fw-ci-runner")]
        app = run.one("azure-native:app:ContainerApp").name
        # pulumi/actions splits `target` on new lines and commas (src/libs/utils.ts, parseArray).
        targets = re.split(r"\r?\n|,", remove["with"]["target"].replace("${{ matrix.stack }}", stack))
        assert [target.strip() for target in targets if target.strip()] == [run.urns[rule], run.urns[app]]


def test_the_runner_joins_an_ingress_allow_list_for_the_verification_and_never_opens_a_closed_one() -> None:
    """With allowedClientCidrs the ingress admits only its list: the run's own verification (list_tools) needs the
    runner in it, and the removal step (targeting the app) takes it out again. Without a list the ingress is open
    (Entra sign-in, or anonymous): a lone runner rule would shut every client out, so none is added."""

    def allow_rules(stack: str, overrides: dict[str, Any]) -> list[tuple[str, str]]:
        app = run_program(stack, overrides).one("azure-native:app:ContainerApp")
        rules = app.inputs["configuration"]["ingress"].get("ipSecurityRestrictions") or []
        return [(rule["name"], rule["ipAddressRange"]) for rule in rules if rule["action"] == "Allow"]

    assert allow_rules("dev", {"ciRunnerIp": "20.1.2.3"}) == [
        ("client-0", "198.51.100.0/24"),
        ("ci-runner", "20.1.2.3/32"),
    ]
    assert allow_rules("dev", {}) == [("client-0", "198.51.100.0/24")]  # the removal step's run
    entra_only = {"allowedClientCidrs": [], "entraAuthClientId": "11111111-2222-3333-4444-555555555555"}
    assert allow_rules("dev", {**entra_only, "ciRunnerIp": "20.1.2.3"}) == []


def test_after_pulumi_up_the_deployment_is_verified_with_the_stacks_outputs() -> None:
    """Issue 19, item 14: tools/verify_deployment.py runs after each stack's `pulumi up`, before the runner's rule
    goes, fed with stack outputs the program really exports (pulumi/actions sets each one as a step output)."""
    up = load("deploy.yml")["jobs"]["up"]
    names = [step.get("name", "") for step in steps(up)]
    _, deploy, remove = uses(up, "pulumi/actions")
    (verify,) = [step for step in steps(up) if "tools/verify_deployment.py" in step.get("run", "")]
    assert names.index(deploy["name"]) < names.index(verify["name"]) < names.index(remove["name"])
    assert "if" not in verify  # only after a successful `up`; the removal still runs (always())
    assert up["permissions"] == {"contents": "read", "id-token": "write"}  # ARM and Entra tokens by OIDC, no more
    assert verify["timeout-minutes"] <= 15
    assert (
        "${{" not in verify["run"]
    )  # inputs travel in env, never spliced into the script (zizmor: template-injection)

    # Every argument comes from an env entry that names a step output; the stack's outputs are the program's exports.
    command = shlex.split(verify["run"])
    assert command[:2] == [".venv/bin/python", "tools/verify_deployment.py"]
    env = verify["env"]
    arguments: dict[str, str] = {}
    for flag, value in zip(command[2::2], command[3::2], strict=True):
        variable = re.fullmatch(r"\$(\w+)", value)
        assert variable is not None and variable.group(1) in env, (flag, value)
        arguments[flag] = env[variable.group(1)]
    assert arguments["--runner-ip"] == "${{ steps.runner.outputs.ip }}"
    stack_outputs = {
        flag: re.fullmatch(r"\$\{\{ steps\.up\.outputs\.(\w+) \}\}", source)
        for flag, source in arguments.items()
        if flag != "--runner-ip"
    }
    assert deploy["id"] == "up" and all(stack_outputs.values()), arguments
    for stack in ("dev", "prod"):
        run = run_program(stack)
        exports = run.exports
        values = {flag: str(exports[match.group(1)]) for flag, match in stack_outputs.items() if match}
        values["--runner-ip"] = "20.1.2.3"
        parsed = verify_deployment.parse([f"{flag}={value}" for flag, value in values.items()])
        # The container app's own ID (the mocks name IDs `.../providers/<type>/<name>`; Azure's are ARM IDs).
        assert parsed.container_app_id.endswith(
            "/azure-native:app:ContainerApp/" + run.one("azure-native:app:ContainerApp").name
        )
        assert parsed.sse_url == exports["mcpSseUrl"] and parsed.auth_mode == exports["authMode"]
        assert parsed.mcp_url == exports["mcpUrl"]
        assert parsed.admission == exports["mcpAdmission"] and parsed.entra_scope == exports["mcpEntraScope"]


def test_the_gateway_image_is_built_its_registry_created_it_is_pushed_then_the_stack_deployed_by_its_digest() -> None:
    """docs/sign-in.md#the-gateway-image: build to an OCI archive, digest, targeted up, push, full up; the pull
    request builds and previews with the digest but pushes nothing."""
    up = load("deploy.yml")["jobs"]["up"]
    names = [step.get("name", "") for step in steps(up)]
    (gateway,) = [step for step in steps(up) if step.get("id") == "gateway"]
    (image,) = [step for step in steps(up) if step.get("id") == "image"]
    (push,) = [step for step in steps(up) if "skopeo copy" in step.get("run", "")]
    registry, deploy, remove = uses(up, "pulumi/actions")
    # Two OIDC sign-ins: the CLI's ID token lasts about five minutes (DESIGN: AADSTS700024), and the registry's up
    # plus the push may outlast it before the full up starts, so the job signs in again just before it.
    login, login_again = uses(up, "Azure/login")
    order = [names.index(step["name"]) for step in (gateway, image, login, registry, push, login_again, deploy, remove)]
    assert order == sorted(order)
    assert login_again["with"] == login["with"]
    for step in (image, registry, push, login_again):
        assert step["if"] == "steps.gateway.outputs.builds == 'true'"
    # One single-platform manifest: no provenance or SBOM attestations (they would make an image index).
    build = image["run"]
    assert "--provenance=false" in build and "--sbom=false" in build and "type=oci,dest=gateway-image.tar" in build
    assert "tools.gateway_image digest gateway-image.tar" in build
    # The targeted up creates what the tool lists, with the digest; the full up and the removal carry it too.
    assert registry["with"]["command"] == "up" and registry["with"]["target"] == "${{ steps.gateway.outputs.targets }}"
    assert "tools.gateway_image targets" in gateway["run"]
    for step in (registry, deploy, remove):
        assert "gatewayImageDigest: {value: '${{ steps.image.outputs.digest }}'" in step["with"]["config-map"]
    # skopeo keeps the digest or fails, and the pushed digest is checked; inputs travel in env.
    assert "skopeo copy --preserve-digests oci-archive:gateway-image.tar" in push["run"]
    assert "${{" not in push["run"] and "${{" not in gateway["run"]
    assert "--expose-token" in push["run"] and "--password-stdin" in push["run"]

    preview = load("pull-request.yml")["jobs"]["preview"]
    assert not [step for step in steps(preview) if "skopeo" in step.get("run", "")]  # nothing pushed
    (pr_image,) = [step for step in steps(preview) if step.get("id") == "image"]
    assert "--provenance=false" in pr_image["run"] and "--sbom=false" in pr_image["run"]
    (pr_preview,) = uses(preview, "pulumi/actions")
    assert "gatewayImageDigest: {value: '${{ steps.image.outputs.digest }}'" in pr_preview["with"]["config-map"]


ROOT = WORKFLOWS.parent.parent
# Each lock, the file of ranges it is compiled from, and who installs it.
LOCKS = {
    "requirements.txt": "requirements.in",  # the program: `pulumi install`, the pipelines' pulumi jobs
    "requirements-dev.txt": "requirements-dev.in",  # tests and linters: .ci/run, the docs' set-up
    "policy/requirements.txt": "policy/requirements.in",  # the policy pack: `pulumi install` in policy/
}


def pins(lock: str) -> dict[str, str]:
    """name -> version of every requirement of a pip-compile lock; asserts each carries hashes."""
    found: dict[str, str] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
    for entry in entries:
        if entry.startswith("#") or not entry.strip():
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", entry)
        assert match is not None, (lock, entry.splitlines()[0])  # every requirement pinned exactly
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), (lock, match.group(1))
        found[match.group(1).lower()] = match.group(2)
    return found


def test_every_lock_is_compiled_with_hashes_from_its_ranges() -> None:
    for lock, source in LOCKS.items():
        text = (ROOT / lock).read_text()
        header = text.split("\n\n", 1)[0]
        # Dependabot recompiles a pip-compile lock with the command in its header.
        assert "autogenerated by pip-compile" in header, lock
        assert f"--generate-hashes --output-file={Path(lock).name}" in header, lock
        assert "--index-url" not in text and "--find-links" not in text, lock  # PyPI only
        assert (ROOT / source).exists(), source
        assert pins(lock), lock


def test_locks_agree_with_each_other() -> None:
    program, dev, policy = (pins(lock) for lock in LOCKS)
    for name, version in {**program, **policy}.items():
        assert dev.get(name) == version, name  # the tests run what the program and the pack install
    for name in program.keys() & policy.keys():
        assert program[name] == policy[name], name


def test_pulumi_install_and_the_pipelines_install_the_locks() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    # The pip toolchain's `pulumi install` is `pip install -r requirements.txt`: a file with hashes
    # puts pip in hash-checking mode, so the lock is what it installs.
    assert project["runtime"]["options"]["toolchain"] == "pip"
    policy_project = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert policy_project["runtime"]["options"]["virtualenv"] == "venv"
    installs: list[str] = []
    for path in WORKFLOWS.glob("*.yml"):
        for job in load(path.name)["jobs"].values():
            installs += [line for step in steps(job) for line in str(step.get("run", "")).splitlines() if "pip" in line]
    installs += [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pip install" in line]
    for line in installs:
        if "--upgrade pip" in line:
            continue
        assert "--require-hashes" in line, line
        assert re.search(r"-r (requirements(-dev)?\.txt|policy/requirements\.txt)$", line), line
    assert any(line.endswith("-r requirements-dev.txt") for line in installs)
    assert any(line.endswith("-r policy/requirements.txt") for line in installs)


def test_the_update_bot_covers_the_locks_the_action_pins_and_the_images() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    covered = {
        (update["package-ecosystem"], directory)
        for update in config["updates"]
        for directory in update.get("directories", [update.get("directory")])
    }
    assert {("pip", "/"), ("pip", "/policy"), ("github-actions", "/")} <= covered
    assert ("docker", "/sidecar/*") in covered  # the containers' own programs (the gateway's image)
    for lock in LOCKS:
        assert ("pip", "/" + lock.rpartition("/")[0]) in covered, lock
