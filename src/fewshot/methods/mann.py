"""Memory-augmented neural networks (Santoro et al. 2016, "One-shot learning with
memory-augmented neural networks"), with the NTM and plain-LSTM baselines of the paper.

An episode is a sequence: at step ``t`` the network reads the image ``x_t`` with the
one-hot label ``y_{t-1}`` of the previous step and outputs ``p(y_t)``
(:mod:`fewshot.data.sequences`). A controller (LSTM or feed-forward) reads ``[x_t, y_{t-1}]``
and the previous read vector ``r_{t-1}``; its output ``h_t`` drives an external memory
(LRUA, NTM, or none), and the class scores are a linear map of ``[h_t, r_t]`` (section 3).
Training minimises the cross-entropy of every step; labels are shuffled per episode, so
the weights can only learn *how* to bind images to labels in memory, not the classes.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.data.dataset import ImageDataset
from fewshot.data.sequences import (SantoroAugmentation, SequenceBatch, SequenceEpisodes, check_min_classes,
                                     instance_numbers)
from fewshot.data.views import check_views, dihedral_view
from fewshot.errors import FewShotError
from fewshot.methods.base import BatchSource, Method, check_positive_integers
from fewshot.methods.registry import METHODS
from fewshot.nets import flatten as _flatten  # noqa: F401  (registers the "flatten" encoder MANN uses)
from fewshot.nets.controllers import build_controller
from fewshot.nets.lrua import WRITES, LRUAMemory
from fewshot.nets.memory import Memory, MemoryState
from fewshot.nets.ntm import NTMMemory

MEMORIES = ("lrua", "ntm", "none")
CONTROLLERS = ("lstm", "feedforward")
LOGGED_INSTANCES = (1, 2, 3, 5, 10)
ARCHITECTURE_BYTES = 256
DEFAULT_SETTINGS = {"write": "key", "key_strength": False}
"""LRUA options that the architecture record leaves out at these values, so weights saved before
the options existed still load."""
QUERY_BRANCHES = 2048  # query steps branched from post-support states per chunk in :meth:`MANN.scores`


class RecurrentState(NamedTuple):
    """Everything carried from one step to the next: controller state, memory state, ``r_{t-1}``."""

    controller: tuple[torch.Tensor, ...]
    memory: MemoryState | None
    read: torch.Tensor | None


class SequenceOutput(NamedTuple):
    """Output of :meth:`MANN.forward`.

    Attributes:
        logits: class scores ``[batch, time, n_classes]``.
        state: the state after the last step (to continue the sequence).
        read_weights: ``[batch, time, heads, slots]`` if recorded, else ``None``.
        write_weights: ``[batch, time, write heads, slots]`` if recorded, else ``None``.
    """

    logits: torch.Tensor
    state: RecurrentState
    read_weights: torch.Tensor | None
    write_weights: torch.Tensor | None


def accuracy_by_instance(logits: torch.Tensor, labels: torch.Tensor, instances: int) -> torch.Tensor:
    """Per-episode accuracy at each instance number: ``[batch, time, N]`` scores -> ``[batch, instances]``.

    Every class of an episode appears exactly ``instances`` times, so each entry is a mean over N steps.
    """
    n_classes = logits.shape[-1]
    correct = (logits.argmax(-1) == labels).float()
    which = F.one_hot(instance_numbers(labels, n_classes) - 1, instances).float()
    return torch.einsum("bt,btk->bk", correct, which) / which.sum(1).clamp_min(1.0)


@METHODS.register("mann")
class MANN(Method):
    """Memory-augmented neural network (Santoro et al. 2016): learns new classes inside an episode.

    Args:
        encoder: maps an image to features; ``flatten`` (raw pixels) as in the paper.
        memory: external memory: ``lrua`` (least recently used access, the paper's MANN),
            ``ntm`` (Neural Turing Machine addressing), or ``none`` (the LSTM baseline).
        controller: ``lstm`` or ``feedforward``.
        n_classes: classes per episode (Santoro: 5 or 15); also the size of the label input and output.
        instances: images of each class per episode (episode length ``n_classes * instances``).
        batch_size: episodes per training batch.
        min_classes: train on episodes of ``min_classes .. n_classes`` classes (drawn per batch,
            labelled with a random subset of the ``n_classes`` labels) instead of ``n_classes``
            only: easier episodes mixed in, so that a 15-class model starts learning to bind
            sooner. Ours, not the paper's; evaluation always uses ``n_classes``.
        controller_size: hidden units of the controller.
        slots: memory locations.
        width: size of a memory location.
        heads: read heads (LRUA: each also writes).
        gamma: LRUA usage decay.
        write: what an LRUA head writes: ``key``, its read key (the paper's eq. 23), or ``add``,
            a separate add vector, as the NTM writes.
        key_strength: give each LRUA read head a learned key strength that sharpens its reads,
            as the NTM's heads have (the paper's LRUA has none).
        shift_range: NTM shifts ``-R .. R``.
        augment: Santoro's augmentation of training episodes (classes rotated by multiples of
            90 degrees, small random rotations and translations per image).
        max_rotation: largest per-image rotation of the augmentation, in degrees.
        max_shift: largest per-image translation of the augmentation, in pixels.

    Example:
        >>> from fewshot.nets import build_encoder
        >>> model = MANN(build_encoder("flatten", 1, 20), memory="lrua", n_classes=5)
        >>> logits = model.predict(batch)  # a SequenceBatch -> [batch, time, 5]
    """

    name = "mann"
    gallery_refusal = (
        "it reads an episode as one sequence of images and labels; it has no score of one query against stored "
        "examples"
    )
    default_encoder = "flatten"
    embeds_images = False
    evaluates_by_instance = True
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {"memory": MEMORIES, "controller": CONTROLLERS,
                                                            "write": WRITES}

    def __init__(
        self,
        encoder: nn.Module,
        memory: str = "lrua",
        controller: str = "lstm",
        n_classes: int = 5,
        instances: int = 10,
        batch_size: int = 16,
        min_classes: int | None = None,
        controller_size: int = 200,
        slots: int = 128,
        width: int = 40,
        heads: int = 4,
        gamma: float = 0.95,
        write: str = "key",
        key_strength: bool = False,
        shift_range: int = 1,
        augment: bool = True,
        max_rotation: float = 10.0,
        max_shift: float = 2.0,
    ) -> None:
        super().__init__(encoder)
        if memory not in MEMORIES:
            raise FewShotError(f"unknown memory {memory!r} for mann; valid: {', '.join(MEMORIES)}")
        if controller not in CONTROLLERS:
            raise FewShotError(f"unknown controller {controller!r} for mann; valid: {', '.join(CONTROLLERS)}")
        in_features = getattr(encoder, "out_features", None)
        if not isinstance(in_features, int):
            raise FewShotError("mann needs an encoder with an out_features attribute; use --encoder flatten")
        check_positive_integers("mann", n_classes=n_classes, instances=instances, batch_size=batch_size,
                                controller_size=controller_size, slots=slots, width=width, heads=heads)
        check_min_classes(min_classes, n_classes)
        if write != "key" and memory != "lrua":
            raise FewShotError(f"mann option write={write} is for --memory lrua (the NTM always writes add vectors); "
                               f"leave it out with --memory {memory}")
        if key_strength and memory != "lrua":
            raise FewShotError(f"mann option key_strength is for --memory lrua (NTM heads always have one); "
                               f"leave it out with --memory {memory}")
        try:
            self.memory = build_memory(memory, controller_size, slots, width, heads, gamma, shift_range, write,
                                       key_strength)
        except ValueError as e:
            raise FewShotError(f"mann memory options: {e}") from None
        read_size = self.memory.read_size if self.memory is not None else 0
        self.controller = build_controller(controller, in_features + n_classes, read_size, controller_size)
        self.output = nn.Linear(controller_size + read_size, n_classes)
        self.memory_kind, self.controller_kind = memory, controller
        self.write, self.key_strength = write, key_strength
        self.n_classes, self.instances, self.batch_size = n_classes, instances, batch_size
        self.min_classes = min_classes
        self.augmentation = SantoroAugmentation(True, max_rotation, max_shift) if augment else None
        settings = {"memory": memory, "controller": controller, "n_classes": n_classes,
                    "controller_size": controller_size, "features": in_features}
        if memory != "none":
            settings.update(slots=slots, width=width, heads=heads)
        settings.update({k: v for k, v in {"write": write, "key_strength": key_strength}.items()
                         if v != DEFAULT_SETTINGS[k]})
        self.settings = settings
        self.register_buffer("architecture", _encode(settings))
        self.register_load_state_dict_pre_hook(_check_architecture)

    def check_compile(self) -> None:
        """Refuse ``compile: true`` with ``min_classes``: every episode length would be its own compile."""
        if self.min_classes is not None and self.min_classes < self.n_classes:
            raise FewShotError(
                f"compile: true compiles the training loss once per episode length, minutes each, but "
                f"min_classes={self.min_classes} trains on episodes of {self.min_classes} to {self.n_classes} "
                f"classes ({self.n_classes - self.min_classes + 1} lengths); pass --no-compile for eager steps, "
                f"or leave out --min-classes")

    def check_state_dict(self, state_dict: dict[str, Any], prefix: str = "") -> None:
        """Refuse, naming both, weights of a mann with another memory, controller or size.

        Runs before every ``load_state_dict``; loaders that compare keys first can call it directly.
        """
        saved = state_dict.get(prefix + "architecture")
        theirs = _decode(saved) if isinstance(saved, torch.Tensor) else None
        if theirs is None or theirs == self.settings:
            return
        mine, theirs_in_full = {**DEFAULT_SETTINGS, **self.settings}, {**DEFAULT_SETTINGS, **theirs}
        flags = " ".join(_flag(k, v) for k, v in theirs_in_full.items() if k != "features" and mine.get(k) != v)
        raise FewShotError(
            f"these weights are of a mann with {_describe(theirs)}, but the model they are loaded into has "
            f"{_describe(self.settings)}; build the model with the weights' settings ({flags})"
        )

    # -- the network -----------------------------------------------------------------------------

    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> RecurrentState:
        """The state before the first step of an episode: empty memory, zero read vector."""
        if self.memory is None:
            return RecurrentState(self.controller.initial_state(batch, device, dtype), None, None)
        return RecurrentState(
            self.controller.initial_state(batch, device, dtype),
            self.memory.initial_state(batch, device, dtype),
            torch.zeros(batch, self.memory.read_size, device=device, dtype=dtype),
        )

    def forward(self, features: torch.Tensor, previous_labels: torch.Tensor, state: RecurrentState | None = None,
                record: bool = False) -> SequenceOutput:
        """Run the sequence ``[x_t, y_{t-1}]``; the only Python loop is over time steps.

        Args:
            features: encoded images ``[batch, time, d]``.
            previous_labels: one-hot ``y_{t-1}`` ``[batch, time, n_classes]``.
            state: the state to continue from (default: a fresh episode).
            record: also return the read and write weights of every step.
        """
        batch = features.shape[0]
        projected = self.controller.project_inputs(torch.cat([features, previous_labels], dim=-1))
        if state is None:
            state = self.initial_state(batch, features.device, projected.dtype)
        controller_state, memory_state, read = state
        hidden, reads, read_weights, write_weights = [], [], [], []
        for projected_t in projected.unbind(1):
            h, controller_state = self.controller.step(projected_t, read, controller_state)
            hidden.append(h)
            if self.memory is not None:
                read, memory_state = self.memory(h, memory_state)
                reads.append(read)
                if record:
                    read_weights.append(memory_state.read_weights)
                    write_weights.append(memory_state.write_weights)
        out = torch.stack(hidden, 1)
        if reads:
            out = torch.cat([out, torch.stack(reads, 1)], dim=-1)
        return SequenceOutput(
            self.output(out),
            RecurrentState(controller_state, memory_state, read),
            torch.stack(read_weights, 1) if read_weights else None,
            torch.stack(write_weights, 1) if write_weights else None,
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder features of ``[batch, time, c, h, w]`` images: ``[batch, time, d]``."""
        return self.encoder(images.flatten(0, 1)).unflatten(0, images.shape[:2])

    def run(self, batch: SequenceBatch, record: bool = False) -> SequenceOutput:
        """The network on a batch of sequence episodes."""
        if batch.n_classes != self.n_classes:
            raise FewShotError(f"this mann was built for {self.n_classes}-class episodes, got {batch.n_classes} "
                               f"classes; draw episodes of {self.n_classes} classes or train another model")
        return self(self.encode(batch.images), batch.previous_labels, record=record)

    def predict(self, batch: SequenceBatch, views: int = 1) -> torch.Tensor:
        """Class scores ``[batch, time, n_classes]`` of every step of a batch of episodes.

        ``views = 4`` or ``8`` is test-time augmentation (ours, not the paper's): the network
        also reads each episode rotated as a whole by 90, 180 and 270 degrees (and, with 8,
        mirrored; :mod:`fewshot.data.views`), and the scores are the logarithm of the class
        probabilities averaged over the views. Each view is a separate run: step ``t`` is
        given the true ``y_{t-1}``, never a prediction, so the views do not interact.
        """
        check_views(views)
        if views == 1:
            return self.run(batch).logits
        probabilities = sum(
            self.run(dataclasses.replace(batch, images=dihedral_view(batch.images, i))).logits.float().softmax(-1)
            for i in range(views))
        return (probabilities / views).log()

    # -- training ----------------------------------------------------------------------------------

    def training_batches(self, dataset: ImageDataset, steps: int, seed: int) -> BatchSource:
        return self.sequence_episodes(dataset, seed, self.batch_size, self.augmentation, self.min_classes).batch

    def sequence_episodes(self, dataset: ImageDataset, seed: int, batch_size: int,
                          augmentation: SantoroAugmentation | None = None,
                          min_classes: int | None = None) -> SequenceEpisodes:
        """Episodes of this model's shape (``n_classes`` classes, ``instances`` each) from ``dataset``."""
        return SequenceEpisodes(dataset, self.n_classes, self.instances, batch_size, seed, augmentation, min_classes)

    def training_loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.predict(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten())
        metrics = {"accuracy": (logits.argmax(-1) == batch.labels).float().mean()}
        by_instance = accuracy_by_instance(logits.detach(), batch.labels, self.instances).mean(0)
        for k in LOGGED_INSTANCES:
            if k <= self.instances:
                metrics[f"acc_inst{k}"] = by_instance[k - 1]
        return loss, metrics

    # -- N-way K-shot episodes ---------------------------------------------------------------------

    def scores(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
               n_way: int) -> torch.Tensor:
        """Scores of queries after reading the support set as a labelled sequence.

        The support examples are fed as one sequence, round-robin over the classes (first shot
        of every class, then the second ...), each step with the previous step's label. Each
        query is then one more step, branched from the state after the support sequence:
        queries do not see each other.
        """
        if n_way != self.n_classes:
            raise FewShotError(f"this mann outputs {self.n_classes} classes and cannot score {n_way}-way episodes; "
                               f"evaluate it on {self.n_classes}-way episodes or train one with --n-classes {n_way}")
        lead, (n_support, d), n_query = support.shape[:-2], support.shape[-2:], query.shape[-2]
        support, query = support.reshape(-1, n_support, d), query.reshape(-1, n_query, d)
        episodes = support.shape[0]
        rank = F.one_hot(support_labels, n_way).cumsum(0).gather(1, support_labels[:, None]).squeeze(1)
        order = torch.argsort(rank * n_way + support_labels, stable=True)
        labels = F.one_hot(support_labels[order], n_way).to(support.dtype)
        previous = F.pad(labels[:-1], (0, 0, 1, 0)).expand(episodes, -1, -1)
        state = self(support[:, order], previous).state
        last = labels[-1].expand(n_query, 1, n_way)
        chunk = max(1, QUERY_BRANCHES // n_query)
        out = []
        for first in range(0, episodes, chunk):
            part = slice(first, first + chunk)
            branched = _map_state(state, lambda x, part=part: x[part].repeat_interleave(n_query, 0))
            q = query[part].reshape(-1, 1, d)
            out.append(self(q, last.repeat(q.shape[0] // n_query, 1, 1), branched).logits.view(-1, n_query, n_way))
        return torch.cat(out).reshape(*lead, n_query, n_way)


def build_memory(kind: str, controller_size: int, slots: int, width: int, heads: int, gamma: float,
                 shift_range: int, write: str, key_strength: bool) -> Memory | None:
    """The external memory called ``kind``: ``lrua``, ``ntm``, or ``none`` (no memory)."""
    if kind == "lrua":
        return LRUAMemory(controller_size, slots, width, heads, gamma, write, key_strength)
    if kind == "ntm":
        return NTMMemory(controller_size, slots, width, heads, shift_range=shift_range)
    return None


def _map_state(state: Any, fn: Any) -> Any:
    """Apply ``fn`` to every tensor of a (nested) state."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if state is None:
        return None
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(_map_state(s, fn) for s in state))
    return tuple(_map_state(s, fn) for s in state)


def _encode(settings: dict[str, Any]) -> torch.Tensor:
    data = json.dumps(settings, sort_keys=True).encode("ascii")
    if len(data) > ARCHITECTURE_BYTES:
        raise ValueError("architecture description too long")
    return torch.tensor(list(data) + [0] * (ARCHITECTURE_BYTES - len(data)), dtype=torch.uint8)


def _decode(buffer: torch.Tensor) -> dict[str, Any] | None:
    try:
        return json.loads(bytes(buffer[buffer != 0].tolist()).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None


def _flag(name: str, value: Any) -> str:
    """The command-line flag that sets option ``name`` to ``value``."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value}"


def _describe(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _check_architecture(module: MANN, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: see :meth:`MANN.check_state_dict`."""
    module.check_state_dict(state_dict, prefix)
