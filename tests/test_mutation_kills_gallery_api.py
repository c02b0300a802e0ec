"""The gallery's own API (fewshot.gallery.gallery) on a model that embeds an image as its pixels: what an add
takes and returns, example ids out of range, paging, recognising and calibrating, moving to another model, and
the index derived from SQLite (rebuilt, read from its file, caught up across connections). No training, so
mutation testing (benchmarks/mutation.sh) can run these once per mutant; docs/benchmarks.md lists what they kill."""
from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import pytest
from pixels_support import SIZE, distance, flat_protonet, image
from synthetic import make_dataset

from fewshot.errors import BusyError, FewShotError, NotFoundError
from fewshot.gallery import Gallery, GalleryModel
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
        assert (g.calibrate(shapes(30, 8), episodes=5, queries=3, unknown=4).n_way, result.n_query) == (3, 5)
        assert g.calibrate(shapes(30, 8), episodes=5, queries=3).n_query == 3
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
        assert g.index_note is None  # the index of the new model was saved on close, not rebuilt on opening


def write_run(model: GalleryModel, run: Path) -> Path:
    """A run directory as ``fewshot train`` leaves it, holding ``model``'s config and weights."""
    run.mkdir()
    (run / "config.yaml").write_text(model.config_text)
    (run / "model.safetensors").write_bytes(model.weights)
    return run


def test_a_gallery_is_made_from_a_run_directory_and_moved_to_another(tmp_path):
    first, second = write_run(flat_protonet(), tmp_path / "r1"), write_run(flat_protonet(n_way=3), tmp_path / "r2")
    path = tmp_path / "g.gallery"
    with Gallery.create(path, first) as g:
        g.add("a", [image(0), image(30)])
        assert g.model.source == str(first)
        with pytest.raises(NotFoundError, match=f"^{path} has no class named 'zz'$"):
            g.examples("zz")
        assert g.reembed(second) == 2 and g.model.source == str(second)
    with Gallery.open(path, second) as g:
        assert g.recognise([image(20)])[0].name == "a"
    fingerprints = (GalleryModel.from_run(second).fingerprint[:12], GalleryModel.from_run(first).fingerprint[:12])
    with pytest.raises(FewShotError, match=(rf"^{path} is bound to the model of {second} \(fingerprint "
                                            rf"{fingerprints[0]}\), not to that of {first} \(fingerprint "
                                            rf"{fingerprints[1]}\); open it without --run, or move it to the new "
                                            rf"model with `fewshot gallery reembed {path} --run {first}`$")):
        Gallery.open(path, first)


def test_classes_page_by_offset_and_limit_and_say_when_they_were_added(tmp_path):
    before = time.time()
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        for i, name in enumerate("abc"):
            g.add(name, [image(10 * i + k) for k in range(i + 1)])
        assert [(c.name, c.examples) for c in g.classes()] == [("a", 1), ("b", 2), ("c", 3)]
        assert all(before <= c.added <= time.time() for c in g.classes())
        assert [c.name for c in g.classes(1)] == ["b", "c"] and [c.name for c in g.classes(1, 1)] == ["b"]
        assert g.classes(limit=0) == [] and g.classes(2**63) == [] and len(g.classes(0, 2**63)) == 3
        for offset, limit in ((-1, None), (0, -1), (-1, 5)):
            with pytest.raises(FewShotError, match=f"^offset and limit are counts, 0 or more; got {offset} and "
                                                   f"{limit}$"):
                g.classes(offset, limit)


def test_recognise_answers_each_query_by_the_galleries_own_match_unless_told(tmp_path):
    path = tmp_path / "g.gallery"
    with Gallery.create(path, flat_protonet(), match="example") as g:
        with pytest.raises(FewShotError, match=(f"^{path} has no classes yet; add some with `fewshot gallery add "
                                                f"{path} --name NAME IMAGE...`$")):
            g.recognise([image(0)])
        g.add("a", [image(0), image(100)])
        g.add("b", [image(60)])
        g.add("c", [image(250)])
        query = image(45)  # nearest to a's mean (50), and to b's one example (60) of all examples
        (answer,) = g.recognise([query], top=3)
        assert (answer.source, answer.name, answer.calibrated, answer.threshold) == ("array 1", "b", False, None)
        assert [m.name for m in answer.top] == ["b", "a", "c"] and len(g.recognise([query])[0].top) == 1
        assert answer.margin == pytest.approx(answer.top[1].distance - answer.top[0].distance)
        assert g.recognise([query], match="prototype")[0].name == "a"
        assert answer.notes == [("uncalibrated: no query is called unknown; run `fewshot gallery calibrate` to set "
                                "the threshold")]
        for top in (0, -1, True, 1.5, "2"):
            with pytest.raises(FewShotError, match=f"^top must be a positive integer, got {top!r}$"):
                g.recognise([query], top=top)


