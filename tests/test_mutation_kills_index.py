"""Promises of the gallery's vector index that mutation testing (benchmarks/mutation.sh gallery/index.py) found no
fast test for: exact and approximate search of both metrics, replacing and removing keys, compaction, and the index
files. Each test compares with brute force over known vectors; docs/benchmarks.md lists the mutants they kill."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from fewshot.gallery.index import VectorIndex, read_index_files, read_index_metadata, write_index_files

RNG = np.random.default_rng(0)
VECTORS = RNG.normal(size=(200, 8)).astype(np.float32) * RNG.uniform(0.1, 3.0, size=(200, 1)).astype(np.float32)
KEYS = 3 * np.arange(200) + 5
QUERIES = RNG.normal(size=(10, 8)).astype(np.float32)


def brute_force(metric: str, vectors: np.ndarray, keys: np.ndarray, queries: np.ndarray, k: int):
    if metric == "l2":
        distances = ((queries[:, None, :] - vectors[None]) ** 2).sum(-1)
    else:
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        distances = 1 - (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    order = np.argsort(distances, axis=1)[:, :k]
    return keys[order], np.take_along_axis(distances, order, 1)


def filled(metric: str = "l2", approximate: bool = False) -> VectorIndex:
    index = VectorIndex(8, metric, approximate)
    index.add(KEYS, VECTORS)
    return index


@pytest.mark.parametrize("approximate", [False, True])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_search_finds_the_brute_force_neighbours_and_distances_of_each_metric(metric, approximate):
    index = filled(metric, approximate)
    assert index.approximate is approximate
    assert type(index.faiss) is (faiss.IndexHNSWFlat if approximate else faiss.IndexFlat)
    keys, distances = index.search(QUERIES, k=5)
    expected_keys, expected_distances = brute_force(metric, VECTORS, KEYS, QUERIES, 5)
    assert keys.dtype == np.int64 and keys.shape == (10, 5) and distances.dtype == np.float32
    np.testing.assert_array_equal(keys, expected_keys)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-4, atol=1e-4)
    stored = index.vectors(KEYS[:3])
    unit = VECTORS[:3] / np.linalg.norm(VECTORS[:3], axis=1, keepdims=True)
    np.testing.assert_allclose(stored, VECTORS[:3] if metric == "l2" else unit, rtol=1e-6)


def test_an_index_is_exact_unless_asked_and_a_bad_metric_is_refused_by_name():
    assert VectorIndex(8).approximate is False and type(VectorIndex(8).faiss) is faiss.IndexFlat
    with pytest.raises(ValueError, match="metric must be 'l2' or 'ip', got 'cosine'"):
        VectorIndex(8, "cosine")


def test_a_key_added_again_is_replaced_and_a_removed_key_never_returns():
    index = VectorIndex(8)
    index.add(np.array([5]), VECTORS[:1])
    index.add(np.array([5, 9]), VECTORS[1:3])
    assert len(index) == 2 and 5 in index
    keys, distances = index.search(VECTORS[1:2], k=1)
    assert keys.tolist() == [[5]] and distances[0, 0] == pytest.approx(0, abs=1e-5)
    index.remove(np.array([5, 9]))
    keys, distances = index.search(VECTORS[1:2], k=1)
    assert keys.tolist() == [[-1]] and np.isinf(distances[0, 0]) and 5 not in index and len(index) == 0
    assert keys.dtype == np.int64 and distances.dtype == np.float32


@pytest.mark.parametrize("k", [1, 3])
def test_a_search_past_many_removed_neighbours_fetches_more_until_it_finds_live_ones(k):
    index = filled()
    query = VECTORS[:1]
    nearest, _ = brute_force("l2", VECTORS, KEYS, query, 60)
    index.remove(nearest[0])  # the query's 60 nearest: the first fetch of k + 4k + 16 holds none alive
    live = ~np.isin(KEYS, nearest[0])
    keys, distances = index.search(np.concatenate([query, QUERIES[:2]]), k=k)
    expected, expected_distances = brute_force("l2", VECTORS[live], KEYS[live], np.concatenate([query, QUERIES[:2]]), k)
    np.testing.assert_array_equal(keys, expected)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-4, atol=1e-4)


def test_one_live_vector_answers_one_column():
    index = VectorIndex(8)
    index.add(np.array([4]), VECTORS[:1])
    keys, _ = index.search(QUERIES, k=1)
    assert keys.shape == (10, 1) and (keys == 4).all()


def entries(index: VectorIndex) -> int:
    """How many entries the index holds, dead ones included (what compaction drops)."""
    return len(index.to_arrays("x")["x.keys"])


@pytest.mark.parametrize("size, removed, compacted", [
    (3000, 1000, False),   # not more than 1,000 dead
    (3000, 1001, True),    # more than 1,000 and more than a quarter
    (4004, 1001, False),   # exactly a quarter is not more than a quarter
    (8000, 1001, False),   # far less than a quarter
    (20, 10, False),       # half dead, but few
])
def test_dead_entries_are_compacted_past_1000_and_a_quarter_and_answers_do_not_change(size, removed, compacted):
    vectors = RNG.normal(size=(size, 4)).astype(np.float32)
    index = VectorIndex(4)
    index.add(np.arange(size), vectors)
    index.remove(np.arange(removed))
    assert entries(index) == (size - removed if compacted else size) and len(index) == size - removed
    keys, _ = index.search(vectors[:removed + 5], k=1)
    expected, _ = brute_force("l2", vectors[removed:], np.arange(removed, size), vectors[:removed + 5], 1)
    np.testing.assert_array_equal(keys, expected)
    assert all(key not in index for key in range(removed))


def test_compaction_can_switch_to_approximate_keeps_the_choice_and_survives_removing_everything():
    index = filled()
    index.remove(KEYS[:50])
    index.compact(approximate=True)
    assert index.approximate is True and type(index.faiss) is faiss.IndexHNSWFlat and entries(index) == 150
    assert all(key not in index for key in KEYS[:50]) and all(key in index for key in KEYS[50:])
    index.compact()
    assert index.approximate is True
    keys, _ = index.search(VECTORS[50:60], k=1)
    assert keys[:, 0].tolist() == KEYS[50:60].tolist()
    index.remove(KEYS)
    index.compact()
    assert len(index) == 0 and entries(index) == 0
    assert index.search(QUERIES, k=3)[0].tolist() == [[-1]] * 10
    index.add(KEYS[:2], VECTORS[:2])
    assert index.search(VECTORS[:2], k=1)[0].tolist() == [[KEYS[0]], [KEYS[1]]]


def test_index_files_reopen_to_the_same_answers_and_older_faiss_files_are_deleted(tmp_path):
    path = tmp_path / "gallery.index"
    exact, approximate = filled("l2"), filled("ip", approximate=True)
    exact.remove(KEYS[:7])
    empty = VectorIndex(8)
    write_index_files(path, {"examples": exact, "prototypes": approximate, "empty": empty},
                      {"extra": np.arange(3)}, {"model": "m"})
    first = sorted(p.name for p in tmp_path.glob("gallery.index.*.faiss"))
    assert read_index_metadata(path)["indexes"] == "examples,prototypes,empty"
    indexes, arrays = read_index_files(path, 8, "l2")
    assert set(indexes) == {"examples", "prototypes", "empty"} and arrays["extra"].tolist() == [0, 1, 2]
    again = indexes["examples"]
    assert again.approximate is False and indexes["prototypes"].approximate is True
    assert len(again) == 193 and all(key not in again for key in KEYS[:7]) and len(indexes["empty"]) == 0
    for saved, read in ((exact, again), (approximate, indexes["prototypes"])):
        np.testing.assert_array_equal(saved.search(QUERIES, k=4)[0], read.search(QUERIES, k=4)[0])
    again.add(KEYS[:1], VECTORS[:1])  # a removed key added again takes nobody's place
    assert all(again.search(VECTORS[7:], k=1)[0][:, 0] == KEYS[7:])
    write_index_files(path, {"examples": again}, {}, {})
    second = sorted(p.name for p in tmp_path.glob("gallery.index.*.faiss"))
    assert len(second) == 1 and not set(first) & set(second)


@pytest.mark.parametrize("part", ["alive", "keys", "dim"])
def test_index_parts_that_do_not_fit_together_are_refused(part):
    index = filled()
    arrays = index.to_arrays("x")
    if part == "alive":
        arrays["x.alive"] = arrays["x.alive"][:-1]
    if part == "keys":
        arrays["x.keys"], arrays["x.alive"] = arrays["x.keys"][:-1], arrays["x.alive"][:-1]
    with pytest.raises(ValueError, match="^index arrays do not fit together$"):
        VectorIndex.from_arrays(arrays, "x", 9 if part == "dim" else 8, "l2", index.faiss)
