"""Ship a user's function by value and run it on a worker: ``python -m kubetune.backends.function_worker``.

Why cloudpickle and not the function's source (``inspect.getsource``, as Kubeflow does): source
only works for a self-contained function whose imports live inside its body, and it drops
closures, default arguments and ``func_args`` that are not literals. cloudpickle carries the
function with what it closes over and arbitrary keyword arguments. Functions of the caller's
own modules (a notebook, a script, a test file) are pickled by value too, so the workers need
only kubetune and the libraries the function imports. The price: the worker must run the same
Python minor version, which the spec records and the worker checks.

Each worker writes its return value to ``<run>/output/returns/rank-<RANK>.pkl`` and prints a
line saying so, so the node's log shows it too.
"""

from __future__ import annotations

import argparse
import base64
import os
import pickle
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle

from kubetune.contracts.run_dir import RunDir
from kubetune.spec.job import FunctionSpec, load_job_file


def pack_function(func: Callable[..., Any], kwargs: dict[str, Any]) -> FunctionSpec:
    """Serialize ``func`` and its keyword arguments into a :class:`FunctionSpec`.

    Raises:
        TypeError: ``func`` is not callable. pickle.PicklingError: it closes over something unpicklable.
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    by_value = module is not None and _is_user_module(module)
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps((func, kwargs), protocol=pickle.DEFAULT_PROTOCOL)
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)
    name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    return FunctionSpec(name=name, payload=base64.b64encode(payload).decode("ascii"))


def _is_user_module(module: ModuleType) -> bool:
    """True for the caller's own code (scripts, notebooks' helpers, test files), which workers may not
    be able to import; False for ``__main__`` (always pickled by value), installed packages and the stdlib."""
    file = getattr(module, "__file__", None)
    if module.__name__ == "__main__" or module.__name__.partition(".")[0] == "kubetune" or file is None:
        return False
    installed = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    root = str(Path(file).resolve())
    return not any(root.startswith(str(Path(prefix).resolve())) for prefix in installed)


def return_values(run_dir: Path) -> dict[int, Any]:
    """The return value of every rank that finished, by global rank."""
    return {rank: pickle.loads(path.read_bytes()) for rank, path in RunDir(run_dir).return_files().items()}


def main(argv: list[str] | None = None) -> int:
    """Load the job spec, call the function with its arguments, keep the return value."""
    parser = argparse.ArgumentParser(prog="python -m kubetune.backends.function_worker", description=__doc__)
    parser.add_argument("--config", required=True, help="job spec YAML (<run>/output/config.yaml)")
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args(argv)
    spec = load_job_file(args.config).function
    if spec is None:
        print(f"error: {args.config} has no function", file=sys.stderr)
        return 2
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if spec.python_version != here:
        print(
            f"error: the function was pickled with Python {spec.python_version}; this worker runs {here}",
            file=sys.stderr,
        )
        return 2
    func, kwargs = cloudpickle.loads(base64.b64decode(spec.payload))
    rank = int(os.environ.get("RANK", "0"))
    node = os.environ.get("GROUP_RANK", "0")
    result = func(**(kwargs or {}))
    target = RunDir(Path(args.run_dir)).return_file(rank)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(cloudpickle.dumps(result))
    os.replace(tmp, target)
    print(f"[node {node} rank {rank}] {spec.name} returned {result!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
