"""The contracts between kubetune's layers, each defined once and imported everywhere.

Every layer may import this package and it imports nothing heavy (no torch, no pydantic models
of other layers at run time): :mod:`~kubetune.contracts.types` (the SDK's and backends' shared
types), :mod:`~kubetune.contracts.run_dir` (every file and folder name of a run directory and
of the local data directory), :mod:`~kubetune.contracts.progress` (the progress record the
trainer writes and every reader reads), :mod:`~kubetune.contracts.kubernetes` (API names,
labels and name limits) and :mod:`~kubetune.contracts.version`.
"""
