"""The gallery's promises (docs/gallery-and-service.md) on a model that embeds an image as its own pixels.

The gallery tests train a small ProtoNet first (seconds per run); these need no training, so mutation
testing (benchmarks/mutation.sh) can run them once per mutant. docs/benchmarks.md lists what they kill."""
from __future__ import annotations

import re
import sqlite3
import threading
import time

import numpy as np
import pytest
import torch
from conftest import png_bytes
from PIL import Image
from pixels_support import SIZE, distance, flat_protonet, image
from safetensors.torch import save

from fewshot.errors import BusyError, FewShotError, NotFoundError
from fewshot.gallery import Gallery, GalleryModel, images, model
from fewshot.gallery.decision import Match, decide
from fewshot.gallery.images import Preprocessing, prepare_image
from fewshot.gallery.names import check_class_name
from fewshot.gallery.storage import GalleryStore, NewExample, _translate
from fewshot.runs import build_method
from fewshot.training.config import RunConfig


@pytest.fixture(scope="module")
def pixels_model() -> GalleryModel:
    """Distances squared Euclidean (ProtoNet's default)."""
    return flat_protonet()


def test_each_image_is_stored_once_and_every_add_is_there_for_the_next_open(tmp_path, pixels_model):
    path = tmp_path / "g.gallery"
    with Gallery.create(path, pixels_model) as g:
        first = g.add("a", [image(0), image(0, 2), image(0)])
        assert (first.created, first.example_ids) == (True, [1, 2])
        assert first.duplicates == [("array 3", -1, "array 1 in this request")]
        second = g.add("b", [image(200), image(0, 2)])
        assert (second.created, second.example_ids, second.duplicates) == (True, [3], [("array 2", 2, "a")])
        nothing = g.add("c", [image(0)])  # its one image is a's: no class c
        assert (nothing.created, nothing.example_ids, nothing.duplicates) == (False, [], [("array 1", 1, "a")])
        again = g.add("a", [image(50)])
        assert (again.created, again.example_ids) == (False, [4])
        with Gallery.open(path) as other:  # another connection sees every acknowledged add
            assert [(c.name, c.examples) for c in other.classes()] == [("a", 3), ("b", 1)]
            assert [i for i, _, _ in other.examples("a")] == [1, 2, 4]
            assert other.examples("a")[2][2] == "array 1"
            assert other.recognise([image(190)])[0].name == "b"
        assert np.array_equal(g.example_pixels(2), image(0, 2))
    with Gallery.open(path) as g:
        assert g.info()["classes"] == 2 and g.info()["examples"] == 4 and g.check() == "ok"
        answer = g.recognise([image(50)], top=2, match="example")[0]
        assert (answer.name, answer.distance) == ("a", 0.0)
        assert [m.name for m in answer.top] == ["a", "b"]
        assert answer.top[1].distance == pytest.approx(distance(image(50), image(200)), rel=1e-4)


def test_the_prototype_is_the_class_mean_and_the_example_match_its_nearest_member(tmp_path, pixels_model):
    with Gallery.create(tmp_path / "g.gallery", pixels_model) as g:
        g.add("a", [image(0), image(100)])
        g.add("b", [image(60)])
        query = image(45)  # nearest to a's mean (50), and to b's one example (60) of all examples
        by_prototype = g.recognise([query], top=2)[0]
        assert by_prototype.name == "a"
        assert by_prototype.distance == pytest.approx(distance(query, image(50)), rel=1e-4)
        assert by_prototype.top[1].distance == pytest.approx(distance(query, image(60)), rel=1e-4)
        by_example = g.recognise([query], top=2, match="example")[0]
        assert by_example.name == "b" and by_example.distance == pytest.approx(distance(query, image(60)), rel=1e-4)
        assert by_example.margin == pytest.approx(distance(query, image(0)) - distance(query, image(60)), rel=1e-4)
        with pytest.raises(FewShotError, match="^a protonet gallery matches by prototype or example, not 'pairs'$"):
            g.recognise([query], match="pairs")


