"""The launcher's exit status: a job whose workers took the preemption checkpoint is resumable."""

from __future__ import annotations

import time

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from kubetune.errors import PREEMPTED_EXIT_CODE
from kubetune.trainer.launch import exit_status


def failure(rank: int, exitcode: int, at: float) -> ProcessFailure:
    """A worker that exited with ``exitcode`` at ``at`` (no error file)."""
    failed = ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=exitcode, error_file="<N/A>")
    failed.timestamp = int(at)
    return failed


@pytest.mark.parametrize(
    ("codes", "want"),
    [
        ((PREEMPTED_EXIT_CODE, PREEMPTED_EXIT_CODE), PREEMPTED_EXIT_CODE),
        # Rank 0 failed while tearing down after the checkpoint and is recorded first: still resumable.
        ((1, PREEMPTED_EXIT_CODE), PREEMPTED_EXIT_CODE),
        ((-9, PREEMPTED_EXIT_CODE), PREEMPTED_EXIT_CODE),
        ((1, 1), 1),
        ((1, -9), 1),
    ],
)
def test_any_worker_that_exited_preempted_makes_the_job_resumable(codes, want):
    now = time.time()
    failures = {rank: failure(rank, code, now + rank) for rank, code in enumerate(codes)}
    err = ChildFailedError("kubetune.trainer", failures)
    assert err.get_first_failure()[0] == 0  # the earliest failure is rank 0's
    assert exit_status(err) == want
