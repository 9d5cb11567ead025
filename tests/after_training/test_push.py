"""output.push_to s3://: multipart uploads checked by Content-MD5 and ETag, retried through a faulty proxy,
resumed from push.json; a non-empty prefix or missing credentials fail before training; hf:// without a token
too. output.register_model creates a model version in a real MLflow registry."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError
from kubetune.exporter.manifest import PushRecord, file_digests
from kubetune.exporter.preflight import check_push_target
from kubetune.exporter.register import register_model
from kubetune.exporter.s3_push import SHA256_METADATA, push_to_s3
from kubetune.spec.job import JobSpec
from kubetune.spec.trainer import LLMConfig
from tests.faults.s3_proxy import FaultyS3Proxy

REGION = "us-east-1"
PART = 5 << 20  # S3's smallest part
BIG = os.urandom(2 * PART + 12345)  # three parts


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("KT_PUSH_KEY", "push-key-id")
    monkeypatch.setenv("KT_PUSH_SECRET", "push-secret-value")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s"
    )
    bucket = f"push-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def output(bucket: str, endpoint: str, prefix: str = "runs/one", **extra) -> dict:
    s3 = {"endpoint_url": endpoint, "region": REGION, "access_key_id": {"env": "KT_PUSH_KEY"}}
    s3["secret_access_key"] = {"env": "KT_PUSH_SECRET"}
    return {"push_to": f"s3://{bucket}/{prefix}", "s3": s3, **extra}


@pytest.fixture
def run(tmp_path) -> RunDir:
    layout = RunDir(tmp_path / "run")
    layout.merged.mkdir(parents=True)
    (layout.merged / "model.safetensors").write_bytes(BIG)
    (layout.merged / "config.json").write_text('{"model_type": "llama"}')
    layout.adapter.mkdir()
    (layout.adapter / "adapter_config.json").write_text("{}")
    layout.loss_curve.write_bytes(b"png")
    layout.metrics_file.write_text('{"step": 1, "total_steps": 1, "loss": 1.0}\n')
    (layout.checkpoints / "step-1").mkdir(parents=True)
    (layout.checkpoints / "step-1" / "state.pt").write_bytes(b"not pushed")
    return layout


def keys(client, bucket: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {obj["Key"]: client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read() for obj in listed}


def test_push_is_multipart_verified_retried_and_skips_what_is_there(s3, s3_endpoint, run, monkeypatch):
    client, bucket = s3
    monkeypatch.setattr("kubetune.exporter.s3_push.FIRST_BACKOFF_S", 0.05)
    proxy = FaultyS3Proxy(s3_endpoint)
    try:
        config = LLMConfig(output=output(bucket, proxy.endpoint))
        proxy.fail_next, proxy.fail_status = 3, 503  # the listing, then the first uploads, answered 503
        lines: list[str] = []
        pushed = push_to_s3(run, config.output, part_size=PART, say=lines.append)
    finally:
        proxy.stop()
    stored = keys(client, bucket)
    assert set(stored) == {
        "runs/one/merged/model.safetensors",
        "runs/one/merged/config.json",
        "runs/one/adapter/adapter_config.json",
        "runs/one/loss.png",
        "runs/one/metrics.jsonl",
    }  # no checkpoints
    assert stored["runs/one/merged/model.safetensors"] == BIG
    head = client.head_object(Bucket=bucket, Key="runs/one/merged/model.safetensors")
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert head["Metadata"][SHA256_METADATA] == hashlib.sha256(BIG).hexdigest()
    assert pushed["merged/model.safetensors"]["sha256"] == hashlib.sha256(BIG).hexdigest()
    assert lines == [f"push: 5 file(s) uploaded, 0 already there, to s3://{bucket}/runs/one"]
    uploads = [r for r in proxy.requests if r[0] in ("PUT", "POST")]
    assert len([r for r in uploads if "partNumber=" in r[1]]) >= 3

    # Pushed again (a rerun of the exporter): nothing is sent twice; a changed file is sent again.
    (run.adapter / "adapter_config.json").write_text('{"r": 4}')
    again = FaultyS3Proxy(s3_endpoint)
    try:
        lines.clear()
        push_to_s3(run, LLMConfig(output=output(bucket, again.endpoint)).output, part_size=PART, say=lines.append)
    finally:
        again.stop()
    assert lines == [f"push: 1 file(s) uploaded, 4 already there, to s3://{bucket}/runs/one"]
    assert [r[1].split("?")[0] for r in again.requests if r[0] == "PUT"] == [
        f"/{bucket}/runs/one/adapter/adapter_config.json"
    ]
    assert keys(client, bucket)["runs/one/adapter/adapter_config.json"] == b'{"r": 4}'


def test_an_interrupted_multipart_upload_continues_with_its_missing_parts(s3, s3_endpoint, run):
    client, bucket = s3
    key = "runs/one/merged/model.safetensors"
    # What a push cut off after its first part leaves: the open upload, its part 1, and push.json.
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=BIG[:PART])
    config = LLMConfig(output=output(bucket, s3_endpoint))
    record = PushRecord(run, config.output.push_to)
    sha256, _ = file_digests(run.merged / "model.safetensors", PART)
    record.files["merged/model.safetensors"] = {"sha256": sha256, "size": len(BIG), "upload_id": upload_id}
    record.save()
    check_push_target(config, run)  # its own partial upload does not make the prefix "not empty"

    proxy = FaultyS3Proxy(s3_endpoint)
    try:
        push_to_s3(run, LLMConfig(output=output(bucket, proxy.endpoint)).output, part_size=PART, say=lambda _: None)
    finally:
        proxy.stop()
    parts = sorted(r[1].split("partNumber=")[1].split("&")[0] for r in proxy.requests if "partNumber=" in r[1])
    assert parts == ["2", "3"]
    assert keys(client, bucket)[key] == BIG
    assert json.loads(run.push_manifest.read_text())["files"]["merged/model.safetensors"]["done"] is True


def test_push_target_problems_are_found_before_training(s3, s3_endpoint, monkeypatch, tmp_path):
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="taken/model.safetensors", Body=b"someone else's")
    with pytest.raises(ConfigError, match=r"output.push_to s3://.*/taken is not empty .*overwrite: true"):
        check_push_target(LLMConfig(output=output(bucket, s3_endpoint, "taken")))
    check_push_target(LLMConfig(output=output(bucket, s3_endpoint, "taken", overwrite=True)))
    check_push_target(LLMConfig(output=output(bucket, s3_endpoint, "free")))

    with pytest.raises(ConfigError, match="bucket does not exist"):
        check_push_target(LLMConfig(output=output("no-such-bucket", s3_endpoint)))
    monkeypatch.delenv("KT_PUSH_SECRET")
    with pytest.raises(ConfigError, match=r"output\.s3\.secret_access_key: environment variable KT_PUSH_SECRET"):
        check_push_target(LLMConfig(output=output(bucket, s3_endpoint, "free")))

    # hf://: no token reference and no login: refused before training (the Hub is never asked).
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(ConfigError, match=r"output.push_to hf://org/model: no Hub token"):
        check_push_target(LLMConfig(output={"push_to": "hf://org/model"}))
    monkeypatch.delenv("KT_HUB_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"output\.token: environment variable KT_HUB_TOKEN"):
        check_push_target(LLMConfig(output={"push_to": "hf://org/model", "token": {"env": "KT_HUB_TOKEN"}}))


def test_register_model_creates_a_version_of_the_jobs_run(mlflow_server, run):
    from mlflow.tracking import MlflowClient

    from kubetune.tracking import TrackingSession

    name = f"model-{uuid.uuid4().hex[:6]}"
    tracking = {"mlflow": {"tracking_uri": mlflow_server, "experiment": "registry"}}
    trainer = {"report_to": ["mlflow"], "tracking": tracking}
    pushed = JobSpec(name="reg", trainer={**trainer, "output": {"push_to": "s3://models/reg", "register_model": name}})
    session = TrackingSession(pushed, run)
    session.start()
    session.finish("FINISHED")
    first = register_model(run, pushed, say=lambda _: None)
    # Without a push the model folder becomes the run's "model" artifacts and the version points there.
    local = JobSpec(name="reg", trainer={**trainer, "output": {"register_model": name}})
    second = register_model(run, local, say=lambda _: None)
    hub = JobSpec(name="reg", trainer={**trainer, "output": {"push_to": "hf://org/reg", "register_model": name}})
    third = register_model(run, hub, say=lambda _: None)

    client = MlflowClient(mlflow_server)
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    run_id = json.loads(run.tracking_file.read_text())["mlflow"]["run_id"]
    assert [(v.version, v.run_id, v.status) for v in versions] == [(str(n), run_id, "READY") for n in (1, 2, 3)]
    assert versions[0].source == "s3://models/reg/merged" and first.version == "1"
    assert versions[1].source.endswith("/model") and second.version == "2"
    assert versions[2].source == "hf://org/reg" and third.version == "3"
    assert versions[0].tags == {"kubetune.job": "reg"}
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/config.json", "model/model.safetensors"}


def test_hub_target_checks_against_a_loopback_hub(monkeypatch, tmp_path):
    """The preflight of an hf:// target speaks the Hub's real read API (repository tree, 401, 404) to the fake Hub
    of the initializer tests; the upload (preupload/LFS/commit) has no loopback server here and is not tested."""
    import huggingface_hub.constants

    from tests.initializers.servers import FakeHub, HubRepo

    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("KT_HUB_TOKEN", "hf_pushTOKEN0123456789")
    try:
        hub.add("org/taken", HubRepo(files={".gitattributes": b"", "model.safetensors": b"x"}))
        hub.add("org/fresh", HubRepo(files={".gitattributes": b"*.safetensors filter=lfs\n", "README.md": b"# x"}))
        hub.add("org/private", HubRepo(files={"a.bin": b"x"}, token="hf_otherTOKEN"))
        token = {"env": "KT_HUB_TOKEN"}
        with pytest.raises(ConfigError, match=r"hf://org/taken is not empty \(holds 'model.safetensors'\)"):
            check_push_target(LLMConfig(output={"push_to": "hf://org/taken", "token": token}))
        check_push_target(LLMConfig(output={"push_to": "hf://org/taken", "token": token, "overwrite": True}))
        check_push_target(LLMConfig(output={"push_to": "hf://org/fresh", "token": token}))  # a new repo's files
        check_push_target(LLMConfig(output={"push_to": "hf://org/new-model", "token": token}))  # created by the push
        with pytest.raises(ConfigError, match=r"hf://org/private: the Hub refused the request"):
            check_push_target(LLMConfig(output={"push_to": "hf://org/private", "token": token}))
        assert any(r.startswith("GET /api/models/org/taken/tree/main") for r in hub.requests)
    finally:
        hub.stop()
