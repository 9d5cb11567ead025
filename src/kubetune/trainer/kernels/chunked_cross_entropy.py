"""Linear + cross-entropy in row chunks, so the full ``tokens x vocab`` fp32 logits never exist.

For a 128k vocabulary, the plain path holds bf16 logits, their fp32 copy and the fp32
gradient for every token of the batch (about 1.5 MB per token). Here the projection, the
loss and both gradients are computed chunk by chunk during the forward pass; only the
gradients with respect to the hidden states (and the weight, when it is trained) are kept.
The logits are rounded to the matmul dtype and upcast to fp32 exactly as in the plain path,
so the loss is the same function.

On CUDA the per-chunk softmax work (upcast, log-sum-exp, picked logit, ``softmax - onehot``,
masking, downcast) runs as one compiled function: two passes over the low-precision logits
instead of about ten over fp32 copies. That also shrinks a chunk's memory to about 4 bytes
per logit, so chunks default to about 2**30 logits (8192 rows at a 128k vocabulary).
"""

from __future__ import annotations

from functools import cache

import torch

from kubetune.trainer.data.formats import IGNORE_INDEX

#: Logits per chunk when no chunk size is given: ~4 GiB of bf16 logits and gradient at a time.
CHUNK_LOGITS = 2**30


def default_chunk_rows(vocab_size: int) -> int:
    """Rows per chunk for ``vocab_size``: a power of two in [256, 8192], about ``CHUNK_LOGITS`` logits."""
    rows = 256
    while rows < 8192 and 2 * rows * vocab_size <= CHUNK_LOGITS:
        rows *= 2
    return rows


def _chunk_loss_and_grad(logits, target, valid, loss_dtype: torch.dtype):
    """Summed loss of one chunk and ``d loss / d logits`` in the logits' dtype (ignored rows: zero)."""
    x = logits.to(loss_dtype)
    lse = torch.logsumexp(x, dim=-1)
    picked = x.gather(1, target[:, None]).squeeze(1)
    loss = ((lse - picked) * valid).sum()
    columns = torch.arange(x.shape[1], device=x.device)
    probs = torch.exp(x - lse[:, None]) - (columns[None, :] == target[:, None]).to(loss_dtype)
    return loss, (probs * valid[:, None]).to(logits.dtype)


@cache
def _compiled_chunk_fn():
    return torch.compile(_chunk_loss_and_grad, dynamic=True)


def _chunk_fn(device: torch.device):
    return _compiled_chunk_fn() if device.type == "cuda" else _chunk_loss_and_grad


class _LinearCrossEntropySum(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``labels``; gradients made in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk_size: int):
        need_h = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[1]
        compute_dtype = torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled() else hidden.dtype
        loss_dtype = torch.promote_types(torch.float32, compute_dtype)
        chunk_fn = _chunk_fn(hidden.device)
        total = torch.zeros((), dtype=loss_dtype, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = None
        w = weight.to(compute_dtype)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size].to(compute_dtype)
            y = labels[start : start + chunk_size]
            valid = y != IGNORE_INDEX
            # A chunk with no targets adds zero loss and zero gradients; no host sync to skip it.
            loss, grad_logits = chunk_fn(h @ w.T, torch.where(valid, y, 0), valid.to(loss_dtype), loss_dtype)
            total += loss
            if need_h:
                grad_h[start : start + chunk_size] = (grad_logits @ w).to(hidden.dtype)
            if need_w:
                part = (grad_logits.T @ h).to(loss_dtype)
                grad_w = part if grad_w is None else grad_w.add_(part)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None


def linear_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Sum over positions of ``-log softmax(hidden @ weight.T)[label]``, skipping ``IGNORE_INDEX``.

    Args:
        hidden: ``(..., H)`` final hidden states (already normed).
        weight: ``(V, H)`` output projection (the LM head; no bias).
        labels: ``(...)`` target ids aligned with ``hidden`` (already shifted).
        chunk_size: rows per chunk (default :func:`default_chunk_rows`); memory is about
            ``chunk_size x V x 4`` bytes at a time on CUDA (``x 12`` on the eager path).
    """
    flat_h = hidden.reshape(-1, hidden.shape[-1])
    flat_y = labels.reshape(-1)
    rows = chunk_size or default_chunk_rows(weight.shape[0])
    return _LinearCrossEntropySum.apply(flat_h, weight, flat_y, rows)
