"""Fixtures for trainer tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from synthetic_jobs import swap_pairs, swap_rows, write_jsonl

# One intra-op thread per process (torchrun workers inherit it): on a shared 2-core runner,
# spinning OpenMP threads of concurrent processes slow small models down by 10x or more.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def swap_data(tmp_path_factory) -> Path:
    """16 training rows of the word-swap task."""
    return write_jsonl(tmp_path_factory.mktemp("swap") / "train.jsonl", swap_rows(swap_pairs(0, 16)))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer Llama with random weights (untied LM head) and SmolLM2's tokenizer: fast multi-process runs."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
