"""A LoRA linear layer in fewer passes over memory than PEFT's generic forward.

PEFT computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling`` with the input cast to
the adapter dtype (fp32 adapters on bf16 activations: a cast to fp32 and, under autocast,
back to bf16, in every adapter), a separate scale and a separate add, and autograd adds the
two input gradients in another pass. Here, for the plain case (one active adapter, no
dropout, no DoRA, no LoRA bias, not merged):

- forward: ``out = x W^T (+ b)``, then ``out += scaling * (x A^T) B^T`` in the matmul's
  epilogue (``addmm``), with no input cast;
- backward (frozen base ``nn.Linear``): ``grad_x = g W`` with ``scaling * (g B) A`` added in
  the second matmul's epilogue, and the adapter gradients from the saved ``x`` and ``x A^T``.

The math is PEFT's: the same products in the autocast dtype (bf16 on GPU) with fp32
accumulation, and fp32 master adapter weights updated by the optimizer. Other layers (a
4-bit base, several adapters, dropout, DoRA) keep the addmm forward where it applies and
PEFT's own forward otherwise. Saving and merging adapters is unchanged: the PEFT modules and
their parameters stay where they are; only their ``forward`` is replaced.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class _FrozenLinearWithLora(torch.autograd.Function):
    """``x W^T + b + s (x A^T) B^T`` with ``W``, ``b`` frozen; gradients for ``x``, ``A``, ``B``."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float):
        dtype = _compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            x2 = x.reshape(-1, x.shape[-1]).to(dtype)
            w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
            xa = x2 @ a.T
            out = F.linear(x2, w, None if bias is None else bias.to(dtype))
            out.addmm_(xa, b.T, alpha=scaling)
        ctx.save_for_backward(x2, xa, w, a, b)
        ctx.scaling = scaling
        ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
        ctx.a_dtype, ctx.b_dtype = lora_a.dtype, lora_b.dtype
        return out.reshape(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, xa, w, a, b = ctx.saved_tensors
        s = ctx.scaling
        g = grad_out.reshape(-1, grad_out.shape[-1]).to(w.dtype)
        gb = g @ b  # (T, r)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ w).addmm_(gb, a, alpha=s).reshape(ctx.x_shape).to(ctx.x_dtype)
        if ctx.needs_input_grad[3]:
            grad_a = (gb.T @ x2).mul_(s).to(ctx.a_dtype)
        if ctx.needs_input_grad[4]:
            grad_b = (g.T @ xa).mul_(s).to(ctx.b_dtype)
        return grad_x, None, None, grad_a, grad_b, None


def _plain_adapter(module) -> str | None:
    """The one active adapter's name when ``module`` is in the plain LoRA case, else None."""
    if module.disable_adapters or module.merged or len(module.active_adapters) != 1:
        return None
    name = module.active_adapters[0]
    if name not in module.lora_A or name in getattr(module, "lora_variant", {}):
        return None
    if module.use_dora.get(name, False) or getattr(module, "lora_bias", {}).get(name, False):
        return None
    if not isinstance(module.lora_dropout[name], torch.nn.Identity):
        return None
    return name


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Replacement ``forward`` of a PEFT LoRA linear (bound to the module)."""
    name = _plain_adapter(self) if not args and not kwargs else None
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    base = self.base_layer
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
    scaling = float(self.scaling[name])
    if type(base) is torch.nn.Linear and not base.weight.requires_grad and not self.fan_in_fan_out:
        return _FrozenLinearWithLora.apply(x, base.weight, base.bias, lora_a, lora_b, scaling)
    # Any other base (4-bit, trainable): its own forward, the adapter added in addmm's epilogue.
    out = base(x)
    dtype = out.dtype
    x2 = x.reshape(-1, x.shape[-1])
    added = torch.addmm(out.reshape(-1, out.shape[-1]), x2 @ lora_a.T, lora_b.T, alpha=scaling)
    return added.reshape(out.shape).to(dtype)


def fuse_lora_linears(model: torch.nn.Module) -> int:
    """Give every PEFT LoRA ``Linear`` (plain or 4-bit) of ``model`` the fused forward; returns how many.

    Layers outside the plain case at call time fall back to PEFT's forward on each call.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    classes: tuple[type, ...] = (LoraLinear,)
    try:
        from peft.tuners.lora.bnb import Linear4bit

        classes += (Linear4bit,)
    except (ImportError, AttributeError):
        pass
    count = 0
    for module in model.modules():
        if isinstance(module, classes):
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count
