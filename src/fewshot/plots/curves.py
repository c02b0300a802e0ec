"""Training curves from a run's metrics log."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

from fewshot.errors import FewShotError
from fewshot.files import atomic_write
from fewshot.runs import METRICS_FILE


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``RUN/metrics.jsonl`` (a damaged last line, from a kill, is skipped).

    Example:
        >>> [r["loss"] for r in read_metrics("runs/proto") if r.get("event") == "train"][:3]
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise FewShotError(f"{path} not found: {run_dir} has no metrics log yet; train it first")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_curves(run_dir: str | Path, out: str | Path, size: tuple[float, float] = (10, 4), dpi: int = 100) -> None:
    """Loss (left) and training/validation accuracy (right) against the training step, as a PNG.

    Example:
        >>> plot_curves("runs/proto", "curves.png")
    """
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("event") == "train"]
    val = [r for r in records if r.get("event") == "validation"]
    if not train:
        raise FewShotError(f"{run_dir} has no training records yet; plot it after some training steps")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=size)
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue")
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    ax_loss.set_yscale("log" if min(r["loss"] for r in train) > 0 else "linear")
    ax_acc.plot([r["step"] for r in train], [r["accuracy"] for r in train], label="training episodes",
                color="tab:blue", alpha=0.7)
    if val:
        ax_acc.plot([r["step"] for r in val], [r["val_accuracy"] for r in val], "o-", label="validation",
                    color="tab:orange")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy")
    ax_acc.legend(loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)
