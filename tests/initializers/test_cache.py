"""The content-addressed cache: hits, concurrent same-key runs, corruption, interruption, disk space."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from kubetune.errors import FetchError
from kubetune.initializers import run as run_module
from kubetune.initializers import run_initializer
from kubetune.initializers.progress import TransferProgress
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer

from .servers import S3_REGION

BIG = os.urandom(6 << 20)  # 6 MiB: several 1 MiB chunks


@pytest.fixture
def bucket(s3_client, aws_env):
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    s3_client.put_object(Bucket=name, Key="m/config.json", Body=b'{"a": 1}')
    s3_client.put_object(Bucket=name, Key="m/weights.safetensors", Body=BIG)
    return name


def spec_for(bucket: str, endpoint: str, **extra) -> ModelInitializer:
    return ModelInitializer(storage_uri=f"s3://{bucket}/m", s3={"endpoint_url": endpoint, "region": S3_REGION}, **extra)


def test_second_run_is_a_logged_cache_hit(bucket, s3_endpoint, tmp_path, caplog):
    first = run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "run1" / "model", tmp_path / "c")
    caplog.set_level("INFO", logger="kubetune.initializers")
    second = run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "run2" / "model", tmp_path / "c")
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert (first.downloaded_bytes, second.downloaded_bytes) == (len(BIG) + 8, 0)
    assert first.key == second.key
    assert "cache hit" in caplog.text
    assert (tmp_path / "run2" / "model").resolve() == second.entry
    assert (tmp_path / "run2" / "model" / "weights.safetensors").read_bytes() == BIG


def test_changed_source_object_is_a_new_key(bucket, s3_endpoint, s3_client, tmp_path):
    first = run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "a", tmp_path / "c")
    s3_client.put_object(Bucket=bucket, Key="m/config.json", Body=b'{"a": 2}')
    second = run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "b", tmp_path / "c")
    assert first.key != second.key and not second.cache_hit
    assert (tmp_path / "b" / "config.json").read_bytes() == b'{"a": 2}'


def test_patterns_are_part_of_the_key(bucket, s3_endpoint, tmp_path):
    full = run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "a", tmp_path / "c")
    only_config = run_initializer(
        spec_for(bucket, s3_endpoint, allow_patterns=["*.json"]), tmp_path / "b", tmp_path / "c"
    )
    assert full.key != only_config.key
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["config.json"]


def test_corrupted_cache_file_is_detected_and_fetched_again(bucket, s3_endpoint, tmp_path, caplog):
    first = run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "a", tmp_path / "c")
    weights = first.entry / "weights.safetensors"
    weights.chmod(0o644)
    with open(weights, "r+b") as handle:  # same size, one flipped byte
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    caplog.set_level("INFO", logger="kubetune.initializers")
    second = run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "b", tmp_path / "c")
    assert "is corrupted (weights.safetensors does not match its sha256)" in caplog.text
    assert not second.cache_hit and second.downloaded_bytes == len(BIG) + 8
    assert (tmp_path / "b" / "weights.safetensors").read_bytes() == BIG


def test_interrupted_download_resumes_from_the_partial_file(bucket, s3_endpoint, tmp_path, monkeypatch, caplog):
    real_advance = TransferProgress.advance

    def drop_connection_after_2mib(self, count):
        real_advance(self, count)
        if self.done_bytes >= 2 << 20:
            raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(TransferProgress, "advance", drop_connection_after_2mib)
    with pytest.raises(FetchError, match=r"connection lost while downloading weights\.safetensors"):
        run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "a", tmp_path / "c")
    assert not list((tmp_path / "c" / "entries").iterdir())  # no partial entry is published
    assert not (tmp_path / "a").exists()
    # Within the run, each retry resumed from the partial file; what it got is kept for the next run.
    (partial,) = (tmp_path / "c" / "staging").rglob("weights.safetensors*")
    kept = partial.stat().st_size
    assert 2 << 20 <= kept < len(BIG)
    monkeypatch.setattr(TransferProgress, "advance", real_advance)
    caplog.set_level("INFO", logger="kubetune.initializers")
    result = run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "a", tmp_path / "c")
    assert f"resuming weights.safetensors at {kept / (1 << 20):.1f} MiB" in caplog.text
    assert result.downloaded_bytes == len(BIG) - kept
    assert (tmp_path / "a" / "weights.safetensors").read_bytes() == BIG
    assert not list((tmp_path / "c" / "staging").iterdir())


CONCURRENT = """
import json, sys
from kubetune.initializers import run_initializer
from kubetune.initializers.progress import TransferProgress
from kubetune.spec.initializer import ModelInitializer
real = TransferProgress.advance
def slow(self, n):  # stretch the download so the two runs overlap
    import time; time.sleep(0.1); real(self, n)
TransferProgress.advance = slow
import logging; logging.basicConfig(level=logging.INFO)
spec = ModelInitializer.model_validate_json(sys.argv[1])
r = run_initializer(spec, sys.argv[2], sys.argv[3])
print(json.dumps({"hit": r.cache_hit, "downloaded": r.downloaded_bytes}))
"""


def test_concurrent_runs_for_the_same_key_download_once(bucket, s3_endpoint, tmp_path):
    spec = spec_for(bucket, s3_endpoint).model_dump_json()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, spec, str(tmp_path / f"run{i}" / "model"), str(tmp_path / "c")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    results = sorted((json.loads(out) for out, _ in outputs), key=lambda r: r["hit"])
    assert results == [{"hit": False, "downloaded": len(BIG) + 8}, {"hit": True, "downloaded": 0}]
    assert any("waiting for it" in err for _, err in outputs)
    for i in range(2):
        assert (tmp_path / f"run{i}" / "model" / "weights.safetensors").read_bytes() == BIG


def test_not_enough_free_disk_fails_before_downloading(bucket, s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "DISK_RESERVE_BYTES", 1 << 60)
    with pytest.raises(FetchError, match=r"needs 6.0 MiB in the cache at .* but only .* is free"):
        run_initializer(spec_for(bucket, s3_endpoint), tmp_path / "a", tmp_path / "c")
    assert not list((tmp_path / "c" / "staging").iterdir())


def test_copy_materialization_is_independent_of_the_cache(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.jsonl").write_text('{"text": "a"}\n')
    spec = DatasetInitializer(storage_uri=f"file://{source}", materialize="copy")
    result = run_initializer(spec, tmp_path / "run" / "dataset", tmp_path / "c")
    target = tmp_path / "run" / "dataset"
    assert not target.is_symlink() and (target / "train.jsonl").read_text() == '{"text": "a"}\n'
    again = run_initializer(spec, target, tmp_path / "c")  # re-running over its own copy is fine
    assert again.cache_hit and result.key == again.key


def test_foreign_non_empty_target_is_not_overwritten(tmp_path):
    source = tmp_path / "src.txt"
    source.write_text("x")
    target = tmp_path / "model"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(FetchError, match="exists and is not empty; refusing to overwrite it"):
        run_initializer(ModelInitializer(storage_uri=str(source)), target, tmp_path / "c")
    assert (target / "mine.txt").read_text() == "keep me"
