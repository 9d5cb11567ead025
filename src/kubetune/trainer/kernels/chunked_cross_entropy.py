"""Linear + cross-entropy in row chunks, so the full ``tokens x vocab`` fp32 logits never exist.

For a 128k vocabulary, the plain path holds bf16 logits, their fp32 copy and the fp32
gradient for every token of the batch (about 1.5 MB per token). Here the projection, the
loss and both gradients are computed chunk by chunk during the forward pass; only the
gradients with respect to the hidden states (and the weight, when it is trained) are kept.
The logits are rounded to the matmul dtype and upcast to fp32 exactly as in the plain path,
so the loss is the same function.
"""

from __future__ import annotations

import torch

from kubetune.trainer.data.formats import IGNORE_INDEX


class _LinearCrossEntropySum(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``labels``; gradients made in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk_size: int):
        need_h = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[1]
        compute_dtype = torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled() else hidden.dtype
        loss_dtype = torch.promote_types(torch.float32, compute_dtype)
        total = torch.zeros((), dtype=loss_dtype, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=loss_dtype, device=weight.device) if need_w else None
        w = weight.to(compute_dtype)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size].to(compute_dtype)
            y = labels[start : start + chunk_size]
            valid = y != IGNORE_INDEX
            if not bool(valid.any()):
                if need_h:
                    grad_h[start : start + chunk_size] = 0
                continue
            target = torch.where(valid, y, 0)
            logits = (h @ w.T).to(loss_dtype)
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, target[:, None]).squeeze(1)
            total += ((lse - picked) * valid).sum()
            if need_h or need_w:
                probs = logits.sub_(lse[:, None]).exp_()
                probs[torch.arange(probs.shape[0], device=probs.device), target] -= 1.0
                probs *= valid[:, None]
                grad_logits = probs.to(compute_dtype)
                if need_h:
                    grad_h[start : start + chunk_size] = (grad_logits @ w).to(hidden.dtype)
                if need_w:
                    grad_w += (grad_logits.T @ h).to(loss_dtype)
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
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_size: int = 2048
) -> torch.Tensor:
    """Sum over positions of ``-log softmax(hidden @ weight.T)[label]``, skipping ``IGNORE_INDEX``.

    Args:
        hidden: ``(..., H)`` final hidden states (already normed).
        weight: ``(V, H)`` output projection (the LM head; no bias).
        labels: ``(...)`` target ids aligned with ``hidden`` (already shifted).
        chunk_size: rows per chunk; memory is about ``chunk_size x V x 6`` bytes at a time.
    """
    flat_h = hidden.reshape(-1, hidden.shape[-1])
    flat_y = labels.reshape(-1)
    return _LinearCrossEntropySum.apply(flat_h, weight, flat_y, chunk_size)
