"""The gallery on a small trained ProtoNet: register, recognise, persist, survive kills, refuse bad input."""
from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from gallery_support import class_images, png
from PIL import Image
from safetensors.torch import save
from synthetic import make_dataset

from fewshot.errors import FewShotError
from fewshot.gallery import Gallery, GalleryModel
from fewshot.training.config import RunConfig

UNSEEN = range(10, 16)


@pytest.fixture
def gallery(tmp_path, proto_run):
    g = Gallery.create(tmp_path / "g.gallery", proto_run)
    yield g
    g.close()


def enrol(gallery, shapes, shots=1):
    for c in UNSEEN:
        gallery.add(f"c{c}", class_images(shapes, c)[:shots])


def queries(shapes):
    return [(f"{c}", p) for c in UNSEEN for p in class_images(shapes, c)[3:]]


def test_one_shot_recognition_of_unseen_classes_beats_chance(gallery, shapes):
    enrol(gallery, shapes)
    answers = gallery.recognise([p for _, p in queries(shapes)], top=3)
    truth = [f"c{c}" for c, _ in queries(shapes)]
    accuracy = np.mean([a.name == t for a, t in zip(answers, truth)])
    assert accuracy > 2 / len(UNSEEN)  # chance is 1/6
    top3 = np.mean([t in [m.name for m in a.top] for a, t in zip(answers, truth)])
    assert top3 >= accuracy and len(answers[0].top) == 3
    a = answers[0]
    assert a.distance == a.top[0].distance and a.margin == pytest.approx(a.top[1].distance - a.top[0].distance)
    assert not a.calibrated and a.threshold is None and "uncalibrated" in a.notes[-1]


def test_match_by_nearest_example(tmp_path, proto_run, shapes):
    with Gallery.create(tmp_path / "e.gallery", proto_run, match="example") as g:
        enrol(g, shapes, shots=2)
        answers = g.recognise([p for _, p in queries(shapes)])
        assert np.mean([a.name == f"c{c}" for a, (c, _) in zip(answers, queries(shapes))]) > 2 / len(UNSEEN)
    with pytest.raises(FewShotError, match="matches by prototype or example, not 'pairs'"):
        Gallery.create(tmp_path / "p.gallery", proto_run, match="pairs")


def test_reopen_gives_identical_answers_bit_for_bit(tmp_path, proto_run, shapes):
    path = tmp_path / "g.gallery"
    with Gallery.create(path, proto_run) as g:
        enrol(g, shapes, shots=2)
        before = [a.to_dict() for a in g.recognise([p for _, p in queries(shapes)], top=4)]
    assert Path(str(path) + ".index").exists()
    with Gallery.open(path) as g:
        assert [a.to_dict() for a in g.recognise([p for _, p in queries(shapes)], top=4)] == before
    os.remove(str(path) + ".index")  # derived state: rebuilt from SQLite
    with Gallery.open(path) as g:
        assert [a.to_dict() for a in g.recognise([p for _, p in queries(shapes)], top=4)] == before
    Path(str(path) + ".index").write_bytes(b"not an index")
    with Gallery.open(path) as g:
        assert "unreadable" in g.index_note
        assert [a.to_dict() for a in g.recognise([p for _, p in queries(shapes)], top=4)] == before


def test_a_second_process_sees_changes_and_removed_examples_are_never_returned(tmp_path, proto_run, shapes):
    path = tmp_path / "g.gallery"
    writer = Gallery.create(path, proto_run)
    reader = Gallery.open(path)
    enrol(writer, shapes)
    query = class_images(shapes, 12)[5]
    assert reader.recognise([query], top=6)[0].top[0].name in {f"c{c}" for c in UNSEEN}
    writer.remove_class("c12")
    names = {m.name for m in reader.recognise([query], top=6)[0].top}
    assert "c12" not in names and len(names) == 5
    ids = [i for i, _, _ in writer.examples("c13")]
    name, last = writer.remove_example(ids[0])
    assert (name, last) == ("c13", True)
    assert "c13" not in {m.name for m in reader.recognise([query], top=6)[0].top}
    assert [c.name for c in reader.classes()] == [f"c{c}" for c in UNSEEN if c not in (12, 13)]
    writer.close()
    reader.close()


