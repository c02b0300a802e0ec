"""Behaviours the README promises that mutation testing (benchmarks/mutation.sh) found no test for.

Each test names the promise it keeps; docs/benchmarks.md lists the mutants they kill."""
from __future__ import annotations

import contextlib
import hashlib
import math
import time
from typing import ClassVar

import pytest
import torch
from synthetic import make_dataset
from tqdm.auto import tqdm

from fewshot.data.augment import KOCH_DISTORTION
from fewshot.data.dataset import ImageDataset
from fewshot.data.download import Resource, ensure_files
from fewshot.data.episodes import EpisodeSampler
from fewshot.data.views import dihedral_view
from fewshot.errors import FewShotError
from fewshot.evaluation import evaluator as evaluator_module
from fewshot.evaluation.evaluator import (
    Evaluator,
    _evaluate_per_episode,
    batch_statistics,
    embed_dataset,
    evaluate,
    mean_and_ci95,
    view_average,
)
from fewshot.methods.base import Method
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.methods.siamese import SiameseNetwork
from fewshot.nets import build_encoder
from fewshot.nets.flatten import FlattenEncoder
from fewshot.training.checkpoint import parse_checkpoint
from fewshot.training.config import CONFIG_DIR, RunConfig, default_config_path, resolve_config

PAYLOAD = bytes(range(256)) * 64


