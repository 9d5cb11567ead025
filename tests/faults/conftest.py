"""Fixtures for the fault suite: a tiny real model, a dataset, and the uninterrupted reference run."""

from __future__ import annotations

import os

import pytest
import torch

from kubetune.backends.local import LocalBackend
from kubetune.client import TrainerClient
from tests.faults.jobs import TINY_JOB, run_torchrun, tiny_model, weights, write_swap_data

# One intra-op thread per process: on a 2-core runner concurrent OpenMP threads thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir):
    """A 2-layer, 64-wide Llama with SmolLM2's real tokenizer and config family (random weights, seed 0)."""
    return tiny_model(smollm2_dir, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def swap_data(tmp_path_factory):
    """64 rows of the word-swap task (completion format)."""
    return write_swap_data(tmp_path_factory.mktemp("swap") / "train.jsonl")


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, tiny_model_dir, swap_data):
    """The run directory of the fault jobs' config trained without interruption (torchrun, 2 gloo procs)."""
    run = tmp_path_factory.mktemp("reference")
    proc = run_torchrun(TINY_JOB.spec(tiny_model_dir, swap_data, run), run)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    return run


@pytest.fixture(scope="session")
def reference_weights(reference_run):
    """Final weights of the uninterrupted reference run."""
    return weights(reference_run)


@pytest.fixture
def client(tmp_path):
    """The SDK over a local backend in a fresh data directory; its jobs are deleted after the test."""
    backend = LocalBackend(tmp_path / "home")
    yield TrainerClient(backend)
    for job in backend.list_jobs():
        backend.delete_job(job.name)
