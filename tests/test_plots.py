"""Embeddings files, UMAP and episode pictures, through the command line on a tiny MNIST copy."""
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_mnist
from PIL import Image

from fewshot.cli.main import main
from fewshot.data.dataset import Episode
from fewshot.errors import FewShotError
from fewshot.evaluation.embeddings import EmbeddingSet
from fewshot.plots.episode import plot_episode
from fewshot.plots.umap import choose_classes, umap_2d


def png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def fake_embeddings(n_classes: int = 6, per_class: int = 5) -> EmbeddingSet:
    labels = np.repeat(np.arange(n_classes), per_class)
    rng = np.random.default_rng(0)
    return EmbeddingSet((rng.normal(size=(len(labels), 8)) + labels[:, None]).astype(np.float32), labels,
                        [f"class {c}" for c in range(n_classes)], np.arange(n_classes) < n_classes // 2,
                        ["train"] * (n_classes // 2) + ["test"] * (n_classes - n_classes // 2))


def test_train_embed_and_draw_through_the_cli(tmp_path, decode_cache, capsys):
    data = write_mnist(tmp_path / "data", per_digit=4)
    run = tmp_path / "run"
    common = ["--data-dir", str(data), "--no-progress"]
    assert main(["train", "triplet", "--dataset", "mnist", "--steps", "3", "--batch-size", "8", "--out", str(run),
                 "--device", "cpu", *common]) == 0
    npz = tmp_path / "emb.npz"
    assert main(["embed", str(run), "--out", str(npz), "--metrics", "--device", "cpu", *common]) == 0
    out = capsys.readouterr().out
    assert "40 embeddings (100-d) of 10 classes, 7 seen in training and 3 unseen" in out
    assert "unseen classes: P@1" in out
    embeddings = EmbeddingSet.load(npz)
    assert embeddings.class_names == [str(d) for d in range(10)]
    assert embeddings.seen.tolist() == [True] * 7 + [False] * 3
    assert embeddings.partitions == ["train"] * 7 + ["test"] * 3
    assert embeddings.embeddings.shape == (40, 100) and np.bincount(embeddings.labels).tolist() == [4] * 10

    png = tmp_path / "umap.png"
    assert main(["plot", "umap", str(npz), "--out", str(png), "--width", "640", "--height", "480",
                 "--neighbors", "5"]) == 0
    assert png_size(png) == (640, 480)

    episode = tmp_path / "episode.png"
    assert main(["plot", "episode", str(run), "--out", str(episode), "--ways", "3", "--shots", "1",
                 "--queries", "3", "--device", "cpu", *common]) == 0
    png_size(episode)
    assert main(["plot", "umap", str(npz), "--out", str(png), "--neighbors", "40"]) == 2
    assert "needs more than 40 points, got 40" in capsys.readouterr().err
    assert main(["embed", str(run), "--out", str(npz), "--partition", "train", "trainval", *common]) == 2
    assert "share classes" in capsys.readouterr().err


def test_umap_refuses_fewer_points_than_neighbours():
    with pytest.raises(FewShotError, match="UMAP with 15 neighbours needs more than 15 points, got 10; lower"):
        umap_2d(np.zeros((10, 4)))


def test_choose_classes_keeps_seen_and_unseen():
    data = fake_embeddings(n_classes=30, per_class=2)
    chosen = choose_classes(data, 10)
    assert len(chosen) == 10 and data.seen[chosen].sum() == 5
    assert list(choose_classes(data, 40)) == list(range(30))


def test_embedding_files_are_checked(tmp_path):
    data = fake_embeddings()
    data.save(tmp_path / "ok.npz")
    loaded = EmbeddingSet.load(tmp_path / "ok.npz")
    assert np.array_equal(loaded.embeddings, data.embeddings) and loaded.class_names == data.class_names
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(FewShotError, match=r"not a readable \.npz file"):
        EmbeddingSet.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(FewShotError, match="lacks embeddings, labels"):
        EmbeddingSet.load(tmp_path / "other.npz")


def test_episode_picture_marks_mistakes(tmp_path):
    images = torch.rand(6, 1, 8, 8)
    episode = Episode(images[:2], torch.tensor([0, 1]), images[2:], torch.tensor([0, 0, 1, 1]), torch.tensor([4, 7]))
    accuracy = plot_episode(episode, torch.tensor([0, 1, 1, 1]), [f"c{i}" for i in range(8)], tmp_path / "e.png")
    assert accuracy == 0.75
    png_size(tmp_path / "e.png")


def test_charts_draw_lines_and_bars_side_by_side(tmp_path):
    from fewshot.plots.charts import Panel, Series, draw_panels

    lines = Panel("lines", "minutes", "accuracy (%)", [Series("a", [95.0, 96.0], x=[10, 30], errors=[0.2, 0.2]),
                                                     Series("b", [92.0], x=[10], style="s")], log_x=True)
    bars = Panel("bars", "", "accuracy (%)", [Series("a", [98.0, None]), Series("b", [97.0, 99.0])],
                 groups=["1-shot", "5-shot"], ylim=(90, 100))
    draw_panels([lines, bars], tmp_path / "chart.png", title="both")
    width, height = png_size(tmp_path / "chart.png")
    assert width > height
    with pytest.raises(FewShotError, match="2 values for 3 groups"):
        draw_panels([Panel("bars", "", "", [Series("a", [1.0, 2.0])], groups=["x", "y", "z"])], tmp_path / "bad.png")
    with pytest.raises(FewShotError, match="one x for each"):
        draw_panels([Panel("lines", "", "", [Series("a", [1.0, 2.0], x=[1])])], tmp_path / "bad.png")
    with pytest.raises(FewShotError, match="nothing to plot"):
        draw_panels([], tmp_path / "bad.png")


def test_benchmark_figures_draw_from_the_recorded_runs(tmp_path):
    """benchmarks/figures.py finds every run it draws in docs/benchmarks.md (it fails loudly when one moved)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "benchmarks" / "figures.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "gallery_latency.png", "mann_by_instance.png", "meta_learning_hour.png", "methods_5way_20way.png",
        "protonet_vs_easyfsl.png"]