def test_a_cosine_gallery_searches_by_angle_beyond_the_candidates_nearest_in_euclidean_distance(tmp_path):
    """Eleven classes nearer to the query in Euclidean distance than the one pointing its way: more than the
    index's candidates (the top two and eight more), so a Euclidean search would never score that one."""
    path = tmp_path / "g.gallery"
    with Gallery.create(path, flat_protonet(distance="cosine")) as g:
        for k in range(1, 12):
            g.add(f"near{k}", [image(100, corner=k)])
        g.add("parallel", [image(250)])
        answer = g.recognise([image(100)])[0]
        assert (answer.name, answer.distance) == ("parallel", pytest.approx(0.0, abs=1e-6))
        g.remove_class("parallel")
    with Gallery.open(path) as g:  # the index read from its file searches by angle too, here one of small norm
        g.add("parallel", [image(40)])
        answer = g.recognise([image(100)])[0]
        assert (answer.name, answer.distance) == ("parallel", pytest.approx(0.0, abs=1e-6))


def test_removed_examples_and_classes_are_never_returned_in_this_process_or_another(tmp_path, pixels_model):
    path = tmp_path / "g.gallery"
    with Gallery.create(path, pixels_model) as g, Gallery.open(path) as other:
        g.add("a", [image(0), image(10)])
        g.add("b", [image(100)])
        g.add("c", [image(220)])
        assert other.recognise([image(12)])[0].name == "a"
        assert g.remove_example(2) == ("a", False)
        assert g.remove_example(3) == ("b", True)
        answer = other.recognise([image(100)], top=3, match="example")[0]
        assert [m.name for m in answer.top] == ["a", "c"]  # not b, the removed example at distance 0
        assert answer.top[0].distance == pytest.approx(distance(image(100), image(0)), rel=1e-4)
        assert other.recognise([image(10)])[0].distance == pytest.approx(distance(image(10), image(0)), rel=1e-4)
        assert g.remove_class("c") == 1
        assert [c.name for c in other.classes()] == ["a"]
        assert [m.name for m in other.recognise([image(200)], top=3)[0].top] == ["a"]
        with pytest.raises(NotFoundError, match="has no class named 'c'"):
            g.remove_class("c")
    with Gallery.open(path) as g:
        assert g.info()["examples"] == 1 and [m.name for m in g.recognise([image(200)], top=3)[0].top] == ["a"]


def test_a_query_is_unknown_only_beyond_the_threshold():
    ranked = [Match("a", 2.0), Match("b", 5.0), Match("c", 9.0)]
    at = decide("q", ranked, 2, 2.0, ["n"])
    assert (at.name, at.known, at.distance, at.threshold, at.calibrated) == ("a", True, 2.0, 2.0, True)
    assert at.margin == 3.0 and at.top == ranked[:2] and at.notes == ["n"]
    beyond = decide("q", ranked, 1, 1.5, [])
    assert (beyond.name, beyond.known, beyond.distance, beyond.top) == (None, False, 2.0, ranked[:1])
    uncalibrated = decide("q", ranked[:1], 1, None, [])
    assert (uncalibrated.name, uncalibrated.calibrated, uncalibrated.margin) == ("a", False, None)
    assert beyond.to_dict() == {"source": "q", "name": None, "known": False, "distance": 2.0, "threshold": 1.5,
                                "calibrated": True, "margin": 3.0, "top": [{"name": "a", "distance": 2.0}],
                                "notes": []}


def new_example(value: int) -> NewExample:
    return NewExample(bytes([value]), f"hash{value}", np.full(2, value, np.float32), f"image {value}")


def store(tmp_path) -> GalleryStore:
    return GalleryStore.create(tmp_path / "s.gallery", {"match": "prototype"}, ("config", b"weights", "f1", "run"))


def test_each_change_is_one_generation_in_the_change_log(tmp_path):
    s = store(tmp_path)
    assert s.generation() == 0 and s.model() == ("config", b"weights", "f1", "run") and s.meta()["format"] == "1"
    a = s.add("a", [new_example(1), new_example(2)])
    assert (a.class_id, a.created, a.example_ids) == (1, True, [1, 2])
    s.add("b", [new_example(3)])
    s.remove_example(2, 1, drop_class=False)
    s.remove_class(2)
    assert s.generation() == 4 and s.counts() == (1, 1)
    assert [(c.generation, c.op, c.class_id, c.example_id) for c in s.changes_since(1)] == [
        (2, "add", 2, 3), (3, "remove", 1, 2), (4, "remove", 2, 3), (4, "drop", 2, None)]
    ids, classes, vectors = next(s.embeddings(2))
    assert ids.tolist() == [1] and classes.tolist() == [1] and vectors.tolist() == [[1.0, 1.0]]
    assert s.embeddings_of([1, 3], 2).keys() == {1}
    assert [rows for rows in s.images()] == [[(1, bytes([1]))]]
    s.set_calibration("f1", "{}")
    assert s.calibration() == ("f1", "{}")
    s.replace_model(("config2", b"w2", "f2", "run2"), iter([[(1, np.zeros(2, np.float32).tobytes())]]), {"match": "x"})
    assert s.calibration() is None and s.changes_since(0) == [] and s.fingerprint() == "f2"
    assert s.meta()["match"] == "x" and s.embeddings_of([1], 2)[1].tolist() == [0.0, 0.0]
    s.close()