def test_a_calibration_serves_its_own_match_and_every_setting_reaches_it(tmp_path, capsys):
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        for i in range(3):
            g.add(f"c{i}", [image(80 * i)])  # one example each: 1-shot
        result = g.calibrate(shapes(30, 8), episodes=7, unknown=4, target=0.05, seed=3, progress=True)
        assert "calibrating" in capsys.readouterr().err
        assert (result.k_shot, result.n_unknown, result.episodes, result.target_false_accept) == (1, 4, 7, 0.05)
        assert g.calibrate(shapes(30, 8), episodes=7, unknown=4, target=0.05).threshold != result.threshold  # seed 0
        by_example = g.calibrate(shapes(30, 8), episodes=30, shot=3, match="example")
        by_prototype = g.calibrate(shapes(30, 8), episodes=30, shot=3)
        assert (by_example.match, by_prototype.match) == ("example", "prototype")
        assert by_example.threshold != by_prototype.threshold
        with pytest.raises(FewShotError, match="^a protonet gallery matches by prototype or example, not 'pairs'$"):
            g.calibrate(shapes(30, 8), episodes=7, match="pairs")
        (answer,) = g.recognise([image(0)])
        assert answer.calibrated and answer.threshold == by_prototype.threshold and answer.notes == []
        (other,) = g.recognise([image(0)], match="example")
        assert not other.calibrated
        assert other.notes == [("uncalibrated for example matching (the calibration is for prototype); no query is "
                               "called unknown")]
        info = g.info()
        assert info["calibration"] == by_prototype.to_dict() and info["notes"] == []


def test_info_describes_the_gallery_and_its_index(tmp_path, monkeypatch):
    from fewshot.gallery import gallery as gallery_module

    path = tmp_path / "g.gallery"
    pixels = flat_protonet()
    with Gallery.create(path, pixels) as g:
        g.add("a", [image(0), image(9)])
        assert g.info() == {
            "path": str(path), "format": 1, "model": pixels.describe(), "fingerprint": pixels.fingerprint,
            "method": "protonet", "match": "prototype",
            "preprocessing": {"size": SIZE, "channels": 1, "strokes": False},
            "classes": 1, "examples": 2, "index": "flat (exact)", "calibration": None,
            "notes": ["uncalibrated: no query is called unknown; run `fewshot gallery calibrate` to set the threshold"]}
        monkeypatch.setattr(gallery_module, "EXACT_UP_TO", 3)
        g.add("b", [image(50), image(60)])  # past 3 examples: the index turns approximate
        assert g.info()["index"] == "HNSW (approximate)" and g.info()["examples"] == 4
    (path.parent / (path.name + ".index")).write_bytes(b"damaged")
    with Gallery.open(path) as g:
        assert g.info()["notes"][-1].startswith(f"the index file {path}.index was unreadable (")
        assert g.info()["notes"][-1].endswith("); rebuilt it")


def test_a_gallery_opened_with_a_timeout_waits_that_long_for_another_writer(tmp_path):
    path = tmp_path / "g.gallery"
    Gallery.create(path, flat_protonet()).close()
    writer = GalleryStore(path)
    with writer.write(), Gallery.open(path, timeout=0.05) as g:
        started = time.perf_counter()
        with pytest.raises(BusyError, match=r"\(waited 0\.05 s\)"):
            g.add("a", [image(0)])
        assert time.perf_counter() - started < 2
        assert g.model.source == "runs/pixels"  # the stored model names the run it came from
    writer.close()


def index_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".index*"))


def answers(g: Gallery, queries: list[np.ndarray], match: str = "prototype") -> list[list[tuple[str, float]]]:
    return [[(m.name, m.distance) for m in a.top] for a in g.recognise(queries, top=3, match=match)]


