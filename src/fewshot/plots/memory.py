"""How a memory-augmented network used its memory in one episode: read and write weights by slot."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

from fewshot.data.dataset import ImageDataset
from fewshot.errors import FewShotError
from fewshot.evaluation.instances import EVAL_BATCH, describe
from fewshot.files import atomic_write
from fewshot.methods.mann import MANN


def plot_memory(read_weights: torch.Tensor, write_weights: torch.Tensor, labels: torch.Tensor, out: str | Path,
                title: str = "", correct: torch.Tensor | None = None, dpi: int = 100) -> None:
    """Read (top) and write (bottom) weights over time steps, slots on the vertical axis, as a PNG.

    Weights are summed over heads. Above each panel a coloured strip gives the class
    (episode label) of every step, so a class's writes and later reads can be followed.

    Args:
        read_weights: ``[time, heads, slots]``.
        write_weights: ``[time, write heads, slots]``.
        labels: ``[time]`` episode labels.
        out: PNG file to write.
        title: figure title.
        correct: optional ``[time]`` booleans; wrong predictions are marked with a cross.

    Example:
        >>> plot_memory(reads, writes, episode_labels, "memory.png", title="one test episode")
    """
    reads = read_weights.sum(1).T.float().cpu()  # [slots, time]
    writes = write_weights.sum(1).T.float().cpu()
    labels = labels.cpu()
    steps, slots = reads.shape[1], reads.shape[0]
    n_classes = int(labels.max()) + 1
    fig, axes = plt.subplots(4, 1, figsize=(max(6.0, steps * 0.14 + 2), 7), sharex=True,
                             gridspec_kw={"height_ratios": [0.6, 6, 0.6, 6]})
    cmap = plt.get_cmap("tab10" if n_classes <= 10 else "tab20")
    for strip, panel, weights, name in ((axes[0], axes[1], reads, "read"), (axes[2], axes[3], writes, "write")):
        strip.imshow(labels[None].numpy(), aspect="auto", cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5,
                     interpolation="nearest")
        strip.set_yticks([])
        strip.set_ylabel("class", rotation=0, ha="right", va="center")
        for t in range(steps):
            strip.text(t, 0, str(int(labels[t])), ha="center", va="center", fontsize=6, color="white")
        if correct is not None:
            for t in (~correct.cpu()).nonzero().flatten().tolist():
                strip.plot(t, 0.45, "x", color="black", markersize=4)
        image = panel.imshow(weights.numpy(), aspect="auto", cmap="viridis", interpolation="nearest",
                             origin="lower", extent=(-0.5, steps - 0.5, -0.5, slots - 0.5))
        panel.set_ylabel(f"slot ({name} weight)")
        panel.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(image, ax=[strip, panel], fraction=0.02, pad=0.01)
    axes[-1].set_xlabel("time step")
    if title:
        fig.suptitle(title)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)



def plot_episode_memory(method: Any, dataset: ImageDataset, out: str | Path, episode: int = 0, seed: int = 0,
                        device: torch.device | str = "cpu") -> float:
    """Run a trained :class:`~fewshot.methods.mann.MANN` on one test episode and draw its memory use.

    The episode is number ``episode`` of the list :func:`~fewshot.evaluation.instances.evaluate_instances`
    draws for ``seed``. Returns the accuracy on that episode.

    Example:
        >>> method, config = load_run("runs/mann_omniglot")
        >>> plot_episode_memory(method, splits["test"], "memory.png")
    """
    if not isinstance(method, MANN):
        raise FewShotError(f"memory pictures are for mann runs, not {getattr(method, 'name', type(method).__name__)}")
    if method.memory is None:
        raise FewShotError("this mann has no external memory (--memory none): there is no memory to draw")
    if episode < 0:
        raise FewShotError(f"--episode must be 0 or more, got {episode}")
    batch = method.sequence_episodes(dataset, seed, EVAL_BATCH).batch(episode // EVAL_BATCH).to(device)
    with torch.inference_mode():
        output = method.run(batch, record=True)
    i = episode % EVAL_BATCH
    correct = output.logits[i].argmax(-1) == batch.labels[i]
    title = (f"{describe(method)}, episode {episode} of {dataset.name}: "
             f"{int(correct.sum())}/{len(correct)} right (x: wrong)")
    plot_memory(output.read_weights[i], output.write_weights[i], batch.labels[i], out, title=title, correct=correct)
    return correct.float().mean().item()
