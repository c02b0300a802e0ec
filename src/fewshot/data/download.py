"""Fetch a data set's files from their official URLs, verified by checksum.

A download streams into a temporary file next to its destination, is checked against
its md5 or sha256, and only then renamed into place: an interrupted or corrupted
download never leaves a file that looks complete. Files a user puts in place by hand
are not checked (they may be re-packed copies of the same data).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fewshot import __version__
from fewshot.errors import FewShotError
from fewshot.files import atomic_write

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Resource:
    """One file a data set needs, at ``path`` relative to the data set's folder.

    ``urls`` are tried in order; ``hint`` says where to get a file that has no URL.
    """

    path: str
    urls: tuple[str, ...] = ()
    md5: str | None = None
    sha256: str | None = None
    hint: str = ""

    def where(self) -> str:
        """Where to get the file, in words."""
        if not self.urls:
            return self.hint
        checksum = f"md5 {self.md5}" if self.md5 else f"sha256 {self.sha256}" if self.sha256 else "no checksum"
        return f"{' or '.join(self.urls)} ({checksum})"


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, verify the checksum, rename.

    Raises :class:`FewShotError` if the download fails or the checksum differs; nothing
    is left at ``dest`` then.

    Example:
        >>> download_file("https://example.org/data.zip", "data/data.zip", md5="68d2efa1...")
        PosixPath('data/data.zip')
    """
    dest = Path(dest)

    def write(tmp: Path) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": f"fewshot/{__version__}"})
        digests = {name: hashlib.new(name) for name, want in (("md5", md5), ("sha256", sha256)) if want}
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    for digest in digests.values():
                        digest.update(chunk)
                    bar.update(len(chunk))
        for name, want in (("md5", md5), ("sha256", sha256)):
            if want and digests[name].hexdigest() != want.lower():
                raise FewShotError(
                    f"checksum mismatch for {dest.name} downloaded from {url}: {name} "
                    f"{digests[name].hexdigest()}, expected {want}; the download was deleted. "
                    f"Try again later, or fetch the file by hand and put it in {dest.parent}"
                )

    try:
        atomic_write(dest, write)
    except FewShotError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise FewShotError(f"could not download {url}: {reason}") from None
    return dest


def ensure_files(
    directory: str | os.PathLike,
    resources: Sequence[Resource],
    *,
    dataset: str,
    download: bool = True,
    progress: bool = True,
) -> None:
    """Make sure every resource exists under ``directory``, downloading the missing ones.

    Files without a URL, and files whose download fails or is switched off, are
    reported together in one :class:`FewShotError` that names each file, where to get
    it and the folder to put it in.
    """
    directory = Path(directory)
    missing = [r for r in resources if not (directory / r.path).exists()]
    failures: dict[Resource, str] = {}
    for resource in missing:
        if not (download and resource.urls):
            continue
        errors = []
        for url in resource.urls:
            try:
                download_file(url, directory / resource.path, md5=resource.md5, sha256=resource.sha256,
                              progress=progress)
                break
            except FewShotError as error:
                errors.append(str(error))
        else:
            failures[resource] = "; ".join(errors)
    still_missing = [r for r in missing if not (directory / r.path).exists()]
    if still_missing:
        raise FewShotError(missing_files_message(dataset, directory, still_missing, failures, download))


def missing_files_message(
    dataset: str,
    directory: Path,
    missing: Sequence[Resource],
    failures: dict[Resource, str] | None = None,
    download: bool = True,
) -> str:
    """One message listing each missing file, where to get it, and the folder it belongs in."""
    failures = failures or {}
    lines = [f"{dataset}: {len(missing)} file(s) missing from {directory}:"]
    for resource in missing:
        line = f"  - {resource.path}: get it from {resource.where()}"
        if resource in failures:
            line += f" [download failed: {failures[resource]}]"
        lines.append(line)
    advice = f"Put them in {directory}, or point --data-dir (or $FEWSHOT_DATA) at a folder that holds them"
    if not download and any(r.urls for r in missing):
        advice += "; or, on a machine with internet access, allow downloads (download=True; they are switched off)"
    lines.append(advice + ".")
    return "\n".join(lines)