def test_duplicates_are_kept_once_and_reported(gallery, shapes):
    image = class_images(shapes, 10)[0]
    first = gallery.add("c10", [image, image])
    assert len(first.example_ids) == 1 and first.duplicates[0][0] == str(image)
    again = gallery.add("other", [image])
    assert not again.created and again.example_ids == []
    assert again.duplicates == [(str(image), first.example_ids[0], "c10")]
    assert [c.name for c in gallery.classes()] == ["c10"]


def test_rgb_and_transparent_images_are_converted_and_said_so(gallery, shapes):
    gray = np.asarray(Image.open(class_images(shapes, 11)[0]))
    rgb = Image.fromarray(gray).convert("RGB")
    result = gallery.add("c11", [("rgb.png", png(np.asarray(rgb)))])
    assert "converted RGB to grayscale" in result.notes["rgb.png"][0]
    rgba = Image.fromarray(np.zeros((16, 16), np.uint8)).convert("RGBA")
    rgba.putalpha(Image.fromarray((255 - gray).astype(np.uint8)))  # dark pattern, transparent background
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    answer = gallery.recognise([("drawing.png", buffer.getvalue())])[0]
    assert "transparent background drawn on white" in answer.notes


def test_corrupt_images_store_nothing(gallery, shapes):
    good = class_images(shapes, 10)[0]
    truncated = good.read_bytes()[:40]
    for bad, message in ((truncated, "cannot decode image bad.png"), (b"", "bad.png is empty"),
                         (b"GIF89a" + bytes(20), "cannot decode image bad.png")):
        with pytest.raises(FewShotError, match=message):
            gallery.add("c10", [good, ("bad.png", bad)])
    assert gallery.classes() == []
    with pytest.raises(FewShotError, match="cannot read"):
        gallery.add("c10", [good.parent / "missing.png"])
    with pytest.raises(FewShotError, match="no images given"):
        gallery.add("c10", [])


@pytest.mark.parametrize("name, message", [
    ("", "empty"), ("   ", "empty"), ("a" * 101, "at most 100"), ("tab\there", "U\\+0009"),
    ("zero\u200bwidth", "U\\+200B"), (" padded", "spaces"), (7, "is text"),
])
def test_bad_class_names(gallery, shapes, name, message):
    with pytest.raises(FewShotError, match=message):
        gallery.add(name, class_images(shapes, 10)[:1])


def test_removing_what_does_not_exist(gallery):
    with pytest.raises(FewShotError, match="no class named 'ghost'"):
        gallery.remove_class("ghost")
    with pytest.raises(FewShotError, match="no example 99"):
        gallery.remove_example(99)


def test_files_that_are_not_galleries(tmp_path, proto_run):
    with pytest.raises(FewShotError, match="no gallery at"):
        Gallery.open(tmp_path / "none.gallery")
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 1000)
    with pytest.raises(FewShotError, match="not a fewshot gallery or is corrupt"):
        Gallery.open(text)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(FewShotError, match="SQLite file but not a fewshot gallery"):
        Gallery.open(other)
    newer = tmp_path / "newer.gallery"
    Gallery.create(newer, proto_run).close()
    connection = sqlite3.connect(newer)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(FewShotError, match="format 99, newer than this fewshot reads"):
        Gallery.open(newer)
    corrupt = tmp_path / "corrupt.gallery"
    Gallery.create(corrupt, proto_run).close()
    data = bytearray(corrupt.read_bytes())
    data[100:4096] = os.urandom(3996)  # the schema page
    corrupt.write_bytes(bytes(data))
    with pytest.raises(FewShotError, match="corrupt"):
        Gallery.open(corrupt)
    with pytest.raises(FewShotError, match="already exists"):
        Gallery.create(newer, proto_run)


