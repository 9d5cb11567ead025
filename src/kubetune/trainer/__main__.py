"""Worker entry point: ``[torchrun ...] python -m kubetune.trainer --config <run>/output/config.yaml``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubetune.errors import PREEMPTED_EXIT_CODE, KubetuneError
from kubetune.spec.job import load_job_file


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run training; user errors print one line and exit 2, a preemption exits
    :data:`~kubetune.errors.PREEMPTED_EXIT_CODE` after its checkpoint."""
    parser = argparse.ArgumentParser(prog="python -m kubetune.trainer", description=__doc__)
    parser.add_argument("--config", required=True, help="job spec YAML (usually <run>/output/config.yaml)")
    parser.add_argument("--run-dir", help="run directory (default: the job spec's output_dir)")
    args = parser.parse_args(argv)
    from kubetune.trainer.preemption import Preempted, StopRequest

    stop = StopRequest()  # before the heavy imports: a SIGTERM while loading is kept, not fatal
    stop.install()
    from kubetune.trainer.run import run_training

    try:
        spec = load_job_file(args.config)
        run_dir = Path(args.run_dir or spec.output_dir or Path(args.config).resolve().parent.parent)
        result = run_training(spec, run_dir, config_file=Path(args.config), stop=stop)
    except KubetuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except Preempted:
        return PREEMPTED_EXIT_CODE
    print(f"done: {result.steps} steps; outputs in {result.output_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
