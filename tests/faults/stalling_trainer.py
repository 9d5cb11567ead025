"""``python -m kubetune.trainer`` whose rank 0 stops for good in the middle of writing one checkpoint.

Run by torchrun in place of the trainer module (see :func:`tests.faults.jobs.run_torchrun`). Rank 0
writes checkpoint ``$STALL_STEP``'s files into its temporary folder as usual; at the first ``os.fsync``
on one of them (before ``meta.json`` exists and before the folder is renamed into place) it creates the
file ``$STALL_MARKER`` and sleeps until it is killed. A kill sent once the marker exists therefore lands
inside the write window every time, instead of racing a poll against the writer.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

STALL_STEP = "KUBETUNE_TEST_STALL_STEP"
STALL_MARKER = "KUBETUNE_TEST_STALL_MARKER"


def stall_inside_checkpoint_write(step: int, marker: Path) -> None:
    """Make this process's first fsync of a file in ``.step-<step>.tmp/`` signal ``marker`` and never return."""
    real_fsync = os.fsync

    def fsync(fd) -> None:
        path = os.readlink(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}")
        if f"/.step-{step}.tmp/" in path:
            marker.write_text(f"pid {os.getpid()} stalled before the fsync of {path}\n", encoding="utf-8")
            while True:
                time.sleep(3600)
        real_fsync(fd)

    os.fsync = fsync


if __name__ == "__main__":
    stall_inside_checkpoint_write(int(os.environ[STALL_STEP]), Path(os.environ[STALL_MARKER]))
    from kubetune.trainer.__main__ import main

    sys.exit(main())
