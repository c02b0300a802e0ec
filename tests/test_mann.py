"""The mann method: gradients, learning on a tiny task, N-way scoring, evaluation, checkpoints, plots."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.data.dataset import ImageDataset
from fewshot.data.sequences import SequenceEpisodes
from fewshot.errors import FewShotError
from fewshot.evaluation.evaluator import mean_and_ci95
from fewshot.evaluation.instances import (accuracy_by_instance, describe, evaluate_instances, load_results,
                                         markdown_table, save_results)
from fewshot.methods import METHODS
from fewshot.methods.mann import MANN
from fewshot.nets.dense import DenseTower
from fewshot.nets.flatten import FlattenEncoder
from fewshot.plots.instances import plot_instance_accuracy
from fewshot.plots.memory import plot_memory
from fewshot.runs import MODEL_FILE


pytestmark = pytest.mark.usefixtures("one_thread")


def random_patterns(n_classes: int, per_class: int = 10, side: int = 4, seed: int = 0) -> ImageDataset:
    """Each class a random binary pattern; its images are copies (a tiny synthetic task)."""
    g = torch.Generator().manual_seed(seed)
    patterns = (torch.rand(n_classes, 1, side, side, generator=g) > 0.5).to(torch.uint8) * 255
    return ImageDataset(patterns.repeat_interleave(per_class, 0), torch.arange(n_classes).repeat_interleave(per_class),
                        [f"p{i}" for i in range(n_classes)], f"patterns{seed}")


def small_mann(memory: str = "lrua", controller: str = "lstm", n_classes: int = 3, encoder: nn.Module | None = None,
               **options) -> MANN:
    torch.manual_seed(0)
    settings = {"instances": 4, "batch_size": 4, "controller_size": 16, "slots": 8, "width": 6, "heads": 2,
                "augment": False}
    settings.update(options)
    return MANN(encoder or FlattenEncoder(1, 4), memory=memory, controller=controller, n_classes=n_classes, **settings)


def test_registered_with_its_options():
    assert METHODS.get("mann") is MANN
    assert MANN.option_choices["memory"] == ("lrua", "ntm", "none")


@pytest.mark.parametrize("memory,controller", [("lrua", "lstm"), ("ntm", "lstm"), ("none", "lstm"),
                                               ("lrua", "feedforward"), ("ntm", "feedforward")])
def test_gradients_flow_to_every_parameter(memory, controller):
    model = small_mann(memory, controller)
    batch = model.training_batches(random_patterns(6), steps=1, seed=0)(0)
    loss, metrics = model.training_loss(batch)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert {"accuracy", "acc_inst1", "acc_inst2", "acc_inst3"} <= set(metrics)


def test_dense_encoder_with_skip_keeps_the_pixels_and_learns():
    torch.manual_seed(0)
    tower = DenseTower(1, 4, hidden=5, skip=True)
    images = torch.rand(3, 1, 4, 4)
    features = tower(images)
    assert tower.out_features == 21 and features.shape == (3, 21)
    assert torch.equal(features[:, :16], images.flatten(1))
    assert torch.allclose(features[:, 16:], F.relu(tower[1](images.flatten(1))))
    model = small_mann(encoder=tower)
    loss, _ = model.training_loss(model.training_batches(random_patterns(6), steps=1, seed=0)(0))
    loss.backward()
    assert tower[1].weight.grad.abs().sum() > 0


def test_logits_shape_and_no_nans_at_paper_size():
    model = MANN(FlattenEncoder(1, 20), memory="lrua")
    batch = model.training_batches(random_patterns(8, side=20), 1, 0)(0)
    logits = model.predict(batch)
    assert logits.shape == (16, 50, 5) and torch.isfinite(logits).all()


def test_short_training_learns_to_bind_new_classes():
    """A few hundred steps on random patterns: the 2nd instance of a class is recognised far above chance."""
    torch.manual_seed(0)
    model = MANN(FlattenEncoder(1, 4), memory="lrua", n_classes=2, instances=4, batch_size=32, controller_size=64,
                 slots=16, width=16, heads=1, augment=False)
    batches = model.training_batches(random_patterns(40, seed=1), steps=300, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(300):
        loss, _ = model.training_loss(batches(step))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
    result = evaluate_instances(model, random_patterns(20, seed=2), n_episodes=200, progress=False)  # new classes
    chance = 1 / 2
    assert result.at(2)[0] > chance + 0.3, str(result)


def test_accuracy_by_instance_hand_worked():
    labels = torch.tensor([[0, 1, 0, 1]])
    predicted = torch.tensor([[1, 1, 0, 0]])  # wrong, right, right, wrong
    logits = F.one_hot(predicted, 2).float()
    assert accuracy_by_instance(logits, labels, 2).tolist() == [[0.5, 0.5]]


def test_evaluate_instances_table_and_json(tmp_path):
    model = small_mann()
    data = random_patterns(6)
    a = evaluate_instances(model, data, n_episodes=30, batch_size=8, progress=False)
    b = evaluate_instances(model, data, n_episodes=30, batch_size=8, progress=False)
    assert a.mean == b.mean  # same seed, same episodes
    episodes, table = model.sequence_episodes(data, 0, 8), []
    model.eval()
    with torch.inference_mode():
        for i in range(4):
            batch = episodes.batch(i)
            table.append(accuracy_by_instance(model.predict(batch), batch.labels, 4))
    model.train()
    expected = [mean_and_ci95(torch.cat(table)[:30, k]) for k in range(4)]
    assert a.mean == pytest.approx([e[0] for e in expected]) and a.ci95 == pytest.approx([e[1] for e in expected])
    assert all(c > 0 for c in a.ci95)
    assert a.n_episodes == 30 and a.model == "MANN (LRUA, LSTM)"
    table = markdown_table([a, evaluate_instances(small_mann("none"), data, 10, progress=False)])
    assert "| model | classes | 1st | 2nd | 3rd | 4th |" in table and "| LSTM | 3 |" in table
    save_results([a], tmp_path / "r.json", tmp_path / "r.md")
    assert json.loads((tmp_path / "r.json").read_text())[0]["mean"] == a.mean
    assert (tmp_path / "r.md").read_text() == markdown_table([a])
    assert load_results(tmp_path / "r.json") == [a]
    (tmp_path / "bad.json").write_text('{"model": 1}')
    for source, message in ((tmp_path / "bad.json", "not an instance-accuracy file"),
                            (tmp_path, "no instance-accuracy results")):
        with pytest.raises(FewShotError, match=message):
            load_results(source)


def test_scores_branch_each_query_from_the_support_state():
    model = small_mann(n_classes=3).eval()
    support = torch.randn(2, 6, 16)  # 2 episodes, 3-way 2-shot, class by class
    support_labels = torch.tensor([0, 0, 1, 1, 2, 2])
    query = torch.randn(2, 4, 16)
    scores = model.scores(support, support_labels, query, 3)
    assert scores.shape == (2, 4, 3)
    order = torch.tensor([0, 2, 4, 1, 3, 5])  # round-robin over the classes
    labels = F.one_hot(support_labels[order], 3).float()
    for e in range(2):
        for q in range(4):
            features = torch.cat([support[e, order], query[e, q:q + 1]])[None]
            previous = F.pad(labels, (0, 0, 1, 0))[None]
            expected = model(features, previous).logits[0, -1]
            assert torch.allclose(scores[e, q], expected, atol=1e-5)
    with pytest.raises(FewShotError, match="cannot score 5-way"):
        model.scores(support, support_labels, query, 5)


def test_write_option_is_for_lrua_and_checked_on_load():
    with pytest.raises(FewShotError, match="write=add is for --memory lrua"):
        small_mann("ntm", write="add")
    add = small_mann("lrua", write="add")
    assert add.memory.add_params is not None and small_mann("lrua").memory.add_params is None
    with pytest.raises(FewShotError, match=r"write=add.*--write add"):
        small_mann("lrua").load_state_dict(add.state_dict())
    with pytest.raises(FewShotError, match=r"\(--write key\)"):
        add.load_state_dict(small_mann("lrua").state_dict())


def test_key_strength_option_is_for_lrua_and_checked_on_load():
    with pytest.raises(FewShotError, match="key_strength is for --memory lrua"):
        small_mann("ntm", key_strength=True)
    sharp = small_mann("lrua", key_strength=True)
    assert sharp.memory.key_strength and describe(sharp) == "MANN (LRUA, LSTM, key strength)"
    with pytest.raises(FewShotError, match=r"key_strength=True.*\(--key-strength\)"):
        small_mann("lrua").load_state_dict(sharp.state_dict())
    with pytest.raises(FewShotError, match=r"\(--no-key-strength\)"):
        sharp.load_state_dict(small_mann("lrua").state_dict())


def test_loading_weights_of_another_memory_names_both():
    lrua = small_mann("lrua")
    ntm = small_mann("ntm")
    with pytest.raises(FewShotError, match=r"memory=lrua.*memory=ntm.*--memory lrua"):
        ntm.load_state_dict(lrua.state_dict())
    same = small_mann("lrua")
    same.load_state_dict(lrua.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), lrua.state_dict().values()))


def test_bad_options_are_clear_errors():
    with pytest.raises(FewShotError, match="unknown memory 'dnc'"):
        small_mann("dnc")
    with pytest.raises(FewShotError, match="unknown controller"):
        small_mann(controller="gru")
    with pytest.raises(FewShotError, match="out_features"):
        MANN(torch.nn.Flatten())
    with pytest.raises(FewShotError, match="n_classes must be a positive integer"):
        small_mann(n_classes=0)
    with pytest.raises(FewShotError, match="min_classes must be an integer from 1 to n_classes \\(3\\), got 4"):
        small_mann(n_classes=3, min_classes=4)


def test_min_classes_trains_on_shorter_episodes_of_the_full_label_space():
    model = small_mann(n_classes=5, min_classes=2)
    batches = model.training_batches(random_patterns(8), steps=20, seed=0)
    lengths = {batches(i).labels.shape[1] for i in range(20)}
    assert lengths == {8, 12, 16, 20} and min(lengths) < 5 * 4  # 2..5 classes x 4 instances
    loss, metrics = model.training_loss(batches(0))
    loss.backward()
    assert torch.isfinite(loss) and "acc_inst2" in metrics


def test_episodes_of_the_wrong_size_are_refused():
    model = small_mann(n_classes=3)
    batch = SequenceEpisodes(random_patterns(6), n_classes=2, instances=4, batch_size=2).batch(0)
    with pytest.raises(FewShotError, match="3-class episodes"):
        model.predict(batch)
    with pytest.raises(FewShotError, match="9 classes"):
        small_mann(n_classes=9).training_batches(random_patterns(6), 1, 0)


def test_plots_are_written(tmp_path):
    model = small_mann("lrua")
    batch = model.sequence_episodes(random_patterns(6), seed=0, batch_size=1).batch(0)
    with torch.no_grad():
        out = model.run(batch, record=True)
    assert out.read_weights.shape == (1, 12, 2, 8) and out.write_weights.shape == (1, 12, 2, 8)
    plot_memory(out.read_weights[0], out.write_weights[0], batch.labels[0], tmp_path / "memory.png",
                title="test")
    result = evaluate_instances(model, random_patterns(6), n_episodes=10, progress=False)
    plot_instance_accuracy([result], tmp_path / "instances.png")
    for name in ("memory.png", "instances.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_train_resume_evaluate_plot(tmp_path, monkeypatch, capsys):
    """``fewshot train mann`` through the shared trainer, then ``evaluate`` (by instance) and ``plot memory``."""
    from PIL import Image

    from fewshot.cli.main import main

    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    data = random_patterns(12, per_class=6, side=8)
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        (tmp_path / "shapes" / f"c{int(label):02d}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(tmp_path / "shapes" / f"c{int(label):02d}" / f"{i}.png")
    run = tmp_path / "run"
    args = ["train", "mann", "--dataset", "folder", "--data-dir", str(tmp_path / "shapes"), "--split", "0-5/6-7/8-11",
            "--image-size", "8", "--encoder", "flatten", "--n-classes", "2", "--instances", "4", "--batch-size", "2",
            "--controller-size", "8", "--slots", "8", "--width", "4", "--heads", "2", "--steps", "4",
            "--val-every", "2", "--val-episodes", "4", "--checkpoint-every", "2", "--no-compile", "--out", str(run),
            "--no-progress"]
    assert main(args) == 0
    assert main([*args[:-3], "--steps", "6", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "6 steps" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--episodes", "8", "--views", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| MANN (LRUA, LSTM) | 2 |" in out and "| MANN (LRUA, LSTM), 4 views | 2 |" in out
    assert [r["views"] for r in json.loads((run / "instances.json").read_text())] == [1, 4]
    assert main(["evaluate", str(run), "--episodes", "8", "--no-progress"]) == 0
    assert "views" not in capsys.readouterr().out
    assert len(json.loads((run / "instances.json").read_text())[0]["mean"]) == 4
    assert main(["plot", "memory", str(run), "--out", str(tmp_path / "memory.png"), "--no-progress"]) == 0
    assert Image.open(tmp_path / "memory.png").size[0] > 500
    assert main(["plot", "instances", str(run), str(run / "instances.json"), "--out", str(tmp_path / "i.png")]) == 0
    assert capsys.readouterr().out.count("| MANN (LRUA, LSTM) | 2 |") == 2
    assert Image.open(tmp_path / "i.png").size[0] > 300
    assert main([*args[:-3], "--memory", "ntm", "--steps", "8", "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "memory" in capsys.readouterr().err
    weights = (run / MODEL_FILE).read_bytes()
    compiled = [*args[:-4], "--compile", "--min-classes", "1", "--overwrite", "--out", str(run), "--no-progress"]
    assert main(compiled) == 2
    assert "--no-compile" in capsys.readouterr().err
    assert (run / MODEL_FILE).read_bytes() == weights  # refused before --overwrite removed the run
