"""Which model a path stands for, checked without loading anything heavy, and loading it.

A path is one of: a job's run directory or its ``output/`` (the merged model, else the adapter
on its base), a merged or plain model folder (or ``.gguf`` file), or a PEFT adapter folder
(on the base it names in ``adapter_config.json``, or on ``base``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ModelError
from kubetune.trainer.model_files import pretrained_location

ADAPTER_CONFIG = "adapter_config.json"
_CLASSIFIER_SUFFIX = "ForSequenceClassification"


@dataclass(frozen=True)
class ModelTarget:
    """A model to load: its weights (or base) folder, an adapter on it, and the task it was trained for."""

    label: str
    weights: Path
    adapter: Path | None = None
    task: str = "causal-lm"
    #: The run directory of the job whose output this is (its ``config.yaml`` says how it read data).
    run: RunDir | None = None


def job_run(path: Path) -> RunDir | None:
    """The run directory ``path`` is (or whose ``output/`` it is), when it holds exports."""
    for run in (RunDir(path), RunDir(path.parent)):
        if run.output in (path, path / run.output.name) and (run.merged.is_dir() or run.adapter.is_dir()):
            return run
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelError(f"{path}: not a readable JSON object") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: not a readable JSON object")
    return data


def _task_of(folder: Path) -> str:
    """``sequence-classification`` for a classifier's folder (its architectures), else ``causal-lm``."""
    config = folder / "config.json"
    architectures = _read_json(config).get("architectures") or [] if config.is_file() else []
    return "sequence-classification" if any(str(a).endswith(_CLASSIFIER_SUFFIX) for a in architectures) else "causal-lm"


def _adapter_target(adapter: Path, base: Path | None, label: str, run: RunDir | None = None) -> ModelTarget:
    config = _read_json(adapter / ADAPTER_CONFIG)
    if base is None:
        named = config.get("base_model_name_or_path")
        if not named or not Path(named).exists():
            raise ModelError(
                f"{adapter}: the adapter's base {named!r} is not on this machine; give the base model folder (--base)"
            )
        base = Path(named)
    pretrained_location(base)
    task = "sequence-classification" if config.get("task_type") == "SEQ_CLS" else "causal-lm"
    return ModelTarget(label, base, adapter, task, run)


def resolve_model(path: Path, adapter: Path | None = None, base: Path | None = None, label: str | None = None):
    """The model at ``path`` (see the module docstring), checked by its files only.

    Args:
        path: a run directory, a job's ``output/``, a model folder, a ``.gguf`` file, or an adapter folder.
        adapter: an adapter folder to put on the model at ``path`` (then ``path`` is the base).
        base: the base of an adapter at ``path`` when its ``adapter_config.json`` names none here.
        label: how reports name it (default: the path).

    Raises:
        ModelError: one line naming the path that is not a model, adapter or job output.
    """
    label = label or str(path)
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    if adapter is not None:
        if not (adapter / ADAPTER_CONFIG).is_file():
            raise ModelError(f"{adapter}: not a PEFT adapter folder (no {ADAPTER_CONFIG})")
        return _adapter_target(adapter, path, label)
    run = job_run(path)
    if run is not None:
        if (run.merged / "config.json").is_file():
            return ModelTarget(label, run.merged, task=_task_of(run.merged), run=run)
        return _adapter_target(run.adapter, base, label, run)
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        return _adapter_target(path, base, label)
    _, extra = pretrained_location(path)
    return ModelTarget(label, path, task="causal-lm" if extra else _task_of(path))


def load_target(target: ModelTarget, device: str | None = None):
    """Load the model (in fp32 on CPU, bf16 on a GPU) and its tokenizer, in eval mode.

    Returns:
        ``(model, tokenizer)``; an adapter is applied with PEFT (not merged).
    """
    import torch

    from kubetune.spec.trainer import ModelConfig
    from kubetune.trainer.model_loading import load_model, load_tokenizer

    on = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = ModelConfig(task=target.task)
    tokenizer = load_tokenizer(target.weights, config)  # an adapter export saves the base's tokenizer
    precision = "bf16" if on.type == "cuda" else "fp32"
    model = load_model(target.weights, config, precision, pad_token_id=tokenizer.pad_token_id)
    if target.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, target.adapter)
    return model.to(on).eval(), tokenizer
