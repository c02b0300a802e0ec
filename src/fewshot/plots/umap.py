"""UMAP pictures of embeddings (McInnes, Healy and Melville 2018), as seed 003 draws them.

The embeddings are projected to 2-D with UMAP (seed 003's settings by default: 15
neighbours, ``min_dist`` 0.3, correlation metric) and drawn one colour per class:
classes the model trained on as circles, classes it never saw as triangles, so one
picture shows whether unseen classes form clusters too. ``umap-learn`` is imported
only when a picture is drawn (it takes seconds to import and compiles on first use).
"""
from __future__ import annotations

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from fewshot.errors import FewShotError
from fewshot.evaluation.embeddings import EmbeddingSet
from fewshot.files import atomic_write

SEEN_MARKER, UNSEEN_MARKER = "o", "^"


def umap_2d(embeddings: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.3, metric: str = "correlation",
            seed: int = 0) -> np.ndarray:
    """UMAP projection ``[n, 2]`` of ``embeddings [n, d]``; ``seed`` makes it reproducible.

    Example:
        >>> umap_2d(np.random.rand(100, 16)).shape
        (100, 2)
    """
    n = len(embeddings)
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int) or n_neighbors < 2:
        raise FewShotError(f"UMAP needs at least 2 neighbours, got {n_neighbors!r}")
    if n <= n_neighbors:
        raise FewShotError(f"UMAP with {n_neighbors} neighbours needs more than {n_neighbors} points, got {n}; "
                           f"lower the number of neighbours (--neighbors) or embed more images")
    if not 0 <= min_dist:
        raise FewShotError(f"UMAP's min_dist must be >= 0, got {min_dist}")
    import umap  # lazily: slow to import

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed)
        try:
            return reducer.fit_transform(np.asarray(embeddings, dtype=np.float32))
        except ValueError as e:
            if "metric" in str(e).lower():
                raise FewShotError(f"UMAP does not know the metric {metric!r} ({e}); try euclidean, cosine, "
                                   f"manhattan or correlation") from None
            raise


def choose_classes(data: EmbeddingSet, max_classes: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_classes`` classes, half seen and half unseen when both kinds are there.

    Example:
        >>> keep = np.isin(data.labels, choose_classes(data, max_classes=20))
    """
    if max_classes < 1:
        raise FewShotError(f"max_classes must be at least 1, got {max_classes}")
    present = np.unique(data.labels)
    if len(present) <= max_classes:
        return present
    rng = np.random.default_rng(seed)
    seen, unseen = present[data.seen[present]], present[~data.seen[present]]
    n_seen = min(len(seen), max(max_classes // 2, max_classes - len(unseen)))
    chosen = np.concatenate([rng.choice(seen, n_seen, replace=False),
                             rng.choice(unseen, max_classes - n_seen, replace=False)])
    return np.sort(chosen)


def class_colours(n: int) -> list:
    """``n`` distinguishable colours: tab10, tab20, then evenly spaced hues.

    Example:
        >>> len(class_colours(30))
        30
    """
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("hsv")(i / n) for i in range(n)]


def plot_umap(
    data: EmbeddingSet,
    out: str | os.PathLike,
    width: int = 1000,
    height: int = 800,
    n_neighbors: int = 15,
    min_dist: float = 0.3,
    metric: str = "correlation",
    max_classes: int = 20,
    seed: int = 0,
    title: str | None = None,
    dpi: int = 100,
) -> np.ndarray:
    """Draw the UMAP scatter of ``data`` into the PNG ``out`` of ``width x height`` pixels.

    At most ``max_classes`` classes are drawn (a legend of hundreds of Omniglot
    characters reads as noise); returns the 2-D points drawn.

    Example:
        >>> plot_umap(EmbeddingSet.load("emb.npz"), "umap.png")
    """
    if width < 100 or height < 100:
        raise FewShotError(f"the picture must be at least 100 x 100 pixels, got {width} x {height}")
    classes = choose_classes(data, max_classes, seed)
    keep = np.isin(data.labels, classes)
    points = umap_2d(data.embeddings[keep], n_neighbors, min_dist, metric, seed)
    labels = data.labels[keep]
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    size = float(np.clip(40_000 / len(points), 6, 30))
    handles = []
    for c, colour in zip(classes, class_colours(len(classes)), strict=True):
        marker = SEEN_MARKER if data.seen[c] else UNSEEN_MARKER
        xy = points[labels == c]
        ax.scatter(xy[:, 0], xy[:, 1], s=size, color=colour, marker=marker, alpha=0.7, linewidths=0)
        name = f"{data.class_names[c]} ({'seen' if data.seen[c] else 'unseen'})"
        handles.append(Line2D([], [], color=colour, marker=marker, linestyle="", markersize=7, label=name))
    ax.set(xticks=[], yticks=[], xlabel="UMAP 1", ylabel="UMAP 2")
    n_seen = int(data.seen[classes].sum())
    ax.set_title(title or f"UMAP of {len(points)} embeddings, {len(classes)} classes "
                          f"({n_seen} seen in training: circles; {len(classes) - n_seen} unseen: triangles)",
                 fontsize=9)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False,
               ncols=1 if len(handles) <= 30 else 2)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)
    return points
