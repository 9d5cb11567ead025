"""``python -m kubetune.exporter --config <run>/output/config.yaml --run-dir <run>``: push, then register.

Exit status 0 when everything asked for is done; 2 with one line on stderr for a problem a user
can fix (a refused target, missing credentials); a rerun resumes an interrupted push.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import KubetuneError
from kubetune.initializers.secrets import ScrubbingFilter, scrub
from kubetune.spec.job import JobSpec, load_job_file


def export(spec: JobSpec, layout: RunDir, say=print) -> None:
    """Push the results to ``output.push_to`` and register ``output.register_model``, as the spec asks."""
    output = spec.trainer.output
    if output.push_to is not None:
        if output.push_to.startswith("s3://"):
            from kubetune.exporter.s3_push import push_to_s3

            push_to_s3(layout, output, say=say)
        else:
            from kubetune.exporter.hf_push import push_to_hub

            push_to_hub(layout, output, say=say)
    if output.register_model is not None:
        from kubetune.exporter.register import register_model

        register_model(layout, spec, say=say)


def main(argv: list[str] | None = None) -> int:
    """Run the exporter step."""
    parser = argparse.ArgumentParser(prog="python -m kubetune.exporter", description=__doc__)
    parser.add_argument("--config", required=True, help="The job's config.yaml.")
    parser.add_argument("--run-dir", required=True, help="The run directory.")
    args = parser.parse_args(argv)
    logging.getLogger().addFilter(ScrubbingFilter())
    try:
        export(load_job_file(args.config), RunDir(Path(args.run_dir)), say=lambda m: print(m, flush=True))
    except KubetuneError as err:
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
