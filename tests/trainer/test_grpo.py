"""GRPO's loss: the math in fp64, parity with TRL's GRPOTrainer on fixed completions, and the
checks on reward functions, ``format: prompt`` rows and the ``grpo`` config."""

from __future__ import annotations

import pytest
import torch
from grpo_tasks import COLOURS, colour_prompt
from synthetic_jobs import make_spec, write_jsonl

from kubetune.errors import ConfigError, DataError
from kubetune.spec.trainer import GrpoConfig, GrpoObjective
from kubetune.trainer.data.prompts import PromptExample
from kubetune.trainer.loop import MicroBatchStream
from kubetune.trainer.objectives.base import PrepareContext
from kubetune.trainer.objectives.grpo import Grpo, per_completion, token_losses
from kubetune.trainer.rollout import RolloutStream
from kubetune.trainer.run import run_training

GROUP = 4
BETA = 0.04
REWARDS = [{"function": "grpo_tasks:length_score"}, {"function": "regex", "pattern": COLOURS, "weight": 0.5}]


def _direct_step_loss(loss_type, epsilon, beta, max_new, micro_batches) -> float:
    """The step's loss by the formulas of the GRPO, Dr. GRPO and DAPO papers, one token at a time (floats)."""
    import math

    sequences = [seq for batch in micro_batches for seq in batch]
    token_terms = []
    for logps, old, ref, advantage in sequences:
        terms = []
        for l_t, o_t, r_t in zip(logps, old, ref, strict=True):
            ratio = math.exp(l_t - o_t)
            clipped = min(max(ratio, 1 - epsilon), 1 + epsilon)
            term = -min(ratio * advantage, clipped * advantage)
            term += beta * (math.exp(r_t - l_t) - (r_t - l_t) - 1)
            terms.append(term)
        token_terms.append(terms)
    if loss_type == "grpo":
        return sum(sum(t) / len(t) for t in token_terms) / len(token_terms)
    if loss_type == "dr_grpo":
        return sum(sum(t) for t in token_terms) / (len(token_terms) * max_new)
    return sum(sum(t) for t in token_terms) / sum(len(t) for t in token_terms)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_one_step_loss_over_micro_batches_equals_the_direct_formula_in_fp64(loss_type):
    """Two micro-batches of completions of different lengths, as the loop sums them: sum of each
    micro-batch's summed loss over the step's units."""
    generator = torch.Generator().manual_seed(3)
    config = GrpoConfig(rewards=REWARDS, loss_type=loss_type, beta=BETA, epsilon=0.2, max_new_tokens=6)
    micro_batches = []
    for lengths in ((6, 2, 4), (1, 5)):
        batch = []
        for length in lengths:
            logps = (-torch.rand(length, generator=generator, dtype=torch.float64) * 3).tolist()
            old = [l_t + float(torch.randn(1, generator=generator, dtype=torch.float64)) * 0.3 for l_t in logps]
            ref = [l_t + float(torch.randn(1, generator=generator, dtype=torch.float64)) * 0.5 for l_t in logps]
            batch.append((logps, old, ref, float(torch.randn(1, generator=generator, dtype=torch.float64))))
        micro_batches.append(batch)
    summed, units, any_clipped = 0.0, 0, False
    for batch in micro_batches:
        width = max(len(seq[0]) for seq in batch)

        def padded(index, rows=batch, width=width):
            return torch.tensor([seq[index] + [0.0] * (width - len(seq[index])) for seq in rows], dtype=torch.float64)

        mask = torch.tensor([[1.0] * len(s[0]) + [0.0] * (width - len(s[0])) for s in batch], dtype=torch.float64)
        advantages = torch.tensor([seq[3] for seq in batch], dtype=torch.float64)
        losses, clipped, kl = token_losses(config, padded(0), padded(1), padded(2), advantages)
        assert kl is not None
        any_clipped |= bool((clipped & (mask > 0)).any())
        summed += float(per_completion(losses, mask, loss_type, config.max_new_tokens).sum())
        units += int(mask.sum()) if loss_type == "dapo" else len(batch)
    assert any_clipped  # the test data exercises the clip as well as the KL term
    expected = _direct_step_loss(loss_type, 0.2, BETA, 6, micro_batches)
    assert summed / units == pytest.approx(expected, rel=1e-12, abs=1e-14)


