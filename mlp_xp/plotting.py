"""PNG plots of learning curves and benchmark tables (matplotlib, an optional extra)."""

from __future__ import annotations

from .errors import ConfigError, install_hint
from .files import atomic_writer


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"plotting needs matplotlib: {install_hint('plot')}") from None
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Save a figure as PNG to a temporary name, then rename: never half a file at ``path``."""
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


def plot_history(records: list[dict], path, title: str = "") -> None:
    """Loss (left) and accuracy or mse (right) per epoch for every split present in ``records``."""
    plt = _pyplot()
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in records]
    metric = "accuracy" if any("train_accuracy" in r for r in records) else "mse"
    for split in ("train", "val", "test"):
        if any(f"{split}_loss" in r for r in records):
            ax_loss.plot(epochs, [r.get(f"{split}_loss") for r in records], marker=".", label=split)
        if any(f"{split}_{metric}" in r for r in records):
            ax_metric.plot(epochs, [r.get(f"{split}_{metric}") for r in records], marker=".", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=metric)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    plt.close(fig)


def plot_confusion(matrix, labels: list[str], path, title: str = "") -> None:
    """A confusion matrix (rows: true class, columns: predicted class) as a heat map with its counts."""
    plt = _pyplot()
    k = len(labels)
    size = min(3 + 0.5 * k, 16)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    ax.set_xticklabels(labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticklabels(labels)
    if k <= 30:
        top = max(1, max(max(row) for row in matrix))
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black", fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def plot_search(rows: list[dict], names: list[str], path, title: str = "") -> None:
    """Validation score against each searched setting (one panel per name), one point per candidate that
    finished; settings that are not numbers (words, hidden layers) are categories along the axis."""
    plt = _pyplot()
    names = names or ["(base)"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    for ax, name in zip(axes[0], names):
        values = [r["params"].get(name) for r in ok]
        scores = [r["score"] for r in ok]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and values
        if numeric:
            ax.scatter(values, scores)
            if min(values) > 0 and max(values) / min(values) >= 10:
                ax.set_xscale("log")
        else:
            labels = sorted({_category(v) for v in values})
            ax.scatter([labels.index(_category(v)) for v in values], scores)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=30 if len(labels) > 3 else 0)
        ax.set(xlabel=name, ylabel="validation score")
        ax.grid(alpha=0.3)
    left_out = len(rows) - len(ok)
    note = f" ({left_out} diverged or failed, not shown)" if left_out else ""
    fig.suptitle((title or "search") + note)
    save_figure(fig, path)
    plt.close(fig)


def _category(value) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value)) if value else "none"
    return str(value)
