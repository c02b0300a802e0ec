"""Downloads against a local HTTP server (never the internet), and the `fewshot datasets` listing."""
from __future__ import annotations

import argparse
import hashlib
import socket

import pytest
from conftest import write_omniglot

from fewshot.cli import datasets as datasets_cli
from fewshot.data import describe_datasets, load_splits, omniglot
from fewshot.data.download import Resource, download_file, ensure_files
from fewshot.errors import FewShotError

PAYLOAD = bytes(range(256)) * 1000


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/file.zip"


def test_download_verifies_and_shows_progress(tmp_path, http_files, capsys):
    base, files = http_files
    files["/data.bin"] = PAYLOAD
    dest = download_file(f"{base}/data.bin", tmp_path / "sub" / "data.bin", md5=md5(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert "data.bin" in capsys.readouterr().err
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    assert download_file(f"{base}/data.bin", tmp_path / "b.bin", sha256=sha, progress=False).exists()


def test_checksum_mismatch_removes_the_download(tmp_path, http_files):
    base, files = http_files
    files["/data.bin"] = PAYLOAD
    with pytest.raises(FewShotError, match=r"checksum mismatch for data\.bin .* md5 .* expected 0+; the download was"):
        download_file(f"{base}/data.bin", tmp_path / "data.bin", md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_one_error_lists_every_file_that_could_not_be_fetched(tmp_path, http_files):
    base, files = http_files
    files["/good.zip"] = PAYLOAD
    resources = [
        Resource("good.zip", (f"{base}/good.zip",), md5=md5(PAYLOAD)),
        Resource("gone.zip", (f"{base}/gone.zip",), md5=md5(b"x")),
        Resource("offline.zip", (closed_port_url(),), md5=md5(b"y")),
        Resource("splits/list.txt", hint="the authors' repository"),
    ]
    with pytest.raises(FewShotError) as error:
        ensure_files(tmp_path, resources, dataset="toy", progress=False)
    message = str(error.value)
    assert (tmp_path / "good.zip").read_bytes() == PAYLOAD
    assert "good.zip" not in message
    assert f"gone.zip: get it from {base}/gone.zip" in message and "Not Found" in message
    assert "offline.zip" in message and "download failed" in message
    assert "splits/list.txt: get it from the authors' repository" in message
    assert f"Put them in {tmp_path}" in message
    assert list(tmp_path.iterdir()) == [tmp_path / "good.zip"]


def test_download_disabled_lists_files_without_fetching(tmp_path, http_files):
    base, files = http_files
    files["/good.zip"] = PAYLOAD
    with pytest.raises(FewShotError, match=r"(?s)good\.zip: get it from .*allow downloads"):
        ensure_files(tmp_path, [Resource("good.zip", (f"{base}/good.zip",), md5=md5(PAYLOAD))], dataset="toy",
                     download=False)
    assert not (tmp_path / "good.zip").exists()


def test_omniglot_downloads_missing_zips(tmp_path, http_files, decode_cache, monkeypatch):
    base, files = http_files
    source = write_omniglot(tmp_path / "source", splits=False) / "omniglot"
    for resource in ("BACKGROUND", "EVALUATION"):
        name = getattr(omniglot, resource).path
        files[f"/{name}"] = (source / name).read_bytes()
        monkeypatch.setattr(omniglot, resource, Resource(name, (f"{base}/{name}",), md5=md5(files[f"/{name}"])))
    splits = load_splits("omniglot", data_dir=tmp_path / "data", progress=False)
    assert splits["test"].num_classes == 3
    assert (tmp_path / "data" / "omniglot" / "images_background.zip").exists()


def test_omniglot_offline_error(tmp_path, decode_cache, monkeypatch):
    url = closed_port_url()
    for resource in ("BACKGROUND", "EVALUATION"):
        name = getattr(omniglot, resource).path
        monkeypatch.setattr(omniglot, resource, Resource(name, (url,), md5="0" * 32))
    with pytest.raises(FewShotError) as error:
        load_splits("omniglot", data_dir=tmp_path, progress=False)
    message = str(error.value)
    assert "images_background.zip" in message and "images_evaluation.zip" in message
    assert message.count("download failed") == 2 and str(tmp_path / "omniglot") in message


def test_datasets_command_lists_found_and_missing(tmp_path, capsys):
    write_omniglot(tmp_path, splits=False)
    parser = argparse.ArgumentParser()
    datasets_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["datasets", "--data-dir", str(tmp_path)])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert f"looked in  {tmp_path / 'omniglot'}" in out
    assert "found      images_background.zip" in out
    assert "missing    splits/vinyals/train.txt" in out and "prototypical-networks" in out
    assert "missing    t10k-images-idx3-ubyte.gz" in out and "http://yann.lecun.com/exdb/mnist/" in out
    info = {d["name"]: d for d in describe_datasets(tmp_path)}
    assert sorted(info) == ["folder", "mnist", "omniglot"]
    assert {m["file"] for m in info["omniglot"]["missing"]} == {f"splits/vinyals/{s}.txt" for s in
                                                                ("train", "val", "test", "trainval")}
