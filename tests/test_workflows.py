"""The GitHub Actions workflows: least privilege, pinned actions, one run per stack, OIDC,
and a runner firewall rule that the removal step really targets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import run_program

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
    deploy, remove = uses(up, "pulumi/actions")
    assert deploy["with"]["command"] == "up" and "ciRunnerIp" in deploy["with"]["config-map"]
    assert "steps.runner.outputs.ip" in deploy["with"]["config-map"]
    assert remove["if"].startswith("always()")
    assert "value: ''" in remove["with"]["config-map"]
    for stack in ("dev", "prod"):
        run = run_program(stack, {"ciRunnerIp": "20.1.2.3"})
        (rule,) = [name for name in run.urns if name.endswith("-fw-ci-runner")]
        assert remove["with"]["target"].replace("${{ matrix.stack }}", stack) == run.urns[rule]
