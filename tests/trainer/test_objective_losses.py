"""The preference losses in float64 against their formulas written out per pair (no model)."""

from __future__ import annotations

import math

import pytest
import torch

from kubetune.spec.trainer import DpoConfig, DpoObjective, KtoObjective
from kubetune.trainer.objectives.dpo import Dpo, dpo_losses
from kubetune.trainer.objectives.kto import kl_reference_point, kto_losses
from kubetune.trainer.objectives.preference import SequenceLogps

# Summed log-probs of 4 pairs (policy chosen/rejected, reference chosen/rejected), margins of both signs.
POLICY_CHOSEN = [-12.5, -30.25, -7.0, -55.125]
POLICY_REJECTED = [-14.0, -28.5, -9.75, -40.0]
REFERENCE_CHOSEN = [-13.0, -29.0, -7.5, -50.0]
REFERENCE_REJECTED = [-13.5, -29.5, -7.25, -45.5]
CHOSEN_TOKENS = [5, 12, 3, 20]
REJECTED_TOKENS = [6, 10, 3, 16]


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def tensors(*lists):
    return [torch.tensor(values, dtype=torch.float64) for values in lists]


def margins() -> list[float]:
    return [
        (pc - pr) - (rc - rr)
        for pc, pr, rc, rr in zip(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, strict=True)
    ]


@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sigmoid_loss_with_label_smoothing_is_the_conservative_dpo_formula(beta, smoothing):
    config = DpoConfig(beta=beta, label_smoothing=smoothing)
    losses, chosen, rejected = dpo_losses(
        config, *tensors(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED)
    )
    expected = [-(1 - smoothing) * log_sigmoid(beta * h) - smoothing * log_sigmoid(-beta * h) for h in margins()]
    assert losses.dtype == torch.float64
    assert losses.tolist() == pytest.approx(expected, rel=1e-12)
    assert chosen.tolist() == pytest.approx(
        [beta * (p - r) for p, r in zip(POLICY_CHOSEN, REFERENCE_CHOSEN, strict=True)], rel=1e-12
    )
    assert rejected.tolist() == pytest.approx(
        [beta * (p - r) for p, r in zip(POLICY_REJECTED, REFERENCE_REJECTED, strict=True)], rel=1e-12
    )


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_hinge_loss_is_relu_of_one_minus_beta_margin(beta):
    config = DpoConfig(beta=beta, loss_type="hinge")
    losses, _, _ = dpo_losses(config, *tensors(POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED))
    expected = [max(0.0, 1 - beta * h) for h in margins()]
    assert losses.tolist() == pytest.approx(expected, rel=1e-12)
    assert bool((losses == 0).any()) == (beta == 0.5)  # beta 0.5 puts the margin of 3 past the hinge


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_ipo_loss_squares_the_length_normalised_margin_against_one_over_two_beta(beta):
    """Through the objective: IPO divides each response's policy and reference log-probs by its
    target tokens (as TRL's IPO), then ``(h - 1/(2 beta))^2``."""
    dpo = Dpo(DpoObjective(dpo={"beta": beta, "loss_type": "ipo"}))
    reference = torch.tensor(REFERENCE_CHOSEN + REFERENCE_REJECTED, dtype=torch.float64)
    dpo.reference = lambda model, batch: reference
    policy = SequenceLogps(
        torch.tensor(POLICY_CHOSEN + POLICY_REJECTED, dtype=torch.float64),
        torch.tensor(CHOSEN_TOKENS + REJECTED_TOKENS, dtype=torch.float64),
    )
    losses, _, _ = dpo.pair_losses(None, {}, policy)
    expected = []
    for pc, pr, rc, rr, tc, tr in zip(
        POLICY_CHOSEN,
        POLICY_REJECTED,
        REFERENCE_CHOSEN,
        REFERENCE_REJECTED,
        CHOSEN_TOKENS,
        REJECTED_TOKENS,
        strict=True,
    ):
        h = (pc - rc) / tc - (pr - rr) / tr
        expected.append((h - 1 / (2 * beta)) ** 2)
    assert losses.tolist() == pytest.approx(expected, rel=1e-12)


def test_kto_losses_are_the_kto_paper_formula_with_a_clamped_batch_kl():
    beta, desirable_weight, undesirable_weight = 0.2, 1.0, 1.5
    policy, reference = tensors([-10.0, -20.0, -5.0, -8.0], [-11.0, -19.0, -6.0, -7.5])
    policy_kl, reference_kl = tensors([-30.0, -25.0, -40.0, -22.0], [-31.0, -25.5, -39.0, -22.25])
    desirable = torch.tensor([True, False, True, False])
    kl = kl_reference_point(policy_kl, reference_kl)
    losses, rewards = kto_losses(beta, desirable_weight, undesirable_weight, policy, reference, kl, desirable)
    z = max(0.0, sum(p - r for p, r in zip(policy_kl.tolist(), reference_kl.tolist(), strict=True)) / 4)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = []
    for p, r, good in zip(policy.tolist(), reference.tolist(), desirable.tolist(), strict=True):
        ratio = p - r
        if good:
            expected.append(desirable_weight * (1 - sigmoid(beta * (ratio - z))))
        else:
            expected.append(undesirable_weight * (1 - sigmoid(beta * (z - ratio))))
    assert float(kl) == pytest.approx(z, rel=1e-12) and z > 0
    assert losses.tolist() == pytest.approx(expected, rel=1e-12)
    assert rewards.tolist() == pytest.approx(
        [beta * (p - r) for p, r in zip(policy.tolist(), reference.tolist(), strict=True)]
    )
    # A negative estimate is clamped to 0.
    assert float(kl_reference_point(reference_kl - 1, reference_kl)) == 0.0


def test_kto_config_is_typed():
    assert KtoObjective(kto={"beta": 0.3}).kto.beta == 0.3


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header.startswith(b"\x89PNG")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_loss_png_gets_a_reward_panel_when_the_records_have_rewards(tmp_path):
    from kubetune.trainer.metrics import MetricsWriter, plot_losses

    plain, rewarded = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"
    sft, dpo = MetricsWriter(plain, 3), MetricsWriter(rewarded, 3)
    for step in (1, 2, 3):
        sft.log(step, loss=1.0 / step)
        dpo.log(
            step,
            loss=0.69 / step,
            chosen_reward=0.1 * step,
            rejected_reward=-0.1 * step,
            reward_margin=0.2 * step,
            reward_accuracy=step / 3,
        )
    width, height = _png_size(plot_losses(plain, tmp_path / "sft.png"))
    width2, height2 = _png_size(plot_losses(rewarded, tmp_path / "dpo.png"))
    assert width2 == width and height2 > 1.5 * height  # the loss panel, and the rewards below it


def test_every_objective_name_has_its_config_class_and_its_registered_module():
    """The registry holds what the objective modules declare (none is listed by hand) and it
    matches the typed configs the spec accepts, one to one."""
    from kubetune.spec.trainer import OBJECTIVE_CONFIGS, LLMConfig
    from kubetune.trainer.objectives import OBJECTIVES, build_objective

    assert set(OBJECTIVES) == set(OBJECTIVE_CONFIGS)
    for name, config_class in OBJECTIVE_CONFIGS.items():
        config = LLMConfig(
            objective=name,
            dataset={"format": config_class.FORMATS[0]},
            model={"task": "sequence-classification" if name == "reward" else "causal-lm"},
        )
        assert build_objective(config).name == name
