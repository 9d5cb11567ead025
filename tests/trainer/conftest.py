"""Fixtures for trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_jobs import swap_pairs, swap_rows, write_jsonl


@pytest.fixture(scope="session")
def swap_data(tmp_path_factory) -> Path:
    """16 training rows of the word-swap task."""
    return write_jsonl(tmp_path_factory.mktemp("swap") / "train.jsonl", swap_rows(swap_pairs(0, 16)))
