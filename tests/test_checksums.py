"""Downloads are verified: a file whose sha256 or md5 differs from the expected one is refused and nothing
of it is left; the MNIST checksums the loader names match the official files in $FEWSHOT_DATA when present."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fewshot.data import mnist
from fewshot.data.download import Resource, download_file, ensure_files
from fewshot.errors import FewShotError

PAYLOAD = bytes(range(256)) * 300
MD5, SHA256 = hashlib.md5(PAYLOAD).hexdigest(), hashlib.sha256(PAYLOAD).hexdigest()
WRONG_MD5, WRONG_SHA256 = "1" * 32, "2" * 64


@pytest.mark.parametrize("md5,sha256,wrong", [
    (None, WRONG_SHA256, "sha256"),
    (WRONG_MD5, None, "md5"),
    (MD5, WRONG_SHA256, "sha256"),  # one right checksum does not excuse the other
    (WRONG_MD5, SHA256, "md5"),
])
def test_a_download_with_a_wrong_checksum_is_refused_and_removed(tmp_path, http_files, md5, sha256, wrong):
    base, files = http_files
    files["/data.bin"] = PAYLOAD
    digest = {"md5": MD5, "sha256": SHA256}[wrong]
    with pytest.raises(FewShotError, match=f"checksum mismatch for data.bin .*: {wrong} {digest}, expected"):
        download_file(f"{base}/data.bin", tmp_path / "data.bin", md5=md5, sha256=sha256, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary copy


def test_matching_checksums_in_either_case_are_accepted(tmp_path, http_files):
    base, files = http_files
    files["/data.bin"] = PAYLOAD
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", md5=MD5.upper(), sha256=SHA256.upper(),
                         progress=False)
    assert dest.read_bytes() == PAYLOAD and list(tmp_path.iterdir()) == [dest]


def test_a_corrupt_mirror_is_refused_and_the_next_one_used(tmp_path, http_files):
    base, files = http_files
    files["/bad/data.bin"], files["/good/data.bin"] = PAYLOAD[:-1] + b"x", PAYLOAD
    resource = Resource("data.bin", (f"{base}/bad/data.bin", f"{base}/good/data.bin"), sha256=SHA256)
    ensure_files(tmp_path, [resource], dataset="toy", progress=False)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD and list(tmp_path.iterdir()) == [tmp_path / "data.bin"]
    (tmp_path / "data.bin").unlink()
    files["/good/data.bin"] = files["/bad/data.bin"]
    with pytest.raises(FewShotError, match=r"(?s)data\.bin: get it from .*checksum mismatch.*checksum mismatch"):
        ensure_files(tmp_path, [resource], dataset="toy", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_mnist_checksums_match_the_official_files():
    root = os.environ.get("FEWSHOT_DATA")
    files = [Path(root) / "mnist" / r.path for r in (*mnist.TEST_FILES, *mnist.TRAIN_FILES)] if root else []
    present = [(f, r) for f, r in zip(files, (*mnist.TEST_FILES, *mnist.TRAIN_FILES)) if f.exists()]
    if not present:
        pytest.skip("set FEWSHOT_DATA to a folder with the official mnist/*.gz files")
    for path, resource in present:
        assert hashlib.md5(path.read_bytes()).hexdigest() == resource.md5, path
