"""Bad input through the other user surfaces: the SDK, `python -m kubetune.trainer` and
`python -m kubetune.initializers` as real processes, unsafe S3 object keys, and the row-length policy."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import yaml

from kubetune.backends.local import LocalBackend
from kubetune.client import BuiltinTrainer, Initializer, Name, TrainerClient
from kubetune.errors import ConfigError
from tests.bad_inputs.test_corpus import GOOD_ROWS, base_job, jsonl

S3_REGION = "us-east-1"


@pytest.mark.parametrize(
    ("config", "initializer", "message"),
    [
        (
            {"training": {"learning_rate": 0}},
            None,
            "invalid trainer config: trainer.training.learning_rate: Input should be greater than 0 (got 0)",
        ),
        (
            {"lora": {"r": 0}},
            None,
            "invalid trainer config: trainer.lora.r: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"dataset": {"format": "chat"}},
            None,
            "invalid trainer config: trainer.dataset.format: Input should be 'alpaca', 'messages', 'completion', "
            "'text', 'classification', 'tagging', 'preference' or 'kto' (got 'chat')",
        ),
        (
            {},
            Initializer(model="ftp://host/model"),
            "initializer.model.storage_uri: ftp://host/model: unknown storage scheme 'ftp' (known: file, hf, pkg, s3; "
            "custom providers register with register_provider() or the 'kubetune.providers' entry point group)",
        ),
    ],
    ids=["lr-zero", "rank-zero", "unknown-format", "unknown-scheme"],
)
def test_sdk_train_refuses_before_anything_is_stored(tmp_path, config, initializer, message):
    backend = LocalBackend(tmp_path / "home")
    full = {"model": {"path": str(tmp_path)}, "dataset": {"path": str(tmp_path)}, **config}
    with pytest.raises(ConfigError) as caught:  # the config as a plain dict, as from a notebook
        TrainerClient(backend).train(
            trainer=BuiltinTrainer(config=full), initializer=initializer, options=[Name("bad")]
        )
    assert str(caught.value) == message
    assert backend.list_jobs() == []
    assert not (backend.home / "runs").exists()


def test_trainer_process_refuses_bad_data_with_one_line_and_exit_2(tmp_path, tiny_model_dir):
    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl(GOOD_ROWS[:1]) + b"{oops\n")
    run = tmp_path / "run"
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(base_job(tiny_model_dir, data, run)), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.trainer", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {data}:2: malformed JSON line: Expecting property name enclosed in double quotes"
    )
    assert not run.exists()


def test_rows_over_max_seq_len_are_truncated_or_dropped_and_counted(tmp_path, tiny_model_dir, capsys):
    """The policy: a row longer than max_seq_len is cut to it; a row whose response is then gone entirely
    (no target token left) is dropped and counted; only when every row is dropped is it an error."""
    from kubetune.trainer.__main__ import main

    long_prompt = {"instruction": "word " * 200, "output": "short answer"}
    long_answer = {"instruction": "Say it.", "output": "word " * 200}
    data = tmp_path / "data.jsonl"
    data.write_bytes(jsonl([*GOOD_ROWS, long_prompt, long_answer]))
    job = base_job(tiny_model_dir, data, tmp_path / "run")
    job["trainer"]["training"].update(max_steps=1, max_seq_len=64)
    job["trainer"]["output"] = {"save_merged": False, "save_adapter": False}
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job), encoding="utf-8")
    assert main(["--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "dataset: 5 train / 0 eval examples from 6 rows (2 truncated to 64 tokens, 1 without targets dropped)" in out


@pytest.fixture
def s3_bucket(s3_endpoint):
    import boto3

    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=S3_REGION, aws_access_key_id="k", aws_secret_access_key="s"
    )
    name = f"bucket-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    return client, name


@pytest.mark.parametrize(
    ("key", "shown"),
    [("data/../../escape.jsonl", "../../escape.jsonl"), ("data//etc/passwd", "/etc/passwd")],
    ids=["dot-dot", "absolute"],
)
def test_initializer_refuses_object_keys_escaping_the_target(tmp_path, s3_endpoint, s3_bucket, key, shown):
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="data/ok.jsonl", Body=jsonl(GOOD_ROWS))
    client.put_object(Bucket=bucket, Key=key, Body=b"{}\n")
    target, cache = tmp_path / "dataset", tmp_path / "cache"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.environ["PYTHONPATH"],
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": S3_REGION,
    }
    uri = f"s3://{bucket}/data"
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.initializers", "dataset", "--uri", uri, "--target", str(target),
         "--cache-dir", str(cache), "--s3-endpoint", s3_endpoint],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"error: {uri}: refusing file {shown!r}: its path would escape the target folder"
    assert not target.exists()
    assert not (cache / "entries").exists() or not any((cache / "entries").iterdir())
    assert not (tmp_path / "escape.jsonl").exists()


def test_initializer_cli_refuses_an_unknown_scheme(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.initializers", "model", "--uri", "gopher://host/m", "--target",
         str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: gopher://host/m: unknown storage scheme 'gopher'")
    assert not (tmp_path / "m").exists()
    assert result.stdout == ""  # the JSON summary line is printed on success only
