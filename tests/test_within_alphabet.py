"""Within-alphabet episodes (Lake et al. 2015): all classes of an episode from one alphabet."""
import json

import pytest
import torch

from fewshot.cli.main import main
from fewshot.data.dataset import ImageDataset
from fewshot.data.episodes import EpisodeSampler
from fewshot.errors import FewShotError


def alphabets_dataset() -> ImageDataset:
    sizes = {"Greek": 3, "Latin": 6, "Runic": 4}
    names = [f"{alphabet}/character{c:02d}" for alphabet, n in sizes.items() for c in range(1, n + 1)]
    labels = torch.arange(len(names)).repeat_interleave(4)
    return ImageDataset(torch.zeros(len(labels), 1, 8, 8, dtype=torch.uint8), labels, names, "alphabets")


def test_every_episode_draws_its_classes_from_one_alphabet_reproducibly():
    data = alphabets_dataset()
    sampler = EpisodeSampler(data, n_way=4, k_shot=1, n_query=2, n_episodes=200, seed=1, within_alphabet=True)
    seen = set()
    for i in range(200):
        idx, classes = sampler.indices(i)
        alphabets = {data.class_names[c].split("/")[0] for c in classes.tolist()}
        assert len(alphabets) == 1 and len(set(classes.tolist())) == 4
        assert (data.labels[idx[:, 0]] == classes).all()
        seen |= alphabets
    assert seen == {"Latin", "Runic"}  # Greek has too few characters for 4-way episodes
    again = EpisodeSampler(data, 4, 1, 2, 200, seed=1, within_alphabet=True)
    assert all(torch.equal(sampler.indices(i)[0], again.indices(i)[0]) for i in (0, 57, 199))
    mixed = EpisodeSampler(data, 4, 1, 2, 200, seed=1)
    assert any(len({data.class_names[c].split("/")[0] for c in mixed.indices(i)[1].tolist()}) > 1
               for i in range(20))


def test_more_ways_than_the_largest_alphabet_is_refused():
    with pytest.raises(FewShotError, match="largest alphabet of alphabets has 6"):
        EpisodeSampler(alphabets_dataset(), n_way=7, k_shot=1, n_query=1, n_episodes=1, within_alphabet=True)


def test_evaluate_within_alphabet_from_the_cli(omniglot_root, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--dataset", "omniglot", "--split", "lake", "--data-dir", str(omniglot_root), "--no-progress"]
    assert main(["train", "protonet", *common, "--image-size", "16", "--steps", "3", "--n-way", "2", "--k-shot", "1",
                 "--n-query", "1", "--val-every", "0", "--no-bf16", "--out", str(run)]) == 0
    args = ["evaluate", str(run), "--ways", "2", "--shots", "1", "--queries", "2", "--episodes", "10", "--no-progress"]
    assert main([*args, "--within-alphabet"]) == 0
    assert "2-way 1-shot within-alphabet" in capsys.readouterr().out
    saved = json.loads((run / "evaluation.json").read_text())["omniglot/lake/test"]
    assert saved["2-way 1-shot within-alphabet"]["within_alphabet"] is True
    assert main([*args[:3], "3", *args[4:], "--within-alphabet"]) == 2  # 3-way: no evaluation alphabet is so large
    assert "need an alphabet of at least 3 classes" in capsys.readouterr().err


def test_rotated_classes_group_by_alphabet_and_rotation():
    names = [f"{a}/character{c:02d}/rot{r:03d}" for a in ("Greek", "Latin") for c in (1, 2) for r in (0, 90)]
    data = ImageDataset(torch.zeros(len(names), 1, 8, 8, dtype=torch.uint8), torch.arange(len(names)), names)
    groups = {k: v.tolist() for k, v in data.alphabets().items()}
    assert groups == {"Greek/rot000": [0, 2], "Greek/rot090": [1, 3], "Latin/rot000": [4, 6], "Latin/rot090": [5, 7]}


def test_training_episodes_within_one_alphabet():
    """``within_alphabet=True`` (``fewshot train --within-alphabet``) draws every training episode from one alphabet,
    the rotated and mirrored copies of an alphabet counting as alphabets of their own."""
    from fewshot.methods.protonet import PrototypicalNetworks
    from fewshot.nets import build_encoder

    data = alphabets_dataset().with_rotated_classes().with_mirrored_classes()
    model = PrototypicalNetworks(build_encoder("conv4", 1, 16), n_way=5, k_shot=1, n_query=1, within_alphabet=True)
    batches = model.training_batches(data, steps=50, seed=0)
    groups = set()
    for i in range(50):
        names = {"/".join(data.class_names[c].split("/")[:1] + data.class_names[c].split("/")[2:])
                 for c in batches(i).classes.tolist()}
        assert len(names) == 1
        groups |= names
    assert len(groups) > 4 and {g.split("/")[0] for g in groups} == {"Latin"}  # only Latin has 5 characters
    plain = PrototypicalNetworks(build_encoder("conv4", 1, 16), n_way=5, k_shot=1, n_query=1)
    assert any(len({data.class_names[c].split("/")[0] for c in plain.training_batches(data, 20, 0)(i).classes.tolist()})
               > 1 for i in range(20))
    with pytest.raises(FewShotError, match="largest alphabet"):
        PrototypicalNetworks(build_encoder("conv4", 1, 16), n_way=7, k_shot=1, n_query=1,
                             within_alphabet=True).training_batches(data, 1, 0)
