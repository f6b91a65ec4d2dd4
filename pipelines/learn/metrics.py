"""Classification metrics of window predictions (scikit-learn, imported when called).

**Macro-F1, the project's metric**, is the mean F1 over a label set fixed by the *test set*, not by
the predictions: the classes (of the run's manifest, indices into ``classes``) that occur among the
true labels of the evaluated windows. Every model evaluated on the same windows therefore averages
over the same classes, so the two sides of a paired comparison are always comparable.

- A class that is true for some window enters the average, even if never predicted (its F1 is 0).
- A class that is only predicted (true for no evaluated window) does not enter the average. Its
  predictions are not free: each such window is a miss of its true class and lowers that class's
  recall (and so its F1). Only the precision of the predicted-only class itself, which would be 0
  with nothing to recall, is left out.
- A class absent from both is left out (it is not counted as 0 or 1).
- No windows: NaN (written as null in JSON).

Per class, ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``F1 = 2PR / (P + R)``
(0 where undefined), counted over all evaluated windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def macro_f1_labels(y_true) -> list[int]:
    """The label set macro-F1 averages over: the class indices that occur in ``y_true``, sorted."""
    return sorted(set(np.asarray(y_true, dtype=np.int64).tolist()))


def classification_metrics(y_true, y_pred, classes: list[str], labels: Sequence[int] | None = None) -> dict:
    """Metrics for integer labels indexing ``classes``: ``macro_f1`` (see the module docstring),
    ``accuracy``, ``per_class`` precision / recall / F1 / support of every class, the confusion
    matrix over every class (rows true, columns predicted) and ``macro_f1_classes`` (the names
    averaged over).

    ``labels``: the class indices macro-F1 averages over, to fix them from outside (e.g. one test
    set's classes for a subset of its windows); default :func:`macro_f1_labels` of ``y_true``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape} labels, y_pred {y_pred.shape}")
    all_labels = list(range(len(classes)))
    avg = sorted(int(i) for i in (macro_f1_labels(y_true) if labels is None else labels))
    if len(y_true):
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=all_labels, zero_division=0)
    else:
        p = r = f = s = np.zeros(len(classes))
    per_class = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, c in enumerate(classes)}
    macro = float(np.mean([f[i] for i in avg])) if (len(y_true) and avg) else float("nan")
    return {"n_windows": int(len(y_true)),
            "macro_f1": macro,
            "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
            "macro_f1_classes": [classes[i] for i in avg],
            "per_class": per_class,
            "confusion": (confusion_matrix(y_true, y_pred, labels=all_labels).tolist() if len(y_true)
                          else [[0] * len(classes) for _ in classes]),
            "classes": list(classes)}
