"""Typed configuration of the model and dataset initializers.

An initializer fetches what a job needs (the pre-trained model, the dataset) before any
training worker starts, into ``<run>/model`` and ``<run>/dataset``. The same spec drives the
local backend (a step before ``torchrun``) and the Kubernetes controller (an init container
running ``python -m kubetune.initializers``), so it is plain data: URIs, patterns and
*references* to secrets. A secret's value is never part of a spec; :class:`SecretRef` says
where to read it when the initializer runs.

Storage URIs:

- ``hf://<org>/<name>[@<revision>]``: a Hugging Face Hub repository (model or dataset repo,
  by the initializer's kind)
- ``s3://<bucket>/<prefix>``: every object under the prefix (or the one object named so)
- ``file:///abs/path`` or a plain path: a local file or folder
- ``pkg://<distribution>/<path>``: a file shipped inside an installed Python distribution
- ``<scheme>://...``: any scheme a registered custom provider handles
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from kubetune.spec.base import USERINFO, StrictModel

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_K8S_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

Materialize = Literal["symlink", "copy"]


#: Environment variable through which a backend hands an initializer step its whole spec (JSON).
INITIALIZER_SPEC_ENV = "KUBETUNE_INITIALIZER_SPEC"


class KubernetesSecretKey(StrictModel):
    """One key of a Kubernetes Secret in the job's namespace."""

    name: str = Field(description="Secret name (a DNS subdomain).")
    key: str = Field(description="Key inside the Secret's data.")

    @field_validator("name")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if len(value) > 253 or not _K8S_NAME.match(value):
            raise ValueError("must be a Kubernetes object name: a-z, 0-9, '-' and '.', at most 253 characters")
        return value

    @field_validator("key")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        if len(value) > 253 or not _K8S_KEY.match(value):
            raise ValueError("must be a Secret data key: letters, digits, '-', '_' and '.'")
        return value


class SecretRef(StrictModel):
    """Where to read a secret (a token, a key) when the initializer runs; exactly one source.

    - ``env``: the name of an environment variable holding the value
    - ``file``: a path to a file holding the value (surrounding whitespace is stripped)
    - ``kubernetes``: a key of a Kubernetes Secret. The Kubernetes backend injects it into the
      initializer container as the environment variable :meth:`env_var_name` (``valueFrom:
      secretKeyRef``); the local backend cannot read cluster Secrets and refuses it.
    """

    env: str | None = Field(default=None, description="Environment variable holding the secret.")
    file: str | None = Field(default=None, description="File holding the secret.")
    kubernetes: KubernetesSecretKey | None = Field(default=None, description="Kubernetes Secret name and key.")

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable name (letters, digits, '_'), not the secret itself")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [name for name in ("env", "file", "kubernetes") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of env, file, kubernetes (got {', '.join(given) or 'none'})")
        return self

    def env_var_name(self) -> str:
        """The environment variable the secret is read from at run time.

        For ``env`` it is that variable; for ``kubernetes`` it is
        ``KUBETUNE_SECRET_<NAME>_<KEY>`` (upper case, other characters as ``_``), the name the
        Kubernetes backend gives the injected variable. ``file`` references have none.
        """
        if self.env is not None:
            return self.env
        if self.kubernetes is not None:
            raw = f"KUBETUNE_SECRET_{self.kubernetes.name}_{self.kubernetes.key}"
            return re.sub(r"[^A-Za-z0-9_]", "_", raw).upper()
        raise ValueError("a file secret reference has no environment variable")

    def describe(self) -> str:
        """Where the secret comes from, for messages (never the value)."""
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        assert self.kubernetes is not None
        return f"Kubernetes Secret {self.kubernetes.name}/{self.kubernetes.key}"


