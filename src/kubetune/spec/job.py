"""The job specification: one typed, validated description of a fine-tuning job.

A job file (``kubetune train -f job.yaml``) is this model written as YAML.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from kubetune.spec.base import StrictModel, read_yaml, validate_config
from kubetune.spec.trainer import LLMConfig

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class JobSpec(StrictModel):
    """A fine-tuning job: a name, the trainer's config and where results go."""

    name: str | None = Field(default=None, description="Job name (lowercase DNS label).")
    trainer: LLMConfig = Field(default_factory=LLMConfig)
    output_dir: str | None = Field(
        default=None, description="Run directory; relative paths are relative to the job file."
    )

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not _NAME.match(value)):
            raise ValueError("must be a lowercase DNS label: a-z, 0-9 and '-', at most 63 characters")
        return value


def load_job_file(path: str | Path) -> JobSpec:
    """Read and validate a job YAML file.

    Relative ``output_dir``, ``trainer.model.path`` and ``trainer.dataset.path`` values are
    resolved against the file's folder, so a job file works from any working directory.

    Raises:
        ConfigError: the file is missing, not YAML, or a field is unknown or invalid.
    """
    path = Path(path)
    spec = validate_config(JobSpec, read_yaml(path), source=f"job file {path}")
    base = path.resolve().parent
    if spec.output_dir is not None:
        spec.output_dir = str(_anchor(spec.output_dir, base))
    for section in (spec.trainer.model, spec.trainer.dataset):
        if section.path is not None and "://" not in section.path:
            section.path = str(_anchor(section.path, base))
    return spec


def _anchor(value: str, base: Path) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else base / candidate
