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
