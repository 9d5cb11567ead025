"""Chunked linear cross-entropy and selective checkpointing against the plain computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kubetune.trainer.data.formats import IGNORE_INDEX
from kubetune.trainer.kernels.chunked_cross_entropy import linear_cross_entropy_sum


def plain_loss(hidden, weight, labels):
    logits = (hidden @ weight.T).to(torch.promote_types(torch.float32, hidden.dtype))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_chunked_cross_entropy_matches_plain_loss_and_gradients(chunk_size):
    gen = torch.Generator().manual_seed(chunk_size)
    hidden = torch.randn(2, 37, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 50, (2, 37), generator=gen)
    labels[0, :20] = IGNORE_INDEX  # a chunk with no targets at all, and a partly ignored one
    labels[1, 5] = IGNORE_INDEX
    got = linear_cross_entropy_sum(hidden, weight, labels, chunk_size=chunk_size)
    (got * 0.5).backward()
    got_h, got_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    want = plain_loss(hidden, weight, labels)
    (want * 0.5).backward()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(got_h, hidden.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_w, weight.grad, rtol=1e-10, atol=1e-12)


def test_chunked_cross_entropy_skips_weight_gradient_when_frozen():
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(30, 8)
    labels = torch.randint(0, 30, (10,))
    linear_cross_entropy_sum(hidden, weight, labels, chunk_size=4).backward()
    assert weight.grad is None
    want_h = torch.autograd.grad(plain_loss(hidden, weight, labels), hidden)[0]
    torch.testing.assert_close(hidden.grad, want_h, rtol=1e-5, atol=1e-6)


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=100)  # fmt: skip
    return LlamaForCausalLM(cfg)


@pytest.mark.parametrize("fraction,expected", [(1.0, 4), (0.5, 2), (0.25, 1)])
def test_selective_checkpointing_recomputes_a_share_of_layers_and_keeps_gradients(fraction, expected):
    from kubetune.trainer.kernels.checkpointing import checkpoint_layers

    ids = torch.randint(0, 100, (2, 12))
    plain = tiny_llama().train()
    plain(input_ids=ids, labels=ids).loss.backward()
    model = tiny_llama().train()
    assert checkpoint_layers(model, fraction) == expected
    assert sum(layer.gradient_checkpointing for layer in model.model.layers) == expected
    model(input_ids=ids, labels=ids).loss.backward()
    for got, want in zip(model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-5, atol=1e-7)


def test_benchmark_smoke_on_cpu(tmp_path):
    """The GPU benchmark runs end to end on a tiny model, and both sides see the same losses."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_finetune.py"
    out = tmp_path / "tiny.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["name"]: r for r in json.loads(out.read_text())}
    assert results["tiny-lora-var/hf"]["losses"] == pytest.approx(
        results["tiny-lora-var/kt-pack+ce+sac.5+fused"]["losses"], rel=1e-4
    )
    if "tiny-qlora-var/hf" in results:  # bitsandbytes installed: the same 4-bit base on both sides
        assert results["tiny-qlora-var/hf"]["losses"] == pytest.approx(
            results["tiny-qlora-var/kt-pack+ce+sac.5+fused"]["losses"], rel=1e-4
        )
    full = results["tiny-full-fixed/kt-ce"]["losses"]
    assert results["tiny-full-fixed/hf"]["losses"] == pytest.approx(full, rel=1e-4)
    assert all(r["real_tokens_per_s"] > 0 for r in results.values())
