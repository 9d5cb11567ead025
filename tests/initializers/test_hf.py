"""hf:// through the real huggingface_hub download path against a Hub-layout HTTP server (HF_ENDPOINT)."""

from __future__ import annotations

import json

import pytest

from kubetune.errors import ConfigError, FetchError
from kubetune.initializers import run_initializer
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer

from .servers import HubRepo, run_cli

WEIGHTS = bytes(range(256)) * 4096  # 1 MiB "safetensors" weights, served as an LFS file


def model_repo(**extra) -> HubRepo:
    return HubRepo(
        files={
            "config.json": b'{"model_type": "llama"}',
            "model.safetensors": WEIGHTS,
            "pytorch_model.bin": b"duplicate weights" * 100,
            "tokenizer/tokenizer.json": b'{"version": "1.0"}',
        },
        lfs={"model.safetensors", "pytorch_model.bin"},
        **extra,
    )


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_model_snapshot_skips_duplicate_weights_and_verifies_lfs_sha256(fake_hub, tmp_path):
    fake_hub.add("org/tiny", model_repo())
    result = run_initializer(ModelInitializer(storage_uri="hf://org/tiny"), tmp_path / "run" / "model", tmp_path / "c")
    target = tmp_path / "run" / "model"
    assert files_under(target) == ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert not result.cache_hit and result.downloaded_bytes == result.total_bytes
    assert any("/resolve/" in r for r in fake_hub.requests)  # files came through hf_hub_download


def test_ignore_patterns_replace_the_default_and_allow_patterns_select(fake_hub, tmp_path):
    fake_hub.add("org/tiny", model_repo())
    spec = ModelInitializer(storage_uri="hf://org/tiny", ignore_patterns=["*.safetensors"], allow_patterns=["*.bin"])
    run_initializer(spec, tmp_path / "model", tmp_path / "c")
    assert files_under(tmp_path / "model") == ["pytorch_model.bin"]


def test_revision_is_pinned_to_the_commit_and_part_of_the_cache_key(fake_hub, tmp_path):
    repo = fake_hub.add("org/tiny", model_repo(branches=("main", "v1")))
    first = run_initializer(ModelInitializer(storage_uri="hf://org/tiny@v1"), tmp_path / "a", tmp_path / "c")
    second = run_initializer(
        ModelInitializer(storage_uri="hf://org/tiny", revision=repo.commit), tmp_path / "b", tmp_path / "c"
    )
    manifest = json.loads((first.entry.parent / "manifest.json").read_text())
    assert manifest["version"] == repo.commit
    assert not second.cache_hit  # a different revision string is a different key, same content


def test_dataset_repo_uses_the_dataset_api(fake_hub, tmp_path):
    fake_hub.add("org/data", HubRepo(files={"train.jsonl": b'{"text": "hi"}\n'}), repo_type="dataset")
    run_initializer(DatasetInitializer(storage_uri="hf://org/data"), tmp_path / "dataset", tmp_path / "c")
    assert (tmp_path / "dataset" / "train.jsonl").read_bytes() == b'{"text": "hi"}\n'
    assert any(r.startswith("GET /api/datasets/org/data/") for r in fake_hub.requests)


def test_private_repo_with_token_from_env_reference(fake_hub, tmp_path, monkeypatch):
    fake_hub.add("org/private", model_repo(token="hf_planted_token_123"))
    monkeypatch.setenv("MY_HF_TOKEN", "hf_planted_token_123")
    spec = ModelInitializer(storage_uri="hf://org/private", token={"env": "MY_HF_TOKEN"})
    run_initializer(spec, tmp_path / "model", tmp_path / "c")
    assert (tmp_path / "model" / "config.json").is_file()


def test_token_from_file_reference_via_cli(fake_hub, tmp_path):
    fake_hub.add("org/private", model_repo(token="hf_file_token_456"))
    token_file = tmp_path / "token"
    token_file.write_text("hf_file_token_456\n")
    proc = run_cli(
        ["model", "--uri", "hf://org/private", "--target", str(tmp_path / "model"), "--token-file", str(token_file)],
        env={"HF_ENDPOINT": fake_hub.endpoint, "KUBETUNE_CACHE_DIR": str(tmp_path / "c")},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"] == 3
    assert "hf_file_token_456" not in proc.stdout + proc.stderr


def test_wrong_token_is_one_clear_error_without_the_token(fake_hub, tmp_path, monkeypatch):
    fake_hub.add("org/private", model_repo(token="hf_right_token"))
    monkeypatch.setenv("MY_HF_TOKEN", "hf_WRONG_planted_secret")
    spec = ModelInitializer(storage_uri="hf://org/private", token={"env": "MY_HF_TOKEN"})
    with pytest.raises(FetchError) as err:
        run_initializer(spec, tmp_path / "model", tmp_path / "c")
    message = str(err.value)
    assert message.startswith("hf://org/private: the Hub refused the token from environment variable MY_HF_TOKEN")
    assert "hf_WRONG_planted_secret" not in message
    assert not (tmp_path / "c" / "entries").exists() or not list((tmp_path / "c" / "entries").iterdir())


def test_missing_repo_and_revision_are_clear_errors(fake_hub, tmp_path):
    fake_hub.add("org/tiny", model_repo())
    with pytest.raises(FetchError, match=r"^hf://org/nope: model repository 'org/nope' not found"):
        run_initializer(ModelInitializer(storage_uri="hf://org/nope"), tmp_path / "m", tmp_path / "c")
    with pytest.raises(FetchError, match=r"^hf://org/tiny@v9: revision 'v9' not found"):
        run_initializer(ModelInitializer(storage_uri="hf://org/tiny@v9"), tmp_path / "m", tmp_path / "c")


def test_missing_token_variable_fails_before_any_request(fake_hub, tmp_path, monkeypatch):
    monkeypatch.delenv("UNSET_TOKEN_VAR", raising=False)
    spec = ModelInitializer(storage_uri="hf://org/tiny", token={"env": "UNSET_TOKEN_VAR"})
    with pytest.raises(ConfigError, match="UNSET_TOKEN_VAR is not set"):
        run_initializer(spec, tmp_path / "m", tmp_path / "c")
    assert fake_hub.requests == []


def test_served_bytes_not_matching_the_published_sha256_are_rejected(fake_hub, tmp_path):
    fake_hub.add("org/tiny", model_repo(corrupt={"model.safetensors"}))
    with pytest.raises(FetchError, match=r"model.safetensors: downloaded file failed verification: sha256"):
        run_initializer(ModelInitializer(storage_uri="hf://org/tiny"), tmp_path / "m", tmp_path / "c")
    assert not list((tmp_path / "c" / "entries").iterdir())
    assert not list((tmp_path / "c" / "staging").iterdir())
    assert not list((tmp_path / "c" / "entries").iterdir())
    assert not (tmp_path / "m").exists()
