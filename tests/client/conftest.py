"""Fixtures for SDK tests: a TrainerClient over a real local backend in a fresh data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.backends.local import LocalBackend
from kubetune.client import TrainerClient


@pytest.fixture
def backend(tmp_path: Path):
    """A local backend whose jobs are all deleted (processes stopped) after the test."""
    local = LocalBackend(tmp_path / "home")
    yield local
    for job in local.list_jobs():
        local.delete_job(job.name)


@pytest.fixture
def client(backend: LocalBackend) -> TrainerClient:
    """The SDK client over ``backend``."""
    return TrainerClient(backend)


@pytest.fixture
def tiny_alpaca(tmp_path: Path) -> Path:
    """A small instruction dataset folder (alpaca JSON lines) with a learnable pattern."""
    folder = tmp_path / "alpaca"
    folder.mkdir()
    with (folder / "train.jsonl").open("w") as handle:
        for i in range(24):
            handle.write(json.dumps({"instruction": f"Add {i} and {i + 1}.", "output": f"The sum is {2 * i + 1}."}))
            handle.write("\n")
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer Llama with SmolLM2's real tokenizer (random weights): trains in seconds."""
    from tests.faults.jobs import tiny_model

    return tiny_model(smollm2_dir, tmp_path_factory.mktemp("tiny-model") / "model")
