"""Selective activation checkpointing: recompute only as many decoder layers as memory needs."""

from __future__ import annotations

import torch


def checkpoint_layers(model: torch.nn.Module, fraction: float) -> int:
    """Checkpoint an evenly spread ``fraction`` of the decoder layers; returns how many are checkpointed.

    ``fraction=1`` is transformers' plain gradient checkpointing; lower values keep the other
    layers' activations, trading memory for the recompute time (about one forward per layer).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    from transformers.modeling_layers import GradientCheckpointingLayer

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    chosen = 0
    for i, layer in enumerate(layers):
        on = int((i + 1) * fraction) > int(i * fraction)
        layer.gradient_checkpointing = on
        chosen += on
    return chosen
