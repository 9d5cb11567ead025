"""FSDP2 beyond full fine-tunes: sharded LoRA/DoRA, resharded resume from DCP checkpoints, sharded export."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from synthetic_jobs import make_spec, swap_pairs, swap_rows, write_jsonl
from test_distributed_levers import assert_same_training, metrics, run_jobs_under_torchrun

from kubetune.trainer.checkpoint import complete_checkpoints
from kubetune.trainer.run import run_training
from kubetune.trainer.sharded_export import INDEX_FILE

LORA = {"r": 4, "alpha": 8, "target_modules": "all-linear"}


def merged_weights(run_dir) -> dict[str, torch.Tensor]:
    """Every tensor of ``merged/``, from a single file or a sharded folder with an index."""
    folder = run_dir / "output" / "merged"
    return {name: t for file in sorted(folder.glob("*.safetensors")) for name, t in load_file(file).items()}


def test_sharded_lora_and_dora_train_and_export_like_one_process(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "data.jsonl", swap_rows(swap_pairs(12, 8)))
    training = {"max_steps": 3, "learning_rate": 3e-3, "max_seq_len": 48}

    def spec(name, method, batch, distributed="auto"):
        return make_spec(
            tiny_llama_dir,
            data,
            tmp_path / name,
            method=method,
            lora=LORA,
            training={**training, "batch_size": batch, "distributed": distributed},
        )

    for method in ("lora", "dora"):
        run_training(spec(f"one-{method}", method, 4), tmp_path / f"one-{method}")
    run_jobs_under_torchrun([spec(f"fsdp-{m}", m, 2, "fsdp") for m in ("lora", "dora")], processes=2)
    for method in ("lora", "dora"):
        sharded, single = tmp_path / f"fsdp-{method}", tmp_path / f"one-{method}"
        assert_same_training(sharded, single, method)
        folder = sharded / "output" / "merged"
        index = json.loads((folder / INDEX_FILE).read_text())
        assert set(index["weight_map"].values()) == {p.name for p in folder.glob("model-*.safetensors")}
        got, want = merged_weights(sharded), merged_weights(single)
        assert got.keys() == want.keys()
        for name, tensor in want.items():
            assert (got[name] - tensor).norm() <= 1e-3 * tensor.norm(), f"{method}: {name}"
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(folder)  # an ordinary transformers checkpoint


def test_sharded_checkpoint_resumes_on_another_number_of_processes(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "data.jsonl", swap_rows(swap_pairs(13, 12)))
    # Global micro-batch 4 everywhere: 2 processes x 2, 1 x 4, 4 x 1.
    training = {
        "max_steps": 6,
        "learning_rate": 3e-3,
        "max_seq_len": 48,
        "checkpoint_every": 3,
        "lr_scheduler": "cosine",
        "warmup_steps": 1,
        "distributed": "fsdp",
    }

    def spec(name, batch, method="lora"):
        return make_spec(
            tiny_llama_dir,
            data,
            tmp_path / name,
            method=method,
            lora=LORA,
            training={**training, "batch_size": batch},
            output={"save_merged": False},
        )

    run_jobs_under_torchrun([spec("straight", 2)], processes=2)
    straight = tmp_path / "straight"
    assert [s for s, _ in complete_checkpoints(straight / "output" / "checkpoints")] == [3, 6]
    assert (straight / "output" / "checkpoints" / "step-3" / "state" / ".metadata").is_file()
    for name in ("on-1", "on-4"):
        # The run as it was after step 3 (the job that wrote step-6 "never happened").
        shutil.copytree(straight, tmp_path / name)
        shutil.rmtree(tmp_path / name / "output" / "checkpoints" / "step-6")
        shutil.rmtree(tmp_path / name / "output" / "adapter")
    run_training(spec("on-1", 4), tmp_path / "on-1")
    run_jobs_under_torchrun([spec("on-4", 1)], processes=4)
    for name in ("on-1", "on-4"):
        assert [r["step"] for r in metrics(tmp_path / name)] == list(range(1, 7))
        assert_same_training(tmp_path / name, straight, name)


def test_resume_refuses_a_data_position_the_new_batch_cannot_reach(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "data.jsonl", swap_rows(swap_pairs(14, 12)))
    training = {"max_steps": 2, "checkpoint_every": 1, "max_seq_len": 48}
    first = make_spec(tiny_llama_dir, data, tmp_path / "run", training={**training, "batch_size": 2, "max_steps": 1})
    run_training(first, tmp_path / "run")
    again = make_spec(tiny_llama_dir, data, tmp_path / "run", training={**training, "batch_size": 4})
    from kubetune.errors import ConfigError

    with pytest.raises(ConfigError, match=r"step-1: written with 2 examples per micro-step.*this run takes 4"):
        run_training(again, tmp_path / "run")


def test_sharded_lora_preference_objectives_train_like_one_process(tmp_path, tiny_llama_dir):
    """Under FSDP2 the reference of DPO and KTO is the same sharded model with its adapters off;
    KTO's KL reference point is averaged over the processes' micro-batches, so 2 x 2 rows equal 1 x 4."""
    from preference_data import swap_preference_rows
    from test_kto import kto_rows

    data = {
        "dpo": write_jsonl(tmp_path / "pref.jsonl", swap_preference_rows(swap_pairs(14, 8))),
        "kto": write_jsonl(tmp_path / "kto.jsonl", kto_rows(8, seed=15)),
    }
    sections = {"dpo": {"dpo": {"beta": 0.5}}, "kto": {"kto": {"beta": 0.5}}}
    formats = {"dpo": "preference", "kto": "kto"}

    def spec(name, objective, batch, distributed="auto"):
        return make_spec(
            tiny_llama_dir,
            data[objective],
            tmp_path / name,
            lora=LORA,
            objective=objective,
            dataset={"format": formats[objective]},
            training={"max_steps": 3, "learning_rate": 3e-3, "max_seq_len": 48, "batch_size": batch,
                      "distributed": distributed},
            output={"save_merged": False},
            **sections[objective],
        )  # fmt: skip

    for objective in sections:
        run_training(spec(f"one-{objective}", objective, 4), tmp_path / f"one-{objective}")
    run_jobs_under_torchrun([spec(f"fsdp-{o}", o, 2, "fsdp") for o in sections], processes=2)
    for objective in sections:
        sharded, single = tmp_path / f"fsdp-{objective}", tmp_path / f"one-{objective}"
        assert_same_training(sharded, single, objective)
        for got, want in zip(metrics(sharded), metrics(single), strict=True):
            assert got["objective"] == pytest.approx(want["objective"], rel=1e-3, abs=1e-5), objective