class FixedCompletions:
    """A generation engine that returns given completions (the engine interface, fed by the test)."""

    def __init__(self, completions: list[list[int]]):
        self.completions = completions

    def generate(self, prompts: list[list[int]]) -> list[list[int]]:
        assert len(self.completions) == len(prompts) * GROUP
        return self.completions

    def sync_weights(self) -> None:
        pass


def _lora():
    import peft

    return peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


@pytest.fixture(scope="module")
def policy(smollm2_dir):
    """SmolLM2 with a LoRA adapter whose B matrices are not zero (the policy differs from the reference)."""
    import peft
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    model = peft.get_peft_model(model, _lora())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model.train(), tokenizer


def _fixed_rollout(tokenizer):
    prompts = [colour_prompt("apple"), colour_prompt("river")]
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    assert len(prompt_ids[0]) == len(prompt_ids[1])  # TRL does not pass position ids: no left padding here
    eos = tokenizer.eos_token_id
    texts = [" red", " with a brush", " blue and green", " by", " green", " in the", " gold", " silver and"]
    completions = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    completions = [[*ids, eos] if index % 3 == 0 else ids for index, ids in enumerate(completions)]
    rows = [{"prompt": p} for p in prompts]
    return rows, prompt_ids, completions


def _kubetune_loss(model, tokenizer, loss_type: str, rows, prompt_ids, completions):
    config = GrpoObjective(grpo=GrpoConfig(rewards=REWARDS, num_generations=GROUP, beta=BETA, loss_type=loss_type))
    objective = Grpo(config)
    examples = [PromptExample(ids, row, f"row {i}") for i, (ids, row) in enumerate(zip(prompt_ids, rows, strict=True))]
    context = PrepareContext(examples, 2, tokenizer.pad_token_id, torch.device("cpu"), full_finetune=False)
    objective.prepare(model, context)
    training = make_spec(".", "d.jsonl", ".", training={"batch_size": 2}).trainer.training
    prompts = MicroBatchStream(examples, training.model_copy(update={"seed": 0}), rank=0, world_size=1)
    # The data order is shuffled per epoch: give the engine the completions in the order it asks.
    stream = RolloutStream(
        prompts,
        objective,
        FixedCompletions([]),
        model,
        lambda ids: tokenizer.batch_decode(ids, skip_special_tokens=True),
        1,
        torch.device("cpu"),
    )
    order = [examples.index(example) for example in next(iter(prompts))]
    prompts.position = type(prompts.position)()
    stream.engine = FixedCompletions([c for i in order for c in completions[i * GROUP : (i + 1) * GROUP]])
    batch = next(iter(stream))
    out = objective.loss(model, objective.collate(batch, tokenizer.pad_token_id, packing=False))
    return _value_and_gradients(model, out.summed / out.units)


