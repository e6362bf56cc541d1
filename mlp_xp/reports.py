"""``mlp-xp evaluate``'s report: per-class precision, recall and F1 and the confusion matrix for a classifier,
MSE, MAE and R^2 for a regressor, computed by scikit-learn's own metrics (an optional extra: without it the
report is the loss and the accuracy or MSE only)."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, install_hint

__all__ = ["classification_report", "format_report", "regression_report"]


def _metrics():
    try:
        from sklearn import metrics
    except ImportError:
        raise ConfigError(f"the evaluation report needs scikit-learn: {install_hint('sklearn')}") from None
    return metrics


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list) -> dict:
    """Per-class and averaged precision, recall, F1 and support, accuracy and the confusion matrix, for class
    indices ``y_true`` and ``y_pred`` in [0, len(labels)); ``labels`` are the classes' own values (JSON-able)."""
    m = _metrics()
    index = list(range(len(labels)))
    p, r, f, s = m.precision_recall_fscore_support(y_true, y_pred, labels=index, zero_division=0)
    per_class = [
        {"label": lab, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, lab in enumerate(labels)
    ]
    averages = {}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = m.precision_recall_fscore_support(y_true, y_pred, labels=index, average=avg, zero_division=0)
        averages[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    return {
        "task": "classification",
        "samples": int(len(y_true)),
        "accuracy": float(m.accuracy_score(y_true, y_pred)),
        "classes": per_class,
        "averages": averages,
        "confusion_matrix": m.confusion_matrix(y_true, y_pred, labels=index).tolist(),
        "labels": list(labels),
    }


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MSE, MAE and R^2 (averaged uniformly over the outputs of a multi-output regressor)."""
    m = _metrics()
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y_pred.ndim == 2 and y_true.ndim == 1:
        y_pred = y_pred[:, 0]
    return {
        "task": "regression",
        "samples": int(len(y_true)),
        "mse": float(m.mean_squared_error(y_true, y_pred)),
        "mae": float(m.mean_absolute_error(y_true, y_pred)),
        "r2": float(m.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
    }


def format_report(report: dict) -> str:
    """The report as aligned text lines."""
    if report["task"] == "regression":
        return f"  MSE {report['mse']:.6g}  MAE {report['mae']:.6g}  R^2 {report['r2']:.4f}"
    width = max(12, *(len(str(c["label"])) for c in report["classes"]))
    lines = [f"  {'class':>{width}}  precision  recall     f1  support"]
    for c in report["classes"]:
        lines.append(
            f"  {str(c['label']):>{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:.4f}  {c['support']:7d}"
        )
    for name, a in report["averages"].items():
        lines.append(
            f"  {name + ' avg':>{width}}  {a['precision']:9.4f}  {a['recall']:6.4f}  {a['f1']:.4f}  "
            f"{report['samples']:7d}"
        )
    labels = [str(x) for x in report["labels"]]
    cell = max(5, *(len(str(v)) for row in report["confusion_matrix"] for v in row), *(len(x) for x in labels[:30]))
    lines.append("  confusion matrix (rows: true class, columns: predicted):")
    if len(labels) <= 30:
        lines.append(f"  {'':>{width}}  " + " ".join(f"{x:>{cell}}" for x in labels))
        for lab, row in zip(labels, report["confusion_matrix"]):
            lines.append(f"  {lab:>{width}}  " + " ".join(f"{v:>{cell}}" for v in row))
    else:
        lines.append(f"  ({len(labels)} classes: written to --json and --plot only)")
    return "\n".join(lines)
