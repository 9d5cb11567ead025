"""The evaluation metrics score answers the way a reader of the report expects."""

from __future__ import annotations

import pytest

from kubetune.trainer.evaluation.metrics import (
    classification_scores,
    contains,
    exact_match,
    first_word,
    generation_scores,
    rouge_l,
)


def test_exact_match_ignores_case_spacing_and_edge_punctuation_only():
    assert exact_match("  Paris. ", "paris") == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0


def test_first_word_and_contains():
    assert first_word("Positive, because the food was great", "positive") == 1.0
    assert first_word("It is positive", "positive") == 0.0
    assert contains("The capital of France is Paris.", "Paris") == 1.0
    assert contains("anything", "") == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("cat the", "the cat", 0.5),  # LCS 1 of 2 words each way
        ("a b c d", "a c", 2 * (2 / 4) * (2 / 2) / (2 / 4 + 2 / 2)),
        ("xyz", "abc", 0.0),
        ("", "", 1.0),
    ],
)
def test_rouge_l_is_the_f_measure_of_the_longest_common_word_subsequence(prediction, reference, expected):
    assert rouge_l(prediction, reference) == pytest.approx(expected)


def test_generation_scores_are_means_over_rows():
    scores = generation_scores(["Paris", "4", "no"], ["paris", "four", "no"], ["exact_match", "contains"])
    assert scores == pytest.approx({"exact_match": 2 / 3, "contains": 2 / 3})


def test_accuracy_and_macro_f1():
    # labels 0,0,1,1 predicted 0,1,1,1: class 0 F1 = 2*1/(1+2) = 2/3, class 1 F1 = 2*2/(3+2) = 4/5
    scores = classification_scores([0, 1, 1, 1], [0, 0, 1, 1], ["accuracy", "f1"])
    assert scores == pytest.approx({"accuracy": 0.75, "f1": (2 / 3 + 4 / 5) / 2})