def _trl_loss(policy, model_dir, tokenizer, loss_type: str, rows, prompt_ids, completions, tmp_path):
    """TRL's loss; its trainer gets a new LoRA adapter (so its reference is the adapters-off model,
    as kubetune's), loaded with the weights of ``policy``'s adapter."""
    import re

    import peft
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    def length_score(prompts, completions, **kwargs):
        return [(len(text) % 5) / 4 for text in completions]

    def colour(prompts, completions, **kwargs):
        return [float(re.fullmatch(COLOURS, text.strip(), re.DOTALL) is not None) for text in completions]

    def rollout(prompts, trainer):
        index = {row["prompt"]: i for i, row in enumerate(rows)}
        seen: dict[str, int] = {}
        out_prompts, out_completions = [], []
        for prompt in prompts:
            i = index[prompt]
            k = seen.get(prompt, 0)
            seen[prompt] = k + 1
            out_prompts.append(prompt_ids[i])
            out_completions.append(completions[i * GROUP + k])
        return {"prompt_ids": out_prompts, "completion_ids": out_completions, "logprobs": None}

    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=2 * GROUP,
        num_generations=GROUP,
        beta=BETA,
        epsilon=0.2,
        loss_type=loss_type,
        scale_rewards="none" if loss_type == "dr_grpo" else "group",
        temperature=1.0,
        max_completion_length=GrpoConfig(rewards=REWARDS).max_new_tokens,
        reward_weights=[1.0, 0.5],
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        gradient_accumulation_steps=1,
        # kubetune's KL term is the GRPO paper's k3 estimator; TRL's default also multiplies it by the
        # (value-1) importance ratio, which changes its gradient (DeepSeek-V3.2's correction).
        use_bias_correction_kl=False,
    )
    trainer = trl.GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        peft_config=_lora(),
        reward_funcs=[length_score, colour],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        rollout_func=rollout,
    )
    peft.set_peft_model_state_dict(trainer.model, peft.get_peft_model_state_dict(policy))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # what Trainer.train sets for a step of one micro-batch
    inputs = trainer._generate_and_score_completions([row for row in rows for _ in range(GROUP)])
    return _value_and_gradients(trainer.model, trainer._compute_loss(trainer.model, inputs))


def _value_and_gradients(model, loss: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {name: param.grad.clone() for name, param in model.named_parameters() if param.requires_grad}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_loss_and_gradients_match_trl_on_the_same_completions_and_rewards(
    policy, smollm2_dir, tmp_path, loss_type, monkeypatch
):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model, tokenizer = policy
    rows, prompt_ids, completions = _fixed_rollout(tokenizer)
    (ours, our_grads) = _kubetune_loss(model, tokenizer, loss_type, rows, prompt_ids, completions)
    (theirs, their_grads) = _trl_loss(model, smollm2_dir, tokenizer, loss_type, rows, prompt_ids, completions, tmp_path)
    assert ours == pytest.approx(theirs, abs=1e-4, rel=0)
    assert abs(ours) > 1e-3  # not two zeros: the KL term is on (and, but for grpo, the length-weighted policy term)
    assert sorted(our_grads) == sorted(their_grads) and len(our_grads) == 4 * 30  # q and v, A and B, 30 layers
    ours_flat = torch.cat([our_grads[name].flatten() for name in sorted(our_grads)])
    theirs_flat = torch.cat([their_grads[name].flatten() for name in sorted(our_grads)])
    assert ours_flat.norm() > 1e-3
    assert (ours_flat - theirs_flat).abs().max() <= 1e-4 * max(1.0, float(theirs_flat.abs().max()))


def _grpo_spec(model_dir, data, run_dir, rewards=REWARDS, **sections):
    return make_spec(
        model_dir,
        data,
        run_dir,
        objective="grpo",
        dataset={"format": "prompt"},
        grpo={"num_generations": 2, "max_new_tokens": 1, "rewards": rewards},
        training={"max_steps": 1, "batch_size": 1},
        **sections,
    )


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("grpo_tasks:raises", "reward function 'raises' failed on {data}:2: KeyError: 'score'"),
        ("grpo_tasks:one_short", "reward function 'one_short' returned list of 1 on {data}:1; it must return a list"),
        ("grpo_tasks:not_a_number", "reward function 'not_a_number' returned 'high' on {data}:"),
    ],
)
def test_a_failing_reward_function_stops_the_job_naming_the_function_and_row(tmp_path, smollm2_dir, function, message):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": colour_prompt("apple"), "n": 1}, {"prompt": "Hi", "n": 2}])
    spec = _grpo_spec(smollm2_dir, data, tmp_path / "run", [{"function": function}])
    spec.trainer.training.max_steps = 2
    spec.trainer.training.seed = 1
    with pytest.raises(DataError) as caught:
        run_training(spec, tmp_path / "run")
    text = str(caught.value)
    assert "\n" not in text
    head, _, tail = message.format(data=data).partition(":2:" if ":2:" in message else ":1;")
    assert head in text and tail in text, text


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "q"}, ":2: no column 'prompt' needed by format 'prompt'"),
        ({"prompt": 5}, ":2: column 'prompt' is a number (5); format 'prompt' needs text or messages"),
        ({"prompt": "   "}, ":2: column 'prompt' is empty"),
        ({"prompt": []}, ":2: column 'prompt' is an empty list"),
        (
            {"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            ":2: column 'prompt': the last message is from 'assistant'",
        ),
        ({"prompt": "p", "answer": None}, ":2: no value in column 'answer', which reward 'exact_match' compares with"),
    ],
)
def test_bad_prompt_rows_are_rejected_before_training(tmp_path, smollm2_dir, row, message):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "answer": "a"}, row])
    rewards = [{"function": "exact_match", "column": "answer"}]
    with pytest.raises(DataError) as caught:
        run_training(_grpo_spec(smollm2_dir, data, tmp_path / "run", rewards), tmp_path / "run")
    text = str(caught.value)
    assert message in text and str(data) in text and "\n" not in text
    assert not (tmp_path / "run" / "output" / "config.yaml").exists()


