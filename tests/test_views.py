"""Whole-episode views (test-time augmentation): the 8 symmetries, MANN.predict(views=...), evaluation."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from test_mann import random_patterns, small_mann

from fewshot.data.views import check_views, dihedral_view
from fewshot.errors import FewShotError
from fewshot.evaluation.instances import evaluate_instances, load_results, markdown_table, save_results

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_eight_views_are_the_symmetries_of_the_square():
    image = torch.arange(9.0).view(1, 3, 3)
    views = [dihedral_view(image, i) for i in range(8)]
    assert torch.equal(views[0], image)
    assert views[1].tolist() == [[[2, 5, 8], [1, 4, 7], [0, 3, 6]]]  # 90 degrees anticlockwise
    assert torch.equal(views[2], image.flip(-1).flip(-2))
    assert torch.equal(views[4], image.flip(-1))
    distinct = {tuple(v.flatten().tolist()) for v in views}
    assert len(distinct) == 8
    turned = {tuple(dihedral_view(v, j).flatten().tolist()) for v in views for j in range(8)}
    assert turned == distinct  # a view of a view is again one of the eight: they form a group


def test_bad_views_are_clear_errors():
    for views in (0, 2, 3, 16):
        with pytest.raises(FewShotError, match="views must be 1 .*, 4 .* or 8"):
            check_views(views)
    with pytest.raises(FewShotError, match="0 .. 7"):
        dihedral_view(torch.zeros(2, 2), 8)
    with pytest.raises(FewShotError, match="square images, got 2x3"):
        dihedral_view(torch.zeros(1, 2, 3), 1)
    model = small_mann()
    batch = model.training_batches(random_patterns(6), steps=1, seed=0)(0)
    with pytest.raises(FewShotError, match="views must be"):
        model.predict(batch, views=2)


def test_predict_averages_the_probabilities_of_the_views():
    model = small_mann().eval()
    batch = model.training_batches(random_patterns(6), steps=1, seed=0)(0)
    with torch.no_grad():
        assert torch.equal(model.predict(batch), model.run(batch).logits)
        scores = model.predict(batch, views=4)
        by_view = [model.run(dataclasses.replace(batch, images=dihedral_view(batch.images, i))).logits.softmax(-1)
                   for i in range(4)]
    assert torch.allclose(scores.exp().sum(-1), torch.ones(scores.shape[:-1]), atol=1e-5)
    assert torch.allclose(scores.exp(), sum(by_view) / 4, atol=1e-6)
    assert not torch.allclose(by_view[0], by_view[1], atol=1e-3)  # the views do differ


@pytest.mark.parametrize("views,turned", [(4, 1), (4, 3), (8, 4), (8, 6)])
def test_averaged_scores_do_not_change_when_the_episode_is_turned(views, turned):
    """The set of views is closed under rotation (and with 8, mirroring): turning the episode only reorders it."""
    model = small_mann().eval()
    batch = model.training_batches(random_patterns(6), steps=1, seed=0)(0)
    turned_batch = dataclasses.replace(batch, images=dihedral_view(batch.images, turned))
    with torch.no_grad():
        assert torch.allclose(model.predict(turned_batch, views), model.predict(batch, views), atol=1e-5)
        assert not torch.allclose(model.predict(turned_batch), model.predict(batch), atol=1e-3)


def test_evaluation_with_views_is_named_saved_and_loaded(tmp_path):
    model = small_mann()
    data = random_patterns(6)
    one = evaluate_instances(model, data, n_episodes=20, batch_size=10, progress=False)
    four = evaluate_instances(model, data, n_episodes=20, batch_size=10, progress=False, views=4)
    assert (one.views, four.views) == (1, 4)
    assert four.model == "MANN (LRUA, LSTM), 4 views" and one.model == "MANN (LRUA, LSTM)"
    assert four.mean != one.mean
    assert "| MANN (LRUA, LSTM), 4 views | 3 |" in markdown_table([one, four])
    save_results([one, four], tmp_path / "r.json", tmp_path / "r.md")
    assert load_results(tmp_path / "r.json") == [one, four]
    written_before_views = {k: v for k, v in one.to_dict().items() if k != "views"}
    (tmp_path / "old.json").write_text(json.dumps([written_before_views]))
    assert load_results(tmp_path / "old.json") == [one]  # files from before views still load, as one view
    with pytest.raises(FewShotError, match="views must be"):
        evaluate_instances(model, data, n_episodes=10, progress=False, views=5)


def small_protonet(seed: int = 0):
    from fewshot.methods.protonet import PrototypicalNetworks
    from fewshot.nets import build_encoder

    torch.manual_seed(seed)
    return PrototypicalNetworks(build_encoder("conv4", 1, 28), distance="euclidean").eval()


def test_episode_views_average_the_probabilities_of_the_turned_episodes():
    from synthetic import make_dataset

    from fewshot.data.episodes import EpisodeSampler
    from fewshot.evaluation.evaluator import Evaluator

    model, data = small_protonet(), make_dataset(n_classes=8, per_class=6)
    sampler = EpisodeSampler(data, 4, 1, 3, n_episodes=6, seed=2)
    result = Evaluator(model, data, progress=False, views=4).evaluate(4, 1, 3, n_episodes=6, seed=2)
    expected = []
    with torch.no_grad():
        for i in range(6):
            ep = sampler.episode(i)
            probs = sum(model.scores(model.encoder(dihedral_view(ep.support, v)), ep.support_labels,
                                     model.encoder(dihedral_view(ep.query, v)), 4).softmax(-1) for v in range(4))
            expected.append((probs.argmax(-1) == ep.query_labels).float().mean())
    assert result.mean == pytest.approx(torch.stack(expected).mean().item(), abs=1e-6)
    assert result.views == 4 and result.setting == "4-way 1-shot 4 views"
    plain = Evaluator(model, data, progress=False).evaluate(4, 1, 3, n_episodes=6, seed=2)
    assert plain.setting == "4-way 1-shot" and plain.views == 1


def test_episode_views_of_an_episode_dependent_method_turn_support_and_queries_alike():
    """Matching Networks with full context embeddings are classified one episode at a time, each view in turn."""
    from synthetic import make_dataset

    from fewshot.data.episodes import EpisodeSampler
    from fewshot.evaluation.evaluator import Evaluator
    from fewshot.methods.matching import MatchingNetworks
    from fewshot.nets import build_encoder

    torch.manual_seed(1)
    model = MatchingNetworks(build_encoder("conv4", 1, 28), fce=True).eval()
    data = make_dataset(n_classes=8, per_class=6, seed=3)
    result = Evaluator(model, data, progress=False, views=8).evaluate(5, 2, 3, n_episodes=5)
    sampler = EpisodeSampler(data, 5, 2, 3, n_episodes=5)
    expected = []
    with torch.no_grad():
        for i in range(5):
            ep = sampler.episode(i)
            probs = 0
            for v in range(8):
                model.set_support(dihedral_view(ep.support, v), ep.support_labels)
                probs = probs + model.classify(dihedral_view(ep.query, v)).softmax(-1)
            expected.append((probs.argmax(-1) == ep.query_labels).float().mean())
    assert result.mean == pytest.approx(torch.stack(expected).mean().item(), abs=1e-6)


@pytest.mark.parametrize("views,turned", [(4, 1), (8, 5)])
def test_episode_views_do_not_change_when_every_image_is_turned(views, turned):
    """The views form a group: a dataset turned as a whole gives the same averaged accuracy, a single view does not."""
    from synthetic import make_dataset

    from fewshot.data.dataset import ImageDataset
    from fewshot.evaluation.evaluator import Evaluator

    model, data = small_protonet(2), make_dataset(n_classes=10, per_class=6, seed=4)
    rotated = ImageDataset(dihedral_view(data.images, turned).contiguous(), data.labels, data.class_names, "turned")
    a = Evaluator(model, data, progress=False, views=views).evaluate(5, 1, 3, n_episodes=40)
    b = Evaluator(model, rotated, progress=False, views=views).evaluate(5, 1, 3, n_episodes=40)
    assert a.mean == pytest.approx(b.mean, abs=1e-6)
    one_a = Evaluator(model, data, progress=False).evaluate(5, 1, 3, n_episodes=40)
    one_b = Evaluator(model, rotated, progress=False).evaluate(5, 1, 3, n_episodes=40)
    assert one_a.mean != one_b.mean
    with pytest.raises(FewShotError, match="views must be"):
        Evaluator(model, data, progress=False, views=3)
