"""Checks of a builtin-trainer job that need no torch and no model load, run before launch.

The local backend calls :func:`preflight` at ``train()`` time, so a missing model, a missing
dataset file or a dataset without the format's columns fails at once with one line naming
the field or file, instead of after workers have started. The trainer repeats the checks (it
reads the whole dataset; this reads its first rows).
"""

from __future__ import annotations

from pathlib import Path

from kubetune.errors import KubetuneError
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.data.formats import map_columns
from kubetune.trainer.data.readers import read_rows
from kubetune.trainer.model_files import pretrained_location, resolve_local

#: How many rows of the dataset the check reads.
SAMPLE_ROWS = 1000


def preflight(config: LLMConfig, model_fetched: bool, dataset_fetched: bool) -> None:
    """Check the model and dataset a job names, unless an initializer will fetch them.

    Args:
        config: the job's LLM Trainer config.
        model_fetched: a model initializer fills ``<run>/model`` (nothing local to check yet).
        dataset_fetched: a dataset initializer fills ``<run>/dataset``.

    Raises:
        KubetuneError: the model or dataset path is missing or unusable, or the dataset's first
            rows lack a column the format needs (the message names the field and file).
    """
    if config.model.path is not None and not model_fetched:
        _named("trainer.model.path", lambda: pretrained_location(_local(config.model.path, "trainer.model.path")))
    if config.dataset.path is not None and not dataset_fetched:
        path = _local(config.dataset.path, "trainer.dataset.path")
        split = config.dataset.parsed_split()
        rows = _named(
            "trainer.dataset.path",
            lambda: read_rows(path, limit=SAMPLE_ROWS, split=None if split is None else split.name),
        )
        map_columns(rows, config.dataset, source=str(path))


def _local(value: str, field: str) -> Path:
    return resolve_local(value, Path(), field)


def _named(field: str, check):
    try:
        return check()
    except KubetuneError as err:
        if str(err).startswith(field):
            raise
        raise type(err)(f"{field}: {err}") from None
