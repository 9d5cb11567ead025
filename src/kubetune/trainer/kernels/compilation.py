"""Regional ``torch.compile``: each decoder layer compiled on its own (short compile, one graph reused)."""

from __future__ import annotations

import torch


def compile_layers(model: torch.nn.Module) -> int:
    """Compile every decoder layer of ``model`` in place; returns how many were compiled.

    Only the repeated blocks are compiled, so compile time is that of one layer, and the
    LM head and loss (chunked or not) stay eager.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def compile_decoder(model: torch.nn.Module) -> None:
    """Compile the whole decoder stack (embeddings, every layer, final norm) as one graph.

    Longer to compile than :func:`compile_layers` (every layer is traced), in exchange for
    fusions across layer boundaries; the LM head and loss stay eager either way.
    """
    model.get_decoder().compile(dynamic=True)
