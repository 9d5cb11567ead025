"""Final exports: the adapter in PEFT format and a merged, plain-transformers model."""

from __future__ import annotations

import shutil
from pathlib import Path


def publish_folder(tmp: Path, final: Path) -> None:
    """Replace ``final`` with the fully written ``tmp`` folder."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def fresh_folder(path: Path) -> Path:
    """The temporary folder ``path`` is written under first (an earlier leftover is removed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def export_adapter(model, tokenizer, final: Path) -> Path:
    """Save the PEFT adapter (and tokenizer) to ``final`` (the run's ``output/adapter``)."""
    tmp = fresh_folder(final)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    publish_folder(tmp, final)
    return final


def export_merged(model, tokenizer, final: Path, is_peft: bool) -> Path:
    """Merge adapter weights into the base (if any) and save safetensors to ``final`` (``output/merged``).

    The result loads with ``AutoModelForCausalLM`` (or ``AutoModelForSequenceClassification``)
    alone. Merging modifies ``model``; call this last. (A model sharded over processes is
    exported by :mod:`kubetune.trainer.sharded_export`.)
    """
    tmp = fresh_folder(final)
    merged = model.merge_and_unload() if is_peft else model
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if getattr(merged, "generation_config", None) is not None and not (tmp / "generation_config.json").exists():
        merged.generation_config.save_pretrained(tmp)
    publish_folder(tmp, final)
    return final


def reload_merged_qlora(load_base, adapter_dir: Path):
    """A QLoRA adapter merged into a full-precision copy of the base (4-bit weights cannot be saved plainly).

    ``load_base()`` returns the base model in the training precision, not quantized.
    """
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base(), adapter_dir)