def test_a_second_writer_waits_then_gets_a_busy_error_and_nothing_half_done_is_kept(tmp_path):
    s = store(tmp_path)
    other = GalleryStore(s.path, timeout=0.05)
    with s.write():
        started = time.perf_counter()
        with pytest.raises(BusyError, match=r"another process is writing to .*s\.gallery \(waited 0\.05 s\)"):
            other.add("a", [new_example(1)])
        assert time.perf_counter() - started < 2  # its own timeout, not SQLite's default 5 s
    with pytest.raises(RuntimeError), s.write() as (connection, _):
        connection.execute("INSERT INTO classes (name, added) VALUES ('half', 0)")
        raise RuntimeError
    assert s.counts() == (0, 0) and s.generation() == 1  # the empty write above committed
    assert other.add("a", [new_example(1)]).example_ids == [1]
    other.close()
    s.close()


def test_only_a_fewshot_gallery_of_a_known_format_opens(tmp_path):
    with pytest.raises(FewShotError, match="^no gallery at"):
        GalleryStore(tmp_path / "none.gallery")
    with pytest.raises(FewShotError, match="is a folder, not a gallery file"):
        GalleryStore(tmp_path)
    s = store(tmp_path)
    with pytest.raises(FewShotError, match="already exists"):
        store(tmp_path)
    s.connection.execute("PRAGMA user_version = 2")
    s.close()
    with pytest.raises(FewShotError, match=r"is a gallery of format 2, newer than this fewshot reads \(1\)"):
        GalleryStore(s.path)
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(FewShotError, match="is an SQLite file but not a fewshot gallery"):
        GalleryStore(plain)
    text = tmp_path / "text.gallery"
    text.write_text("not a database, just text " * 100)
    with pytest.raises(FewShotError, match=f"^{re.escape(str(text))} is not a fewshot gallery or is corrupt"):
        GalleryStore(text)


def test_reads_page_through_every_row_in_order_and_a_missing_image_is_none(tmp_path):
    s = store(tmp_path)
    for value in range(5):
        s.add(f"c{value}", [new_example(value)])
    assert [c[:3] for c in s.classes()] == [(i + 1, f"c{i}", 1) for i in range(5)]
    assert [c[0] for c in s.classes(offset=1, limit=2)] == [2, 3] and len(s.classes(limit=None)) == 5
    batches = list(s.embeddings(2, batch=2))
    assert [ids.tolist() for ids, _, _ in batches] == [[1, 2], [3, 4], [5]]
    assert all(classes.dtype == np.int64 for _, classes, _ in batches)
    assert [[row[0] for row in rows] for rows in s.images(batch=2)] == [[1, 2], [3, 4], [5]]
    assert s.image(99) is None and s.image(1) == (bytes([0]), 1)
    many = list(range(1000, 2200)) + [1, 2, 3]  # past SQLite's chunk of 500 parameters, the last ones real
    assert s.class_names(many) == {1: "c0", 2: "c1", 3: "c2"} and s.embeddings_of(many, 2).keys() == {1, 2, 3}
    s.remove_example(5, 5, drop_class=True)
    assert [(c.op, c.class_id, c.example_id) for c in s.changes_since(5)] == [("remove", 5, 5), ("drop", 5, None)]
    s.close()


