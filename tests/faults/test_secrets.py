"""Planted secrets (a fake HF token, fake S3 keys) never reach a log, job record, metrics file, saved config,
rendered manifest or exception message."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from kubetune.backends.local import LocalBackend
from kubetune.client import BuiltinTrainer, Initializer, Name, TrainerClient
from kubetune.errors import JobFailedError, KubetuneError
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer

HF_TOKEN = "hf_FAKEplantedTOKEN0123456789abcdefXYZ"
S3_KEY_ID = "AKIAFAKEPLANTED0123456"
S3_SECRET = "fakePlantedSecretKey/0123456789abcdefGHIJ"
SECRETS = (HF_TOKEN, S3_KEY_ID, S3_SECRET)
S3_REGION = "us-east-1"


def leaks_in_tree(*roots: Path) -> list[str]:
    """Every file under ``roots`` (SQLite database and WAL included) whose bytes hold a planted secret."""
    found = []
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [f"{path}: {secret[:8]}..." for secret in SECRETS if secret.encode() in data]
    return found


def leaks_in_text(text: str) -> list[str]:
    return [secret[:8] for secret in SECRETS if secret in text]


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setenv("KT_HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("KT_S3_KEY_ID", S3_KEY_ID)
    monkeypatch.setenv("KT_S3_SECRET", S3_SECRET)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def s3_credentials(endpoint: str) -> dict:
    return {
        "endpoint_url": endpoint,
        "region": S3_REGION,
        "access_key_id": {"env": "KT_S3_KEY_ID"},
        "secret_access_key": {"env": "KT_S3_SECRET"},
    }


def test_local_jobs_with_secret_references_leak_nothing(planted, tmp_path, s3_endpoint, tiny_model_dir, swap_data):
    import boto3

    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=S3_REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for path in tiny_model_dir.iterdir():
        client.upload_file(str(path), bucket, f"model/{path.name}")
    client.upload_file(str(swap_data), bucket, "data/train.jsonl")

    home = tmp_path / "home"
    sdk = TrainerClient(LocalBackend(home))
    trainer = BuiltinTrainer(
        config={
            "dataset": {"format": "completion"},
            "method": "lora",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 32, "checkpoint_every": 1},
        }
    )
    ok = sdk.train(
        initializer=Initializer(
            model=ModelInitializer(storage_uri=f"s3://{bucket}/model", s3=s3_credentials(s3_endpoint)),
            dataset=DatasetInitializer(storage_uri=f"s3://{bucket}/data", s3=s3_credentials(s3_endpoint)),
        ),
        trainer=trainer,
        options=[Name("ok")],
    )
    # A failing job: the Hub is unreachable (a closed port), with the token referenced.
    failing = sdk.train(
        initializer=Initializer(
            model=ModelInitializer(
                storage_uri="hf://org/private-model",
                token={"env": "KT_HF_TOKEN"},
                options={"endpoint": "http://127.0.0.1:9"},
            ),
            dataset=DatasetInitializer(storage_uri=f"s3://{bucket}/data", s3=s3_credentials(s3_endpoint)),
        ),
        trainer=trainer,
        options=[Name("failing")],
    )
    assert sdk.wait_for_job_status(ok, timeout=300, polling_interval=0.5).output_dir.joinpath("adapter").is_dir()
    with pytest.raises(JobFailedError) as caught:
        sdk.wait_for_job_status(failing, timeout=300, polling_interval=0.5)
    messages = [str(caught.value)]
    for name in (ok, failing):
        job = sdk.get_job(name)
        messages += [repr(job), *[repr(e) for e in sdk.get_job_events(name)]]
        for step in [s.name for s in job.steps] + ["supervisor"]:
            messages += list(sdk.get_job_logs(name, step=step))
    assert "org/private-model" in messages[0]  # the failure is reported...
    assert leaks_in_text("\n".join(messages)) == []  # ...without the token
    config = yaml.safe_load((home / "runs" / "ok" / "output" / "config.yaml").read_text())
    assert config["initializer"]["model"]["s3"]["access_key_id"] == {
        "env": "KT_S3_KEY_ID",
        "file": None,
        "kubernetes": None,
    }
    assert (home / "runs" / "ok" / "output" / "metrics.jsonl").is_file()
    assert list(home.glob("jobs.db*"))
    assert leaks_in_tree(home) == []  # job store (db, wal), logs, runs: config, metrics, checkpoints, exports


def test_validation_errors_and_manifests_never_show_secret_values(planted):
    from kubetune.backends.kubernetes.render_trainjob import KubernetesJobOptions, render_trainjob
    from kubetune.controller.reconcile import reconcile
    from kubetune.runtimes import apply_runtime, get_runtime
    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec

    errors = []
    for uri in (f"s3://{S3_KEY_ID}:{S3_SECRET}@bucket/model", f"hf://user:{HF_TOKEN}@org/model"):
        with pytest.raises(KubetuneError) as caught:
            validate_config(JobSpec, {"initializer": {"model": uri}})
        errors.append(str(caught.value))
    assert all("***@" in error for error in errors)
    assert leaks_in_text("\n".join(errors)) == []

    spec = validate_config(
        JobSpec,
        {
            "name": "secret-job",
            "runtime": "smollm2-135m-lora",
            "initializer": {
                "model": {"storage_uri": "hf://org/model",
                          "token": {"kubernetes": {"name": "hf-token", "key": "HF_TOKEN"}}},
                "dataset": {"storage_uri": "s3://bucket/data", "s3": {
                    "access_key_id": {"kubernetes": {"name": "s3-keys", "key": "AWS_ACCESS_KEY_ID"}},
                    "secret_access_key": {"kubernetes": {"name": "s3-keys", "key": "AWS_SECRET_ACCESS_KEY"}}}},
            },
        },
    )  # fmt: skip
    resolved = apply_runtime(spec, get_runtime("smollm2-135m-lora"))
    manifest = render_trainjob(spec, resolved, KubernetesJobOptions(), namespace="team-a")
    trainjob = {**manifest, "metadata": {**manifest["metadata"], "uid": "u-1", "generation": 1}}
    desired = reconcile(
        trainjob,
        get_runtime("smollm2-135m-lora").manifest,
        {"hf-token": ["HF_TOKEN"], "s3-keys": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]},
    )
    rendered = yaml.safe_dump_all([manifest, *[obj for obj in vars(desired).values() if isinstance(obj, dict)]])
    assert "secretKeyRef" in rendered  # the secrets are referenced...
    assert leaks_in_text(rendered + json.dumps(spec.model_dump(mode="json"))) == []  # ...never copied


MLFLOW_TOKEN = "mlflow-FAKE-planted-token-0123456789"
WANDB_KEY = "wandbFAKEplantedKEY0123456789abcdef0123"


def test_tracking_and_push_credentials_stay_out_of_params_files_and_errors(
    planted, monkeypatch, tmp_path, mlflow_server, s3_endpoint
):
    """Tracker credentials (an MLflow token; a W&B key reference) and push keys are read from their references
    where they are used: the MLflow params and tags, the run's files (tracking.json, push.json) and every error
    message show none of them."""
    from mlflow.tracking import MlflowClient

    from kubetune.contracts.run_dir import RunDir
    from kubetune.exporter.preflight import check_push_target
    from kubetune.exporter.s3_push import push_to_s3
    from kubetune.spec.job import JobSpec
    from kubetune.tracking import TrackingSession

    monkeypatch.setenv("KT_MLFLOW_TOKEN", MLFLOW_TOKEN)
    monkeypatch.setenv("KT_WANDB_KEY", WANDB_KEY)
    secrets = (*SECRETS, MLFLOW_TOKEN, WANDB_KEY)
    spec = JobSpec(
        name="secret-tracking",
        trainer={
            "report_to": ["mlflow"],
            "tracking": {
                "mlflow": {"tracking_uri": mlflow_server, "token": {"env": "KT_MLFLOW_TOKEN"}},
                "wandb": {"mode": "offline", "api_key": {"env": "KT_WANDB_KEY"}},
            },
            "output": {"push_to": "s3://no-such-bucket/run", "s3": s3_credentials(s3_endpoint)},
        },
    )
    layout = RunDir(tmp_path / "run")
    layout.output.mkdir(parents=True)
    layout.loss_curve.write_bytes(b"png")
    warnings: list[str] = []
    session = TrackingSession(spec, layout, warn=warnings.append)
    session.start()
    session.finish("FINISHED", [(layout.loss_curve, "loss.png")])
    assert warnings == []
    run = MlflowClient(mlflow_server).get_run(session.runs["mlflow"]["run_id"])
    assert run.data.params["trainer.tracking.mlflow.token.env"] == "KT_MLFLOW_TOKEN"
    shown = json.dumps([run.data.params, run.data.tags])
    with pytest.raises(KubetuneError) as refused:  # the keys are read, then the bucket is missing
        check_push_target(spec.trainer, layout)
    with pytest.raises(KubetuneError) as failed:
        push_to_s3(layout, spec.trainer.output, say=print)
    shown += str(refused.value) + str(failed.value) + "\n".join(warnings)
    assert "no-such-bucket" in str(refused.value)
    assert [s[:8] for s in secrets if s in shown] == []
    found = [
        f"{path}: {s[:8]}"
        for path in tmp_path.rglob("*")
        if path.is_file()
        for s in secrets
        if s.encode() in path.read_bytes()
    ]
    assert found == []
