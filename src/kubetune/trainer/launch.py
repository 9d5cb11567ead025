"""``python -m kubetune.trainer.launch [torchrun options] -m kubetune.trainer ...``: torchrun, preemption-aware.

It takes torchrun's options (and its ``PET_*`` environment variables) and runs torchrun's agent
in this process, with two differences that let a preempted job end as "preempted, resumable":

- SIGTERM and SIGUSR1 to the launcher are forwarded to the workers, which checkpoint and exit
  with :data:`~kubetune.errors.PREEMPTED_EXIT_CODE`, instead of making the agent kill them.
  On Kubernetes the launcher is the container's first process: the one the kubelet signals.
- When the first worker to fail exited with that status, the launcher exits with it too
  (torchrun itself exits 1 whenever a worker fails).

Every other outcome is torchrun's: exit 0 when all workers succeed, 1 with its failure report
otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from typing import TYPE_CHECKING

import psutil

from kubetune.errors import PREEMPTED_EXIT_CODE
from kubetune.trainer.preemption import STOP_SIGNALS

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

# torchrun's agent turns these into "kill the workers"; SIGTERM and SIGUSR1 are forwarded instead.
AGENT_SIGNALS = "SIGINT,SIGHUP,SIGQUIT"


def _forward(signum: int, _frame) -> None:
    """Pass a stop signal on to the workers; with none started yet there is nothing to save: exit."""
    workers = psutil.Process().children()
    if not workers:
        raise SystemExit(PREEMPTED_EXIT_CODE)
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.send_signal(signum)


def main(argv: list[str] | None = None) -> int:
    """Run torchrun's agent; returns 0, :data:`PREEMPTED_EXIT_CODE`, or 1 (with torchrun's report)."""
    # torchrun's --signals-to-handle (read from PET_*; older torch reads TORCHELASTIC_* directly).
    os.environ["PET_SIGNALS_TO_HANDLE"] = os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = AGENT_SIGNALS
    for sig in STOP_SIGNALS:
        signal.signal(sig, _forward)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        status = exit_status(err)
        if status == PREEMPTED_EXIT_CODE:
            print(
                f"launch: workers stopped after a preemption checkpoint; exit status {status}: resumable",
                file=sys.stderr,
                flush=True,
            )
        else:
            traceback.print_exc()
        return status
    return 0


def exit_status(err: ChildFailedError) -> int:
    """:data:`PREEMPTED_EXIT_CODE` when any worker exited with it, else 1.

    A worker exits with that status only after every rank agreed to stop and the preemption
    checkpoint is complete, so the job is resumable whatever the other ranks did afterwards: a
    peer that was still tearing down (and failed on the closed connection, or was killed by the
    agent) may even be recorded as the *first* failure, which is why the first failure alone
    does not decide.
    """
    preempted = any(failure.exitcode == PREEMPTED_EXIT_CODE for failure in err.failures.values())
    return PREEMPTED_EXIT_CODE if preempted else 1


if __name__ == "__main__":
    sys.exit(main())
