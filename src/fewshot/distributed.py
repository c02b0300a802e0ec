"""Several processes, GPUs or machines under ``torch.distributed``, as ``torchrun`` launches them.

``torchrun`` starts one process per device and tells each its ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address (``MASTER_ADDR:MASTER_PORT``); :func:`start_group`
reads them and joins the process group: gloo on CPUs, NCCL on CUDA GPUs. Without them the
run is one process, and every collective of :class:`Group` is the identity. Training
(:mod:`fewshot.training.distributed`) and evaluation (:mod:`fewshot.evaluation.sharded`) share it.

A process that dies must not leave the others waiting: every process beats a counter in the
rendezvous store (:class:`Heartbeat`), and one whose collective fails looks there which rank
stopped beating or reported an error, and raises :class:`RankFailure` naming it.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

from fewshot.device import resolve_device
from fewshot.errors import FewShotError

BEAT_SECONDS = 0.5
PEER = "peer"  # what a rank posts when it stops because another one failed
OWN = "own: "  # the prefix of what a rank posts when it fails on its own

class RankFailure(FewShotError):
    """Another process of the run stopped (killed, crashed, or failed with an error); the message names it.

    Example:
        >>> try:
        ...     group.barrier()
        ... except RankFailure as e:
        ...     print(e)  # names the process that stopped
    """

class Heartbeat:
    """A thread that increments ``beat/RANK`` in the rendezvous store every ``BEAT_SECONDS``.

    Example:
        >>> beat = Heartbeat(store, rank=0)
        >>> beat.stop()
    """

    def __init__(self, store: dist.Store, rank: int) -> None:
        self.store, self.key = store, f"beat/{rank}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fewshot-heartbeat-{rank}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(BEAT_SECONDS):
            try:
                self.store.add(self.key, 1)
            except RuntimeError:  # the store is gone: the failure diagnosis reports it
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Group:
    """The processes of one run: ``rank`` of ``world_size``; rank 0 is the one that writes files.

    With ``world_size == 1`` (no ``torchrun``) every collective returns its input.

    Example:
        >>> group = start_group()
        >>> device = group.use_device("auto")
        >>> if group.is_main:
        ...     print("only rank 0 prints")
        >>> group.close()
    """

    def __init__(self, rank: int = 0, world_size: int = 1, store: dist.Store | None = None,
                 address: str = "") -> None:
        self.rank, self.world_size = rank, world_size
        self.device = torch.device("cpu")
        self.store, self.address = store, address
        self.heartbeat = Heartbeat(store, rank) if store is not None else None

    def use_device(self, name: str = "auto") -> torch.device:
        """This process's device for ``--device name``: under torchrun, CUDA means the GPU ``LOCAL_RANK``."""
        device = resolve_device(name)
        if device.type == "cuda" and self.distributed:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            if local_rank >= torch.cuda.device_count():
                raise FewShotError(f"process {self.rank} wants GPU {local_rank} but this machine has "
                                   f"{torch.cuda.device_count()}; use --nproc-per-node at most the number of GPUs")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        self.device = device
        return device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over the processes of a float tensor (the same shape on every process)."""
        if not self.distributed:
            return values
        values = values.to(self.device, torch.float64)
        dist.all_reduce(values)
        return values / self.world_size

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Whether each flag is true on any process: how all of them agree to stop at the same step."""
        if not self.distributed:
            return flags
        values = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(values)
        return tuple(bool(v > 0) for v in values.tolist())

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's ``tensor`` (the same shape everywhere), stacked in rank order, on the CPU."""
        if not self.distributed:
            return tensor.unsqueeze(0)
        parts = [torch.empty_like(tensor, device=self.device) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.to(self.device))
        return torch.stack([p.cpu() for p in parts])

    def from_main(self, read: Callable[[], bytes]) -> bytes:
        """``read()`` on rank 0, its bytes sent to every process.

        A :class:`~fewshot.errors.FewShotError` of rank 0 is raised on every process with the same
        message, so a user's mistake stops all of them alike (and no file is read by rank 0 only to
        leave the others waiting).
        """
        if not self.distributed:
            return read()
        failed, data = False, b""
        if self.is_main:
            try:
                data = read()
            except FewShotError as e:
                failed, data = True, str(e).encode()
        header = torch.tensor([int(failed), len(data)], dtype=torch.int64)
        dist.broadcast(header, 0)
        size = int(header[1])
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.is_main and size else \
            torch.empty(size, dtype=torch.uint8)
        if size:
            dist.broadcast(buffer, 0)
        received = bytes(buffer.numpy())
        if int(header[0]):
            raise FewShotError(received.decode())
        return received

    @contextlib.contextmanager
    def failures(self) -> Iterator[None]:
        """Turn the error a process gets when another one dies into a :class:`RankFailure` naming it.

        A user's mistake (:class:`~fewshot.errors.FewShotError`) is posted for the others to name and
        raised at once; any other exception waits a few heartbeats to learn whether another rank
        stopped first (then it names that rank) or whether this one is the cause (then it is re-raised).
        """
        try:
            yield
        except (RankFailure, KeyboardInterrupt):
            raise
        except FewShotError as e:
            self._post(OWN + f"{type(e).__name__}: {e}")
            raise
        except Exception as e:
            if not self.distributed:
                raise
            failure = self._diagnose(e)
            if failure is None:
                raise
            raise failure from e

    def _post(self, message: str) -> None:
        if self.store is not None:
            with contextlib.suppress(RuntimeError):
                self.store.set(f"exit/{self.rank}", message)

    def _diagnose(self, error: Exception) -> RankFailure | None:
        others = [r for r in range(self.world_size) if r != self.rank]
        try:
            before = {r: self.store.add(f"beat/{r}", 0) for r in others}
            time.sleep(3 * BEAT_SECONDS)
            beats = {r: self.store.add(f"beat/{r}", 0) for r in others}
            posts = {r: self.store.get(f"exit/{r}").decode() for r in others if self.store.check([f"exit/{r}"])}
        except RuntimeError:
            return RankFailure(f"rank {self.rank} lost the rendezvous store at {self.address}: rank 0 (or, "
                               "under torchrun, its agent on the first node), which holds it, has stopped; "
                               "the last checkpoint is intact: continue with --resume")
        causes = [f"rank {r} failed ({posts[r][len(OWN):]})" for r in others
                  if posts.get(r, "").startswith(OWN)]
        causes += [f"rank {r} stopped without an error (killed by a signal or out of memory, or its machine "
                   "went down)" for r in others if r not in posts and beats[r] == before[r]]
        if not causes:
            self._post(OWN + f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}")
            return None
        self._post(PEER)
        return RankFailure(f"{'; '.join(causes)}; rank {self.rank} stops too. The last checkpoint is intact: "
                           "fix the cause and continue with --resume on the same number of processes")

    def close(self) -> None:
        """Stop the heartbeat and leave the process group."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if dist.is_initialized():
            dist.destroy_process_group()


def start_group(timeout_minutes: float = 30) -> Group:
    """The run's process group, from torchrun's environment; without ``WORLD_SIZE`` (or with 1), one process.

    Tensors on the CPU go over gloo and, where there are GPUs, CUDA tensors over NCCL; a collective
    that waits longer than ``timeout_minutes`` (rank 0 validating, a hung peer) fails.

    Example:
        >>> group = start_group()  # without torchrun: one process
        >>> group.rank, group.world_size
        (0, 1)
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Group()
    rank = int(os.environ["RANK"])
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=timeout_minutes))
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    store = dist.PrefixStore(f"fewshot/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", dist.TCPStore(
        host, port, is_master=False, timeout=timedelta(seconds=30), wait_for_workers=False))
    return Group(rank, world_size, store=store, address=f"{host}:{port}")
