"""Packing gives the same loss and gradients as padding, on the real SmolLM2 model in fp32."""

from __future__ import annotations

import copy

import pytest
import torch

from kubetune.spec.trainer import LLMConfig, ModelConfig, TrainingConfig
from kubetune.trainer.data.batching import collate
from kubetune.trainer.data.formats import IGNORE_INDEX, Example
from kubetune.trainer.data.packing import collate_packed
from kubetune.trainer.kernels.packed_attention import use_packed_attention
from kubetune.trainer.loop import TrainingObjective, loss_sum, train_step
from kubetune.trainer.model_loading import apply_method, load_model


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """‖got - want‖ / ‖want‖ (fp32 sums in another order: about 1e-5 after 30 layers; a leaking mask gives 1e-1)."""
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def make_examples(lengths: list[int], seed: int = 0, vocab: int = 49152) -> list[Example]:
    """Random token sequences; the first third of each is prompt (ignored), the rest targets."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(10, vocab, (n,), generator=gen).tolist()
        labels = [IGNORE_INDEX if i < n // 3 else tok for i, tok in enumerate(ids)]
        out.append(Example(ids, labels))
    return out


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    torch.manual_seed(0)
    return load_model(smollm2_dir, ModelConfig(), "fp32").eval()


def test_collate_packed_restarts_positions_and_masks_boundaries():
    examples = make_examples([5, 3, 4])
    batch = collate_packed(examples)
    assert batch["input_ids"].shape == (1, 12)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]
    assert batch["cu_seq_lens_q"].tolist() == [0, 5, 8, 12]
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["max_length_q"] == 5
    # No example's first token is a target of the previous example's last token.
    assert [batch["labels"][0, i].item() for i in (0, 5, 8)] == [IGNORE_INDEX] * 3
    # Same number of next-token targets as the padded batch.
    padded = collate(examples, pad_token_id=0)
    assert int((padded["labels"][:, 1:] != IGNORE_INDEX).sum()) == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


@pytest.mark.parametrize("attention", ["sdpa", "kubetune_packed"])
def test_packed_loss_and_gradients_equal_padded(smollm2, attention):
    model = copy.deepcopy(smollm2)
    if attention == "kubetune_packed":
        use_packed_attention(model)
    examples = make_examples([37, 12, 25, 8])
    padded_sum, padded_n = loss_sum(model, collate(examples, pad_token_id=0))
    padded_sum.backward()
    padded_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    packed_sum, packed_n = loss_sum(model, collate_packed(examples))
    packed_sum.backward()
    assert packed_n == padded_n
    torch.testing.assert_close(packed_sum, padded_sum, rtol=1e-5, atol=1e-4)
    for got, want in zip((p.grad for p in model.parameters()), padded_grads, strict=True):
        assert relative_error(got, want) < 1e-4


@pytest.mark.parametrize("attention", ["sdpa", "kubetune_packed"])
def test_packed_examples_do_not_attend_to_each_other(smollm2, attention):
    model = copy.deepcopy(smollm2)
    if attention == "kubetune_packed":
        use_packed_attention(model)
    first, second = make_examples([20, 15])
    changed = make_examples([20], seed=7)[0]
    inputs = {k: v for k, v in collate_packed([first, second]).items() if k != "labels"}
    altered = {k: v for k, v in collate_packed([changed, second]).items() if k != "labels"}
    inputs["use_cache"] = altered["use_cache"] = False
    with torch.no_grad():
        a = model(**inputs).logits[0, 20:]
        b = model(**altered).logits[0, 20:]
        alone = model(input_ids=torch.tensor([second.input_ids])).logits[0]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(a, alone, rtol=1e-5, atol=1e-4)


def test_train_step_with_all_levers_matches_plain_step(smollm2):
    """One LoRA step: packing + packed attention + chunked loss + selective checkpointing == plain."""
    from kubetune.trainer.kernels.checkpointing import checkpoint_layers

    results = []
    for fast in (False, True):
        torch.manual_seed(1)
        model = copy.deepcopy(smollm2)
        training = TrainingConfig(precision="fp32", packing=fast, chunked_loss=fast, max_grad_norm=1.0)
        if fast:
            checkpoint_layers(model, 0.5)
        model = apply_method(model, LLMConfig(method="lora", training=training))
        if fast:
            use_packed_attention(model)
        model.train()
        # SGD makes the update the clipped gradient itself (Adam's first step is ~lr * sign(grad)).
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
        micro = [make_examples([20, 7, 12], seed=3), make_examples([6, 16], seed=4)]
        objective = TrainingObjective(model, training.chunked_loss)
        step = train_step(objective, micro, optimizer, training, pad_token_id=0, device=torch.device("cpu"))
        lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((step, lora))
    (plain, plain_w), (fast, fast_w) = results
    assert fast.padded_tokens == fast.real_tokens == plain.real_tokens < plain.padded_tokens
    assert fast.loss == pytest.approx(plain.loss, rel=1e-5)
    assert fast.grad_norm == pytest.approx(plain.grad_norm, rel=1e-4)
    for name, weight in plain_w.items():
        assert relative_error(fast_w[name], weight) < 1e-4, name