def assert_same(got: list[list[tuple[str, float]]], expected: list[list[tuple[str, float]]]) -> None:
    assert [[n for n, _ in row] for row in got] == [[n for n, _ in row] for row in expected]
    assert [[d for _, d in row] for row in got] == [pytest.approx([d for _, d in row], rel=1e-5, abs=1e-6)
                                                    for row in expected]


def test_the_index_rebuilt_from_sqlite_gives_the_answers_kept_as_the_gallery_changed(tmp_path, monkeypatch):
    from fewshot.gallery import gallery as gallery_module

    monkeypatch.setattr(GalleryStore, "embeddings", functools.partialmethod(GalleryStore.embeddings, batch=2))
    path = tmp_path / "g.gallery"
    queries = [image(v) for v in (0, 70, 140, 255)]
    with Gallery.create(path, flat_protonet()) as g:
        g.add("a", [image(0), image(30)])
        g.add("b", [image(100), image(140), image(120)])
        g.add("a", [image(60)])  # a's examples in two adds, and across two batches of a rebuild
        g.add("c", [image(250)])
        kept = answers(g, queries) + answers(g, queries, "example")
        means = {"a": 30, "b": 120, "c": 250}
        expected = sorted(distance(image(70), image(v)) for v in means.values())
        assert [d for _, d in kept[1]] == pytest.approx(expected, rel=1e-5)
    assert index_files(path)
    for f in index_files(path):
        f.unlink()
    with Gallery.open(path) as g:  # no index file: rebuilt from SQLite alone, in batches of 2 examples
        assert g.index_note is None
        assert_same(answers(g, queries) + answers(g, queries, "example"), kept)
        g.remove_example(2)  # a loses image(30): its prototype is read again from SQLite
        g.add("b", [image(200)])  # b's running sum, restarted after the reopening
        changed = answers(g, queries)
    with Gallery.open(path) as g:  # the index file written on close
        assert_same(answers(g, queries), changed)
        assert [m.distance for m in g.recognise([image(30)], top=3)[0].top if m.name in "ab"] == pytest.approx(
            [0.0, distance(image(30), image(140))], rel=1e-5, abs=1e-6)  # a's mean: (0 + 60) / 2
    assert index_files(path)
    monkeypatch.setattr(gallery_module, "EXACT_UP_TO", 7)
    for f in index_files(path):
        f.unlink()
    with Gallery.open(path) as g:  # 7 examples: still exact
        assert g.info()["index"] == "flat (exact)"
        g.add("d", [image(5)])
    for f in index_files(path):
        f.unlink()
    with Gallery.open(path) as g:  # 8 examples: rebuilt approximate
        assert g.info()["index"] == "HNSW (approximate)"
        assert answers(g, queries)[1][0][0] == "a"


def test_an_index_file_of_another_gallery_or_a_later_state_is_not_trusted(tmp_path):
    big, small = tmp_path / "big.gallery", tmp_path / "small.gallery"
    with Gallery.create(big, flat_protonet()) as g:
        for i in range(5):
            g.add(f"b{i}", [image(40 * i)])
    with Gallery.create(small, flat_protonet()) as g:
        g.add("s", [image(7)])
    for f in index_files(big):  # the same model's index of 5 changes, beside a gallery of 1
        f.rename(tmp_path / f.name.replace("big", "small"))
    with Gallery.open(small) as g:
        assert [c.name for c in g.classes()] == ["s"] and g.recognise([image(200)])[0].name == "s"
        assert g.index_note.startswith(f"the index file {small}.index was unreadable (it was made for another model, "
                                       "format or state of the gallery); rebuilt it")
    other, mine = tmp_path / "other.gallery", tmp_path / "mine.gallery"
    with Gallery.create(other, flat_protonet(n_way=3)) as g:  # another model's index, of an earlier state
        g.add("x", [image(1)])
    with Gallery.create(mine, flat_protonet()) as g:
        g.add("y", [image(2)])
        g.add("z", [image(3)])
    for f in index_files(mine):
        f.unlink()
    for f in index_files(other):
        f.rename(tmp_path / f.name.replace("other", "mine"))
    with Gallery.open(mine) as g:
        assert "made for another model" in g.index_note and [c.name for c in g.classes()] == ["y", "z"]


