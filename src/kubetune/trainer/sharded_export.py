"""Exports of an FSDP2-sharded model, gathered one unit (decoder layer) at a time.

No process ever holds the whole model: for each FSDP2 unit in turn every rank all-gathers the
unit's weights, rank 0 merges the unit's LoRA/DoRA adapters into them (PEFT's own merge, on the
gathered copy), copies the result to host memory and frees the gathered copy. Rank 0 writes a
safetensors file whenever its buffer reaches ``max_shard_bytes``, so host memory on rank 0 is
bounded by one file's worth of tensors. The result is an ordinary sharded transformers folder
(``model-0000i-of-0000N.safetensors`` and ``model.safetensors.index.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from kubetune.trainer.distributed import DistributedContext, decoder_layers
from kubetune.trainer.export import fresh_folder, publish_folder

#: Largest safetensors file of a sharded export (the tensors rank 0 buffers at a time).
MAX_SHARD_BYTES = 2 * 2**30
INDEX_FILE = "model.safetensors.index.json"


def gather_trainable(model: torch.nn.Module, ctx: DistributedContext) -> dict[str, torch.Tensor]:
    """Full copies (on rank 0's host; empty elsewhere) of the trainable parameters: the adapter, not the base."""
    gathered = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        full = param.full_tensor() if hasattr(param, "full_tensor") else param
        if ctx.is_main:
            gathered[name] = full.detach().cpu().clone()
    return gathered


def export_adapter_sharded(model, tokenizer, final: Path, ctx: DistributedContext) -> Path | None:
    """The adapter of a sharded PEFT model at ``final`` (``output/adapter``); only the adapter is gathered.

    Every rank calls this; returns the folder on rank 0, None elsewhere.
    """
    state = gather_trainable(model, ctx)
    if not ctx.is_main:
        return None
    tmp = fresh_folder(final)
    model.save_pretrained(tmp, state_dict=state)
    tokenizer.save_pretrained(tmp)
    publish_folder(tmp, final)
    return final


def _export_name(name: str, is_peft: bool) -> str | None:
    """The transformers name of a parameter of the (PEFT) model after merging, or None if it is not exported."""
    if is_peft:
        if "lora_" in name or ".original_module." in name:
            return None
        name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        name = name.replace(".modules_to_save.default", "")
    return name


class _ShardWriter:
    """Buffers tensors on rank 0 and writes a safetensors file every ``max_bytes``."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.files: list[list[str]] = []
        self.total = 0
        self.dtype: torch.dtype | None = None

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor.detach().to("cpu", copy=True).contiguous()
        self.pending_bytes += size
        if tensor.is_floating_point():
            self.dtype = tensor.dtype
        self.total += size

    def flush(self) -> None:
        if not self.pending:
            return
        save_file(self.pending, self.folder / f"part-{len(self.files)}.safetensors", metadata={"format": "pt"})
        self.files.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> None:
        """Name the files ``model-0000i-of-0000N.safetensors`` and write the index."""
        self.flush()
        count = len(self.files)
        weight_map = {}
        for index, names in enumerate(self.files):
            final = f"model-{index + 1:05d}-of-{count:05d}.safetensors"
            (self.folder / f"part-{index}.safetensors").rename(self.folder / final)
            weight_map.update(dict.fromkeys(names, final))
        index_doc = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(weight_map.items()))}
        (self.folder / INDEX_FILE).write_text(json.dumps(index_doc, indent=2) + "\n", encoding="utf-8")


@torch.no_grad()
def export_merged_sharded(
    model,
    root: torch.nn.Module,
    tokenizer,
    final: Path,
    ctx: DistributedContext,
    is_peft: bool,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> Path | None:
    """The merged model of a sharded model at ``final`` (``output/merged``), gathered unit by unit.

    ``model`` is the PEFT or transformers model; ``root`` the FSDP2 root module around it. Every
    rank calls this; returns the folder on rank 0, None elsewhere.
    """
    writer = None
    if ctx.is_main:
        writer = _ShardWriter(fresh_folder(final), max_shard_bytes)
        writer.folder.mkdir(parents=True)
    layers = decoder_layers(model)
    prefixes = {id(module): name for name, module in model.named_modules()}
    units = [(layer, prefixes[id(layer)] + ".") for layer in layers] + [(root, "")]
    in_layers = tuple(prefix for _, prefix in units[:-1])
    for unit, prefix in units:
        unit.unshard()
        if ctx.is_main:
            if is_peft:
                _merge_adapters(model if unit is root else unit, skip=in_layers if unit is root else ())
            # The root's own parameters are those of no decoder layer; its names are relative to ``model``.
            owner = model if unit is root else unit
            for name, param in owner.named_parameters():
                full_name = prefix + name
                if unit is root and full_name.startswith(in_layers):
                    continue
                export_name = _export_name(full_name, is_peft)
                if export_name is not None:
                    writer.add(export_name, param)
        unit.reshard()
    if not ctx.is_main:
        return None
    writer.finish()
    base = model.get_base_model() if is_peft else model
    if writer.dtype is not None:
        base.config.dtype = writer.dtype
    base.config.save_pretrained(writer.folder)
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(writer.folder)
    tokenizer.save_pretrained(writer.folder)
    publish_folder(writer.folder, final)
    return final


def _merge_adapters(unit: torch.nn.Module, skip: tuple[str, ...]) -> None:
    """Fold every LoRA/DoRA adapter of ``unit`` (its weights gathered) into its base weight, in place.

    Modules whose name starts with one of ``skip`` (other, still sharded units) are left alone.
    """
    from peft.tuners.lora import LoraLayer

    for name, module in unit.named_modules():
        if isinstance(module, LoraLayer) and not module.merged and not (name + ".").startswith(skip):
            module.merge()
