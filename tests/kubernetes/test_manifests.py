"""Shipped manifests: valid against the official schemas, wired together, least privilege."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import yaml
from k8s_schemas import DEPLOY, REPO, crd_schema, schema_validator, validate_k8s

from kubetune.controller.reconcile import reconcile
from kubetune.runtimes import catalog_manifests, get_runtime

KUSTOMIZATION = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
RESOURCES = [DEPLOY / path for path in KUSTOMIZATION["resources"]]


def documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def all_objects():
    return [doc for path in RESOURCES for doc in documents(path)]


def test_kustomization_lists_every_manifest_in_deploy():
    shipped = {p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert set(RESOURCES) == shipped


@pytest.mark.parametrize("path", RESOURCES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_validates(path):
    validators = {
        kind: schema_validator(crd_schema(DEPLOY / "crds" / f"kubetune.dev_{plural}.yaml"))
        for kind, plural in (("ClusterTrainingRuntime", "clustertrainingruntimes"), ("TrainJob", "trainjobs"))
    }
    for doc in documents(path):
        if doc["apiVersion"].startswith("kubetune.dev/"):
            validators[doc["kind"]].validate(doc)
        else:
            validate_k8s(doc)


def test_packaged_runtimes_match_the_generated_deploy_file():
    shipped = [doc for doc in documents(DEPLOY / "runtimes" / "runtimes.yaml")]
    assert shipped == catalog_manifests(), "regenerate: python -m kubetune.runtimes > deploy/runtimes/runtimes.yaml"


def test_runtime_generator_cli_sets_the_image():
    out = subprocess.run(
        [sys.executable, "-m", "kubetune.runtimes", "--image", "reg.local/kubetune:dev"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    images = {
        container["image"]
        for doc in docs
        for job in doc["spec"]["template"]["spec"]["replicatedJobs"]
        for container in job["template"]["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"reg.local/kubetune:dev"}
    assert len(docs) == len(catalog_manifests())


def test_controller_role_is_least_privilege():
    (role,) = [
        o for o in all_objects() if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "kubetune-controller"
    ]
    grants = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert not any("*" in grant for grant in grants)
    secrets = {verb for group, resource, verb in grants if resource == "secrets"}
    assert secrets == {"get"}  # never list/watch every Secret of the cluster
    assert not any(resource == "pods" and verb in ("create", "delete", "patch") for _, resource, verb in grants)
    # Everything the controller applies can be created and patched (server-side apply).
    for resource in ("jobsets", "configmaps", "persistentvolumeclaims", "podgroups"):
        assert {"create", "patch"} <= {verb for _, r, verb in grants if r == resource}
    # Each job's progress account: it may only grant what it holds itself (RBAC escalation check).
    for resource in ("serviceaccounts", "roles", "rolebindings"):
        assert {"create", "patch"} <= {verb for _, r, verb in grants if r == resource}
    assert {"get", "patch"} <= {verb for _, r, verb in grants if r == "trainjobs/status"}
    # Progress comes from the trainer's report, never from logs.
    assert not any(resource in ("pods", "pods/log") for _, resource, _ in grants)


def test_progress_role_for_users_own_service_accounts_grants_two_verbs_on_trainjob_status():
    (role,) = [o for o in all_objects() if o["metadata"]["name"] == "kubetune-trainer-progress"]
    assert role["rules"] == [
        {"apiGroups": ["kubetune.dev"], "resources": ["trainjobs/status"], "verbs": ["get", "patch"]}
    ]


def test_controller_runs_as_the_bound_service_account():
    deployment = next(o for o in all_objects() if o["kind"] == "Deployment")
    binding = next(o for o in all_objects() if o["kind"] == "ClusterRoleBinding")
    (subject,) = binding["subjects"]
    pod = deployment["spec"]["template"]["spec"]
    assert (subject["name"], subject["namespace"]) == (pod["serviceAccountName"], deployment["metadata"]["namespace"])
    assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("name", ["trainer.Dockerfile", "controller.Dockerfile"])
def test_dockerfiles_build_from_this_repository(name):
    text = (DEPLOY / "docker" / name).read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("COPY "):
            source = line.split()[1].rstrip("*")
            assert (REPO / source).exists() or source == "README.md", line
    entry = "kubetune.controller" if name.startswith("controller") else "kubetune.trainer"
    assert entry in text


def test_the_documented_trainjob_is_valid_and_reconciles(trainjob_validator, jobset_validator):
    text = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    (trainjob,) = [
        doc
        for block in re.findall(r"```yaml\n(.*?)```", text, re.S)
        if (doc := yaml.safe_load(block))["kind"] == "TrainJob"
    ]
    trainjob_validator.validate(trainjob)
    trainjob["metadata"]["uid"] = "u-1"
    desired = reconcile(
        trainjob,
        get_runtime(trainjob["spec"]["runtimeRef"]["name"]).manifest,
        {"s3-credentials": ["AWS_ACCESS_KEY_ID"]},
    )
    jobset_validator.validate(desired.jobset)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_kustomize_builds_the_install_bundle():
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True).stdout
    built = [doc for doc in yaml.safe_load_all(out) if doc]
    kinds = {doc["kind"] for doc in built}
    assert {"Namespace", "CustomResourceDefinition", "ClusterRole", "Deployment", "ClusterTrainingRuntime"} <= kinds
    assert len([doc for doc in built if doc["kind"] == "ClusterTrainingRuntime"]) == len(catalog_manifests())
    for doc in built:
        if not doc["apiVersion"].startswith("kubetune.dev/"):
            validate_k8s(doc)
