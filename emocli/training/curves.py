"""The training curves PNG: per-class train loss and per-class dev F1 by epoch (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [record["epoch"] for record in history]
    labels = list(history[0]["class_loss"])
    has_dev = "dev_f1" in history[0]
    figure, axes = plt.subplots(1, 2 if has_dev else 1, figsize=(11 if has_dev else 6, 4), squeeze=False)
    loss_ax = axes[0][0]
    for label in labels:
        loss_ax.plot(epochs, [r["class_loss"][label] for r in history], marker="o", label=label)
    loss_ax.plot(epochs, [r["train_loss"] for r in history], color="black", linewidth=2, marker="s", label="all")
    loss_ax.set(title="train loss per class", xlabel="epoch", ylabel="loss")
    loss_ax.legend(fontsize=8)
    if has_dev:
        f1_ax = axes[0][1]
        for label in history[0]["dev_f1"]:
            f1_ax.plot(epochs, [r["dev_f1"].get(label, float("nan")) for r in history], marker="o", label=label)
        f1_ax.plot(epochs, [r["dev_macro_f1"] for r in history], color="black", linewidth=2, marker="s", label="macro")
        f1_ax.set(title="dev F1 per class", xlabel="epoch", ylabel="F1", ylim=(0, 1))
        f1_ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
