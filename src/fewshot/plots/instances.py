"""Accuracy against instance number, one line per model (Santoro et al. 2016, figure 2).

Results with test-time views (``views > 1``) are drawn dashed.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from fewshot.errors import FewShotError
from fewshot.evaluation.instances import InstanceAccuracy
from fewshot.files import atomic_write


def plot_instance_accuracy(results: list[InstanceAccuracy], out: str | Path, size: tuple[float, float] = (6, 4),
                           dpi: int = 100) -> None:
    """Accuracy at the 1st, 2nd, ... appearance of a class, with 95% confidence bands, as a PNG.

    Example:
        >>> plot_instance_accuracy([mann_result, lstm_result], "instances.png")
    """
    if not results:
        raise FewShotError("nothing to plot: give at least one instance-accuracy result")
    fig, ax = plt.subplots(figsize=size)
    for r in results:
        k = list(range(1, r.instances + 1))
        mean = [100 * m for m in r.mean]
        ci = [100 * c for c in r.ci95]
        style = "o--" if r.views > 1 else "o-"  # test-time views dashed beside the single view
        line, = ax.plot(k, mean, style, markersize=3, label=f"{r.model}, {r.n_classes} classes")
        ax.fill_between(k, [m - c for m, c in zip(mean, ci)], [m + c for m, c in zip(mean, ci)],
                        color=line.get_color(), alpha=0.2)
    ax.set(xlabel="instance (appearance of the class in the episode)", ylabel="accuracy (%)", ylim=(0, 100),
           title=f"accuracy by instance ({results[0].n_episodes} test episodes)")
    ax.set_xticks(range(1, max(r.instances for r in results) + 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)
