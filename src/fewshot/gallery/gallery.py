"""The gallery: register classes from a few images, recognise them later, say when a query is unknown.

A gallery is one SQLite file (:mod:`fewshot.gallery.storage`), the source of truth, and one
index file beside it (``PATH.index``, :mod:`fewshot.gallery.index`), derived from it and rebuilt
whenever it is missing, stale or unreadable. It is bound to one model: the gallery keeps its
weights, and recognises with the model's own rule (:mod:`fewshot.gallery.decision`).

Example:
    >>> gallery = Gallery.create("my.gallery", "runs/proto")
    >>> gallery.add("alpha", ["a1.png"])
    >>> [r.name for r in gallery.recognise(["q1.png", "q2.png"])]
    ['alpha', None]
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from fewshot.data.dataset import ImageDataset
from fewshot.data.imageio import read_bytes
from fewshot.errors import FewShotError, NotFoundError
from fewshot.gallery.calibration import Calibration, calibrate
from fewshot.gallery.decision import MATCHES, Match, Recognition, check_match, class_scores, decide, search_metric
from fewshot.gallery.images import PreparedImage, prepare_image
from fewshot.gallery.index import (
    EXACT_UP_TO,
    VectorIndex,
    read_index_files,
    read_index_metadata,
    remove_index_files,
    write_index_files,
)
from fewshot.gallery.model import GalleryModel
from fewshot.gallery.names import check_class_name
from fewshot.gallery.storage import WRITE_TIMEOUT, GalleryStore, NewExample
from fewshot.pretrained import CALIBRATION_FILE, model_dir

INDEX_SUFFIX = ".index"
INDEX_FORMAT = "1"
PAIRS_RERANK_CLASSES = 8
ImageInput = bytes | str | os.PathLike | tuple[str, bytes]


@dataclass
class AddResult:
    """What :meth:`Gallery.add` stored: new example ids, images already stored, conversions made.

    Example:
        >>> result = gallery.add("alpha", ["a1.png", "a2.png"])
        >>> result.created, len(result.example_ids), result.duplicates
        (True, 2, [])
    """

    name: str
    created: bool
    example_ids: list[int]
    duplicates: list[tuple[str, int, str]]  # (source, stored example id, its class)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "created": self.created, "example_ids": self.example_ids,
                "duplicates": [{"source": s, "example_id": i, "class": c} for s, i, c in self.duplicates],
                "notes": self.notes}


@dataclass(frozen=True)
class ClassInfo:
    """A registered class: its name, its number of examples and when it was added (Unix time).

    Example:
        >>> [(c.name, c.examples) for c in gallery.classes()]
    """

    name: str
    examples: int
    added: float


class Gallery:
    """Classes registered from a few images each, recognised by a trained model; see the module doc.

    Use :meth:`create` or :meth:`open`, and :meth:`close` (or a ``with`` block) when done, which
    saves the index so the next open is fast. One object may be shared by threads; many processes
    may read one gallery while one writes.

    Example:
        >>> with Gallery.create("my.gallery") as gallery:
        ...     gallery.add("alpha", ["a1.png"])
        ...     print(gallery.recognise(["q1.png"], top=2)[0])
    """

    def __init__(self, store: GalleryStore, model: GalleryModel) -> None:
        self._store, self.model = store, model
        self.path = store.path
        self.index_path = self.path.with_name(self.path.name + INDEX_SUFFIX)
        meta = store.meta()
        self.match = meta["match"]
        self._lock = threading.RLock()
        self._saved_generation = -1
        self.index_note: str | None = None  # what happened to the index file, for info()
        self._load_state()

    # -- opening -------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, run: str | os.PathLike | GalleryModel | None = None, *,
               match: str | None = None, device: torch.device | str = "cpu") -> Gallery:
        """A new, empty gallery at ``path`` bound to the model of ``run`` (a run directory).

        Without ``run``, the packaged Omniglot model (:mod:`fewshot.pretrained`) with its calibration.
        ``match``: ``prototype`` (default for ProtoNet, metric, triplet) or ``example`` (nearest stored
        example); Siamese runs match by ``pairs``.
        """
        packaged = run is None
        if packaged:
            run = model_dir()
        model = run if isinstance(run, GalleryModel) else GalleryModel.from_run(run, device)
        match = check_match(model.method, match)
        meta = {"match": match}
        index_path = Path(str(path) + INDEX_SUFFIX)
        if index_path.is_dir():
            raise FewShotError(f"{index_path} is a folder, where the gallery's index file goes; move it away or "
                               f"choose another path")
        store = GalleryStore.create(path, meta, (model.config_text, model.weights, model.fingerprint, model.source))
        remove_index_files(index_path)
        gallery = cls(store, model)
        calibration = model_dir() / CALIBRATION_FILE
        if packaged and calibration.exists():
            stored = Calibration.from_dict(json.loads(calibration.read_text()))
            if stored.fingerprint == model.fingerprint and stored.match == match:
                gallery._store.set_calibration(model.fingerprint, json.dumps(stored.to_dict()))
                gallery._data_version = None
                gallery.refresh()
        return gallery

    @classmethod
    def open(cls, path: str | os.PathLike, run: str | os.PathLike | None = None, *,
             device: torch.device | str = "cpu", timeout: float = WRITE_TIMEOUT) -> Gallery:
        """Open an existing gallery; with ``run``, refuse it unless it is bound to that run's model."""
        store = GalleryStore(path, timeout)
        try:
            config, weights, fingerprint, source = store.model()
            model = GalleryModel.from_stored(config, weights, source, device)
            if run is not None:
                other = GalleryModel.from_run(run, device)
                if other.fingerprint != fingerprint:
                    raise FewShotError(
                        f"{path} is bound to the model of {source} (fingerprint {fingerprint[:12]}), not to that of "
                        f"{run} (fingerprint {other.fingerprint[:12]}); open it without --run, or move it to the new "
                        f"model with `fewshot gallery reembed {path} --run {run}`")
            return cls(store, model)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        """Save the index if it changed, and close the file."""
        with self._lock:
            self.save_index()
            self._store.close()

    def __enter__(self) -> Gallery:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state: the index and what it needs, derived from SQLite ---------------------------------------------

    def _load_state(self) -> None:
        with self._lock:
            self.dim, self.metric = self.model.dim, search_metric(self.model.method)
            try:
                self._read_index_file()
            except FileNotFoundError:
                self._rebuild()
            except (OSError, ValueError, RuntimeError, SafetensorError, KeyError) as error:
                self.index_note = f"the index file {self.index_path} was unreadable ({error}); rebuilt it"
                self._rebuild()
            with self._store.snapshot():
                self._names = self._store.class_names()
            self._members: dict[int, list[int]] = {}
            live = self._examples.keys[self._examples.alive]
            classes = self._class_of[live]
            order = np.argsort(classes, kind="stable")
            bounds = np.flatnonzero(np.diff(classes[order])) + 1
            for group in np.split(live[order], bounds) if len(live) else []:
                self._members[int(self._class_of[group[0]])] = sorted(group.tolist())
            self._calibration = None
            self._data_version = None
            self.refresh()

    def _empty_state(self, approximate: bool) -> None:
        self._examples = VectorIndex(self.dim, self.metric, approximate)
        self._prototypes = VectorIndex(self.dim, self.metric) if self.model.rule == "prototype" else None
        self._class_of = np.full(0, -1, np.int64)
        self._proto = np.zeros((0, self.dim), np.float32)
        self._sums: dict[int, np.ndarray] = {}

    def _rebuild(self) -> None:
        """The index and class tables from the SQLite file alone."""
        with self._store.snapshot():
            generation = self._store.generation()
            _, n_examples = self._store.counts()
            self._empty_state(approximate=n_examples > EXACT_UP_TO)
            sums: dict[int, np.ndarray] = {}
            counts: dict[int, int] = {}
            for ids, classes, vectors in self._store.embeddings(self.dim):
                self._examples.add(ids, vectors)
                self._set_class(ids, classes)
                if self._prototypes is not None:
                    order = np.argsort(classes, kind="stable")
                    starts = np.concatenate([[0], np.flatnonzero(np.diff(classes[order])) + 1])
                    partial = np.add.reduceat(vectors[order].astype(np.float64), starts)
                    for c, total, n in zip(classes[order][starts].tolist(), partial, np.diff([*starts, len(ids)])):
                        sums[c] = sums[c] + total if c in sums else total
                        counts[c] = counts.get(c, 0) + int(n)
            self._sums = sums
            if sums:
                keys = np.array(sorted(sums), np.int64)
                self._set_prototypes(keys, np.stack([sums[k] / counts[k] for k in keys.tolist()]).astype(np.float32))
        self._generation = generation

    def _set_class(self, ids: np.ndarray, classes: np.ndarray) -> None:
        top = int(ids.max()) + 1 if len(ids) else 0
        if top > len(self._class_of):
            grown = np.full(max(top, 2 * len(self._class_of)), -1, np.int64)
            grown[:len(self._class_of)] = self._class_of
            self._class_of = grown
        self._class_of[ids] = classes

    def _set_prototypes(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        top = int(keys.max()) + 1
        if top > len(self._proto):
            grown = np.zeros((max(top, 2 * len(self._proto)), self.dim), np.float32)
            grown[:len(self._proto)] = self._proto
            self._proto = grown
        self._proto[keys] = vectors
        self._prototypes.add(keys, vectors)

    def _read_index_file(self) -> None:
        meta = read_index_metadata(self.index_path)
        expected = {"format": INDEX_FORMAT, "fingerprint": self.model.fingerprint, "rule": self.model.rule}
        if any(meta.get(k) != v for k, v in expected.items()) or int(meta.get("generation", -1)) > \
                self._store.generation():
            raise ValueError("it was made for another model, format or state of the gallery")
        indexes, arrays = read_index_files(self.index_path, self.dim, self.metric)
        self._examples = indexes["examples"]
        self._class_of = np.full(0, -1, np.int64)
        alive = self._examples.alive
        self._set_class(self._examples.keys[alive], arrays["examples.classes"][alive])
        self._prototypes, self._proto = None, np.zeros((0, self.dim), np.float32)
        self._sums = {}
        if self.model.rule == "prototype":
            self._prototypes = indexes["prototypes"]
            live = self._prototypes.alive
            keys = self._prototypes.keys[live]
            self._proto = np.zeros((int(keys.max()) + 1 if len(keys) else 0, self.dim), np.float32)
            self._proto[keys] = arrays["prototypes.vectors"][live]
        self._generation = self._saved_generation = int(meta["generation"])

    def save_index(self) -> None:
        """Write the index files (atomically) if the gallery changed since they were last written."""
        with self._lock:
            if self._generation == self._saved_generation:
                return
            indexes = {"examples": self._examples}
            arrays = {"examples.classes": self._class_of[self._examples.keys]}
            if self._prototypes is not None:
                indexes["prototypes"] = self._prototypes
                arrays["prototypes.vectors"] = self._proto[self._prototypes.keys]
            meta = {"format": INDEX_FORMAT, "fingerprint": self.model.fingerprint, "rule": self.model.rule,
                    "generation": str(self._generation)}
            try:
                write_index_files(self.index_path, indexes, arrays, meta)
            except OSError as error:
                self.index_note = f"could not write the index file {self.index_path} ({error.strerror}); " \
                                  f"it will be rebuilt on the next open"
                return
            self._saved_generation = self._generation

    def refresh(self) -> None:
        """Catch up with changes committed since this object last looked (by any process)."""
        with self._lock:
            version = self._store.data_version()
            if version == self._data_version:
                return  # nothing committed by another connection, and this one's writes were caught up
            self._catch_up()
            self._data_version = version

    def _catch_up(self) -> None:
        with self._store.snapshot():
            generation = self._store.generation()
            if self._store.fingerprint() != self.model.fingerprint:
                raise FewShotError(f"{self.path} was moved to another model by another process; open it again")
            changes = self._store.changes_since(self._generation)
            added = sorted({c.example_id for c in changes if c.op == "add"})
            stored = self._store.embeddings_of(added, self.dim)
            added = [i for i in added if i in stored]
            if added:
                owner = {c.example_id: c.class_id for c in changes if c.op == "add"}
                ids = np.array(added, np.int64)
                classes = np.array([owner[i] for i in added], np.int64)
                if not self._examples.approximate and len(self._examples) + len(ids) > EXACT_UP_TO:
                    self._examples.compact(approximate=True)
                self._examples.add(ids, np.stack([stored[i] for i in added]))
                self._set_class(ids, classes)
                for i, c in zip(added, classes.tolist()):
                    self._members.setdefault(c, []).append(i)
            removed = [c.example_id for c in changes if c.op == "remove" and c.example_id in self._examples]
            removed_from = {int(self._class_of[i]) for i in removed}
            if removed:
                self._examples.remove(np.array(removed, np.int64))
                for i in removed:
                    members = self._members.get(int(self._class_of[i]))
                    if members is not None and i in members:
                        members.remove(i)
                    self._class_of[i] = -1
            dropped = {c.class_id for c in changes if c.op == "drop"}
            for c in dropped:
                self._names.pop(c, None)
                self._members.pop(c, None)
            new_classes = {c.class_id for c in changes if c.op == "add"} - set(self._names) - dropped
            self._names.update(self._store.class_names(sorted(new_classes)))
            if self._prototypes is not None:
                self._update_prototypes(changes, stored, removed_from | dropped)
            stored_calibration = self._store.calibration()
            self._calibration = None
            if stored_calibration and stored_calibration[0] == self.model.fingerprint:
                self._calibration = Calibration.from_dict(json.loads(stored_calibration[1]))
            self._generation = generation

    def _update_prototypes(self, changes: list, added: dict[int, np.ndarray], shrunk: set[int]) -> None:
        """Prototypes of the classes ``changes`` touched: running float64 sums over a class's examples (exact
        for float32 inputs in practice), read again from SQLite for classes that lost examples."""
        for c in shrunk:
            self._sums.pop(c, None)
        new: dict[int, list[int]] = {}
        for change in changes:
            if change.op == "add" and change.example_id in added:
                new.setdefault(change.class_id, []).append(change.example_id)
        touched = sorted({c.class_id for c in changes})
        self._prototypes.remove(np.array(touched, np.int64))
        keys, vectors = [], []
        for c in touched:
            members = self._members.get(c)
            if not members:
                self._sums.pop(c, None)
                continue
            if c in self._sums and new.get(c):
                self._sums[c] = self._sums[c] + np.stack([added[i] for i in new[c]]).astype(np.float64).sum(0)
            elif c not in self._sums:
                rows = self._store.embeddings_of(members, self.dim)
                self._sums[c] = np.stack([rows[i] for i in members]).astype(np.float64).sum(0)
            keys.append(c)
            vectors.append(self._sums[c] / len(members))
        if keys:
            self._set_prototypes(np.array(keys, np.int64), np.stack(vectors).astype(np.float32))

    # -- images ----------------------------------------------------------------------------------------------

    def _prepare(self, images: Sequence[ImageInput]) -> list[PreparedImage]:
        if isinstance(images, (bytes, str, os.PathLike)):
            images = [images]
        prepared = []
        for i, image in enumerate(images, 1):
            if isinstance(image, tuple):
                source, data = image
            elif isinstance(image, bytes):
                source, data = f"image {i}", image
            elif isinstance(image, (str, os.PathLike)):
                source, data = str(image), read_bytes(image)
            elif isinstance(image, np.ndarray):
                prepared.append(self._model_input(image, f"array {i}"))
                continue
            else:
                raise FewShotError(f"image {i} is a {type(image).__name__}; pass PNG/JPEG bytes, a file path or "
                                   f"a model input array")
            prepared.append(prepare_image(data, self.model.preprocessing, source))
        if not prepared:
            raise FewShotError("no images given; pass at least one PNG or JPEG image")
        return prepared

    def _model_input(self, array: np.ndarray, source: str) -> PreparedImage:
        """An array that already is a model input: uint8 ``[channels, size, size]``, as the model sees images."""
        pre = self.model.preprocessing
        shape = (pre.channels, pre.size, pre.size)
        if array.dtype != np.uint8 or array.shape != shape:
            raise FewShotError(f"{source} is a {array.dtype} array of shape {array.shape}; a model input is uint8 of "
                               f"shape {shape} (or pass the encoded image)")
        return PreparedImage(np.ascontiguousarray(array), source)

    def _embed(self, prepared: list[PreparedImage]) -> tuple[np.ndarray, GalleryModel]:
        model = self.model
        return model.embed(np.stack([p.pixels for p in prepared])), model

    # -- writing ---------------------------------------------------------------------------------------------

    def add(self, name: str, images: Sequence[ImageInput]) -> AddResult:
        """Register images of class ``name`` (created if new), in one transaction.

        An image already stored (the same model input, in any class) is not stored again; it is
        listed in :attr:`AddResult.duplicates`. Nothing is stored if any image cannot be decoded.
        """
        name = check_class_name(name)
        prepared = self._prepare(images)
        seen: dict[str, str] = {}
        unique, repeated = [], []
        for p in prepared:
            digest = hashlib.sha256(f"{p.pixels.shape}".encode() + p.pixels.tobytes()).hexdigest()
            if digest in seen:
                repeated.append((p.source, seen[digest]))
                continue
            seen[digest] = p.source
            unique.append((p, digest))
        embeddings, model = self._embed([p for p, _ in unique])
        with self._lock:
            if model is not self.model:
                embeddings, _ = self._embed([p for p, _ in unique])
            examples = [NewExample(p.pixels.tobytes(), digest, e, p.source) for (p, digest), e in zip(unique, embeddings)]
            outcome = self._store.add(name, examples)
            self._data_version = None
            self.refresh()
        duplicates = outcome.duplicates + [(s, -1, f"{first} in this request") for s, first in repeated]
        created = outcome.created and bool(outcome.example_ids)
        return AddResult(name, created, outcome.example_ids, duplicates, {p.source: p.notes for p in prepared if p.notes})

    def remove_class(self, name: str) -> int:
        """Remove a class and all its examples; the number of examples removed."""
        with self._lock:
            class_id = self._store.class_id(name)
            if class_id is None:
                raise NotFoundError(f"{self.path} has no class named {name!r}; `fewshot gallery list {self.path}` "
                                   f"shows its classes")
            removed = self._store.remove_class(class_id)
            self._data_version = None
            self.refresh()
        return len(removed)

    def remove_example(self, example_id: int) -> tuple[str, bool]:
        """Remove one example; ``(its class, whether the class went with it, as its last example)``."""
        with self._lock:
            stored = self._store.image(int(example_id)) if 0 <= example_id < 2**63 else None
            if stored is None:
                raise NotFoundError(f"{self.path} has no example {example_id}; `fewshot gallery list {self.path} "
                                   f"--examples` shows the example ids")
            class_id = stored[1]
            last = len(self._store.examples_of(class_id)) == 1
            name = self._store.class_names([class_id])[class_id]
            self._store.remove_example(int(example_id), class_id, drop_class=last)
            self._data_version = None
            self.refresh()
        return name, last

    # -- recognising -----------------------------------------------------------------------------------------

    def recognise(self, images: Sequence[ImageInput], top: int = 1, match: str | None = None) -> list[Recognition]:
        """For each image: its class or unknown, the distance, threshold, margin and the ``top`` classes.

        ``match`` overrides the gallery's match mode for this call (``prototype`` or ``example``).
        """
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise FewShotError(f"top must be a positive integer, got {top!r}")
        match = self.match if match is None else check_match(self.model.method, match)
        prepared = self._prepare(images)
        queries, model = self._embed(prepared)
        with self._lock:
            self.refresh()
            if model is not self.model:
                queries, _ = self._embed(prepared)
            if not self._names:
                raise FewShotError(f"{self.path} has no classes yet; add some with "
                                   f"`fewshot gallery add {self.path} --name NAME IMAGE...`")
            ranked = self._rank(queries, max(top, 2), match)
            calibration = self._calibration if self._calibration and self._calibration.match == match else None
            threshold = calibration.threshold if calibration else None
            notes = self._answer_notes(match)
        return [decide(p.source, r, top, threshold, p.notes + notes) for p, r in zip(prepared, ranked)]

    def _answer_notes(self, match: str) -> list[str]:
        calibration = self._calibration
        if calibration is None:
            return ["uncalibrated: no query is called unknown; run `fewshot gallery calibrate` to set the threshold"]
        if calibration.match != match:
            return [(f"uncalibrated for {match} matching (the calibration is for {calibration.match}); no query "
                     f"is called unknown")]
        classes = len(self._names)
        if classes > 2 * max(calibration.n_way, 1):  # more classes, more false accepts at one threshold
            return [(f"calibrated at {calibration.n_way} classes; the gallery now holds {classes}: recalibrate for "
                    f"the stated false-accept rate")]
        return []

    @torch.inference_mode()
    def _rank(self, queries: np.ndarray, want: int, match: str) -> list[list[Match]]:
        """Classes nearest first (at least ``want`` where the gallery has them) for each query."""
        method = self.model.method
        out = []
        if match == "prototype":
            fetch = want + (8 if not self._prototypes.approximate else 2 * want + 16)
            keys, _ = self._prototypes.search(queries, fetch)
            for query, row in zip(queries, keys):
                classes = row[row >= 0]
                support = torch.from_numpy(self._proto[classes])
                scores = class_scores(method, "prototype", support, torch.arange(len(classes)),
                                      torch.from_numpy(query[None]), len(classes))[0]
                out.append(self._matches(classes, scores, want))
            return out
        fetch = 16 * want + 32
        keys, _ = self._examples.search(queries, fetch)
        for query, row in zip(queries, keys):
            examples = row[row >= 0]
            owners = self._class_of[examples]
            _, first = np.unique(owners, return_index=True)
            classes = owners[np.sort(first)]
            if match == "pairs":
                classes = classes[:max(want, PAIRS_RERANK_CLASSES)]
                examples = np.concatenate([np.array(self._members[int(c)], np.int64) for c in classes])
                owners = self._class_of[examples]
            labels = torch.from_numpy(np.searchsorted(np.sort(classes), owners))
            ordered = np.sort(classes)
            support = torch.from_numpy(self._examples.vectors(examples))
            scores = class_scores(method, match, support, labels, torch.from_numpy(query[None]), len(ordered))[0]
            out.append(self._matches(ordered, scores, want))
        return out

    def _matches(self, classes: np.ndarray, scores: torch.Tensor, want: int) -> list[Match]:
        order = torch.argsort(scores, descending=True, stable=True)[:want].tolist()
        return [Match(self._names[int(classes[i])], float(-scores[i])) for i in order]

    # -- calibration -----------------------------------------------------------------------------------------

    @property
    def calibration(self) -> Calibration | None:
        with self._lock:
            self.refresh()
            return self._calibration

    def calibrate(self, dataset: ImageDataset, *, target: float = 0.01, way: int | None = None,
                  shot: int | None = None, queries: int = 5, unknown: int = 5, episodes: int = 600, seed: int = 0,
                  match: str | None = None, progress: bool = False) -> Calibration:
        """Choose the unknown threshold on ``dataset``, classes the model never trained on, and store it.

        ``way`` and ``shot`` default to the gallery's classes and mean examples per class, capped at
        what ``dataset`` allows (see :func:`fewshot.gallery.calibration.calibrate`).
        """
        pre = self.model.preprocessing
        if tuple(dataset.image_shape) != (pre.channels, pre.size, pre.size):
            raise FewShotError(f"{dataset.name} has images of shape {tuple(dataset.image_shape)}; the model reads "
                               f"{(pre.channels, pre.size, pre.size)}: load it with image_size={pre.size}, "
                               f"channels={pre.channels}")
        n_classes, n_examples = self._store.counts()
        labels = dataset.labels.numpy()
        if way is None:
            way = min(max(n_classes, 2), dataset.num_classes // 2 - unknown)
        if shot is None:
            smallest = int(np.bincount(labels).min())
            shot = min(max(1, round(n_examples / n_classes)) if n_classes else 1, max(1, smallest - queries))
        embeddings = torch.from_numpy(self.model.embed(dataset.images.numpy()))
        method = self.model.method
        match = self.match if match is None else check_match(method, match)

        def scores(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, n_way: int) -> torch.Tensor:
            with torch.inference_mode():
                return class_scores(method, match, support, support_labels, query, n_way)

        result = calibrate(embeddings, labels, scores, target=target, n_way=way, k_shot=shot, n_query=queries,
                           n_unknown=unknown, episodes=episodes, seed=seed, progress=progress)
        result.dataset, result.gallery_classes = dataset.name, n_classes
        result.fingerprint, result.created, result.match = self.model.fingerprint, time.time(), match
        with self._lock:
            self._store.set_calibration(self.model.fingerprint, json.dumps(result.to_dict()))
            self._data_version = None
            self.refresh()
        return result

    # -- moving to another model -----------------------------------------------------------------------------

    def reembed(self, run: str | os.PathLike | GalleryModel, device: torch.device | str = "cpu") -> int:
        """Bind the gallery to another model, embedding every stored example again; the number embedded.

        The calibration, made for the old model, is dropped: calibrate again.
        """
        new = run if isinstance(run, GalleryModel) else GalleryModel.from_run(run, device)
        old = self.model
        if new.fingerprint == old.fingerprint:
            raise FewShotError(f"{self.path} is already bound to this model (fingerprint {new.fingerprint[:12]})")
        if (new.preprocessing.size, new.preprocessing.channels) != (old.preprocessing.size, old.preprocessing.channels):
            raise FewShotError(
                f"the new model reads {new.preprocessing.channels}x{new.preprocessing.size}x{new.preprocessing.size} "
                f"images; this gallery stores {old.preprocessing.channels}x{old.preprocessing.size}x"
                f"{old.preprocessing.size}. Create a new gallery for it and add the original images")
        match = self.match if self.match in MATCHES[new.rule] else check_match(new.method, None)
        shape = (old.preprocessing.channels, old.preprocessing.size, old.preprocessing.size)
        count = 0

        def batches():
            nonlocal count
            for rows in self._store.images():
                pixels = np.stack([np.frombuffer(image, np.uint8).reshape(shape) for _, image in rows])
                embedded = new.embed(pixels)
                count += len(rows)
                yield [(i, e.tobytes()) for (i, _), e in zip(rows, embedded)]

        with self._lock:
            self._store.replace_model((new.config_text, new.weights, new.fingerprint, new.source), batches(),
                                      {"match": match})
            self.model, self.match = new, match
            self._saved_generation = -1
            self._load_state()
        return count

    # -- looking -------------------------------------------------------------------------------------------

    def classes(self, offset: int = 0, limit: int | None = None) -> list[ClassInfo]:
        """The classes, oldest first, with their numbers of examples: ``limit`` of them (all when None) after the
        first ``offset``."""
        if offset < 0 or (limit is not None and limit < 0):
            raise FewShotError(f"offset and limit are counts, 0 or more; got {offset} and {limit}")
        everything = 2**62  # beyond any count SQLite stores, and within its 64-bit integers
        with self._lock:
            page = self._store.classes(min(offset, everything), everything if limit is None else min(limit, everything))
            return [ClassInfo(name, n, added) for _, name, n, added in page]

    def examples(self, name: str) -> list[tuple[int, float, str]]:
        """``(example id, when added, source)`` of a class's examples."""
        with self._lock:
            class_id = self._store.class_id(name)
            if class_id is None:
                raise NotFoundError(f"{self.path} has no class named {name!r}")
            return self._store.examples_of(class_id)

    def example_pixels(self, example_id: int) -> np.ndarray:
        """The stored model input (uint8 ``[c, s, s]``) of an example."""
        with self._lock:
            stored = self._store.image(int(example_id)) if 0 <= example_id < 2**63 else None
        if stored is None:
            raise NotFoundError(f"{self.path} has no example {example_id}")
        pre = self.model.preprocessing
        return np.frombuffer(stored[0], np.uint8).reshape(pre.channels, pre.size, pre.size)

    def info(self) -> dict:
        """A summary: model, match, sizes, index, calibration."""
        with self._lock:
            self.refresh()
            n_classes, n_examples = len(self._names), len(self._examples)
            calibration = self._calibration
            return {
                "path": str(self.path), "format": int(self._store.meta()["format"]),
                "model": self.model.describe(), "fingerprint": self.model.fingerprint,
                "method": self.model.config.method, "match": self.match,
                "preprocessing": self.model.preprocessing.to_dict(),
                "classes": n_classes, "examples": n_examples,
                "index": "HNSW (approximate)" if self._examples.approximate else "flat (exact)",
                "calibration": calibration.to_dict() if calibration else None,
                "notes": self._answer_notes(self.match) + ([self.index_note] if self.index_note else []),
            }

    def check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` of the file: ``ok`` when sound."""
        with self._lock:
            return self._store.integrity()