@pytest.mark.parametrize(
    ("grpo", "names"),
    [
        (None, ("objective 'grpo' needs a 'grpo' section",)),
        ({"rewards": []}, ("grpo.rewards",)),
        ({"rewards": [{"function": "exact_match"}]}, ("exact_match", "column")),
        ({"rewards": [{"function": "regex", "pattern": "("}]}, ("regex", "does not compile")),
        ({"rewards": [{"function": "score_it"}]}, ("'score_it'", "package.module:function")),
        ({"rewards": [{"function": "m:f", "column": "a"}]}, ("'column'", "exact_match")),
        ({"rewards": [{"function": "m:f"}], "num_generations": 1}, ("num_generations",)),
        ({"rewards": [{"function": "m:f"}], "loss_type": "ppo"}, ("loss_type",)),
        ({"rewards": [{"function": "m:f"}], "engine": "vllm"}, ("engine",)),
    ],
)
def test_grpo_config_errors_are_one_line_naming_the_fields(grpo, names):
    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec

    trainer = {"objective": "grpo", "dataset": {"format": "prompt"}}
    if grpo is not None:
        trainer["grpo"] = grpo
    with pytest.raises(ConfigError) as caught:
        validate_config(JobSpec, {"name": "t", "trainer": trainer})
    text = str(caught.value)
    assert "\n" not in text and all(name in text for name in names), text


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("no_such_module_xyz:f", "grpo.rewards: cannot import module 'no_such_module_xyz'"),
        ("grpo_tasks:missing", "grpo.rewards: 'grpo_tasks' has no function 'missing'"),
    ],
)
def test_a_reward_function_that_cannot_be_imported_stops_the_job_before_the_model_loads(
    tmp_path, smollm2_dir, function, message
):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p"}])
    with pytest.raises(ConfigError, match=message):
        run_training(_grpo_spec(smollm2_dir, data, tmp_path / "run", [{"function": function}]), tmp_path / "run")


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"training": {"distributed": "fsdp"}}, ("objective 'grpo'", "'fsdp'", "sampling from FSDP2 shards")),
        ({"training": {"packing": True}}, ("training.packing", "grpo")),
        ({"dataset": {"format": "prompt", "eval_fraction": 0.1}}, ("eval_fraction",)),
        ({"dataset": {"format": "completion"}}, ("objective 'grpo'", "format 'prompt'")),
    ],
)
def test_grpo_refuses_settings_it_cannot_honour(extra, names):
    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec

    trainer = {"objective": "grpo", "dataset": {"format": "prompt"}, "grpo": {"rewards": REWARDS}, **extra}
    with pytest.raises(ConfigError) as caught:
        validate_config(JobSpec, {"name": "t", "trainer": trainer})
    text = str(caught.value)
    assert "\n" not in text and all(name in text for name in names), text
