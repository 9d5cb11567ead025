"""The export unit: what a finished run writes under ``output/`` (``adapter/``, ``merged/``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from kubetune.contracts.run_dir import RunDir
from kubetune.spec.trainer import LLMConfig
from kubetune.trainer.distributed import DistributedContext, is_sharded, unwrap_model
from kubetune.trainer.export import export_adapter, export_merged, reload_merged_qlora
from kubetune.trainer.methods import is_mergeable, method_support, trains_adapter
from kubetune.trainer.model_loading import load_model
from kubetune.trainer.sharded_export import export_adapter_sharded, export_merged_sharded


def export_outputs(
    model: torch.nn.Module,
    tokenizer,
    layout: RunDir,
    ctx: DistributedContext,
    config: LLMConfig,
    model_path: Path,
    say: Callable[[str], None],
) -> tuple[Path | None, Path | None]:
    """Write ``adapter/`` and ``merged/`` as ``config.output`` asks (from rank 0; a sharded model
    is gathered unit by unit, every rank taking part); returns their paths (None: not written).

    ``model`` is the trained (possibly wrapped) training objective; merging modifies it.
    """
    root = model
    model = unwrap_model(model)
    model.eval()
    is_peft = trains_adapter(config)
    quantized = method_support(config).quantized_base
    want_adapter = is_peft and (config.output.save_adapter or quantized)
    skip_merge = config.output.save_merged and is_peft and not is_mergeable(config)
    if skip_merge:
        say(
            f"export: merged/ skipped: a {config.method!r} adapter cannot be folded into the base weights; "
            "load adapter/ with peft.AutoPeftModel instead",
        )
    adapter_dir = merged_dir = None
    if is_sharded(root):
        if want_adapter:
            adapter_dir = export_adapter_sharded(model, tokenizer, layout.adapter, ctx)
        if config.output.save_merged and not skip_merge:
            merged_dir = export_merged_sharded(model, root, tokenizer, layout.merged, ctx, is_peft)
    elif ctx.is_main:
        if want_adapter:
            adapter_dir = export_adapter(model, tokenizer, layout.adapter)
        if config.output.save_merged and not skip_merge:
            if quantized:
                model = reload_merged_qlora(
                    lambda: load_model(model_path, config.model, config.training.precision), adapter_dir
                )
            merged_dir = export_merged(model, tokenizer, layout.merged, is_peft)
    say(f"export: {', '.join(str(p) for p in (adapter_dir, merged_dir) if p) or 'nothing requested'}")
    return adapter_dir, merged_dir
