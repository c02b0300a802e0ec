"""Behaviours the README promises that mutation testing (benchmarks/mutation.sh) found no test for.

Each test names the promise it keeps; docs/benchmarks.md lists the mutants they kill."""
from __future__ import annotations

import hashlib

import pytest
import torch
from synthetic import make_dataset

from fewshot.data.augment import KOCH_DISTORTION
from fewshot.data.dataset import ImageDataset
from fewshot.data.download import Resource, ensure_files
from fewshot.data.episodes import EpisodeSampler
from fewshot.errors import FewShotError

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
