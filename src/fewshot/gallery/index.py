"""Nearest-neighbour search over a gallery's vectors with FAISS: exact below a size, HNSW above.

An index is derived state: it is rebuilt from the SQLite file whenever it is missing, stale
or unreadable, and saved (atomically) only to make reopening fast. Entries are keyed by an
integer (an example id, or a class id for prototypes); removing a key marks its entry dead,
and searches skip dead entries, so a removed example is never returned. When dead entries
number more than 1,000 and more than a quarter of the index, it is compacted.

Distances are squared Euclidean (``l2``) or, for cosine methods, inner products of
L2-normalised vectors (``ip``), which rank like cosine distance.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from fewshot.files import atomic_write

#: Above this many entries the approximate index is used. Measured in ``benchmarks/gallery_scale.py``
#: (docs/benchmarks.md): one exact search takes 0.2 ms at 10k entries and 2.3 ms at 100k on a 2-core
#: CPU, beside 2 ms for a whole answer through HNSW at 100k or 1M.
EXACT_UP_TO = 10_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 96
_COMPACT_FRACTION = 0.25
#: Searches and adds of fewer vectors run on one thread: waking FAISS's OpenMP threads right after PyTorch's
#: (which spin a while after each parallel region) costs milliseconds, the search itself microseconds.
_PARALLEL_FROM = 32


@contextlib.contextmanager
def _threads(n_queries: int) -> Iterator[None]:
    if n_queries >= _PARALLEL_FROM:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class VectorIndex:
    """Vectors under integer keys; :meth:`search` returns the live keys nearest to each query.

    Example:
        >>> index = VectorIndex(dim=64)
        >>> index.add(np.array([7, 9]), vectors)
        >>> keys, distances = index.search(queries, k=1)
    """

    def __init__(self, dim: int, metric: str = "l2", approximate: bool = False) -> None:
        if metric not in ("l2", "ip"):
            raise ValueError(f"metric must be 'l2' or 'ip', got {metric!r}")
        self.dim, self.metric, self.approximate = dim, metric, approximate
        self.faiss = self._new_faiss()
        self.keys = np.zeros(0, np.int64)  # key of each faiss position
        self.alive = np.zeros(0, bool)
        self.position = np.full(0, -1, np.int64)  # faiss position of each key, -1: none
        self.dead = 0

    def _new_faiss(self) -> faiss.Index:
        faiss_metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if not self.approximate:
            return faiss.IndexFlat(self.dim, faiss_metric)
        index = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss_metric)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index

    def __len__(self) -> int:
        return len(self.keys) - self.dead

    def __contains__(self, key: int) -> bool:
        return 0 <= key < len(self.position) and self.position[key] >= 0

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self.metric == "ip":
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new keys (a key already present is replaced)."""
        keys = np.asarray(keys, np.int64).reshape(-1)
        if not len(keys):
            return
        self.remove(keys[[k in self for k in keys]])
        start = len(self.keys)
        with _threads(len(keys)):
            self.faiss.add(self._prepare(vectors))
        self.keys = np.concatenate([self.keys, keys])
        self.alive = np.concatenate([self.alive, np.ones(len(keys), bool)])
        top = int(keys.max()) + 1
        if top > len(self.position):
            grown = np.full(max(top, 2 * len(self.position)), -1, np.int64)
            grown[:len(self.position)] = self.position
            self.position = grown
        self.position[keys] = np.arange(start, start + len(keys))

    def remove(self, keys: np.ndarray) -> None:
        """Remove keys; searches never return them again."""
        for key in np.asarray(keys, np.int64).reshape(-1):
            if key in self:
                self.alive[self.position[key]] = False
                self.position[key] = -1
                self.dead += 1
        if self.dead > 1000 and self.dead > _COMPACT_FRACTION * len(self.keys):
            self.compact()

    def compact(self, approximate: bool | None = None) -> None:
        """Rebuild without dead entries (and, if given, as exact or approximate)."""
        live = np.flatnonzero(self.alive)
        vectors = self.faiss.reconstruct_batch(live) if len(live) else np.zeros((0, self.dim), np.float32)
        keys = self.keys[live]
        if approximate is not None:
            self.approximate = approximate
        self.faiss = self._new_faiss()
        self.keys, self.alive = np.zeros(0, np.int64), np.zeros(0, bool)
        self.position[:] = -1
        self.dead = 0
        if len(keys):
            self.faiss.add(vectors)  # already prepared
            self.keys, self.alive = keys, np.ones(len(keys), bool)
            self.position[keys] = np.arange(len(keys))

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        """The stored vectors of live keys (normalised, for ``ip``)."""
        keys = np.asarray(keys, np.int64).reshape(-1)
        return self.faiss.reconstruct_batch(self.position[keys]).reshape(len(keys), self.dim)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, distances)``, each ``[n_queries, k]``, nearest first; key -1 where fewer than ``k`` live.

        Distances are squared Euclidean (``l2``) or ``1 - cosine`` (``ip``).
        """
        queries = self._prepare(queries)
        n = len(queries)
        k = max(1, min(k, len(self)))
        out_keys, out_dist = np.full((n, k), -1, np.int64), np.full((n, k), np.inf, np.float32)
        if not len(self):
            return out_keys, out_dist
        fetch = min(len(self.keys), k + min(self.dead, 4 * k + 16))
        pending = np.arange(n)
        while len(pending):
            with _threads(len(pending)):
                distances, positions = self.faiss.search(queries[pending], fetch)
            retry = []
            for row, query in enumerate(pending):
                found = positions[row][positions[row] >= 0]
                live = found[self.alive[found]]
                if len(live) < k and fetch < len(self.keys):
                    retry.append(query)
                    continue
                live_distances = distances[row][positions[row] >= 0][self.alive[found]]
                m = min(k, len(live))
                out_keys[query, :m] = self.keys[live[:m]]
                out_dist[query, :m] = live_distances[:m] if self.metric == "l2" else 1 - live_distances[:m]
            pending = np.asarray(retry, np.int64)
            fetch = min(len(self.keys), 2 * fetch)
        return out_keys, out_dist

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Keys and liveness as named arrays (the FAISS index itself goes to its own file)."""
        return {f"{prefix}.keys": self.keys, f"{prefix}.alive": self.alive.astype(np.uint8)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, dim: int, metric: str,
                    index: faiss.Index) -> VectorIndex:
        """The index :meth:`to_arrays` and :func:`write_index_files` wrote; ``ValueError`` if the parts do not fit."""
        self = cls.__new__(cls)
        self.dim, self.metric, self.faiss = dim, metric, index
        self.approximate = not isinstance(index, faiss.IndexFlat)
        self.keys = np.ascontiguousarray(arrays[f"{prefix}.keys"], np.int64)
        self.alive = arrays[f"{prefix}.alive"].astype(bool)
        if index.d != dim or index.ntotal != len(self.keys) or len(self.alive) != len(self.keys):
            raise ValueError("index arrays do not fit together")
        live = self.keys[self.alive]
        self.position = np.full(int(live.max()) + 1 if len(live) else 0, -1, np.int64)
        self.position[live] = np.flatnonzero(self.alive)
        self.dead = int((~self.alive).sum())
        return self


