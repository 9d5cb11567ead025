"""Optional TensorBoard event files (``output/tensorboard/``) mirroring ``metrics.jsonl``.

Active only when the ``tensorboard`` package is installed (``pip install kubetune[tensorboard]``);
the supervisor feeds new metric lines as training goes, so TensorBoard shows a live run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from kubetune.backends.local.metrics_file import complete_records
from kubetune.contracts.progress import OBJECTIVE_KEY

_SKIPPED = {"step", "total_steps"}


def tensorboard_available() -> bool:
    """True when TensorBoard event files can be written."""
    return importlib.util.find_spec("tensorboard") is not None


class MetricsToTensorBoard:
    """Appends each new ``metrics.jsonl`` record to TensorBoard scalars; a no-op without tensorboard."""

    def __init__(self, metrics_file: Path, log_dir: Path):
        self.metrics = metrics_file
        self.log_dir = log_dir
        self.enabled = tensorboard_available()
        self.offset = 0
        self.inode: int | None = None
        self.last_step = 0
        self.writer = None

    def export_new(self) -> int:
        """Write the records logged since the last call; returns how many."""
        if not self.enabled:
            return 0
        try:
            inode = self.metrics.stat().st_ino
        except FileNotFoundError:
            return 0
        if inode != self.inode:
            # The trainer replaced the file (a checkpoint annotated its last record, or a resume dropped
            # the steps after its checkpoint): read it again from the start, skipping steps already written.
            self.inode, self.offset = inode, 0
        records, self.offset = complete_records(self.metrics, self.offset)
        records = [record for record in records if int(record["step"]) > self.last_step]
        if records:
            self.last_step = int(records[-1]["step"])
        if records and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir))
        for record in records:
            values = {**record, **{f"{OBJECTIVE_KEY}/{k}": v for k, v in (record.get(OBJECTIVE_KEY) or {}).items()}}
            for key, value in values.items():
                if key not in _SKIPPED and isinstance(value, int | float):
                    self.writer.add_scalar(f"train/{key}", value, global_step=int(record["step"]))
        if records:
            self.writer.flush()
        return len(records)

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
