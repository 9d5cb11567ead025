"""s3:// against moto's S3 server on loopback, through boto3 over HTTP."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from kubetune.errors import FetchError
from kubetune.initializers import run_initializer
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer

from .servers import ROWS, S3_REGION, run_cli, train_on_initialized_run, upload_folder


def new_bucket(client) -> str:
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def s3_opts(endpoint: str) -> dict:
    return {"endpoint_url": endpoint, "region": S3_REGION}


def test_model_and_dataset_from_s3_then_train(s3_client, s3_endpoint, smollm2_dir, tmp_path, aws_env):

    bucket = new_bucket(s3_client)
    model_files = upload_folder(s3_client, bucket, "models/smollm2", smollm2_dir)
    s3_client.put_object(
        Bucket=bucket, Key="data/train.jsonl", Body="".join(json.dumps(r) + "\n" for r in ROWS).encode()
    )
    run = tmp_path / "run"
    model = run_initializer(
        ModelInitializer(storage_uri=f"s3://{bucket}/models/smollm2", s3=s3_opts(s3_endpoint)),
        run / "model",
        tmp_path / "c",
    )
    data = run_initializer(
        DatasetInitializer(storage_uri=f"s3://{bucket}/data", s3=s3_opts(s3_endpoint)), run / "dataset", tmp_path / "c"
    )
    assert sorted(p.name for p in (run / "model").iterdir()) == sorted(model_files)
    for rel in model_files:
        assert (run / "model" / rel).read_bytes() == (smollm2_dir / rel).read_bytes()
    assert model.files == len(model_files) and data.files == 1

    train_on_initialized_run(run)
    assert (run / "output" / "adapter").is_dir()


def test_prefix_naming_one_object_fetches_that_file(s3_client, s3_endpoint, tmp_path, aws_env):
    bucket = new_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="data/one.jsonl", Body=b'{"text": "x"}\n')
    spec = DatasetInitializer(storage_uri=f"s3://{bucket}/data/one.jsonl", s3=s3_opts(s3_endpoint))
    run_initializer(spec, tmp_path / "dataset", tmp_path / "c")
    assert (tmp_path / "dataset" / "one.jsonl").read_bytes() == b'{"text": "x"}\n'


def test_credentials_from_secret_references_and_nothing_written_contains_them(s3_client, s3_endpoint, tmp_path):
    """Every file the initializer writes, and its output, is free of the planted secret."""
    secret = "PLANTED-s3-secret-" + uuid.uuid4().hex
    bucket = new_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="ds/train.jsonl", Body=b'{"text": "hello"}\n')
    run, cache = tmp_path / "run", tmp_path / "cache"
    spec = {
        "kind": "dataset",
        "storage_uri": f"s3://{bucket}/ds",
        "s3": {
            **s3_opts(s3_endpoint),
            "access_key_id": {"env": "MY_KEY_ID"},
            "secret_access_key": {"env": "MY_SECRET_KEY"},
        },
        "materialize": "copy",
    }
    env = {"KUBETUNE_INITIALIZER_SPEC": json.dumps(spec), "MY_KEY_ID": "AKIDPLANTED", "MY_SECRET_KEY": secret}
    env.update({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    ok = run_cli(["dataset", "--target", str(run / "dataset"), "--cache-dir", str(cache)], env=env)
    assert ok.returncode == 0, ok.stderr
    bad = run_cli(
        ["dataset", "--target", str(run / "d2"), "--cache-dir", str(cache), "--uri", "s3://no-such-bucket-x/p"], env=env
    )
    assert bad.returncode == 2 and "no-such-bucket-x" in bad.stderr
    written = [p for root in (run, cache) for p in root.rglob("*") if p.is_file()]
    assert len(written) >= 3  # the dataset copy, the cache entry's file and manifest
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in ok.stdout + ok.stderr + bad.stdout + bad.stderr


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://no-such-bucket-zz/prefix", "s3://no-such-bucket-zz/prefix: bucket 'no-such-bucket-zz' does not exist"),
        ("s3://{bucket}/empty", "s3://{bucket}/empty: no objects under this prefix (empty prefix?)"),
    ],
)
def test_bad_sources_fail_with_one_line_naming_the_uri(s3_client, s3_endpoint, tmp_path, aws_env, uri, message):
    bucket = new_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="other/file.txt", Body=b"x")
    proc = run_cli(
        [
            "model",
            "--uri",
            uri.format(bucket=bucket),
            "--target",
            str(tmp_path / "model"),
            "--s3-endpoint",
            s3_endpoint,
        ],
        env={"KUBETUNE_CACHE_DIR": str(tmp_path / "c")},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: " + message.format(bucket=bucket)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "model").exists()


def test_object_keys_escaping_the_target_are_rejected(s3_client, s3_endpoint, tmp_path, aws_env):
    bucket = new_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="data/ok.txt", Body=b"fine")
    s3_client.put_object(Bucket=bucket, Key="data/../../etc/evil.txt", Body=b"evil")
    spec = DatasetInitializer(storage_uri=f"s3://{bucket}/data", s3=s3_opts(s3_endpoint))
    listed = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "data/../../etc/evil.txt" in listed  # the store keeps the key verbatim
    with pytest.raises(FetchError, match=r"refusing file '../../etc/evil.txt': its path would escape"):
        run_initializer(spec, tmp_path / "run" / "dataset", tmp_path / "c")
    assert not list(Path(tmp_path).rglob("evil.txt"))