def test_an_index_of_an_earlier_state_is_brought_up_to_date_and_each_close_saves_it(tmp_path):
    path = tmp_path / "g.gallery"
    with Gallery.create(path, flat_protonet()) as g:
        g.add("a", [image(0)])
    saved = {f.name: f.read_bytes() for f in index_files(path)}
    with Gallery.open(path) as g:
        g.add("b", [image(200)])
    for f in index_files(path):
        f.unlink()
    for name, data in saved.items():  # the index of one change before
        (tmp_path / name).write_bytes(data)
    with Gallery.open(path) as g:
        assert g.index_note is None and g.recognise([image(190)])[0].name == "b"
    one = tmp_path / "one.gallery"
    with Gallery.create(one, flat_protonet()) as g:  # generation 1 after one add
        g.add("a", [image(0)])
    for f in index_files(one):
        f.unlink()
    Gallery.open(one).close()  # rebuilt at generation 1, and saved
    assert index_files(one)


def test_a_gallery_bigger_than_twice_its_calibration_says_so(tmp_path):
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        for i in range(4):
            g.add(f"c{i}", [image(60 * i)])
        g.calibrate(shapes(30, 8), episodes=5, way=2)
        assert g.recognise([image(0)])[0].notes == []  # 4 classes: twice 2
        g.add("c4", [image(250)])
        assert g.recognise([image(0)])[0].notes == [
            "calibrated at 2 classes; the gallery now holds 5: recalibrate for the stated false-accept rate"]
        g.calibrate(shapes(30, 8), episodes=5, way=1)
        assert len(g.recognise([image(0)])[0].notes) == 1  # 5 classes, more than twice 1
    with Gallery.create(tmp_path / "h.gallery", flat_protonet()) as g:
        for i in range(3):
            g.add(f"c{i}", [image(60 * i)])
        g.calibrate(shapes(30, 8), episodes=5, way=1)
        assert "now holds 3" in g.recognise([image(0)])[0].notes[0]


def test_the_packaged_calibration_comes_only_with_the_match_it_was_made_for(tmp_path):
    assert Gallery.create(tmp_path / "p.gallery").calibration is not None
    assert Gallery.create(tmp_path / "e.gallery", match="example").calibration is None
    assert Gallery.create(tmp_path / "o.gallery", flat_protonet()).calibration is None


def test_images_come_as_a_file_path_bytes_a_named_pair_or_an_array_and_one_alone(tmp_path):
    from PIL import Image

    drawing = tmp_path / "ink.png"  # dark on light: inverted for a drawing model, noted
    Image.fromarray(np.full((SIZE, SIZE), 200, np.uint8)).save(drawing)
    light = (tmp_path / "light.png")
    Image.fromarray(np.full((SIZE, SIZE), 90, np.uint8)).save(light)
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        first = g.add("a", str(drawing))  # one path, not in a list
        assert first.example_ids == [1] and first.notes == {}  # a folder model: not a drawing, not inverted
        assert np.array_equal(g.example_pixels(1), np.full((1, SIZE, SIZE), 200, np.uint8))
        assert g.examples("a")[0][2] == str(drawing)
        second = g.add("a", [light, ("named.png", light.read_bytes()), light.read_bytes(), image(0), image(0),
                              image(7)])
        assert second.example_ids == [2, 3, 4] and [d[0] for d in second.duplicates] == ["named.png", "image 3",
                                                                                      "array 5"]
        assert [e[2] for e in g.examples("a")] == [str(drawing), str(light), "array 4", "array 6"]
        assert g.recognise(light.read_bytes())[0].source == "image 1"
    with Gallery.create(tmp_path / "d.gallery", flat_protonet(dataset="omniglot")) as g:
        assert g.add("a", [drawing]).notes == {str(drawing): [
            "inverted to bright strokes on dark, as the model was trained"]}
    with Gallery.create(tmp_path / "e.gallery", flat_protonet()) as g:
        with pytest.raises(FewShotError, match="^no images given; pass at least one PNG or JPEG image$"):
            g.add("a", [])
        with pytest.raises(FewShotError, match=("^image 2 is a int; pass PNG/JPEG bytes, a file path or a model "
                                                "input array$")):
            g.add("a", [image(0), 5])
        assert g.info()["examples"] == 0


