"""Nearest-neighbour search over a gallery's vectors with FAISS: exact below a size, HNSW above.

An index is derived state: it is rebuilt from the SQLite file whenever it is missing, stale
or unreadable, and saved (atomically) only to make reopening fast. Entries are keyed by an
integer (an example id, or a class id for prototypes); removing a key marks its entry dead,
and searches skip dead entries, so a removed example is never returned. When dead entries
outnumber a quarter of the index it is compacted.

Distances are squared Euclidean (``l2``) or, for cosine methods, inner products of
L2-normalised vectors (``ip``), which rank like cosine distance.
"""
from __future__ import annotations

import faiss
import numpy as np

#: Sizes from which the approximate index is used; measured in ``benchmarks/gallery_scale.py``.
EXACT_UP_TO = 20_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 96
_COMPACT_FRACTION = 0.25


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
        """The index as named arrays (for a safetensors file)."""
        return {f"{prefix}.faiss": faiss.serialize_index(self.faiss), f"{prefix}.keys": self.keys,
                f"{prefix}.alive": self.alive.astype(np.uint8)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, dim: int, metric: str) -> VectorIndex:
        """The index :meth:`to_arrays` wrote; ``ValueError`` if the arrays do not fit together."""
        index = cls.__new__(cls)
        index.dim, index.metric = dim, metric
        index.faiss = faiss.deserialize_index(np.ascontiguousarray(arrays[f"{prefix}.faiss"]))
        index.approximate = not isinstance(index.faiss, faiss.IndexFlat)
        index.keys = np.ascontiguousarray(arrays[f"{prefix}.keys"], np.int64)
        index.alive = arrays[f"{prefix}.alive"].astype(bool)
        if index.faiss.d != dim or index.faiss.ntotal != len(index.keys) or len(index.alive) != len(index.keys):
            raise ValueError("index arrays do not fit together")
        live = index.keys[index.alive]
        index.position = np.full(int(live.max()) + 1 if len(live) else 0, -1, np.int64)
        index.position[live] = np.flatnonzero(index.alive)
        index.dead = int((~index.alive).sum())
        return index