def test_another_process_writing_gets_a_clear_error_after_waiting(tmp_path, proto_run, shapes):
    path = tmp_path / "g.gallery"
    Gallery.create(path, proto_run).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Gallery.open(path, timeout=0.3) as g:
            with pytest.raises(FewShotError, match=r"another process is writing .* \(waited 0.3 s\)"):
                g.add("c10", class_images(shapes, 10)[:1])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Gallery.open(path) as g:
        assert g.add("c10", class_images(shapes, 10)[:1]).created


def test_a_full_disk_loses_nothing_stored(gallery, shapes):
    gallery.add("c10", class_images(shapes, 10)[:1])
    pages = gallery._store.connection.execute("PRAGMA page_count").fetchone()[0]
    gallery._store.connection.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own disk-full path
    with pytest.raises(FewShotError, match="disk .* is full; nothing of this change was stored"):
        for c in UNSEEN:
            gallery.add(f"big{c}", class_images(shapes, c))
    assert gallery.check() == "ok"
    assert "c10" in [c.name for c in gallery.classes()]
    assert all(c.examples == len(class_images(shapes, 10)) or c.name == "c10" for c in gallery.classes())


def test_sigkill_during_bulk_add_keeps_every_acknowledged_class(tmp_path, proto_run, shapes):
    path = tmp_path / "g.gallery"
    Gallery.create(path, proto_run).close()
    script = tmp_path / "bulk.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nimport numpy as np\nfrom PIL import Image\n"
        "from gallery_support import png\nfrom fewshot.gallery import Gallery\n"
        "g = Gallery.open(sys.argv[1])\nrng = np.random.default_rng(0)\n"
        "base = [np.asarray(Image.open(p)) for p in sorted(Path(sys.argv[2]).glob('class1*/*.png'))]\n"
        "for i in range(100000):\n"
        "    images = [png(np.clip(b.astype(int) + rng.integers(-20, 20, b.shape), 0, 255).astype(np.uint8))\n"
        "              for b in base[(i % 6) * 8:(i % 6) * 8 + 4]]\n"
        "    g.add(f'class{i}', images)\n"
        "    print(f'ACK class{i}', flush=True)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(script), str(path), str(shapes)], stdout=subprocess.PIPE,
                               text=True, env=env)
    acknowledged = []
    for line in process.stdout:
        acknowledged.append(line.split()[1])
        if len(acknowledged) == 8:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    acknowledged += [line.split()[1] for line in process.stdout if line.startswith("ACK")]
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    counts = dict(connection.execute(
        "SELECT c.name, COUNT(e.id) FROM classes c LEFT JOIN examples e ON e.class_id = c.id GROUP BY c.id"))
    orphans = connection.execute("SELECT COUNT(*) FROM examples WHERE class_id NOT IN (SELECT id FROM classes)")
    assert orphans.fetchone()[0] == 0
    connection.close()
    assert set(acknowledged) <= set(counts)
    assert all(n == 4 for n in counts.values())  # no class with part of its examples
    with Gallery.open(path) as g:
        assert {m.name for m in g.recognise(class_images(shapes, 10)[:1], top=3)[0].top} <= set(counts)


