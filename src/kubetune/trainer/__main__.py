"""Worker entry point: ``[torchrun ...] python -m kubetune.trainer --config <run>/output/config.yaml``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from kubetune.errors import PREEMPTED_EXIT_CODE, KubetuneError
from kubetune.spec.job import load_job_file


def quiet_libraries() -> None:
    """Keep the job log readable: no progress bars redrawn with carriage returns when the output
    is a file, library warnings as ``WARNING`` log lines from rank 0 only (each once per process)."""
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")  # every tqdm bar: weights loading, GGUF conversion, saving
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kubetune").setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each distinct warning once per place, not per call
    if int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger().setLevel(logging.ERROR)  # the other ranks would repeat rank 0's warnings
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


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
        # Exit at once, without interpreter teardown: the checkpoint is complete and fsynced, and
        # destructors of the distributed runtime racing a peer's exit could abort with SIGABRT.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(PREEMPTED_EXIT_CODE)
    print(f"done: {result.steps} steps; outputs in {result.output_dir}", flush=True)
    return 0


if __name__ == "__main__":
    quiet_libraries()  # the worker process only: an in-process main() leaves the caller's logging alone
    sys.exit(main())
