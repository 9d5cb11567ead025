"""Done-when of issue 19: `kubetune train` of a local job with report_to [mlflow] and push_to s3:// leaves its run
(params, tags, metrics per step, loss.png), a registered model version and the pushed files in the real MLflow
server and the S3 server, and no credential anywhere."""

from __future__ import annotations

import uuid

import yaml
from typer.testing import CliRunner

from kubetune.backends.local import LocalBackend
from kubetune.cli.main import app
from kubetune.contracts.types import EXPORTER_STEP, StepStatus

REGION = "us-east-1"
TOKEN = "mlflow-planted-TOKEN-0123456789"
SECRET = "s3-planted-SECRET-0123456789/abc"


def test_a_tracked_job_shows_its_run_model_version_and_pushed_files(
    mlflow_server, s3_endpoint, tiny_model_dir, swap_data, tmp_path, monkeypatch
):
    import boto3
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("KT_MLFLOW_TOKEN", TOKEN)
    monkeypatch.setenv("KT_S3_KEY", "push-key")
    monkeypatch.setenv("KT_S3_SECRET", SECRET)
    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s"
    )
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    model_name = f"swap-{uuid.uuid4().hex[:6]}"
    experiment = f"e2e-{uuid.uuid4().hex[:6]}"
    job = {
        "name": "tracked-push",
        "trainer": {
            "model": {"path": str(tiny_model_dir)},
            "dataset": {"path": str(swap_data), "format": "completion"},
            "method": "lora",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 3, "batch_size": 4, "max_seq_len": 32, "learning_rate": 1e-3},
            "report_to": ["mlflow"],
            "tracking": {
                "mlflow": {"tracking_uri": mlflow_server, "experiment": experiment, "token": {"env": "KT_MLFLOW_TOKEN"}}
            },
            "output": {
                "push_to": f"s3://{bucket}/jobs/tracked-push",
                "s3": {
                    "endpoint_url": s3_endpoint,
                    "region": REGION,
                    "access_key_id": {"env": "KT_S3_KEY"},
                    "secret_access_key": {"env": "KT_S3_SECRET"},
                },
                "register_model": model_name,
            },
        },
    }
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))
    home = tmp_path / "home"

    result = CliRunner().invoke(app, ["train", "-f", str(job_file), "--home", str(home)])
    assert "tracked-push" in result.output, result.output
    backend = LocalBackend(home)
    logs = "\n".join(
        line for step in ("node-0", EXPORTER_STEP) for line in backend.get_job_logs("tracked-push", step=step)
    )
    assert result.exit_code == 0, (result.output, logs)
    record = backend.get_job("tracked-push")
    assert [(s.name, s.status) for s in record.steps] == [
        ("node-0", StepStatus.SUCCEEDED),
        (EXPORTER_STEP, StepStatus.SUCCEEDED),
    ]
    output = record.run_dir / "output"

    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked-push"
    assert run.data.tags["kubetune.job"] == "tracked-push" and run.data.tags["kubetune.backend"] == "local"
    assert run.data.params["trainer.lora.r"] == "4"
    assert run.data.params["trainer.tracking.mlflow.token.env"] == "KT_MLFLOW_TOKEN"  # the reference, not the value
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 3] and all(m.value > 0 for m in losses)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "tokens_per_s")] == [1, 2, 3]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["loss.png"]

    (version,) = client.search_model_versions(f"name = '{model_name}'")
    assert version.run_id == run.info.run_id and version.status == "READY"
    assert version.source == f"s3://{bucket}/jobs/tracked-push/merged"

    listed = {obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    prefix = "jobs/tracked-push/"
    local = {
        p.relative_to(output).as_posix() for d in ("adapter", "merged") for p in (output / d).rglob("*") if p.is_file()
    }
    assert listed == {prefix + key for key in local | {"loss.png", "metrics.jsonl", "config.yaml"}}
    weights = s3.get_object(Bucket=bucket, Key=prefix + "merged/model.safetensors")["Body"].read()
    assert weights == (output / "merged" / "model.safetensors").read_bytes()

    texts = [
        result.output,
        logs,
        yaml.safe_dump(dict(run.data.params)),
        *(p.read_bytes().decode("utf-8", "replace") for p in home.rglob("*") if p.is_file()),
    ]
    assert not [t for t in texts if TOKEN in t or SECRET in t]
