"""The gallery's own API (fewshot.gallery.gallery) on a model that embeds an image as its pixels: what an add
returns, the model inputs it takes, example ids out of range, the calibration's defaults and moving to another
model. No training, so mutation testing (benchmarks/mutation.sh) can run these once per mutant."""
from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from pixels_support import SIZE, flat_protonet, image
from synthetic import make_dataset

from fewshot.errors import FewShotError, NotFoundError
from fewshot.gallery import Gallery
from fewshot.gallery.storage import GalleryStore


def test_an_add_result_as_json(tmp_path):
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        g.add("a", [image(0)])
        result = g.add("b", [image(9), image(0), image(9)])
    assert result.to_dict() == {
        "name": "b", "created": True, "example_ids": [2],
        "duplicates": [{"source": "array 2", "example_id": 1, "class": "a"},
                       {"source": "array 3", "example_id": -1, "class": "array 1 in this request"}],
        "notes": {}}


@pytest.mark.parametrize("array", [np.zeros((1, SIZE, SIZE), np.float32), np.zeros((1, SIZE, SIZE + 1), np.uint8),
                                   np.zeros((SIZE, SIZE), np.uint8)])
def test_an_array_is_taken_only_as_a_uint8_model_input_of_the_right_shape(tmp_path, array):
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        shape = ", ".join(map(str, array.shape))
        with pytest.raises(FewShotError, match=(rf"^array 1 is a {array.dtype} array of shape \({shape}\); "
                                                rf"a model input is uint8 of shape \(1, {SIZE}, {SIZE}\) \(or pass the "
                                                r"encoded image\)$")):
            g.add("a", [array])
        assert g.info()["examples"] == 0


def test_an_example_id_out_of_range_is_not_found_and_every_stored_id_is(tmp_path):
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        pixels = [np.full((1, SIZE, SIZE), v, np.uint8) for v in range(130)]
        for p, v in zip(pixels, range(130)):
            p.reshape(-1)[0] = 255 - v  # 130 different images
        g.add("many", pixels)
        for bad in (-1, 0, 131, 2**63, 2**64):
            with pytest.raises(NotFoundError, match=f"has no example {bad}"):
                g.remove_example(bad)
            with pytest.raises(NotFoundError, match=f"has no example {bad}"):
                g.example_pixels(bad)
        assert np.array_equal(g.example_pixels(130), pixels[129])
        assert g.remove_example(130) == ("many", False)
        assert g.info()["examples"] == 129


def shapes(n_classes: int, per_class: int):
    return make_dataset(n_classes=n_classes, per_class=per_class, size=SIZE, seed=3, name="shapes")


def test_calibrating_defaults_to_the_gallery_size_capped_by_the_data(tmp_path, capsys):
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        empty = g.calibrate(shapes(30, 8), episodes=5)
        assert (empty.n_way, empty.k_shot) == (2, 1)  # no classes yet: 2-way 1-shot
        g.add("a", [image(0), image(10), image(20)])
        g.add("b", [image(40), image(50)])
        g.add("c", [image(80), image(90)])  # 3 classes, 7 examples: about 2 each
        result = g.calibrate(shapes(30, 8), episodes=5)
        assert (result.n_way, result.k_shot, result.n_query, result.n_unknown) == (3, 2, 5, 5)
        assert (result.target_false_accept, result.match, result.dataset, result.gallery_classes) == (
            0.01, "prototype", "shapes", 3)
        again = g.calibrate(shapes(30, 8), episodes=5, seed=0)
        assert (again.threshold, again.report) == (result.threshold, result.report)
        assert result.created < again.created <= time.time()
        assert g.calibrate(shapes(16, 8), episodes=5).n_way == 3  # 16 // 2 - 5 classes: 3
        assert g.calibrate(shapes(14, 8), episodes=5).n_way == 2
        assert g.calibrate(shapes(30, 6), episodes=5).k_shot == 1  # 6 images a class: 5 are queries
        assert g.calibrate(shapes(30, 8), episodes=5, queries=3, unknown=4).n_way == 3
        assert capsys.readouterr().err == ""
        assert g.calibrate(shapes(40, 8), episodes=5, way=12, shot=3).n_way == 12
        full = g.calibrate(shapes(30, 8), target=0.05)
        assert (full.episodes, full.report.false_accept.mean) == (600, pytest.approx(0.05, abs=0.03))
    with Gallery.create(tmp_path / "e.gallery", flat_protonet(), match="example") as g:
        g.add("a", [image(0)])
        assert g.calibrate(shapes(30, 8), episodes=5).match == "example"
        with pytest.raises(FewShotError, match=(rf"^shapes has images of shape \(1, 8, 8\); the model reads \(1, "
                                                rf"{SIZE}, {SIZE}\): load it with image_size={SIZE}, channels=1$")):
            g.calibrate(make_dataset(n_classes=30, per_class=8, size=8, name="shapes"), episodes=5)


def test_reembedding_moves_every_example_and_keeps_or_resets_the_match(tmp_path, monkeypatch):
    monkeypatch.setattr(GalleryStore, "images", functools.partialmethod(GalleryStore.images, batch=2))
    path = tmp_path / "g.gallery"
    with Gallery.create(path, flat_protonet(), match="example") as g:
        g.add("a", [image(0), image(10), image(20)])
        g.add("b", [image(200), image(190)])
        other = flat_protonet(n_way=7)  # the same embedding under another fingerprint
        assert g.reembed(other) == 5  # in batches of 2
        assert g.model is other and g.match == "example"  # the new model has example matching too
        with pytest.raises(FewShotError, match=rf"^{path} is already bound to this model \(fingerprint "
                                               rf"{other.fingerprint[:12]}\)$"):
            g.reembed(other)
        g.reembed(flat_protonet(n_way=8))
    with Gallery.open(path) as g:
        assert g.match == "example" and g.model.config.options == {"n_way": 8}
        assert g.recognise([image(195)])[0].name == "b"
        with pytest.raises(FewShotError, match=(r"^the new model reads 1x8x8 images; this gallery stores 1x4x4. "
                                                r"Create a new gallery for it and add the original images$")):
            g.reembed(flat_protonet(size=8))
        g.reembed(flat_protonet(method="mahalanobis"))  # matches by pairs only
        assert g.match == "pairs"
    with Gallery.open(path) as g:
        assert g.match == "pairs" and g.model.config.method == "mahalanobis" and g.info()["examples"] == 5
        g.reembed(flat_protonet())  # pairs is not a ProtoNet match: back to its default
        assert g.match == "prototype"
    with Gallery.open(path) as g:
        assert g.match == "prototype" and g.recognise([image(5)])[0].name == "a"
