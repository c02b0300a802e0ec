import math

import pytest
import torch
from synthetic import make_dataset

from fewshot.data.augment import KOCH_DISTORTION, random_affine, random_distortion, random_thickening
from fewshot.data.dataset import ImageDataset
from fewshot.data.pairs import AllPairsSampler, PairBatch, PairSampler, balanced_pair_mean, hardest_negatives
from fewshot.data.triplets import PKSampler
from fewshot.errors import FewShotError

DATA = make_dataset(n_classes=6, per_class=5, size=16, seed=0)


def test_batches_are_half_same_half_different_pairs_of_the_dataset():
    sampler = PairSampler(DATA, batch_size=64, seed=0)
    left, right, labels = sampler.indices(3)
    assert len(left) == len(right) == 64 and labels.sum() == 32
    same = DATA.labels[left] == DATA.labels[right]
    assert torch.equal(same, labels.bool())
    assert (left[labels.bool()] != right[labels.bool()]).all()  # two distinct images of one class
    batch = sampler.batch(3)
    assert batch.images.shape == (96, 1, 16, 16)  # 32 anchors, each with a same and a different partner
    assert torch.equal(batch.images[batch.left], DATA.images_at(left))
    assert torch.equal(batch.images[batch.right], DATA.images_at(right))
    assert torch.equal(left[:32], left[32:])


def test_pairs_stay_inside_the_given_classes():
    train = DATA.subset([0, 2, 4])
    left, right, _ = PairSampler(train, batch_size=200, seed=1).indices(0)
    names = {train.class_names[int(i)] for i in train.labels[torch.cat([left, right])]}
    assert names == {"c0", "c2", "c4"}


def test_batch_i_depends_only_on_seed_and_i():
    a = PairSampler(DATA, 32, seed=7, distortion=KOCH_DISTORTION)
    b = PairSampler(DATA, 32, seed=7, distortion=KOCH_DISTORTION)
    later = [b.batch(i) for i in (5, 2)][1]  # drawn out of order
    assert torch.equal(a.batch(2).images, later.images) and torch.equal(a.batch(2).labels, later.labels)
    assert not torch.equal(a.batch(2).images, a.batch(3).images)
    assert not torch.equal(a.batch(2).images, PairSampler(DATA, 32, seed=8, distortion=KOCH_DISTORTION).batch(2).images)


def test_class_sizes_are_respected_and_every_class_is_drawn():
    images = torch.zeros(7, 1, 4, 4, dtype=torch.uint8)
    small = ImageDataset(images, torch.tensor([0, 0, 0, 0, 0, 1, 2]), ["a", "b", "c"])  # b, c: one image each
    left, right, labels = PairSampler(small, batch_size=300, seed=0).indices(0)
    positives = small.labels[left[labels.bool()]]
    assert (positives == 0).all()  # only class a can make a same pair
    assert set(small.labels[torch.cat([left, right])[~labels.repeat(2).bool()]].tolist()) == {0, 1, 2}


@pytest.mark.parametrize("labels, names, message", [
    ([0, 0, 0], ["only"], "single class"),
    ([0, 1, 2], ["a", "b", "c"], "no class .* has two images"),
])
def test_impossible_pairs_are_refused_clearly(labels, names, message):
    dataset = ImageDataset(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), torch.tensor(labels), names)
    with pytest.raises(FewShotError, match=message):
        PairSampler(dataset, batch_size=8)


def test_odd_batch_size_is_refused():
    with pytest.raises(FewShotError, match="even"):
        PairSampler(DATA, batch_size=7)