def write_index_files(path: Path, indexes: dict[str, VectorIndex], arrays: dict[str, np.ndarray],
                      metadata: dict[str, str]) -> None:
    """Save indexes as ``PATH`` (safetensors: ``arrays``, each index's keys, ``metadata``) and one FAISS file
    per index, ``PATH.<token>.<name>.faiss``; each file is written atomically, ``PATH`` last, so a reader
    finds either the old set or the new one. FAISS files of earlier saves are then deleted."""
    token = uuid.uuid4().hex[:12]
    for name, index in indexes.items():
        atomic_write(_faiss_path(path, token, name), lambda tmp, index=index: faiss.write_index(index.faiss, str(tmp)))
        arrays.update(index.to_arrays(name))
    atomic_write(path, lambda tmp: save_file(arrays, str(tmp), {**metadata, "token": token,
                                                                "indexes": ",".join(indexes)}))
    for old in path.parent.glob(f"{path.name}.*.faiss"):
        if not old.name.startswith(f"{path.name}.{token}."):
            old.unlink(missing_ok=True)


def read_index_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="np") as f:
        return f.metadata() or {}


def read_index_files(path: Path, dim: int, metric: str) -> tuple[dict[str, VectorIndex], dict[str, np.ndarray]]:
    """The indexes and other arrays :func:`write_index_files` saved at ``path``."""
    metadata = read_index_metadata(path)
    arrays = load_file(str(path))
    indexes = {}
    for name in filter(None, metadata.get("indexes", "").split(",")):
        index = faiss.read_index(str(_faiss_path(path, metadata["token"], name)))
        indexes[name] = VectorIndex.from_arrays(arrays, name, dim, metric, index)
    return indexes, arrays


def remove_index_files(path: Path) -> None:
    path.unlink(missing_ok=True)
    for old in path.parent.glob(f"{path.name}.*.faiss"):
        old.unlink(missing_ok=True)


def _faiss_path(path: Path, token: str, name: str) -> Path:
    return path.with_name(f"{path.name}.{token}.{name}.faiss")
