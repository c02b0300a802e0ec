"""``fewshot gallery ...`` end to end, and a Siamese (Koch) gallery: index candidates reranked by the pair score."""
from __future__ import annotations

import json

import numpy as np
import pytest
from gallery_support import class_images, train_run

from fewshot.cli.main import main
from fewshot.gallery import Gallery

UNSEEN = range(10, 16)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_from_a_folder_to_answers(tmp_path, proto_run, shapes, capsys):
    path = tmp_path / "my.gallery"
    folder = tmp_path / "mine"
    for c in UNSEEN:
        (folder / f"sym{c}").mkdir(parents=True)
        for p in class_images(shapes, c)[:2]:
            (folder / f"sym{c}" / p.name).write_bytes(p.read_bytes())
    code, out, _ = run_cli(capsys, "gallery", "create", path, "--run", proto_run)
    assert code == 0 and "matching by prototype" in out
    code, out, _ = run_cli(capsys, "gallery", "add", path, "--folder", folder, "--no-progress")
    assert code == 0 and out.count("created with 2 examples") == 6
    code, out, _ = run_cli(capsys, "gallery", "add", path, "--name", "sym10", class_images(shapes, 10)[0])
    assert "already stored as example 1 of 'sym10'; kept once" in out
    queries = [p for c in UNSEEN for p in class_images(shapes, c)[4:]]
    code, out, _ = run_cli(capsys, "gallery", "recognise", path, *queries, "--top", "2", "--json")
    answers = json.loads(out)
    truth = [f"sym{c}" for c in UNSEEN for _ in class_images(shapes, c)[4:]]
    assert np.mean([a["name"] == t for a, t in zip(answers, truth)]) > 2 / 6
    assert all(len(a["top"]) == 2 and not a["calibrated"] for a in answers)
    code, out, _ = run_cli(capsys, "gallery", "recognise", path, queries[0])
    assert "(distance" in out and "note: uncalibrated" in out
    code, out, _ = run_cli(capsys, "gallery", "list", path, "--examples")
    assert "sym15\t2 examples" in out and "000" not in out.split("\n")[0]
    code, out, _ = run_cli(capsys, "gallery", "calibrate", path, "--data-dir", shapes, "--way", "2",
                           "--unknown", "1", "--episodes", "600", "--no-progress")
    assert code == 0 and "threshold" in out and "AUROC" in out
    code, out, _ = run_cli(capsys, "gallery", "info", path, "--json")
    info = json.loads(out)
    assert info["classes"] == 6 and info["examples"] == 12 and info["calibration"]["episodes"] == 600
    assert info["calibration"]["n_way"] == 2 and info["calibration"]["gallery_classes"] == 6
    assert "calibrated at 2 classes; the gallery now holds 6" in info["notes"][0]
    code, out, _ = run_cli(capsys, "gallery", "recognise", path, *queries[:3], "--json")
    assert all(a["calibrated"] and a["threshold"] == info["calibration"]["threshold"] for a in json.loads(out))
    code, out, _ = run_cli(capsys, "gallery", "remove", path, "--name", "sym12")
    assert "removed class 'sym12' and its 2 examples" in out
    code, _, err = run_cli(capsys, "gallery", "remove", path, "--name", "sym12")
    assert code == 2 and "has no class named 'sym12'" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "gallery", "calibrate", path, "--data-dir", shapes, "--partition", "train")
    assert code == 2 and "calibrate on classes it never saw" in err


@pytest.mark.parametrize("argv, message", [
    (["add", "{g}", "--name", "x"], "no images given for class 'x'"),
    (["add", "{g}", "img.png"], "pass either --name NAME with images, or --folder DIR"),
    (["remove", "{g}"], "pass either --name NAME (a class) or --example ID"),
    (["recognise", "{g}", "{g}"], "cannot decode image"),
    (["info", "{missing}"], "no gallery at"),
])
def test_cli_mistakes_print_one_line(tmp_path, proto_run, capsys, argv, message):
    path = tmp_path / "g.gallery"
    Gallery.create(path, proto_run).close()
    argv = [a.format(g=path, missing=tmp_path / "none") for a in argv]
    code, _, err = run_cli(capsys, "gallery", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_siamese_gallery_reranks_candidates_by_its_pair_score(tmp_path, shapes):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
        run = train_run(shapes, tmp_path / "koch", "siamese", "--variant", "koch-l1", "--batch-size", "32",
                        steps=60)
    with Gallery.create(tmp_path / "k.gallery", run) as g:
        assert g.match == "pairs"
        for c in UNSEEN:
            g.add(f"c{c}", class_images(shapes, c)[:2])
        queries = [p for c in UNSEEN for p in class_images(shapes, c)[3:]]
        answers = g.recognise(queries, top=3)
        truth = [f"c{c}" for c in UNSEEN for _ in class_images(shapes, c)[3:]]
        assert np.mean([a.name == t for a, t in zip(answers, truth)]) > 1 / 6
        # The distance is minus the method's own score: Koch's mean pair logit over the class's examples.
        import torch

        method = g.model.method
        q = torch.from_numpy(g.model.embed(np.stack([g._prepare([queries[0]])[0].pixels])))
        ids = [i for i, _, _ in g.examples(answers[0].top[0].name)]
        support = torch.from_numpy(g.model.embed(np.stack([g.example_pixels(i) for i in ids])))
        with torch.no_grad():
            logit = method.scores(support, torch.zeros(len(ids), dtype=torch.long), q, 1)[0, 0].item()
        assert answers[0].top[0].distance == pytest.approx(-logit, abs=1e-4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
        concat = train_run(shapes, tmp_path / "concat", "siamese", "--variant", "shared-concat", steps=2)
    from fewshot.errors import FewShotError

    with pytest.raises(FewShotError, match="shared-concat variant ranks classes without looking at the query"):
        Gallery.create(tmp_path / "c.gallery", concat)


@pytest.mark.parametrize("method, extra", [
    ("matching", ("--n-way", "5", "--n-query", "3")),
    ("mahalanobis", ("--n-way", "5", "--k-shot", "2", "--n-query", "3")),
    ("relation", ("--image-size", "24", "--n-way", "5", "--n-query", "3")),
])
def test_galleries_of_the_other_pair_methods_rerank_by_their_own_scores(tmp_path, shapes, method, extra):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
        run = train_run(shapes, tmp_path / method, method, *extra, steps=60)
    with Gallery.create(tmp_path / "m.gallery", run) as g:
        assert g.match == "pairs"
        for c in UNSEEN:
            g.add(f"c{c}", class_images(shapes, c)[:2])
        queries = [p for c in UNSEEN for p in class_images(shapes, c)[3:]]
        truth = [f"c{c}" for c in UNSEEN for _ in class_images(shapes, c)[3:]]
        answers = g.recognise(queries, top=3)
        assert np.mean([a.name == t for a, t in zip(answers, truth)]) > 1.5 / 6  # chance is 1/6
        assert all(a.top[0].distance <= a.top[1].distance for a in answers)


def test_matching_networks_with_full_context_embeddings_cannot_serve_a_gallery(tmp_path, shapes):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
        run = train_run(shapes, tmp_path / "fce", "matching", "--fce", "--n-way", "3", "--n-query", "1", steps=1)
    from fewshot.errors import FewShotError

    with pytest.raises(FewShotError, match="depends on all the others"):
        Gallery.create(tmp_path / "f.gallery", run)
