"""One test episode as an image grid: the support of each class, its queries, and what the model said."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import torch

from fewshot.data.dataset import Episode
from fewshot.errors import FewShotError
from fewshot.files import atomic_write
from fewshot.methods.base import Method

RIGHT, WRONG = "tab:green", "tab:red"


@torch.inference_mode()
def predict_episode(method: Method, episode: Episode, device: torch.device | str = "cpu") -> torch.Tensor:
    """The predicted episode label ``[n_query]`` of each query, the way the evaluator scores episodes.

    Example:
        >>> episode = EpisodeSampler(splits["test"], 5, 1, 5, 1).episode(0)
        >>> (predict_episode(model, episode) == episode.query_labels).float().mean()
    """
    was_training = method.training
    method.eval()
    episode = episode.to(device)
    method.set_support(episode.support, episode.support_labels)
    predictions = method.classify(episode.query).argmax(-1).cpu()
    method.train(was_training)
    return predictions


def short_name(name: str, width: int = 22) -> str:
    """The last two parts of a class path (``Alphabet/characterNN``), cut to ``width`` characters.

    Example:
        >>> short_name("images_evaluation/Angelic/character01")
        'Angelic/character01'
    """
    name = "/".join(name.split("/")[-2:])
    return name if len(name) <= width else "..." + name[-(width - 3):]


def plot_episode(
    episode: Episode,
    predictions: torch.Tensor,
    class_names: list[str],
    out: str | os.PathLike,
    title: str = "",
    cell_inches: float = 1.1,
    dpi: int = 100,
) -> float:
    """Draw ``episode`` to the PNG ``out``: a row per class, its support images, then its queries.

    Each query is titled with its predicted class, green when right; a mistake is red,
    framed in red. ``class_names`` are indexed by the episode's ``classes``. Returns the
    episode's accuracy.

    Example:
        >>> episode = EpisodeSampler(splits["test"], 5, 1, 5, 1).episode(0)
        >>> plot_episode(episode, predict_episode(model, episode), splits["test"].class_names, "episode.png")
    """
    n_way = episode.n_way
    k_shot, n_query = len(episode.support) // n_way, len(episode.query) // n_way
    if len(predictions) != len(episode.query):
        raise FewShotError(f"{len(predictions)} predictions for {len(episode.query)} queries")
    names = [short_name(class_names[int(c)]) for c in episode.classes]
    ratios = [1.0] * k_shot + [0.3] + [1.0] * n_query  # a narrow empty column between support and queries
    fig, axes = plt.subplots(n_way, len(ratios), figsize=(sum(ratios) * cell_inches + 1.0,
                                                           n_way * cell_inches * 1.2 + 0.8),
                             dpi=dpi, squeeze=False, gridspec_kw={"width_ratios": ratios})
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for i in range(len(episode.support)):
        row, col = int(episode.support_labels[i]), i % k_shot
        _image(axes[row, col], episode.support[i])
    for row in range(n_way):
        axes[row, 0].set_ylabel(names[row], fontsize=8, rotation=0, ha="right", va="center")
    for i in range(len(episode.query)):
        truth, guess = int(episode.query_labels[i]), int(predictions[i])
        ax = axes[truth, k_shot + 1 + i % n_query]
        _image(ax, episode.query[i])
        colour = RIGHT if guess == truth else WRONG
        ax.set_title(("" if guess == truth else "x ") + names[guess], fontsize=7, color=colour)
        if guess != truth:
            ax.set_frame_on(True)
            for spine in ax.spines.values():
                spine.set(color=WRONG, linewidth=2.5)
    axes[0, 0].set_title("support", fontsize=8)
    accuracy = (predictions == episode.query_labels.cpu()).float().mean().item()
    fig.suptitle(f"{title}\n{n_way}-way {k_shot}-shot: {100 * accuracy:.0f}% of {len(predictions)} queries right"
                 f"\nrow: true class, support left; query title: predicted class, red x: mistake", fontsize=8)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)
    return accuracy


def _image(ax: plt.Axes, image: torch.Tensor) -> None:
    image = image.detach().float().cpu().clamp(0, 1).numpy()
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.transpose(1, 2, 0))