def test_another_connection_catches_up_with_a_dropped_class_and_an_add_at_once(tmp_path):
    path = tmp_path / "g.gallery"
    with Gallery.create(path, flat_protonet()) as g, Gallery.open(path) as other:
        g.add("a", [image(0)])
        g.add("b", [image(100)])
        g.add("c", [image(200)])
        assert other.info()["classes"] == 3
        g.remove_class("a")  # dropped, then b grows, before the other connection looks again
        g.add("b", [image(140)])
        assert other.info()["classes"] == 2 and [c.name for c in other.classes()] == ["b", "c"]
        answer = other.recognise([image(120)], top=3)[0]
        assert [m.name for m in answer.top] == ["b", "c"]
        assert answer.top[0].distance == pytest.approx(distance(image(120), image(120)), abs=1e-6)
        g.reembed(flat_protonet(n_way=4))
        with pytest.raises(FewShotError, match=f"^{path} was moved to another model by another process; open it "
                                               "again$"):
            other.recognise([image(0)])


def test_the_index_turns_approximate_only_past_its_exact_limit(tmp_path, monkeypatch):
    from fewshot.gallery import gallery as gallery_module

    monkeypatch.setattr(gallery_module, "EXACT_UP_TO", 3)
    with Gallery.create(tmp_path / "g.gallery", flat_protonet()) as g:
        g.add("a", [image(0), image(9)])
        g.add("b", [image(50)])
        assert g.info()["index"] == "flat (exact)"  # 3: at the limit
        g.add("b", [image(60)])
        assert g.info()["index"] == "HNSW (approximate)"


def test_an_index_file_that_cannot_be_written_is_noted_and_nothing_else_is_lost(tmp_path):
    path = tmp_path / "g.gallery"
    Path(str(path) + ".index").mkdir()  # in the way of the index file
    with pytest.raises(FewShotError, match=(f"^{path}.index is a folder, where the gallery's index file goes; move "
                                            "it away or choose another path$")):
        Gallery.create(path, flat_protonet())
    assert not path.exists()
    Path(str(path) + ".index").rmdir()
    with Gallery.create(path, flat_protonet()) as g:
        g.add("a", [image(0)])
        Path(str(path) + ".index").mkdir()
        g.save_index()
        assert g.index_note == (f"could not write the index file {path}.index (Is a directory); it will be rebuilt "
                                "on the next open")
    with Gallery.open(path) as g:
        assert [c.name for c in g.classes()] == ["a"]


def test_an_empty_gallery_and_an_emptied_one_reopen_from_their_index_files(tmp_path):
    path = tmp_path / "g.gallery"
    Gallery.create(path, flat_protonet()).close()
    with Gallery.open(path) as g:
        assert g.index_note is None and g.info()["classes"] == 0
        g.add("a", [image(0)])
        g.remove_class("a")
    with Gallery.open(path) as g:
        assert g.index_note is None and g.info()["examples"] == 0
        g.add("b", [image(9)])
        assert g.recognise([image(0)])[0].name == "b"


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_an_up_to_date_index_file_is_read_not_rebuilt(tmp_path, distance):
    """The embeddings in SQLite are changed behind the gallery's back: answers from the index file keep the old
    ones, so the file was read; without it they follow SQLite."""
    import sqlite3

    path = tmp_path / "g.gallery"
    model = flat_protonet(distance=distance)
    queries = [image(10), image(120, 3), image(240, 5)]
    with Gallery.create(path, model) as g:
        g.add("a", [image(0), image(20, 2)])
        g.add("b", [image(200, 4)])
        before = answers(g, queries) + answers(g, queries, "example")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE examples SET embedding = ?", (np.full(SIZE * SIZE, 0.5, np.float32).tobytes(),))
    with Gallery.open(path) as g:
        assert g.index_note is None
        assert_same(answers(g, queries) + answers(g, queries, "example"), before)
    for f in index_files(path):
        f.unlink()
    with Gallery.open(path) as g:
        assert answers(g, queries)[0][0][1] == pytest.approx(answers(g, queries)[0][1][1])  # every class alike now


def test_a_class_added_and_removed_between_two_looks_of_another_connection_is_never_seen(tmp_path):
    path = tmp_path / "g.gallery"
    with Gallery.create(path, flat_protonet()) as g, Gallery.open(path) as other:
        g.add("a", [image(0), image(20)])
        assert other.recognise([image(10)])[0].name == "a"
        g.add("brief", [image(90)])
        g.remove_class("brief")
        g.remove_example(2)  # and a loses an example
        assert [c.name for c in other.classes()] == ["a"] and other.info()["classes"] == 1
        answer = other.recognise([image(90)], top=3)[0]
        assert [m.name for m in answer.top] == ["a"]
        assert answer.distance == pytest.approx(distance(image(90), image(0)))