@pytest.mark.parametrize("sqlite_message, message", [
    ("database is locked", "^another process is writing to {path} \\(waited 2 s\\); try again when it has finished$"),
    ("database table is busy", "^another process is writing to {path} \\(waited 2 s\\)"),
    ("database or disk is full", ("^the disk holding {path} is full; nothing of this change was stored. Free some "
                                  "space and try again$")),
    ("file is not a database", "^{path} is not a fewshot gallery or is corrupt \\(file is not a database\\); restore"),
    ("database disk image is malformed", "^{path} is not a fewshot gallery or is corrupt"),
    ("index corruption", "^{path} is not a fewshot gallery or is corrupt"),
    ("attempt to write a readonly database", ("^cannot write to {path} \\(attempt to write a readonly database\\); "
                                              "check its permissions and those of its folder$")),
    ("unable to open database file", "^cannot write to {path} \\(unable to open"),
    ("no such table: classes", "^gallery {path}: no such table: classes$"),
])
def test_each_kind_of_sqlite_error_becomes_one_message_that_says_what_to_do(tmp_path, sqlite_message, message):
    path = tmp_path / "g.gallery"
    error = _translate(sqlite3.OperationalError(sqlite_message), path, 2.0)
    assert isinstance(error, BusyError) == ("locked" in sqlite_message or "busy" in sqlite_message)
    assert re.search(message.format(path=re.escape(str(path))), str(error)), str(error)
    if "locked" in sqlite_message:
        assert "waited" not in str(_translate(sqlite3.OperationalError(sqlite_message), path))


def test_a_store_is_created_in_new_folders_records_when_and_is_usable_from_another_thread(tmp_path):
    before = time.time()
    s = GalleryStore.create(tmp_path / "new" / "folder" / "g.gallery", {}, ("config", b"weights", "f1", "run"))
    assert before <= float(s.meta()["created"]) <= time.time()
    s.add("a", [new_example(1)])
    wide = NewExample(bytes([2]), "hash2", np.full(2, 2, np.float64), "image 2")  # stored as float32
    outcome = s.add("b", [new_example(1), wide])  # a duplicate first: the images after it are still stored
    assert outcome.example_ids == [2] and s.embeddings_of([2], 2)[2].tolist() == [2.0, 2.0]
    counts = []
    thread = threading.Thread(target=lambda: counts.append(s.counts()))
    thread.start()
    thread.join()
    assert counts == [(2, 2)]
    s.close()


@pytest.mark.parametrize("name, message", [
    (7, "^a class name is text, got int$"),
    ("  ", "^the class name is empty; pass a name such as --name alpha$"),
    (" a", "^the class name ' a' starts or ends with spaces; remove them$"),
    ("x" * 101, "^the class name is 101 characters long; use at most 100$"),
    ("a\tb\u200b", r"^the class name 'a\\tb\\u200b' holds control or invisible characters \(U\+0009, U\+200B\); "),
    ("a\ud800", r"\(U\+D800\)"),  # a lone surrogate
    ("a\ue000", r"\(U\+E000\)"),  # private use
    ("a\u0378", r"\(U\+0378\)"),  # unassigned
])
def test_each_bad_class_name_gets_its_one_message(name, message):
    with pytest.raises(FewShotError, match=message):
        check_class_name(name)


def test_a_class_name_of_100_characters_is_accepted_and_names_are_nfc_normalised():
    assert check_class_name("x" * 100) == "x" * 100
    assert check_class_name("e\u0301t\u00e9") == "\u00e9t\u00e9"


def ink_on_paper(mode: str, size: int = 8) -> Image.Image:
    """A dark vertical stroke on a light background."""
    image = Image.new("L", (size, size), 230)
    image.paste(20, (3, 0, 5, size))
    return image.convert(mode)


DRAWING = Preprocessing(8, 1, strokes=True)


def test_a_drawing_is_prepared_as_bright_strokes_on_dark_with_each_conversion_noted():
    plain = prepare_image(png_bytes(ink_on_paper("L")), DRAWING, "a.png")
    assert plain.source == "a.png" and plain.pixels.dtype == np.uint8 and plain.pixels.shape == (1, 8, 8)
    assert plain.pixels.flags["C_CONTIGUOUS"]
    assert plain.notes == ["inverted to bright strokes on dark, as the model was trained"]
    assert (plain.pixels[0, :, 3] == 255 - 20).all() and (plain.pixels[0, :, 0] == 255 - 230).all()
    colour = prepare_image(png_bytes(ink_on_paper("RGB")), DRAWING)
    assert colour.notes == ["converted RGB to grayscale: the model reads grayscale images",
                            "inverted to bright strokes on dark, as the model was trained"]
    assert np.array_equal(colour.pixels, plain.pixels)
    dark = prepare_image(png_bytes(Image.eval(ink_on_paper("L"), lambda v: 255 - v)), DRAWING)  # already bright on dark
    assert dark.notes == [] and np.array_equal(dark.pixels, plain.pixels)
    photo = prepare_image(png_bytes(ink_on_paper("L")), Preprocessing(8, 1, strokes=False))
    assert photo.notes == [] and photo.pixels[0, 0, 0] == 230  # not a drawing: never inverted
    assert photo.source == "image"  # unnamed
    rgb = prepare_image(png_bytes(ink_on_paper("L")), Preprocessing(8, 3, strokes=False))
    assert rgb.notes == ["converted grayscale (L) to RGB: the model reads RGB images"] and rgb.pixels.shape == (3, 8, 8)
    assert prepare_image(png_bytes(ink_on_paper("RGB")), Preprocessing(8, 3, strokes=False)).notes == []


