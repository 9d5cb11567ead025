"""GPU-only: varlen flash attention and the chunked loss in bf16 against the padded plain path."""

from __future__ import annotations

import copy

import pytest
import torch

from kubetune.trainer.data.batching import collate
from kubetune.trainer.data.formats import Example
from kubetune.trainer.data.packing import collate_packed
from kubetune.trainer.kernels.packed_attention import _varlen_kernel, use_packed_attention
from kubetune.trainer.loop import loss_sum

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_varlen_kernel_is_available():
    assert _varlen_kernel() is not None


def test_packed_varlen_and_chunked_loss_match_padded_in_bf16():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=5000)  # fmt: skip
    plain = LlamaForCausalLM(cfg).cuda().to(torch.bfloat16)
    fast = copy.deepcopy(plain)
    use_packed_attention(fast)
    gen = torch.Generator().manual_seed(1)
    examples = []
    for n in (300, 17, 129, 64):
        ids = torch.randint(0, 5000, (n,), generator=gen).tolist()
        examples.append(Example(ids, ids))
    padded = {k: v.cuda() for k, v in collate(examples, 0).items()}
    packed = {k: v.cuda() if torch.is_tensor(v) else v for k, v in collate_packed(examples).items()}
    want, n_want = loss_sum(plain, padded)
    got, n_got = loss_sum(fast, packed, chunked_loss=True)
    want.backward()
    got.backward()
    assert n_got == n_want
    # bf16 tolerance: different kernels round differently, about 1e-3 relative on the summed loss.
    assert float(got) == pytest.approx(float(want), rel=5e-3)
    for a, b in zip(fast.parameters(), plain.parameters(), strict=True):
        rel = float((a.grad.float() - b.grad.float()).norm() / b.grad.float().norm().clamp_min(1e-12))
        assert rel < 5e-2
