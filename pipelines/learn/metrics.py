"""Classification metrics of window predictions (scikit-learn, imported when called)."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true, y_pred, classes: list[str]) -> dict:
    """Metrics from scikit-learn for integer labels indexing ``classes``."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    all_labels = list(range(len(classes)))
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=all_labels, zero_division=0)
    per_class = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, c in enumerate(classes)}
    return {"n_windows": int(len(y_true)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
            if len(y_true) else float("nan"),
            "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
            "macro_f1_classes": [classes[i] for i in present],
            "per_class": per_class,
            "confusion": confusion_matrix(y_true, y_pred, labels=all_labels).tolist(),
            "classes": list(classes)}