@pytest.mark.parametrize("border, inverted", [(127, False), (128, True)])
def test_a_background_is_light_when_its_border_median_is_above_127(border, inverted):
    image = Image.new("L", (8, 8), border)
    image.paste(0 if inverted else 255, (2, 2, 6, 6))
    pixels = prepare_image(png_bytes(image), DRAWING).pixels
    assert (pixels[0, 0, 0] == 255 - border) == inverted


@pytest.mark.parametrize("light", ["rows", "columns"])
def test_the_background_is_read_from_the_outermost_rows_and_columns(light):
    """Light top and bottom rows (or left and right columns), the rest dark: 20 of the 32 border pixels are
    light, but only 12 of the ring inside it."""
    pixels = np.zeros((8, 8), np.uint8)
    pixels[[0, -1], :] = 255
    image = Image.fromarray(pixels if light == "rows" else pixels.T)
    prepared = prepare_image(png_bytes(image), DRAWING)
    assert prepared.notes == ["inverted to bright strokes on dark, as the model was trained"]
    assert Preprocessing(8, 1, strokes=True).to_dict() == {"size": 8, "channels": 1, "strokes": True}


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_a_transparent_background_is_drawn_on_white_first(mode):
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # transparent black, as canvases export
    image.paste((10, 10, 10, 255), (3, 0, 5, 8))
    prepared = prepare_image(png_bytes(_paletted(image) if mode == "P" else image.convert(mode)), DRAWING)
    assert prepared.notes[0] == "transparent background drawn on white"
    assert prepared.notes[-1] == "inverted to bright strokes on dark, as the model was trained"
    assert prepared.pixels[0, 0, 0] == 0 and prepared.pixels[0, 0, 3] == 255 - 10


def _paletted(image: Image.Image) -> Image.Image:
    """``image`` in palette mode, its transparent pixels one palette entry marked transparent."""
    paletted = Image.new("P", image.size, 0)
    paletted.putpalette([0, 0, 0, 10, 10, 10] + [0] * 762)
    paletted.frombytes((np.asarray(image)[..., 3] == 255).astype(np.uint8).tobytes())
    paletted.info["transparency"] = 0
    return paletted


