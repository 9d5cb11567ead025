"""Run several job specs one after another in one (torchrun) launch: ``python run_jobs.py a.yaml b.yaml ...``.

The process group is joined once for all jobs (the trainer uses a group its caller joined and
leaves it open); one launch saves a torchrun start-up per job in the multi-process tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

from kubetune.spec.job import load_job_file
from kubetune.trainer.distributed import init_distributed
from kubetune.trainer.run import run_training

if __name__ == "__main__":
    init_distributed()
    try:
        for config in sys.argv[1:]:
            spec = load_job_file(config)
            run_training(spec, Path(spec.output_dir))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
