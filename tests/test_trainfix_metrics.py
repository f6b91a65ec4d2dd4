"""Macro-F1 over a label set fixed by the test set (the classes that occur in y_true)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.learn.metrics import classification_metrics, macro_f1_labels

CLASSES = ["a", "b", "c", "d", "e"]


def test_two_predictors_on_one_test_set_average_over_the_same_classes():
    y = [0, 0, 1, 1, 2, 2]
    p1 = [0, 3, 1, 1, 2, 2]  # predicts d (never true)
    p2 = [0, 0, 1, 4, 2, 2]  # predicts e (never true)
    m1, m2 = classification_metrics(y, p1, CLASSES), classification_metrics(y, p2, CLASSES)
    assert m1["macro_f1_classes"] == m2["macro_f1_classes"] == ["a", "b", "c"]
    # a: P 1, R 1/2 -> 2/3; b, c: 1 -> (2/3 + 1 + 1) / 3 for p1; the same miss on b for p2
    assert m1["macro_f1"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert m2["macro_f1"] == pytest.approx((1 + 2 / 3 + 1) / 3)


def test_a_predicted_only_class_is_not_averaged_but_its_windows_are_misses():
    y, p = [0, 0, 1, 1], [0, 2, 1, 1]
    m = classification_metrics(y, p, CLASSES)
    # class 0: P = 1, R = 1/2 (the window predicted as c is a miss), F1 = 2/3; class 1: F1 = 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    # the old definition (classes in y_true or y_pred) also averaged c's F1 of 0: 5/9
    assert not math.isclose(m["macro_f1"], (2 / 3 + 1 + 0) / 3)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # a perfect predictor scores 1 on the same set; the miss costs recall, so less than 1
    assert classification_metrics(y, y, CLASSES)["macro_f1"] == 1.0


def test_a_true_class_never_predicted_counts_with_f1_zero():
    m = classification_metrics([0, 0, 1, 1], [0, 0, 0, 0], CLASSES)
    assert m["macro_f1_classes"] == ["a", "b"]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)  # a: P 1/2, R 1


def test_agrees_with_sklearn_on_the_true_label_set_and_fixed_labels():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 3, 40)
        p = rng.integers(0, 5, 40)
        want = f1_score(y, p, labels=sorted(set(y.tolist())), average="macro", zero_division=0)
        assert classification_metrics(y, p, CLASSES)["macro_f1"] == pytest.approx(want)
    assert macro_f1_labels([2, 0, 2]) == [0, 2]
    m = classification_metrics([0, 0], [0, 1], CLASSES, labels=[0, 1])  # a label set given from outside
    assert m["macro_f1_classes"] == ["a", "b"] and m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_no_windows_is_nan():
    m = classification_metrics([], [], CLASSES)
    assert math.isnan(m["macro_f1"]) and m["macro_f1_classes"] == [] and m["n_windows"] == 0
