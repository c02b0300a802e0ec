"""Plain line and bar charts of recorded figures, one or more panels side by side, as a PNG.

Example:
    >>> line = Series("ProtoNet", [95.1, 96.1], x=[10, 30], errors=[0.2, 0.2])
    >>> draw_panels([Panel("20-way 1-shot", "training minutes", "accuracy (%)", [line])], "acc.png")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fewshot.errors import FewShotError
from fewshot.files import atomic_write


@dataclass
class Series:
    """One line (``y`` over ``x``, optional 95% half-widths ``errors``) or one set of bars (``y`` per group).

    Example:
        >>> Series("ProtoNet", [98.3, 95.4], errors=[0.2, 0.2])
    """

    label: str
    y: list[float | None]
    x: list[float] | None = None
    errors: list[float] | None = None
    style: str = "o-"


@dataclass
class Panel:
    """One chart: lines over ``x``, or, with ``groups``, bars of each series per group (``None`` leaves a gap).

    Example:
        >>> Panel("Omniglot", "setting", "accuracy (%)", [Series("ProtoNet", [98.3, 95.4])], groups=["5-way", "20-way"])
    """

    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    groups: list[str] = field(default_factory=list)
    ylim: tuple[float, float] | None = None
    log_x: bool = False
    log_y: bool = False


def draw_panels(panels: list[Panel], out: str | Path, size: tuple[float, float] | None = None, dpi: int = 100,
                title: str | None = None) -> None:
    """Draw ``panels`` side by side, one shared legend per panel, and write the PNG ``out``.

    Example:
        >>> draw_panels([Panel("loss", "step", "loss", [Series("train", [1.2, 0.6, 0.4], x=[0, 100, 200])])], "loss.png")
    """
    if not panels or any(not p.series for p in panels):
        raise FewShotError("nothing to plot: give at least one panel, each with at least one series")
    fig, axes = plt.subplots(1, len(panels), figsize=size or (5.5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        (_bars if panel.groups else _lines)(ax, panel)
        ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        if panel.log_x:
            ax.set_xscale("log")
        if panel.log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y" if panel.groups else "both")
        if panel.groups:  # bars fill the axes: the legend goes below them
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize="small")
        else:
            ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight"))
    plt.close(fig)


def _lines(ax: plt.Axes, panel: Panel) -> None:
    for s in panel.series:
        if s.x is None or len(s.x) != len(s.y):
            raise FewShotError(f"line {s.label!r} needs one x for each of its {len(s.y)} values")
        if s.errors is None:
            ax.plot(s.x, s.y, s.style, markersize=5, label=s.label)
        else:
            ax.errorbar(s.x, s.y, yerr=s.errors, fmt=s.style, markersize=5, capsize=3, label=s.label)


def _bars(ax: plt.Axes, panel: Panel) -> None:
    where = np.arange(len(panel.groups))
    width = 0.8 / len(panel.series)
    for i, s in enumerate(panel.series):
        if len(s.y) != len(panel.groups):
            raise FewShotError(f"series {s.label!r} has {len(s.y)} values for {len(panel.groups)} groups")
        present = [j for j, v in enumerate(s.y) if v is not None]
        bars = ax.bar(where[present] + (i - (len(panel.series) - 1) / 2) * width, [s.y[j] for j in present], width,
                      yerr=None if s.errors is None else [s.errors[j] for j in present], capsize=2, label=s.label)
        ax.bar_label(bars, fmt="%.2f", label_type="center", rotation=90, fontsize=7, color="white")
    ax.set_xticks(where, panel.groups)