def test_readers_in_threads_see_only_whole_states(tmp_path, proto_run, shapes):
    path = tmp_path / "g.gallery"
    Gallery.create(path, proto_run).close()
    shared = Gallery.open(path)
    stop, problems = threading.Event(), []

    def read(gallery):
        while not stop.is_set():
            for c in gallery.classes():
                if c.examples != 3:
                    problems.append(f"{c.name} has {c.examples} examples")
            if gallery.classes():
                answer = gallery.recognise(class_images(shapes, 10)[5:6], top=50)[0]
                if len(answer.top) != len({m.name for m in answer.top}):
                    problems.append("a class answered twice")

    readers = [threading.Thread(target=read, args=(g,)) for g in (shared, Gallery.open(path), Gallery.open(path))]
    for r in readers:
        r.start()
    writer = Gallery.open(path)
    for i in range(12):
        writer.add(f"k{i}", class_images(shapes, 10 + i % 6)[i // 6 * 3:i // 6 * 3 + 3])
        if i % 4 == 3:
            writer.remove_class(f"k{i - 1}")
    stop.set()
    for r in readers:
        r.join()
    assert problems == []
    assert len(shared.classes()) == 9
    for g in (writer, shared):
        g.close()


def test_switches_to_the_approximate_index_past_the_crossover(tmp_path, proto_run, shapes, monkeypatch):
    import fewshot.gallery.gallery as module

    monkeypatch.setattr(module, "EXACT_UP_TO", 20)
    path = tmp_path / "g.gallery"
    with Gallery.create(path, proto_run, match="example") as g:
        enrol(g, shapes, shots=3)
        assert g.info()["index"] == "flat (exact)"
        for c in UNSEEN:
            g.add(f"c{c}", class_images(shapes, c)[3:5])
        assert g.info()["index"] == "HNSW (approximate)"
        before = [a.to_dict() for a in g.recognise(class_images(shapes, 11)[5:], top=3)]
    with Gallery.open(path) as g:
        assert g.info()["index"] == "HNSW (approximate)"
        assert [a.to_dict() for a in g.recognise(class_images(shapes, 11)[5:], top=3)] == before


def test_a_gallery_is_bound_to_its_model(tmp_path, proto_run, shapes, tmp_path_factory):
    from gallery_support import train_run

    path = tmp_path / "g.gallery"
    with Gallery.create(path, proto_run) as g:
        enrol(g, shapes)
    other = tmp_path / "other"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
        train_run(shapes, other, "protonet", "--n-way", "5", "--k-shot", "1", "--n-query", "3", "--seed", "3",
                  steps=5)
    with pytest.raises(FewShotError, match=rf"bound to the model of {proto_run} .* not to that of {other}"):
        Gallery.open(path, other)
    with Gallery.open(path, proto_run) as g:
        with Gallery.open(path) as writer:  # another connection: g sees it at its next look
            writer._store.set_calibration(g.model.fingerprint, _fake_calibration(g))
        assert g.calibration is not None
        assert g.reembed(other) == len(UNSEEN)
        assert g.calibration is None and g.model.source == str(other)
        assert g.recognise(class_images(shapes, 10)[5:6])[0].name in {f"c{c}" for c in UNSEEN}
    with Gallery.open(path, other) as g:
        assert g.info()["fingerprint"] == GalleryModel.from_run(other).fingerprint
        with pytest.raises(FewShotError, match="already bound to this model"):
            g.reembed(other)


def _fake_calibration(g) -> str:
    """A stored calibration record, to check that reembedding drops it (calibration itself: test_calibration)."""
    import json

    estimate = {"mean": 0.5, "ci95": 0.1}
    return json.dumps({"threshold": 1.0, "target_false_accept": 0.01, "n_way": 6, "k_shot": 1, "n_query": 5,
                       "n_unknown": 5, "episodes": 600, "calibration_classes": 10, "report_classes": 10,
                       "report": {k: estimate for k in ("known_accuracy", "closed_set_accuracy", "false_reject",
                                                        "false_accept", "auroc")},
                       "dataset": "x", "gallery_classes": 6, "fingerprint": g.model.fingerprint,
                       "match": "prototype", "created": 0.0})


def test_a_method_that_cannot_serve_a_gallery_is_refused_naming_those_that_can():
    config = RunConfig(method="mann", encoder="flatten", image_size=8,
                       options={"n_classes": 3, "instances": 2, "memory": "lrua", "controller": "lstm"})
    from fewshot.runs import build_method

    weights = save(build_method(config).state_dict())
    with pytest.raises(FewShotError, match="a mann model cannot serve a gallery: it reads an episode .*"
                                           "protonet, relation, siamese, transfer, triplet"):
        GalleryModel(config, weights, "runs/mann")


def test_recognise_refuses_an_empty_gallery_and_bad_top(gallery, shapes):
    with pytest.raises(FewShotError, match="has no classes yet"):
        gallery.recognise(class_images(shapes, 10)[:1])
    gallery.add("c10", class_images(shapes, 10)[:1])
    with pytest.raises(FewShotError, match="top must be a positive integer"):
        gallery.recognise(class_images(shapes, 10)[:1], top=0)


def test_embeddings_are_those_of_the_evaluator(gallery, shapes):
    """The gallery embeds like the rest of the library: the same network, batch norm folded."""
    pixels = make_dataset(n_classes=2, per_class=3, size=16, seed=1).images
    method = gallery.model.method
    with torch.no_grad():
        expected = method.embed_support(pixels.float() / 255)
    np.testing.assert_allclose(gallery.model.embed(pixels.numpy()), expected.numpy(), atol=1e-4)


def test_model_input_arrays_and_a_match_mode_per_call(gallery, shapes):
    pixels = np.asarray(Image.open(class_images(shapes, 10)[0]))[None]
    assert gallery.add("c10", [pixels]).example_ids == [1]
    assert gallery.add("again", [class_images(shapes, 10)[0]]).duplicates[0][1] == 1  # the same model input
    with pytest.raises(FewShotError, match=r"array 1 is a float32 array of shape \(16, 16\); a model input is uint8"):
        gallery.add("c11", [np.zeros((16, 16), np.float32)])
    gallery.add("c11", class_images(shapes, 11)[:3])
    query = class_images(shapes, 11)[4:5]
    by_prototype, by_example = gallery.recognise(query, top=2)[0], gallery.recognise(query, top=2, match="example")[0]
    q = gallery.model.embed(np.stack([gallery._prepare(query)[0].pixels]))
    stored = gallery.model.embed(np.stack([gallery.example_pixels(i) for i, _, _ in gallery.examples("c11")]))
    distance = gallery.model.method.distance  # the run's own (squared Euclidean, the default)
    distances = distance.matrix(torch.from_numpy(q), torch.from_numpy(stored))[0].numpy()
    assert by_example.top[[m.name for m in by_example.top].index("c11")].distance == pytest.approx(distances.min(),
                                                                                                 rel=1e-4)
    assert by_prototype.top[[m.name for m in by_prototype.top].index("c11")].distance == pytest.approx(
        distance.matrix(torch.from_numpy(q), torch.from_numpy(stored.mean(0, keepdims=True))).item(), rel=1e-4)
    with pytest.raises(FewShotError, match="matches by prototype or example, not 'pairs'"):
        gallery.recognise(query, match="pairs")


def test_the_packaged_model_is_the_default_and_comes_calibrated(tmp_path):
    from conftest import omniglot_png

    with Gallery.create(tmp_path / "d.gallery") as g:
        assert g.model.config.dataset == "omniglot" and g.model.preprocessing.strokes
        calibration = g.calibration
        assert calibration is not None and calibration.n_way == 20 and calibration.target_false_accept == 0.01
        g.add("one", [omniglot_png(1, size=105)])
        g.add("two", [omniglot_png(2, size=105)])
        answer = g.recognise([omniglot_png(1, size=105)])[0]
        assert answer.name == "one" and answer.calibrated and answer.threshold == calibration.threshold
        assert "inverted to bright strokes on dark, as the model was trained" in answer.notes


def test_the_default_gallery_lives_in_the_user_data_directory(monkeypatch, tmp_path):
    from fewshot.cli.serve import default_gallery_path, is_loopback

    monkeypatch.delenv("FEWSHOT_GALLERY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_gallery_path() == tmp_path / "fewshot" / "default.gallery"
    monkeypatch.setenv("FEWSHOT_GALLERY", str(tmp_path / "mine.gallery"))
    assert default_gallery_path() == tmp_path / "mine.gallery"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")


def test_a_grayscale_image_for_an_rgb_model_is_converted_and_said_so(tmp_path, shapes):
    from gallery_support import train_run

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
        run = train_run(shapes, tmp_path / "rgb", "protonet", "--channels", "3", "--n-way", "3", "--k-shot", "1",
                        "--n-query", "2", steps=3)
    with Gallery.create(tmp_path / "rgb.gallery", run) as g:
        assert g.model.preprocessing.channels == 3
        result = g.add("c10", class_images(shapes, 10)[:1])  # the folder's images are grayscale PNGs
        notes = result.notes[str(class_images(shapes, 10)[0])]
        assert "converted grayscale (L) to RGB: the model reads RGB images" in notes
        assert g.example_pixels(result.example_ids[0]).shape == (3, 16, 16)
