"""The fused LoRA linear against PEFT's own forward: same outputs, same gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from kubetune.trainer.kernels.lora_linear import fuse_lora_linears


def lora_llama(dropout: float = 0.0, dtype=torch.float64):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=100)  # fmt: skip
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear")
    model = get_peft_model(LlamaForCausalLM(cfg).to(dtype), lora)
    with torch.no_grad():  # PEFT starts B at zero; random B makes every adapter gradient non-trivial
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    return model


def loss_and_grads(model, ids, autocast: bool = False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_fused_lora_matches_peft_exactly_in_fp64():
    ids = torch.randint(0, 100, (2, 9))
    plain = lora_llama()
    fused = copy.deepcopy(plain)
    assert fuse_lora_linears(fused) == 2 * 7  # q, k, v, o, gate, up, down in each layer
    want_loss, want = loss_and_grads(plain, ids)
    got_loss, got = loss_and_grads(fused, ids)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-12, atol=1e-12)
    assert want.keys() == got.keys() and any("lora_A" in n for n in got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-12, msg=name)


def test_fused_lora_under_bf16_autocast_keeps_fp32_adapters_and_matches_peft():
    ids = torch.randint(0, 100, (2, 9))
    plain = lora_llama(dtype=torch.float32)
    fused = copy.deepcopy(plain)
    fuse_lora_linears(fused)
    want_loss, want = loss_and_grads(plain, ids, autocast=True)
    got_loss, got = loss_and_grads(fused, ids, autocast=True)
    # bf16 products either way; the fused path rounds the sum once instead of three times.
    assert float(got_loss) == pytest.approx(float(want_loss), rel=1e-2)
    for name in want:
        assert got[name].dtype == torch.float32
        rel = float((got[name] - want[name]).norm() / want[name].norm().clamp_min(1e-12))
        assert rel < 5e-2, (name, rel)


def test_layers_outside_the_plain_case_fall_back_to_peft():
    ids = torch.randint(0, 100, (2, 9))
    plain = lora_llama(dropout=0.5)
    fused = copy.deepcopy(plain)
    fuse_lora_linears(fused)
    torch.manual_seed(3)
    want_loss, _ = loss_and_grads(plain, ids)
    torch.manual_seed(3)
    got_loss, _ = loss_and_grads(fused, ids)
    assert float(got_loss) == float(want_loss)  # same dropout draws: PEFT's own forward ran
    with fused.disable_adapter():
        base_loss = fused(input_ids=ids, labels=ids).loss
    with plain.disable_adapter():
        torch.testing.assert_close(base_loss, plain(input_ids=ids, labels=ids).loss)
