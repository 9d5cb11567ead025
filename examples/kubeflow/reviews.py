"""A small Yelp-like review dataset with three classes (0 negative, 1 neutral, 2 positive), generated offline.

Train and held-out rows use different sentence templates, so held-out accuracy measures what the
classifier learned about the sentiment words, not the sentences.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

WORDS = {
    0: [
        "awful",
        "terrible",
        "disgusting",
        "horrible",
        "dreadful",
        "bland",
        "rude",
        "cold",
        "dirty",
        "stale",
        "overpriced",
        "greasy",
        "slow",
        "disappointing",
        "inedible",
        "miserable",
    ],
    1: [
        "okay",
        "average",
        "fine",
        "decent",
        "ordinary",
        "acceptable",
        "alright",
        "so-so",
        "passable",
        "middling",
        "adequate",
        "unremarkable",
        "standard",
        "fair",
        "plain",
        "reasonable",
    ],
    2: [
        "great",
        "wonderful",
        "delicious",
        "excellent",
        "lovely",
        "fantastic",
        "superb",
        "amazing",
        "perfect",
        "outstanding",
        "delightful",
        "brilliant",
        "tasty",
        "friendly",
        "charming",
        "marvelous",
    ],
}
TRAIN_TEMPLATES = [
    "The food was {}.",
    "Service here is {}.",
    "A {} place to eat.",
    "Honestly, {} experience.",
    "Our waiter was {} all night.",
    "The dessert menu is {}.",
    "Parking and ambience: {}.",
    "I found the whole visit {}.",
]
HELD_OUT_TEMPLATES = ["What a {} dinner we had.", "The pizza tasted {} tonight.", "Breakfast here is {}."]


def reviews(templates: list[str]) -> list[dict]:
    """One row per (template, class, word): ``{"text", "label"}`` with integer labels, as Yelp's."""
    return [
        {"text": template.format(word), "label": label}
        for template, (label, words) in itertools.product(templates, WORDS.items())
        for word in words
    ]


def write_dataset(folder: Path) -> Path:
    """A dataset folder as a Hub repository lays it out: ``train.jsonl`` and a held-out ``test.jsonl``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", reviews(TRAIN_TEMPLATES)), ("test", reviews(HELD_OUT_TEMPLATES))):
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    return folder
