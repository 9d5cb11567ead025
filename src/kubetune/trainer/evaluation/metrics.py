"""The evaluation metrics, each a mean over rows in 0..1 (pure Python, no heavy imports).

Answers are compared after :func:`normalize`: case-folded, whitespace collapsed, and
punctuation at either end dropped, so ``"Paris."`` matches ``"paris"``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
_EDGE_PUNCTUATION = string.punctuation + "“”‘’«»…"


def normalize(text: str) -> str:
    """Case-folded, whitespace collapsed to single spaces, punctuation at both ends stripped."""
    return " ".join(text.split()).casefold().strip(_EDGE_PUNCTUATION + " ")


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized answers are equal."""
    return float(normalize(prediction) == normalize(reference))


def first_word(prediction: str, reference: str) -> float:
    """1.0 when the first words agree (for answers like ``"Positive, because ..."``)."""
    predicted, expected = _WORD.findall(prediction.casefold()), _WORD.findall(reference.casefold())
    return float(bool(predicted) and bool(expected) and predicted[0] == expected[0])


def contains(prediction: str, reference: str) -> float:
    """1.0 when the normalized reference appears in the normalized prediction."""
    expected = normalize(reference)
    return float(bool(expected) and expected in normalize(prediction))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of words, as an F-measure of precision and recall."""
    predicted, expected = _WORD.findall(prediction.casefold()), _WORD.findall(reference.casefold())
    if not predicted or not expected:
        return float(predicted == expected)
    previous = [0] * (len(expected) + 1)
    for word in predicted:
        current = [0]
        for index, other in enumerate(expected):
            current.append(previous[index] + 1 if word == other else max(previous[index + 1], current[index]))
        previous = current
    common = previous[-1]
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


#: Per-row metrics of generated answers, by name (:data:`kubetune.contracts.evaluation.GENERATION_METRICS`).
ROW_METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "first_word": first_word,
    "contains": contains,
    "rouge_l": rouge_l,
}


def generation_scores(predictions: Sequence[str], references: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """The mean of each named row metric over the rows."""
    rows = max(1, len(references))
    return {
        name: sum(ROW_METRICS[name](p, r) for p, r in zip(predictions, references, strict=True)) / rows
        for name in names
    }


def classification_scores(predicted: Sequence[int], labels: Sequence[int], names: Sequence[str]) -> dict[str, float]:
    """``accuracy`` and ``f1`` (macro: the mean F1 of every class seen in the labels or predictions)."""
    scores: dict[str, float] = {}
    if "accuracy" in names:
        scores["accuracy"] = sum(p == t for p, t in zip(predicted, labels, strict=True)) / max(1, len(labels))
    if "f1" in names:
        per_class = []
        for cls in sorted(set(labels) | set(predicted)):
            hits = sum(p == t == cls for p, t in zip(predicted, labels, strict=True))
            guessed, actual = sum(p == cls for p in predicted), sum(t == cls for t in labels)
            per_class.append(2 * hits / (guessed + actual) if guessed + actual else 0.0)
        scores["f1"] = sum(per_class) / max(1, len(per_class))
    return scores
