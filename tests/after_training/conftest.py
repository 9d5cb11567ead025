"""Fixtures of the after-training tests: a tiny model that trains in seconds, and its data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.jobs import tiny_model, write_swap_data


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer, 64-wide Llama with SmolLM2's real tokenizer (random weights)."""
    return tiny_model(smollm2_dir, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def swap_data(tmp_path_factory) -> Path:
    """Rows of the word-swap task (completion format)."""
    return write_swap_data(tmp_path_factory.mktemp("swap") / "train.jsonl", rows=16)
