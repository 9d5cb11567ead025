"""Attention for packed rows: each example attends only to itself, with no mask materialised.

Registered with transformers as the attention implementation ``kubetune_packed``. When the
batch carries ``cu_seq_lens_q`` (see :func:`kubetune.trainer.data.packing.collate_packed`),
attention runs per example: on CUDA through PyTorch's variable-length flash attention
(``torch.nn.attention.varlen``), elsewhere as causal SDPA over each example in turn. Without
boundaries (padded batches, evaluation) it is transformers' own SDPA path, unchanged.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from functools import cache

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

IMPLEMENTATION = "kubetune_packed"


@cache
def _varlen_kernel():
    """PyTorch's varlen flash attention and the keyword arguments this torch version wants, or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    if "is_causal" in params:
        causal = {"is_causal": True}
    elif "window_size" in params:
        causal = {"window_size": (-1, 0)}
    else:
        return None
    return varlen_attn, causal, "enable_gqa" in params


def _per_example_sdpa(q, k, v, cu_seq_lens, scaling):
    """Causal SDPA over each example of a packed ``(T, H, D)`` row (the portable path)."""
    out = torch.empty_like(q)
    bounds = cu_seq_lens.tolist()
    for start, end in itertools.pairwise(bounds):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))
        out[start:end] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling).transpose(0, 1)
    return out


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: ``(B, H, T, D)`` inputs, ``(B, T, H, D)`` output."""
    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    if cu_seq_lens is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError("packed attention expects one packed row per micro-batch")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, H, D)
    groups = q.shape[1] // k.shape[1]
    kernel = _varlen_kernel() if q.is_cuda else None
    if kernel is not None:
        varlen_attn, causal, native_gqa = kernel
        if torch.is_autocast_enabled(q.device.type):  # the flash kernel is not autocast-aware (fp32 QLoRA stream)
            dtype = torch.get_autocast_dtype(q.device.type)
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        extra = dict(causal)
        if groups > 1:
            if native_gqa:
                extra["enable_gqa"] = True
            else:
                k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        longest = int(kwargs["max_length_q"])
        out = varlen_attn(q, k, v, cu_seq_lens, cu_seq_lens, longest, longest, scale=scaling, **extra)
    else:
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = _per_example_sdpa(q, k, v, cu_seq_lens, scaling)
    return out[None], None


def _packed_mask(*args, attention_mask: torch.Tensor | None = None, **kwargs):
    """No mask for packed rows (boundaries come with the batch); SDPA's mask for padded batches."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def use_packed_attention(model: torch.nn.Module) -> None:
    """Register ``kubetune_packed`` with transformers and switch ``model`` (or its PEFT base) to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, packed_attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, _packed_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(IMPLEMENTATION)
    if base.config._attn_implementation != IMPLEMENTATION:
        raise RuntimeError(f"{type(base).__name__} cannot switch to packed attention")