def test_all_pairs_batches_pair_every_two_images_of_p_classes_by_k():
    sampler = AllPairsSampler(DATA, classes_per_batch=3, images_per_class=4, seed=0)
    batch = sampler.batch(2)
    assert batch.images.shape == (12, 1, 16, 16) and len(batch) == 12 * 11 // 2
    assert int(batch.labels.sum()) == 3 * (4 * 3 // 2)  # same pairs: two images of one class
    indices = PKSampler(DATA, classes_per_batch=3, images_per_class=4, seed=0).indices(2)  # the same draw
    assert torch.equal(batch.images, DATA.images_at(indices.flatten()))
    labels = DATA.labels[indices.flatten()]
    assert torch.equal(batch.labels.bool(), labels[batch.left] == labels[batch.right])
    assert (batch.left < batch.right).all()  # each unordered pair once, never an image with itself


def test_all_pairs_batch_i_depends_only_on_seed_and_i():
    a = AllPairsSampler(DATA, 2, 3, seed=5, distortion=KOCH_DISTORTION)
    b = AllPairsSampler(DATA, 2, 3, seed=5, distortion=KOCH_DISTORTION)
    b.batch(9)
    assert torch.equal(a.batch(1).images, b.batch(1).images)
    assert not torch.equal(a.batch(1).images, a.batch(2).images)


@pytest.mark.parametrize("p, k, message", [
    (1, 2, r"classes_per_batch \(P\) must be an integer >= 2"),
    (2, 1, r"images_per_class \(K\) must be an integer >= 2"),
    (7, 2, r"\(P\) = 7 but .* has 6 classes; use P <= 6"),
    (2, 6, r"\(K\) = 6 but a class of .* has only 5 images; use K <= 5"),
])
def test_impossible_all_pairs_batches_are_refused_clearly(p, k, message):
    with pytest.raises(FewShotError, match=message):
        AllPairsSampler(DATA, classes_per_batch=p, images_per_class=k)


def test_balanced_pair_mean_weighs_same_and_different_pairs_equally():
    losses, labels = torch.tensor([1.0, 3.0, 0.0, 0.0, 0.0, 6.0]), torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert balanced_pair_mean(losses, labels).item() == pytest.approx(0.5 * 2.0 + 0.5 * 1.5)
    half = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert balanced_pair_mean(losses[:4], half).item() == pytest.approx(losses[:4].mean().item())
    assert balanced_pair_mean(losses, torch.zeros(6)).item() == pytest.approx(losses.mean().item())


def test_affine_identity_and_probability_zero_leave_images_unchanged():
    images = torch.rand(5, 2, 12, 12)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(random_affine(images, g), images, atol=1e-5)
    assert torch.allclose(random_affine(images, g, **{**KOCH_DISTORTION, "probability": 0.0}), images, atol=1e-5)


def test_affine_translation_and_rotation_move_pixels_as_asked():
    image = torch.zeros(1, 1, 20, 20)
    image[0, 0, 8:12, 3:7] = 1.0  # a square left of centre (centroid column 4.5)
    g = torch.Generator().manual_seed(0)
    shifted = random_affine(image.repeat(50, 1, 1, 1), g, translate=0.15)  # up to 3 pixels
    dx = (shifted.sum(2) * torch.arange(20.0)).sum(-1) / shifted.sum((2, 3)) - 4.5
    assert dx.abs().max() <= 3.01 and dx.min() < -1 and dx.max() > 1
    turned = random_affine(image.repeat(50, 1, 1, 1), g, rotation=90.0)
    rows = (turned.sum(3) * torch.arange(20.0)).sum(-1) / turned.sum((2, 3))
    assert rows.std() > 1.0  # rotating about the centre moves the square up and down
    assert torch.allclose(turned.sum((1, 2, 3)), image.sum().expand(50), rtol=0.1)  # and keeps its area


def test_affine_draws_are_reproducible_and_batched_per_image():
    images = torch.rand(4, 1, 10, 10).repeat(2, 1, 1, 1)
    out1 = random_affine(images, torch.Generator().manual_seed(3), **KOCH_DISTORTION)
    out2 = random_affine(images, torch.Generator().manual_seed(3), **KOCH_DISTORTION)
    assert torch.equal(out1, out2)
    assert not torch.allclose(out1[:4], out1[4:])  # each image gets its own transform
    assert math.isclose(KOCH_DISTORTION["translate"] * 105, 2.0)


def test_bad_affine_ranges_are_refused():
    with pytest.raises(FewShotError, match="scale"):
        random_affine(torch.rand(1, 1, 4, 4), torch.Generator(), scale=(1.2, 0.8))


def test_thickening_widens_strokes_only_around_them_and_only_as_often_as_asked():
    image = torch.zeros(1, 1, 12, 12)
    image[0, 0, 6, 2:10] = 1.0  # a horizontal stroke one pixel wide
    images = image.repeat(400, 1, 1, 1)
    thick = random_thickening(images, torch.Generator().manual_seed(0), probability=0.5)
    assert (thick >= images).all() and thick.max() <= 1.0  # ink is only added
    assert (thick[:, :, :5] == 0).all() and (thick[:, :, 8:] == 0).all()  # a one-pixel rim at most
    changed = (thick != images).flatten(1).any(1).float().mean().item()
    assert 0.4 < changed < 0.6
    assert torch.equal(random_thickening(images, torch.Generator().manual_seed(0), probability=0.0), images)
    full = random_thickening(images, torch.Generator().manual_seed(0), probability=1.0)
    assert torch.equal(full, random_thickening(images, torch.Generator().manual_seed(0), probability=1.0))
    rim = full[:, 0, 5, 2:10].mean(1)  # the row above the stroke: t ~ U[0, 1] per image
    assert rim.min() < 0.1 and rim.max() > 0.9
    with pytest.raises(FewShotError, match="probability"):
        random_thickening(images, torch.Generator(), probability=1.5)


def test_distortion_without_thickening_draws_exactly_the_affine_maps():
    images = torch.rand(6, 1, 10, 10)
    affine = random_affine(images, torch.Generator().manual_seed(4), **KOCH_DISTORTION)
    assert torch.equal(random_distortion(images, torch.Generator().manual_seed(4), **KOCH_DISTORTION), affine)
    assert torch.equal(random_distortion(images, torch.Generator().manual_seed(4), thicken=0.0, **KOCH_DISTORTION),
                       affine)  # runs trained before thickening existed draw the same images
    assert torch.equal(random_distortion(images, torch.Generator()), images)


def test_hardest_negatives_marks_each_images_most_alike_different_pair():
    # images 0, 1 of class a; 2, 3 of class b; all six pairs, scored by hand (higher: more alike)
    left, right = torch.triu_indices(4, 4, offset=1)  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    batch = PairBatch(torch.zeros(4, 1, 2, 2), left, right, labels)
    scores = torch.tensor([9.0, 0.5, -1.0, 2.0, 0.0, 9.0])
    # image 0: (0,2) 0.5 beats (0,3) -1; image 1: (1,2) 2; image 2: (1,2) 2; image 3: (1,3) 0
    assert hardest_negatives(scores, batch).tolist() == [False, True, False, True, True, False]
    scores.requires_grad_(True)
    assert not hardest_negatives(scores, batch).requires_grad
