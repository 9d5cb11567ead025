"""Fixtures for SDK tests: a TrainerClient over a real local backend in a fresh data directory."""

from __future__ import annotations

import json
import time
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


def wait_for_files(paths: list[Path], timeout: float = 120.0) -> None:
    """Block until every path exists (workers signal readiness by writing files)."""
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not written in {timeout}s: {[str(p) for p in paths if not p.exists()]}")
        time.sleep(0.2)
