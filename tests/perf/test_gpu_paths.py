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


def test_compiled_chunked_loss_matches_plain_cross_entropy_in_bf16():
    import torch.nn.functional as F

    from kubetune.trainer.data.formats import IGNORE_INDEX
    from kubetune.trainer.kernels.chunked_cross_entropy import linear_cross_entropy_sum

    gen = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(3000, 256, device="cuda", generator=gen, dtype=torch.bfloat16, requires_grad=True)
    weight = (0.05 * torch.randn(32000, 256, device="cuda", generator=gen)).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 32000, (3000,), device="cuda", generator=gen)
    labels[:500] = IGNORE_INDEX
    got = linear_cross_entropy_sum(hidden, weight, labels, chunk_size=1024)  # 3 chunks, the last one partial
    got.backward()
    got_h, got_w = hidden.grad, weight.grad
    hidden.grad = weight.grad = None
    want = F.cross_entropy((hidden @ weight.T).float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    want.backward()
    assert float(got) == pytest.approx(float(want), rel=1e-3)
    for a, b in ((got_h, hidden.grad), (got_w, weight.grad)):
        assert float((a.float() - b.float()).norm() / b.float().norm()) < 2e-2


def test_fused_lora_matches_peft_on_cuda_under_bf16_autocast():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from kubetune.trainer.kernels.lora_linear import fuse_lora_linears

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=5000)  # fmt: skip
    base = LlamaForCausalLM(cfg).cuda().to(torch.bfloat16)
    plain = get_peft_model(base, LoraConfig(r=16, target_modules="all-linear"))
    for name, param in plain.named_parameters():
        if "lora_" in name:
            param.data = torch.randn_like(param, dtype=torch.float32) * 0.05
    fused = copy.deepcopy(plain)
    assert fuse_lora_linears(fused) == 14
    ids = torch.randint(0, 5000, (2, 128), device="cuda")
    losses = []
    for model in (plain, fused):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(float(loss))
    assert losses[1] == pytest.approx(losses[0], rel=5e-3)
    for (name, a), b in zip(fused.named_parameters(), plain.parameters(), strict=True):
        if a.requires_grad:
            assert a.grad.dtype == torch.float32
            assert float((a.grad - b.grad).norm() / b.grad.norm().clamp_min(1e-12)) < 5e-2, name