def test_ensure_files_checks_the_md5_of_a_resource_that_names_only_an_md5(tmp_path, http_files):
    """MNIST's resources name an md5 and no sha256: ensure_files must pass it on to the download."""
    base, files = http_files
    files["/data.bin"] = PAYLOAD[:-1] + b"x"
    resource = Resource("data.bin", (f"{base}/data.bin",), md5=hashlib.md5(PAYLOAD).hexdigest())
    with pytest.raises(FewShotError, match=r"(?s)^toy: 1 file\(s\) missing.*checksum mismatch for data\.bin"):
        ensure_files(tmp_path, [resource], dataset="toy", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_file_without_a_url_does_not_stop_the_downloads_after_it(tmp_path, http_files):
    base, files = http_files
    files["/data.bin"] = PAYLOAD
    resources = [Resource("splits.txt", hint="the authors' repository"),
                 Resource("data.bin", (f"{base}/data.bin",), sha256=hashlib.sha256(PAYLOAD).hexdigest())]
    with pytest.raises(FewShotError, match="splits.txt: get it from the authors' repository"):
        ensure_files(tmp_path, resources, dataset="toy", progress=False)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def one_image_dataset() -> ImageDataset:
    """Six classes of four copies of one image: what tells two episodes apart is their distortion alone."""
    image = make_dataset(n_classes=1, per_class=1).images[0]
    return ImageDataset(image.expand(24, *image.shape).clone(), torch.arange(6).repeat_interleave(4),
                        [f"c{i}" for i in range(6)])


def test_each_episode_draws_its_own_distortion_from_the_seed_and_its_number():
    data = one_image_dataset()
    a = EpisodeSampler(data, 3, 1, 1, 4, seed=3, distortion=KOCH_DISTORTION)
    b = EpisodeSampler(data, 3, 1, 1, 4, seed=4, distortion=KOCH_DISTORTION)
    assert not torch.equal(a.episode(0).support, a.episode(1).support)
    assert not torch.equal(a.episode(0).support, b.episode(0).support)
    assert torch.equal(a.episode(1).support, EpisodeSampler(data, 3, 1, 1, 4, seed=3,
                                                            distortion=KOCH_DISTORTION).episode(1).support)


def test_distort_until_zero_is_accepted_and_leaves_every_episode_clean():
    data = make_dataset(n_classes=6, per_class=4)
    clean = EpisodeSampler(data, 3, 1, 1, 4, seed=3)
    never = EpisodeSampler(data, 3, 1, 1, 4, seed=3, distortion=KOCH_DISTORTION, distort_until=0)
    assert all(torch.equal(never.episode(i).support, clean.episode(i).support) for i in range(4))


class NoBar:
    def update(self, n: int) -> None:
        pass


def reference(method: Method, data: ImageDataset, n_way: int, k_shot: int, n_query: int, n_episodes: int,
              seed: int = 0) -> tuple[float, float, float]:
    """The slow path: each episode on its own, through set_support and classify."""
    sampler = EpisodeSampler(data, n_way, k_shot, n_query, n_episodes, seed)
    with torch.inference_mode():
        return mean_and_ci95(_evaluate_per_episode(method.eval(), sampler, torch.device("cpu"), NoBar()))


def protonet() -> PrototypicalNetworks:
    torch.manual_seed(0)
    return PrototypicalNetworks(build_encoder("conv4", 1, 16)).eval()


def test_the_ci95_of_one_and_of_two_episodes():
    assert mean_and_ci95(torch.tensor([0.5])) == (0.5, 0.0, 0.0)
    mean, ci95, std = mean_and_ci95(torch.tensor([0.0, 1.0]))
    assert mean == 0.5 and math.isclose(std, 2 ** -0.5, rel_tol=1e-6) and math.isclose(ci95, 0.98, rel_tol=1e-6)


def test_the_default_evaluation_is_1000_five_way_one_shot_episodes_and_every_chunk_counts():
    """More episodes than one chunk of cached scores (256): each episode is scored once, in order; both entry points
    default alike and time what they did."""
    data = make_dataset(n_classes=6, per_class=16, size=8, seed=3)
    method = PrototypicalNetworks(FlattenEncoder(1, 8))
    result = evaluate(method, data, device="cpu", progress=False)
    assert (result.n_way, result.k_shot, result.n_query, result.n_episodes, result.seed) == (5, 1, 15, 1000, 0)
    mean, ci95, _ = reference(method, data, 5, 1, 15, 1000)
    assert math.isclose(result.mean, mean, abs_tol=1e-6) and math.isclose(result.ci95, ci95, rel_tol=1e-5)
    assert str(result).startswith(f"5-way 1-shot: {100 * mean:.2f}% +- {100 * ci95:.2f} (1000 episodes, ")
    start = time.perf_counter()
    result = Evaluator(method, data, device="cpu", progress=False).evaluate()
    wall = time.perf_counter() - start
    assert (result.n_way, result.k_shot, result.n_query, result.n_episodes, result.seed) == (5, 1, 15, 1000, 0)
    assert 0 < result.seconds <= wall  # well under a second here, where a floor of one second would show below
    assert math.isclose(result.episodes_per_second, 1000 / result.seconds, rel_tol=1e-9)


def test_an_evaluator_is_inductive_unless_asked_and_evaluate_passes_every_setting_on():
    data = make_dataset(n_classes=6, per_class=4, size=16, seed=3)
    method = protonet()
    plain = Evaluator(method, data, progress=False).evaluate(3, 1, 2, n_episodes=5)
    assert plain.transductive is False and plain.setting == "3-way 1-shot"
    norms = [m for m in method.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    learned = [(m.running_mean.clone(), m.num_batches_tracked.clone()) for m in norms]
    result = evaluate(method, data, 3, 1, 2, n_episodes=5, progress=False, transductive=True)
    assert result.transductive is True and result.setting == "3-way 1-shot transductive"
    assert all(torch.equal(m.running_mean, mean) and torch.equal(m.num_batches_tracked, tracked)
               for m, (mean, tracked) in zip(norms, learned))
    names = [f"{alphabet}/character{c}" for alphabet in ("Greek", "Latin") for c in range(3)]
    alphabets = ImageDataset(data.images[:24], torch.arange(6).repeat_interleave(4), names)
    assert evaluate(method, alphabets, 3, 1, 2, n_episodes=5, progress=False, within_alphabet=True).within_alphabet


class EpisodeDependentProtoNet(PrototypicalNetworks):
    """A method whose embeddings may depend on the episode: evaluated episode by episode."""

    episode_independent = False


@pytest.mark.parametrize("build", [
    lambda: EpisodeDependentProtoNet(build_encoder("conv4", 1, 16)),
    lambda: SiameseNetwork(build_encoder("conv4", 1, 16), variant="unshared-concat"),  # two towers
], ids=["episode-dependent", "unshared-siamese"])
def test_every_evaluation_path_gives_the_accuracies_of_episode_by_episode(build):
    data = make_dataset(n_classes=6, per_class=5, size=16, seed=3)
    torch.manual_seed(0)
    method = build().eval()
    result = evaluate(method, data, 3, 2, 3, n_episodes=12, seed=5, progress=False)
    mean, ci95, _ = reference(method, data, 3, 2, 3, 12, seed=5)
    assert math.isclose(result.mean, mean, abs_tol=1e-6) and math.isclose(result.ci95, ci95, rel_tol=1e-5)


def test_an_empty_checkpoint_is_refused_with_one_clear_error():
    with pytest.raises(FewShotError, match=r"^checkpoint run/checkpoint\.pt cannot be read \(EOFError: \); "
                                           r"start the run again with --overwrite$"):
        parse_checkpoint(b"", "run/checkpoint.pt")


def test_every_documented_setting_is_accepted_and_each_bad_one_refused_by_name():
    for values in ({"optimizer": "rmsprop"}, {"train_partition": "trainval"}, {"channels": 3},
                   {"ema_decay": 0.9995}, {"tracker": "tensorboard"}, {"tracker": "wandb"}):
        assert all(getattr(RunConfig.from_dict(values), k) == v for k, v in values.items())
    for values, message in [
        ({"optimizer": "sgd"}, "optimizer must be adam or rmsprop, got 'sgd'"),
        ({"train_partition": "val"}, "train_partition must be train or trainval, got 'val'"),
        ({"channels": 2}, "channels must be 1 or 3, got 2"),
        ({"val_episodes": 0}, "val_episodes must be at least 1, got 0"),
        ({"lr": 0.0}, "lr must be positive, got 0.0"),
        ({"ema_decay": 1.0}, ("ema_decay must be between 0 and 1 (e.g. 0.9995), got 1.0; leave it out to save the "
                              "trained weights as they are")),
        ({"tracker": "mlflow"}, "tracker must be one of tensorboard, wandb, got 'mlflow'"),
    ]:
        with pytest.raises(FewShotError) as error:
            RunConfig.from_dict(values)
        assert str(error.value) == message


def test_the_most_specific_config_file_is_the_default():
    assert default_config_path("protonet", "omniglot", "vinyals") == CONFIG_DIR / "protonet_omniglot_vinyals.yaml"
    assert default_config_path("protonet", "omniglot", "lake") == CONFIG_DIR / "protonet_omniglot.yaml"
    assert default_config_path("protonet", "folder", None) is None


def test_flags_override_the_papers_file_which_overrides_the_defaults():
    config = resolve_config("protonet", overrides={"split": "vinyals", "steps": 7, "lr": None},
                            option_overrides={"k_shot": 1, "n_way": None})
    assert (config.dataset, config.split, config.rotate_classes, config.bf16) == ("omniglot", "vinyals", False, True)
    assert (config.steps, config.lr, config.checkpoint_every) == (7, 0.001, 200)
    assert config.options == {"distance": "euclidean", "n_way": 60, "k_shot": 1, "n_query": 5}
    assert resolve_config("protonet").rotate_classes is True  # omniglot (the default data set), lake split
    assert resolve_config("protonet", overrides={"dataset": "mnist"}).lr_step == 500  # protonet_mnist.yaml


def test_a_within_alphabet_evaluation_draws_every_episode_from_one_alphabet():
    """Every character of an alphabet drawn the same, alphabets different: within one alphabet the classes tie."""
    names = [f"{alphabet}/character{c:02d}" for alphabet in ("Greek", "Latin") for c in range(1, 5)]
    labels = torch.arange(8).repeat_interleave(3)
    images = torch.zeros(24, 1, 8, 8, dtype=torch.uint8)
    images[12:] = 255  # Latin
    data = ImageDataset(images, labels, names, "two alphabets")
    method = PrototypicalNetworks(FlattenEncoder(1, 8)).eval()
    within = evaluate(method, data, 4, 1, 2, 50, seed=0, progress=False, within_alphabet=True, device="cpu")
    across = evaluate(method, data, 4, 1, 2, 50, seed=0, progress=False, device="cpu")
    assert within.within_alphabet and within.mean == pytest.approx(0.25)  # ties: the first class of each episode
    assert across.mean > 0.4


class QueryMirroringProtoNet(PrototypicalNetworks):
    """A method that embeds queries with another network than the support (here: the mirror image's embedding)."""

    shared_embedding = False

    def embed_query(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images.flip(-1))


def embedded(method: Method, data: ImageDataset, query: bool, view: int = 0) -> torch.Tensor:
    """Every image of ``data`` under ``view``, embedded at once by the method itself (no folding, no batches)."""
    embed = method.embed_query if query else method.embed_support
    with torch.inference_mode():
        return embed(dihedral_view(data.images_at(torch.arange(len(data))), view))


def test_each_image_is_embedded_once_as_support_and_once_as_query_under_each_view():
    data = make_dataset(n_classes=4, per_class=3, size=16, seed=3)
    torch.manual_seed(0)
    shared, unshared = protonet(), QueryMirroringProtoNet(build_encoder("conv4", 1, 16)).eval()
    support, query = Evaluator(shared, data, progress=False).embeddings()
    assert support is query  # one pass for a method that embeds both alike
    evaluator = Evaluator(unshared, data, progress=False)
    assert torch.allclose(evaluator.embeddings()[0], embedded(unshared, data, False), atol=1e-5)  # as they are
    for view in (1, 0):
        support, query = evaluator.embeddings(view)
        assert torch.allclose(support, embedded(unshared, data, False, view), atol=1e-5)
        assert torch.allclose(query, embedded(unshared, data, True, view), atol=1e-5)
        assert not torch.allclose(support, query, atol=1e-3)
    support, query = Evaluator(unshared, data, progress=False, bf16=True).embeddings(1)
    for embeddings in (support, query):  # both under bfloat16 autocast: every value a bfloat16
        assert torch.equal(embeddings, embeddings.bfloat16().float())


def test_embed_dataset_defaults_to_float32_images_as_they_are_and_batches_cover_each_image_once(monkeypatch):
    data = make_dataset(n_classes=5, per_class=6, size=16, seed=3)
    method = protonet()
    whole = embed_dataset(method, data, torch.device("cpu"), query=False)
    assert torch.allclose(whole, embedded(method, data, False), atol=1e-5)
    assert not torch.equal(whole, whole.bfloat16().float())
    monkeypatch.setattr(evaluator_module, "EMBED_BATCH", 7)
    assert torch.equal(embed_dataset(method, data, torch.device("cpu"), query=False), whole)


def test_a_single_views_scores_are_returned_as_they_are():
    scores = torch.tensor([[3.0, -1.0, 0.5]])
    assert view_average([scores]) is scores
    two = view_average([scores, scores.flip(-1)])
    assert torch.allclose(two.exp(), (scores.softmax(-1) + scores.flip(-1).softmax(-1)) / 2)


@pytest.mark.parametrize("transductive", [False, True], ids=["inductive", "transductive"])
def test_views_average_every_episode_on_the_episode_by_episode_path_too(transductive):
    """An episode-dependent method (and any method tested transductively) goes episode by episode: its views are
    the cached path's views of the same weights."""
    data = make_dataset(n_classes=6, per_class=5, size=16, seed=3)
    sampler = EpisodeSampler(data, 3, 1, 3, 16, seed=2)
    torch.manual_seed(0)
    dependent = EpisodeDependentProtoNet(build_encoder("conv4", 1, 16)).eval()

    def accuracies(method: Method, views: int) -> torch.Tensor:
        with torch.inference_mode():
            return Evaluator(method, data, progress=False, views=views, transductive=transductive
                             ).episode_accuracies(sampler, NoBar())

    with torch.inference_mode(), batch_statistics(dependent) if transductive else contextlib.nullcontext():
        expected = _evaluate_per_episode(dependent, sampler, torch.device("cpu"), NoBar(), views=4)
    assert torch.equal(accuracies(dependent, 4), expected)
    assert not torch.equal(accuracies(dependent, 1), expected)
    if not transductive:
        cached = PrototypicalNetworks(dependent.encoder).eval()
        assert torch.allclose(accuracies(cached, 4), expected)


def test_cached_scoring_keeps_each_chunk_within_the_score_budget(monkeypatch):
    data = make_dataset(n_classes=6, per_class=5, size=16, seed=3)
    method = protonet()
    n, k, q, d = 3, 2, 3, method.encoder(torch.zeros(1, 1, 16, 16)).shape[1]
    expected = reference(method, data, n, k, q, 300)
    chunks: list[int] = []
    scores = method.scores

    def recording_scores(support: torch.Tensor, *args) -> torch.Tensor:
        chunks.append(len(support))  # episodes scored at once
        return scores(support, *args)

    monkeypatch.setattr(method, "scores", recording_scores)
    for budget, largest in [(evaluator_module.SCORE_BUDGET, 256), (int(2.5 * n * q * n * k * d), 2), (1, 1)]:
        chunks.clear()
        monkeypatch.setattr(evaluator_module, "SCORE_BUDGET", budget)
        result = evaluate(method, data, n, k, q, 300, progress=False)
        assert max(chunks) == largest and sum(chunks) == 300
        assert math.isclose(result.mean, expected[0], abs_tol=1e-6)


class RecordingBar(tqdm):
    """The real progress bar, remembering what it showed when it closed."""

    shown: ClassVar[list[tuple]] = []

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.options = options

    def close(self) -> None:
        if not hasattr(self, "options"):  # closed again on deletion
            return
        RecordingBar.shown.append((self.options["desc"], self.n, self.total, self.options["unit"], self.disable))
        del self.options
        super().close()


@pytest.mark.parametrize("build", [protonet, lambda: EpisodeDependentProtoNet(build_encoder("conv4", 1, 16))],
                         ids=["cached", "episode-by-episode"])
def test_an_evaluation_shows_a_progress_bar_of_its_episodes_unless_asked_not_to(monkeypatch, build):
    data = make_dataset(n_classes=6, per_class=5, size=16, seed=3)
    monkeypatch.setattr(evaluator_module, "tqdm", RecordingBar)
    RecordingBar.shown.clear()
    method = build().eval()
    evaluate(method, data, 3, 1, 2, n_episodes=7)
    Evaluator(method, data).evaluate(3, 2, 2, n_episodes=5)
    evaluate(method, data, 3, 1, 2, n_episodes=7, progress=False)
    assert RecordingBar.shown == [("3-way 1-shot", 7, 7, "episode", False), ("3-way 2-shot", 5, 5, "episode", False),
                                  ("3-way 1-shot", 0, 7, "episode", True)]  # a hidden bar counts nothing
