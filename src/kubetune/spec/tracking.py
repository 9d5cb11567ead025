"""Typed configuration of experiment tracking and of where the trained model goes after training.

``trainer.report_to`` names the trackers (``tensorboard``, ``mlflow``, ``wandb``) that trainer
rank 0 feeds on every backend; ``trainer.tracking`` holds their settings. ``trainer.output.push_to``
(:class:`PushConfig` fields of :class:`~kubetune.spec.trainer.OutputConfig`) names where the
exporter step copies the results. Credentials are secret references only
(:class:`~kubetune.spec.initializer.SecretRef`), read where they are used, never recorded.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from kubetune.spec.base import USERINFO, StrictModel
from kubetune.spec.initializer import S3Options, SecretRef

Tracker = Literal["tensorboard", "mlflow", "wandb"]
#: The trackers, in the order they are started.
TRACKERS: tuple[Tracker, ...] = ("tensorboard", "mlflow", "wandb")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- /]{0,255}$")


def _no_credentials_in_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None or USERINFO.match(value):
        raise ValueError("must not contain credentials; use a secret reference")
    return value


class MlflowConfig(StrictModel):
    """Where the MLflow runs go: a tracking server, an experiment, and the credentials to use.

    ``token`` is sent as a bearer token (``MLFLOW_TRACKING_TOKEN``); ``username``/``password`` as
    basic auth (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``).
    """

    tracking_uri: str = Field(description="The tracking server, e.g. http://mlflow:5000.")
    experiment: str = Field(default="kubetune", min_length=1, description="Experiment name (created if missing).")
    run_name: str | None = Field(default=None, description="Run name (default: the job name).")
    token: SecretRef | None = Field(default=None, description="Bearer token of the tracking server.")
    username: str | None = Field(default=None, description="Basic-auth user name (not a secret).")
    password: SecretRef | None = Field(default=None, description="Basic-auth password.")

    @field_validator("tracking_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL of an MLflow tracking server")
        return _no_credentials_in_url(value)

    @model_validator(mode="after")
    def _basic_auth_pair(self) -> MlflowConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.token is not None and self.password is not None:
            raise ValueError("give a token or a username/password, not both")
        return self


class WandbConfig(StrictModel):
    """Where the W&B runs go. ``mode: offline`` writes the run under ``output/wandb`` (``wandb sync``
    uploads it later) and needs no key."""

    project: str = Field(default="kubetune", min_length=1)
    entity: str | None = Field(default=None, description="Team or user.")
    run_name: str | None = Field(default=None, description="Run name (default: the job name).")
    mode: Literal["online", "offline"] = "online"
    base_url: str | None = Field(default=None, description="A W&B server other than api.wandb.ai.")
    api_key: SecretRef | None = Field(default=None, description="API key (online mode).")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _no_credentials_in_url(value)


class TrackingConfig(StrictModel):
    """Settings of the trackers named in ``report_to``."""

    mlflow: MlflowConfig | None = None
    wandb: WandbConfig | None = None
    log_adapter: bool = Field(
        default=False, description="Also upload adapter/ (when trained) as an artifact of the run."
    )
    retry_s: float = Field(
        default=600.0,
        gt=0,
        description="How long an unreachable tracker is retried (with backoff) before its records are dropped.",
    )

    def secret_refs(self) -> list[SecretRef]:
        """Every credential reference of the trackers."""
        refs = []
        if self.mlflow is not None:
            refs += [self.mlflow.token, self.mlflow.password]
        if self.wandb is not None:
            refs.append(self.wandb.api_key)
        return [ref for ref in refs if ref is not None]


class PushConfig(StrictModel):
    """Where the exporter copies the results after training (``output.push_to`` and its settings)."""

    push_to: str | None = Field(
        default=None, description="s3://bucket/prefix or hf://org/repo: where adapter/, merged/ and loss.png go."
    )
    overwrite: bool = Field(default=False, description="Push into a non-empty prefix or repository anyway.")
    s3: S3Options | None = Field(default=None, description="Endpoint, region and credentials for an s3:// target.")
    token: SecretRef | None = Field(default=None, description="Hub token for an hf:// target.")
    private: bool = Field(default=True, description="hf://: create the repository private.")
    register_model: str | None = Field(
        default=None, description="Register the result as a new version of this MLflow model (needs mlflow)."
    )

    @field_validator("push_to")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("s3", "hf") or not parts.netloc:
            raise ValueError("must be s3://bucket/prefix or hf://org/repo")
        if parts.scheme == "hf" and len([p for p in (parts.netloc + parts.path).split("/") if p]) != 2:
            raise ValueError("an hf:// target is a repository: hf://org/repo")
        return _no_credentials_in_url(value)

    @field_validator("register_model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        if value is not None and not _MODEL_NAME.match(value):
            raise ValueError("must be a registered model name: letters, digits, '_', '-', '.', ' ' or '/'")
        return value

    @model_validator(mode="after")
    def _settings_match_target(self) -> PushConfig:
        scheme = urlsplit(self.push_to).scheme if self.push_to else None
        if self.s3 is not None and scheme != "s3":
            raise ValueError("output.s3 applies to an s3:// push_to only")
        if self.token is not None and scheme != "hf":
            raise ValueError("output.token applies to an hf:// push_to only")
        return self

    @property
    def wants_export(self) -> bool:
        """True when the job has an exporter step: a push target or a model to register."""
        return self.push_to is not None or self.register_model is not None

    def push_secret_refs(self) -> list[SecretRef]:
        """Every credential reference of the push target."""
        refs = [self.token]
        if self.s3 is not None:
            refs += [self.s3.access_key_id, self.s3.secret_access_key, self.s3.session_token]
        return [ref for ref in refs if ref is not None]