def test_an_opaque_alpha_channel_is_not_a_transparent_background():
    opaque = ink_on_paper("RGBA")
    assert prepare_image(png_bytes(opaque), DRAWING).notes == [
        "converted RGBA to grayscale: the model reads grayscale images",
        "inverted to bright strokes on dark, as the model was trained"]


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 8 * 9)
    assert prepare_image(png_bytes(Image.new("L", (8, 9))), DRAWING).pixels.shape == (1, 8, 8)
    with pytest.raises(FewShotError, match=r"^big.png is 9 x 9 pixels, over the limit of 72; send a smaller image "
                                           r"\(the model reads 8 x 8\)$"):
        prepare_image(png_bytes(Image.new("L", (9, 9))), DRAWING, "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 2000)
    with pytest.raises(FewShotError, match="over the limit of 2,000;"):
        prepare_image(png_bytes(Image.new("L", (50, 41))), DRAWING)


@pytest.mark.parametrize("data, message", [
    (b"", "^x.png is empty \\(0 bytes\\); pass a PNG or JPEG image$"),
    (b"not an image", "^cannot decode image x.png: "),
    (None, "^cannot decode image x.png: "),  # a PNG cut short
])
def test_an_empty_or_corrupt_file_is_named_in_one_error(data, message):
    if data is None:
        data = png_bytes(ink_on_paper("RGBA"))[:60]
    with pytest.raises(FewShotError, match=message):
        prepare_image(data, DRAWING, "x.png")


def conv4_config(**fields) -> RunConfig:
    return RunConfig(**{"method": "protonet", "encoder": "conv4", "image_size": 16, "dataset": "omniglot", **fields})


def test_a_gallery_model_embeds_in_batches_as_its_method_does_in_eval_mode(monkeypatch, tmp_path):
    config = conv4_config()
    method = build_method(config)
    with torch.no_grad():  # batch norm statistics that folding must carry over
        for module in method.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    g = GalleryModel(config, save(method.state_dict()), "runs/conv4")
    pixels = np.random.default_rng(0).integers(0, 256, (5, 1, 16, 16), dtype=np.uint8)
    with torch.inference_mode():
        expected = method.eval().embed_support(torch.from_numpy(pixels).float() / 255).numpy()
    whole = g.embed(pixels)
    assert whole.dtype == np.float32 and whole.shape == (5, g.dim) == (5, 64)
    np.testing.assert_allclose(whole, expected, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(model, "EMBED_BATCH", 2)
    np.testing.assert_allclose(g.embed(pixels), whole, rtol=1e-5, atol=1e-6)
    empty = g.embed(pixels[:0])
    assert empty.dtype == np.float32 and empty.shape == (0, 64)
    assert g.preprocessing == Preprocessing(16, 1, strokes=True) and g.rule == "prototype"
    assert g.describe() == f"protonet (runs/conv4, fingerprint {g.fingerprint[:12]})"
    assert flat_protonet(n_way=5).describe().startswith("protonet {'n_way': 5} (runs/pixels, fingerprint ")
    assert flat_protonet().preprocessing == Preprocessing(SIZE, 1, strokes=False)  # a folder of photos


def test_the_fingerprint_names_the_weights_and_the_network_not_the_training():
    config = conv4_config()
    weights = save(build_method(config).state_dict())
    first = model.fingerprint(config, weights)
    assert re.fullmatch("[0-9a-f]{64}", first) and GalleryModel(config, weights, "r").fingerprint == first
    assert model.fingerprint(conv4_config(lr=0.5, steps=7, seed=3, dataset="mnist"), weights) == first
    other_weights = save(build_method(conv4_config(seed=1)).state_dict())
    assert model.fingerprint(config, other_weights) != first
    for changed in ({"method": "metric"}, {"options": {"distance": "cosine"}}, {"encoder": "conv4_strided"},
                    {"encoder_options": {"hidden": 8}}, {"image_size": 32}, {"channels": 3}):
        assert model.fingerprint(conv4_config(**changed), weights) != first, changed
    stored = GalleryModel.from_stored(GalleryModel(config, weights, "r").config_text, weights, "g.gallery")
    assert stored.fingerprint == first and stored.source == "g.gallery"


def test_a_model_that_cannot_serve_a_gallery_gets_one_error_that_says_what_to_do(tmp_path):
    config = conv4_config()
    with pytest.raises(FewShotError, match="^the weights of r are not readable safetensors"):
        GalleryModel(config, b"not safetensors", "r")
    with pytest.raises(FewShotError, match="^the weights of r do not fit its config: ") as refused:
        GalleryModel(conv4_config(encoder_options={"hidden": 8}), save(build_method(config).state_dict()), "r")
    torch_error = str(refused.value).removeprefix("the weights of r do not fit its config: ")
    assert torch_error.startswith("Error(s) in loading state_dict") and len(torch_error) == 300  # cut at 300
    with pytest.raises(FewShotError, match="^g.gallery: lr must be a number"):
        GalleryModel.from_stored("method: protonet\nlr: x\n", save(build_method(config).state_dict()), "g.gallery")
    maml = RunConfig(method="maml", encoder="conv4_strided", image_size=16, dataset="omniglot")
    with pytest.raises(FewShotError, match=(r"^a maml model cannot serve a gallery: it classifies with weights adapted "
                                            r".*Train one of the methods that can: mahalanobis, matching, metric, "
                                            r"protonet, .*\(siamese with "
                                            r"--variant koch-l1 or euclidean-contrastive\)$")):
        GalleryModel(maml, save(build_method(maml).state_dict()), "r")
    assert {"protonet", "metric", "relation", "mahalanobis"} <= set(model.gallery_methods())
    assert not {"maml", "meta_lstm", "mann"} & set(model.gallery_methods())
    weights = save(build_method(config).state_dict())
    (tmp_path / "config.yaml").write_text(GalleryModel(config, weights, "r").config_text)
    with pytest.raises(FewShotError, match=f"^{re.escape(str(tmp_path / 'model.safetensors'))} not found: the run has "
                                           "no trained model yet"):
        GalleryModel.from_run(tmp_path)
