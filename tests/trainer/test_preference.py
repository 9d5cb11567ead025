"""Preference objectives on the real model: learning, equivalences, references and bad input."""

from __future__ import annotations

import pytest
import torch
import yaml
from preference_data import swap_preference_rows
from synthetic_jobs import make_spec, swap_pairs, swap_prompt, write_jsonl

from kubetune.errors import DataError
from kubetune.trainer.metrics import read_metrics
from kubetune.trainer.run import run_training


def preference_spec(model_dir, data, run_dir, **trainer):
    """A small DPO job on the real model (LoRA on q/v), overridable per section."""
    sections = {
        "objective": "dpo",
        "dataset": {"path": str(data), "format": "preference"},
        "output": {"save_adapter": False, "save_merged": False},
    }
    for key, value in trainer.items():
        sections[key] = {**sections[key], **value} if isinstance(sections.get(key), dict) else value
    return make_spec(model_dir, data, run_dir, **sections)


def prefers_chosen(model_dir, pairs: list[tuple[str, str]]) -> float:
    """Share of pairs where the model at ``model_dir`` gives the swapped answer a higher log-prob."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def logp(prompt: str, answer: str) -> float:
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = prompt_ids + tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1].float()
        token_logps = logits.log_softmax(-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        return float(token_logps[len(prompt_ids) - 1 :].sum())

    wins = [logp(swap_prompt(a, b), f" {b} {a}") > logp(swap_prompt(a, b), f" {a} {b}") for a, b in pairs]
    return sum(wins) / len(wins)


def test_dpo_teaches_a_preference_that_holds_on_held_out_prompts(tmp_path, smollm2_dir):
    train_pairs = swap_pairs(20, 48)
    held_out = swap_pairs(21, 20, exclude=set(train_pairs))
    data = write_jsonl(tmp_path / "pref.jsonl", swap_preference_rows(train_pairs))
    spec = preference_spec(
        smollm2_dir,
        data,
        tmp_path / "run",
        training={"max_steps": 12, "batch_size": 8, "learning_rate": 2e-3},
        output={"save_merged": True},
    )
    before = prefers_chosen(smollm2_dir, held_out)
    result = run_training(spec, tmp_path / "run")
    after = prefers_chosen(result.merged_dir, held_out)
    print(f"held-out pairs preferring the chosen answer: {before:.0%} -> {after:.0%}")
    assert before <= 0.6
    assert after >= 0.9
    records = read_metrics(tmp_path / "run" / "output" / "metrics.jsonl")
    assert records[-1].objective["reward_accuracy"] >= 0.9
    assert records[-1].objective["reward_margin"] > records[0].objective["reward_margin"]


def run_steps(tmp_path, model_dir, name: str, rows: list[dict] | None = None, **trainer) -> list:
    """Run a short preference job; its progress records."""
    rows = rows if rows is not None else swap_preference_rows(swap_pairs(5, 8))
    data = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    trainer.setdefault("training", {})
    trainer["training"] = {"max_steps": 2, "batch_size": 4, **trainer["training"]}
    run_dir = tmp_path / name
    run_training(preference_spec(model_dir, data, run_dir, **trainer), run_dir)
    return read_metrics(run_dir / "output" / "metrics.jsonl")


def assert_same_steps(got: list, want: list) -> None:
    """Loss and every objective value of each step agree to float tolerance."""
    assert len(got) == len(want)
    for mine, ref in zip(got, want, strict=True):
        assert mine.loss == pytest.approx(ref.loss, rel=1e-4, abs=1e-6)
        assert mine.objective == pytest.approx(ref.objective, rel=1e-4, abs=1e-5)


def test_packing_gives_the_same_dpo_steps_as_padding(tmp_path, smollm2_dir):
    # Pairs of different lengths, so the padded batch really pads.
    rows = [
        {**row, "chosen": row["chosen"] + " indeed" * (i % 3)}
        for i, row in enumerate(swap_preference_rows(swap_pairs(5, 8)))
    ]
    padded = run_steps(tmp_path, smollm2_dir, "padded", rows)
    packed = run_steps(tmp_path, smollm2_dir, "packed", rows, training={"packing": True})
    assert packed[0].padded_tokens < padded[0].padded_tokens
    assert_same_steps(packed, padded)


def test_gradient_accumulation_equals_one_big_batch(tmp_path, smollm2_dir):
    big = run_steps(tmp_path, smollm2_dir, "big", training={"batch_size": 8})
    accumulated = run_steps(
        tmp_path, smollm2_dir, "accumulated", training={"batch_size": 2, "gradient_accumulation_steps": 4}
    )
    assert_same_steps(accumulated, big)


def test_precomputed_reference_equals_the_adapters_off_reference(tmp_path, smollm2_dir):
    live = run_steps(tmp_path, smollm2_dir, "live")
    stored = run_steps(tmp_path, smollm2_dir, "stored", dpo={"precompute_reference": True})
    assert_same_steps(stored, live)
    values = torch.load(tmp_path / "stored" / "output" / "reference_logps.pt")
    assert values.shape == (8, 2) and bool((values < 0).all())


def test_full_fine_tune_dpo_trains_against_a_frozen_copy(tmp_path, smollm2_dir):
    records = run_steps(tmp_path, smollm2_dir, "full", method="full", training={"learning_rate": 1e-5})
    assert records[0].loss == pytest.approx(0.693147, abs=1e-6)  # policy == reference at step 1
    assert records[0].objective["reward_margin"] == 0.0
    assert records[1].objective["reward_margin"] > 0  # the copy stayed put while the policy moved


@pytest.mark.parametrize("objective", ["simpo", "orpo"])
def test_reference_free_objectives_train_and_report_rewards(tmp_path, smollm2_dir, objective):
    records = run_steps(tmp_path, smollm2_dir, objective, objective=objective, training={"max_steps": 3})
    assert records[-1].loss < records[0].loss
    assert records[-1].objective["reward_margin"] > records[0].objective["reward_margin"]
    assert set(records[0].objective) == {"chosen_reward", "rejected_reward", "reward_margin", "reward_accuracy"}


def test_chat_message_pairs_are_rendered_with_the_chat_template(tmp_path, smollm2_dir):
    rows = [
        {
            "prompt": [{"role": "user", "content": swap_prompt(a, b)}],
            "chosen": [{"role": "assistant", "content": f"{b} {a}"}],
            "rejected": [{"role": "assistant", "content": f"{a} {b}"}],
        }
        for a, b in swap_pairs(6, 8)
    ]
    records = run_steps(tmp_path, smollm2_dir, "chat", rows, training={"max_steps": 2, "max_seq_len": 64})
    assert records[0].loss == pytest.approx(0.693147, abs=1e-6)
    assert records[0].real_tokens > 8 * 2 * 10  # the template's role markers are part of every sequence


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "p", "chosen": "a"}, ":2: no column 'rejected'"),
        ({"prompt": "p", "rejected": "a"}, ":2: no column 'chosen'"),
        ({"prompt": "p", "chosen": " same", "rejected": " same"}, ":2: 'chosen' and 'rejected' are the same"),
        ({"prompt": "p", "chosen": "  ", "rejected": "b"}, ":2: 'chosen' is an empty response"),
        ({"prompt": "p", "chosen": "a", "rejected": []}, ":2: 'rejected' is an empty response"),
    ],
)
def test_bad_preference_rows_are_rejected_before_training(tmp_path, smollm2_dir, row, message):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(DataError) as caught:
        run_training(preference_spec(smollm2_dir, data, tmp_path / "run"), tmp_path / "run")
    text = str(caught.value)
    assert message in text and str(data) in text and "\n" not in text
    assert not (tmp_path / "run" / "output" / "config.yaml").exists()


@pytest.mark.parametrize(
    ("trainer", "names"),
    [
        ({"objective": "dpo", "dataset": {"format": "alpaca"}}, ("objective 'dpo'", "format 'alpaca'")),
        ({"objective": "sft", "dataset": {"format": "preference"}}, ("objective 'sft'", "format 'preference'")),
        (
            {"objective": "reward", "dataset": {"format": "preference"}},
            ("objective 'reward'", "sequence-classification"),
        ),
        ({"objective": "dpo", "dataset": {"format": "preference"}, "orpo": {"lambda": 0.2}}, ("'orpo'", "'dpo'")),
        ({"objective": "dpo", "dataset": {"format": "preference"}, "dpo": {"loss_type": "kl"}}, ("loss_type",)),
        (
            {"objective": "simpo", "dataset": {"format": "preference"}, "training": {"chunked_loss": True}},
            ("chunked_loss", "simpo"),
        ),
        (
            {
                "objective": "dpo",
                "method": "full",
                "dataset": {"format": "preference"},
                "training": {"distributed": "fsdp"},
            },
            ("fsdp", "objective 'dpo'"),
        ),
        (
            {
                "objective": "kto",
                "dataset": {"format": "kto"},
                "kto": {"precompute_reference": True},
                "training": {"distributed": "fsdp"},
            },
            ("fsdp", "kto.precompute_reference"),
        ),
        ({"objective": "kto", "dataset": {"format": "kto"}, "training": {"batch_size": 1}}, ("kto", "batch_size")),
        (
            {
                "objective": "reward",
                "model": {"task": "sequence-classification"},
                "dataset": {"format": "preference"},
                "training": {"distributed": "fsdp"},
            },
            ("objective 'reward'", "fsdp"),
        ),
        ({"objective": "kto", "dataset": {"format": "preference"}}, ("objective 'kto'", "format 'preference'")),
    ],
)
def test_objective_config_errors_are_one_line_naming_the_fields(trainer, names):
    from kubetune.errors import ConfigError
    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec

    with pytest.raises(ConfigError) as caught:
        validate_config(JobSpec, {"name": "t", "trainer": trainer})
    text = str(caught.value)
    assert "\n" not in text and all(name in text for name in names), text


def test_objective_sections_round_trip_through_the_job_file(tmp_path):
    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec, write_job_file

    trainer = {"objective": "orpo", "orpo": {"lambda": 0.25}, "dataset": {"format": "preference"}}
    spec = validate_config(JobSpec, {"name": "t", "trainer": trainer})
    path = write_job_file(spec, tmp_path / "config.yaml")
    assert "lambda: 0.25" in path.read_text()
    again = validate_config(JobSpec, yaml.safe_load(path.read_text()))
    assert again.trainer.objective_config.orpo.lambda_ == 0.25


def test_a_rerun_reuses_the_stored_reference_log_probs_unless_resume_is_never(tmp_path, smollm2_dir):
    rows = swap_preference_rows(swap_pairs(5, 8))
    first = run_steps(tmp_path, smollm2_dir, "run", rows, dpo={"precompute_reference": True})
    assert first[0].loss == pytest.approx(0.693147, abs=1e-6)
    stored = tmp_path / "run" / "output" / "reference_logps.pt"
    values = torch.load(stored)
    values[:, 0] += 0.5  # the reference now likes every chosen answer more than the policy does
    torch.save(values, stored)
    again = run_steps(tmp_path, smollm2_dir, "run", rows, dpo={"precompute_reference": True})
    # h = -0.5 at step 1: -log sigmoid(-0.1 * 0.5)
    assert again[0].loss == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(-0.05)).item(), rel=1e-5)
    fresh = run_steps(
        tmp_path, smollm2_dir, "run", rows, dpo={"precompute_reference": True}, training={"resume": "never"}
    )
    assert fresh[0].loss == pytest.approx(0.693147, abs=1e-6)


def test_dpo_on_two_ddp_processes_matches_one_process(tmp_path, smollm2_dir):
    from test_distributed import torchrun

    data = write_jsonl(tmp_path / "pref.jsonl", swap_preference_rows(swap_pairs(7, 10)))
    common = {"dataset": {"eval_fraction": 0.2}, "training": {"max_steps": 2, "eval_every": 1}}
    one = preference_spec(smollm2_dir, data, tmp_path / "one", **common)
    one.trainer.training.batch_size = 4
    two = preference_spec(smollm2_dir, data, tmp_path / "two", **common)
    two.trainer.training.batch_size = 2
    run_training(one, tmp_path / "one")
    single = read_metrics(tmp_path / "one" / "output" / "metrics.jsonl")
    records = torchrun(two, tmp_path / "two", processes=2)
    assert [r["loss"] for r in records] == pytest.approx([r.loss for r in single], rel=1e-4)
    assert [r["eval_loss"] for r in records] == pytest.approx([r.eval_loss for r in single], rel=1e-4)
    for mine, ref in zip(records, single, strict=True):
        assert mine["objective"] == pytest.approx(ref.objective, rel=1e-4, abs=1e-5)


def test_every_catalog_model_has_a_dpo_blueprint_that_trains(tmp_path, smollm2_dir):
    from kubetune.runtimes import get_runtime, list_runtimes
    from kubetune.spec.base import validate_config
    from kubetune.spec.job import JobSpec
    from kubetune.spec.trainer import merge_llm_config

    dpo = [runtime for runtime in list_runtimes() if runtime.name.endswith("-dpo")]
    models = {runtime.manifest["metadata"]["labels"]["kubetune.dev/model"] for runtime in list_runtimes()}
    assert {runtime.name.removesuffix("-dpo") for runtime in dpo} == models
    assert all(r.llm_config.objective == "dpo" and r.llm_config.dataset.format == "preference" for r in dpo)
    runtime = get_runtime("smollm2-135m-dpo")
    data = write_jsonl(tmp_path / "pref.jsonl", swap_preference_rows(swap_pairs(8, 4)))
    job = {
        "model": {"path": str(smollm2_dir)},
        "dataset": {"path": str(data)},
        "training": {"max_steps": 1, "max_seq_len": 32},
        "output": {"save_adapter": False, "save_merged": False},
    }
    trainer = merge_llm_config(runtime.llm_config.model_dump(mode="json", exclude_none=True), job)
    spec = validate_config(JobSpec, {"name": "bp", "trainer": trainer, "output_dir": str(tmp_path / "run")})
    run_training(spec, tmp_path / "run")
    [record] = read_metrics(tmp_path / "run" / "output" / "metrics.jsonl")
    assert record.loss == pytest.approx(0.693147, abs=1e-6) and "reward_margin" in record.objective


def test_sigkilled_dpo_run_resumes_and_matches_an_uninterrupted_run(tmp_path, smollm2_dir):
    import os
    import signal
    import time

    from test_resume import _launch, _metrics

    from kubetune.trainer.checkpoint import complete_checkpoints, latest_checkpoint

    steps = 6
    data = write_jsonl(tmp_path / "pref.jsonl", swap_preference_rows(swap_pairs(9, 12)))
    sections = {
        "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"], "dropout": 0.1},
        "dpo": {"precompute_reference": True},
        "training": {"max_steps": steps, "batch_size": 2, "checkpoint_every": 2, "lr_scheduler": "cosine"},
    }
    straight_dir, broken_dir = tmp_path / "straight", tmp_path / "broken"
    straight = _launch(preference_spec(smollm2_dir, data, straight_dir, **sections), straight_dir)
    broken_spec = preference_spec(smollm2_dir, data, broken_dir, **sections)
    broken = _launch(broken_spec, broken_dir)
    checkpoints = broken_dir / "output" / "checkpoints"
    deadline = time.monotonic() + 300
    while latest_checkpoint(checkpoints) is None:
        assert broken.poll() is None, broken.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(broken.pid, signal.SIGKILL)
    broken.wait()
    killed_at = max(step for step, _ in complete_checkpoints(checkpoints))
    assert killed_at < steps
    resumed = _launch(broken_spec, broken_dir)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert f"step-{killed_at}" in output
    output, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, output
    expected, got = _metrics(straight_dir), _metrics(broken_dir)
    assert [r["step"] for r in got] == list(range(1, steps + 1))
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in expected], rel=1e-4)
    for mine, ref in zip(got, expected, strict=True):
        assert mine["objective"] == pytest.approx(ref["objective"], rel=1e-4, abs=1e-5)


def test_cli_trains_a_dpo_job_file_and_reports_the_rewards(tmp_path, smollm2_dir):
    import subprocess
    import sys

    data = write_jsonl(tmp_path / "pref.jsonl", swap_preference_rows(swap_pairs(10, 8)))
    job = {
        "name": "dpo-cli",
        "output_dir": "run",
        "trainer": {
            "model": {"path": str(smollm2_dir)},
            "dataset": {"path": str(data), "format": "preference"},
            "method": "lora",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "objective": "dpo",
            "dpo": {"beta": 0.1},
            "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "max_seq_len": 32},
            "output": {"save_merged": False},
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "train", "-f", str(path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_metrics(tmp_path / "run" / "output" / "metrics.jsonl")
    assert [r.step for r in records] == [1, 2]
    assert records[1].objective["reward_accuracy"] >= 0.5 and records[1].objective["reward_margin"] > 0
    saved = yaml.safe_load((tmp_path / "run" / "output" / "config.yaml").read_text())
    assert saved["trainer"]["objective"] == "dpo" and saved["trainer"]["dpo"]["beta"] == 0.1


def test_cli_progress_line_shows_the_objective_values():
    from types import SimpleNamespace

    from kubetune.cli.job_progress import describe_progress
    from kubetune.contracts.progress import Progress

    progress = Progress(step=3, total_steps=10, loss=0.51, objective={"reward_margin": 0.3125, "reward_accuracy": 0.75})
    line = describe_progress(SimpleNamespace(progress=progress))
    assert line.startswith("loss 0.5100 | reward_margin 0.3125 | reward_accuracy 0.75")


def test_reward_model_ranks_held_out_pairs_and_exports_a_sequence_classifier(tmp_path, smollm2_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train_pairs = swap_pairs(30, 48)
    held_out = swap_pairs(31, 20, exclude=set(train_pairs))
    data = write_jsonl(tmp_path / "pref.jsonl", swap_preference_rows(train_pairs))
    spec = preference_spec(
        smollm2_dir,
        data,
        tmp_path / "run",
        objective="reward",
        model={"path": str(smollm2_dir), "task": "sequence-classification"},
        lora={"r": 16, "alpha": 32, "target_modules": "all-linear"},
        training={"max_steps": 16, "batch_size": 8, "learning_rate": 2e-3},
        output={"save_merged": True},
    )
    result = run_training(spec, tmp_path / "run")
    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    model = AutoModelForSequenceClassification.from_pretrained(result.merged_dir).eval()
    assert model.config.num_labels == 1

    def score(a: str, b: str, answer: str) -> float:
        text = swap_prompt(a, b) + answer + tokenizer.eos_token
        with torch.no_grad():
            return float(model(**tokenizer(text, return_tensors="pt")).logits[0, 0])

    wins = [score(a, b, f" {b} {a}") > score(a, b, f" {a} {b}") for a, b in held_out]
    print(f"held-out pairwise accuracy: {sum(wins) / len(wins):.0%}")
    assert sum(wins) / len(wins) >= 0.9