class S3Options(StrictModel):
    """How to reach an S3-compatible object store (AWS, MinIO, Ceph...).

    Without ``access_key_id``/``secret_access_key`` the standard AWS credential chain is used
    (environment, shared config files, instance or pod identity).
    """

    endpoint_url: str | None = Field(default=None, description="Custom endpoint, e.g. http://minio:9000.")
    region: str | None = Field(default=None, description="Region name, e.g. us-east-1.")
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None
    session_token: SecretRef | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not contain credentials; use access_key_id/secret_access_key references")
        return value

    @model_validator(mode="after")
    def _key_pair(self) -> S3Options:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self


class InitializerSpec(StrictModel):
    """What an initializer fetches and how; see :class:`ModelInitializer` and :class:`DatasetInitializer`."""

    storage_uri: str = Field(description="hf://, s3://, file://, pkg://, a plain path or a custom scheme.")
    revision: str | None = Field(
        default=None, description="Branch, tag or commit (hf://); same as hf://org/name@revision."
    )
    allow_patterns: list[str] | None = Field(default=None, description="Fetch only files matching one of these globs.")
    ignore_patterns: list[str] | None = Field(default=None, description="Skip files matching one of these globs.")
    token: SecretRef | None = Field(default=None, description="Access token (hf:// and custom providers).")
    s3: S3Options | None = Field(default=None, description="Endpoint, region and credentials for s3:// URIs.")
    materialize: Materialize = Field(
        default="symlink", description="How the cached files appear in the target folder: symlink or copy."
    )
    options: dict[str, str] = Field(
        default_factory=dict, description="Extra settings passed to a custom provider (no secrets)."
    )
    extract: bool = Field(
        default=False,
        description=(
            "Unpack .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz and .zip files into the cache entry in place of the "
            "archives: a lone archive into the target folder itself, each of several into a folder named after it."
        ),
    )
    extract_max_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Refuse archives that unpack to more than this many bytes (free disk space is always checked).",
    )

    @field_validator("storage_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        match = _SCHEME.match(value)
        if match is None:
            if "://" in value:
                raise ValueError("the scheme must be lowercase letters, digits, '+', '-' or '.'")
            return value  # a plain local path
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None or USERINFO.match(value):
            raise ValueError("must not contain credentials; use a secret reference (token, s3.*)")
        if match.group(1) in ("hf", "s3") and not parts.netloc:
            raise ValueError(f"{match.group(1)}:// needs a {'repository' if match.group(1) == 'hf' else 'bucket'}")
        return value

    @field_validator("allow_patterns", "ignore_patterns")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not pattern.strip() for pattern in value):
            raise ValueError("patterns must not be empty strings")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> InitializerSpec:
        if self.s3 is not None and not self.storage_uri.startswith("s3://"):
            raise ValueError("s3 options apply to s3:// URIs only")
        if self.storage_uri.startswith("hf://") and "@" in self.storage_uri and self.revision is not None:
            raise ValueError("give the revision either in the URI (@revision) or in revision, not both")
        if self.extract_max_bytes is not None and not self.extract:
            raise ValueError("extract_max_bytes applies only with extract: true")
        return self

    @property
    def scheme(self) -> str:
        """The URI scheme (``file`` for plain paths)."""
        match = _SCHEME.match(self.storage_uri)
        return match.group(1) if match else "file"

    def secret_refs(self) -> list[SecretRef]:
        """Every secret reference this initializer holds: ``token`` and the ``s3`` credentials."""
        refs = [self.token]
        if self.s3 is not None:
            refs += [self.s3.access_key_id, self.s3.secret_access_key, self.s3.session_token]
        return [ref for ref in refs if ref is not None]


class ModelInitializer(InitializerSpec):
    """Fetch the pre-trained model into ``<run>/model``.

    Unless ``ignore_patterns`` is given, weight files in other formats (``*.bin``, ``*.pt``,
    ``*.pth``, ``*.ckpt``, ``*.h5``, ``*.msgpack``, ``*.onnx``...) are skipped when the source
    has ``*.safetensors`` weights, so a model is not downloaded twice.
    """

    kind: Literal["model"] = "model"


class DatasetInitializer(InitializerSpec):
    """Fetch the dataset into ``<run>/dataset``."""

    kind: Literal["dataset"] = "dataset"
