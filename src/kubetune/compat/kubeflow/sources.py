"""What Kubeflow's model and dataset parameters name, as kubetune initializer specs.

Kubeflow takes secrets (Hub tokens, S3 keys) as values; a kubetune job spec holds only
references to them, so a value is refused and a :class:`~kubetune.spec.SecretRef` accepted.
"""

from __future__ import annotations

from typing import Any

from kubetune.errors import ConfigError
from kubetune.spec.initializer import SecretRef

#: Transformer classes (by name) and the kubetune model task each trains.
TRANSFORMER_TASKS = {
    "AutoModelForCausalLM": "causal-lm",
    "AutoModelForSequenceClassification": "sequence-classification",
    "AutoModelForTokenClassification": "token-classification",
}
#: Transformer classes kubetune refuses, with the kubetune way.
REFUSED_TRANSFORMERS = {
    "AutoModelForQuestionAnswering": "train answers as a 'completion' dataset on AutoModelForCausalLM",
    "AutoModelForMaskedLM": "continue pre-training with AutoModelForCausalLM on a text dataset",
    "AutoModelForImageClassification": "kubetune trains text models only",
}


def secret(value: Any, field: str) -> SecretRef | None:
    """A secret reference for ``field``; a plain value is refused (it would be stored in the job)."""
    if value is None or isinstance(value, SecretRef):
        return value
    raise ConfigError(
        f"{field}: kubetune never stores a secret's value in a job; pass kubetune.spec.SecretRef(env='NAME') "
        "(or file=..., or kubernetes={'name': ..., 'key': ...})"
    )


def task_of(transformer_type: Any) -> str:
    """The kubetune model task for a transformers Auto class (or its name).

    Raises:
        ConfigError: a class kubetune does not train (one line naming it and the kubetune way).
    """
    name = transformer_type if isinstance(transformer_type, str) else getattr(transformer_type, "__name__", "")
    if name in TRANSFORMER_TASKS:
        return TRANSFORMER_TASKS[name]
    way = REFUSED_TRANSFORMERS.get(name, f"use one of {', '.join(TRANSFORMER_TASKS)}")
    raise ConfigError(f"transformer_type={name or transformer_type!r} is not supported: {way}")


def storage_uri(value: str, scheme: str) -> str:
    """A Kubeflow repo id (``yelp_review_full``) as ``hf://yelp_review_full``; a URI or a local path stays as is."""
    if "://" in value or value.startswith(("/", "./", "../", "~")):
        return value
    return f"{scheme}://{value}"
