"""The environment of the processes a local job starts (supervisor, initializers, workers)."""

from __future__ import annotations

import os
from pathlib import Path

from kubetune.spec.job import JobSpec


def kubetune_import_root() -> str:
    """The folder that holds the ``kubetune`` package, so children import this same kubetune."""
    return str(Path(__file__).resolve().parents[3])


def with_kubetune_importable(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this kubetune first on ``PYTHONPATH``."""
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([kubetune_import_root(), *filter(None, [env.get("PYTHONPATH")])])
    return env


def worker_env(spec: JobSpec) -> dict[str, str]:
    """The environment of initializer and worker processes."""
    env = with_kubetune_importable(dict(os.environ))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if spec.resources.cpu is not None:
        env["OMP_NUM_THREADS"] = str(max(1, int(spec.resources.cpu // spec.procs_per_node)))
    env.update(spec.env)
    return env
