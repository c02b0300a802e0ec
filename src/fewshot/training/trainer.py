"""One trainer for every method: episodes or batches in, a trained model out.

It runs Adam or RMSprop with step or cosine learning-rate decay (on a compiled loss with
``compile: true``), shows a progress bar with the running loss and accuracy, appends every
training metric of the method to a JSON-lines log, validates periodically
and keeps the best model, and writes atomic checkpoints from which ``--resume``
continues a killed run exactly: batch ``i`` depends only on ``(seed, i)``, and the
weights, optimizer, schedule and RNG state are restored. With ``ema_decay`` it also keeps an
exponential moving average of the weights (Polyak and Juditsky 1992), which is what it
validates and saves.

Under ``torchrun`` the same trainer runs in every process (:mod:`fewshot.training.distributed`):
the method is wrapped in DistributedDataParallel, process ``r`` of ``P`` draws its own batches,
and rank 0 alone validates and writes the run directory. With ``episodes_per_step`` N each
process averages the loss of N batches before each optimiser step; batch ``j`` of process ``r``
at step ``s`` is batch ``(s P + r) N + j`` of the method's sampler, so P processes of N episodes
do the arithmetic of one process of P x N.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from fewshot.data.dataset import ImageDataset
from fewshot.device import tune_cpu_allocator
from fewshot.distributed import Group
from fewshot.errors import FewShotError
from fewshot.evaluation.evaluator import evaluate
from fewshot.evaluation.instances import evaluate_instances
from fewshot.files import atomic_write_text
from fewshot.methods.base import Method
from fewshot.nets.support_norm import batch_norms
from fewshot.training.checkpoint import parse_checkpoint, read_checkpoint, save_checkpoint, save_weights
from fewshot.training.config import RunConfig
from fewshot.training.distributed import wrap_for_training
from fewshot.training.run_files import CHECKPOINT_FILE, METRICS_FILE, MODEL_FILE
from fewshot.training.trackers import Tracker, check_tracker, open_tracker

LOG_EVERY = 10


def make_optimizer(method: Method, config: RunConfig) -> torch.optim.Optimizer:
    """The optimiser the config names (Adam or RMSprop), over the method's trainable parameters.

    Example:
        >>> optimizer = make_optimizer(method, resolve_config("protonet"))
    """
    params = [p for p in method.parameters() if p.requires_grad]
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule the config names: ``step`` multiplies it by ``lr_gamma`` every ``lr_step`` steps;
    ``cosine`` anneals it from ``lr`` to 0 at step ``steps`` (Loshchilov and Hutter 2017, without restarts; MAML++).

    Example:
        >>> scheduler = make_scheduler(optimizer, RunConfig(lr_schedule="cosine", steps=1000))
    """
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    return torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma)


def autocast(config: RunConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast when the config asks for it, else nothing.

    Example:
        >>> with autocast(config, torch.device("cpu")):
        ...     loss, metrics = method.training_loss(batch)
    """
    if config.bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def validation_accuracy(method: Method, dataset: ImageDataset, config: RunConfig) -> float:
    """The score the trainer keeps the best model by: mean accuracy on ``config.val_episodes`` validation
    episodes, N-way K-shot as the config says, or for a method that
    :attr:`~fewshot.methods.base.Method.evaluates_by_instance` over all steps of its own sequence episodes.

    Example:
        >>> validation_accuracy(method, load_data(config, ("val",))["val"], config)  # e.g. 0.97
    """
    if method.evaluates_by_instance:
        return evaluate_instances(method, dataset, n_episodes=config.val_episodes, seed=config.seed,
                                  progress=False).overall
    return evaluate(method, dataset, config.val_way, config.val_shot, config.val_query, config.val_episodes,
                    config.seed, progress=False, transductive=config.val_transductive).mean


class Trainer:
    """Trains ``method`` on ``train_set``, validating on ``val_set`` (may be None), into ``run_dir``.

    Example:
        >>> trainer = Trainer(method, config, splits["train"], splits["val"], Path("runs/proto"))
        >>> summary = trainer.fit()
    """

    def __init__(
        self,
        method: Method,
        config: RunConfig,
        train_set: ImageDataset,
        val_set: ImageDataset | None,
        run_dir: Path,
        device: torch.device | str = "cpu",
        progress: bool = True,
        group: Group | None = None,
    ) -> None:
        self.group = group or Group()
        self.device = torch.device(device)
        tune_cpu_allocator(self.device)
        self.method = method.to(self.device)
        if config.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.config = config
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.progress = progress and self.group.is_main
        if config.tracker is not None:
            check_tracker(config.tracker)
        if val_set is not None and config.val_every and not method.evaluates_by_instance:
            val_set.check_episode(config.val_way, config.val_shot, config.val_query)
        if config.val_transductive and (method.evaluates_by_instance or not batch_norms(method)):
            raise FewShotError(f"val_transductive changes how batch norm normalises validation episodes, and "
                               f"{config.method} has no batch norm or is validated by instance: drop "
                               f"--val-transductive")
        self.model = wrap_for_training(self.method, self.group, config.sync_bn)
        self.optimizer = make_optimizer(method, config)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.batches = method.training_batches(
            train_set, config.steps * self.group.world_size * config.episodes_per_step, config.seed)
        self.average = WeightAverage(self.method, config.ema_decay) if config.ema_decay else None
        self.training_loss = self.model
        if config.compile:
            method.check_compile()
            self.training_loss = torch.compile(self.model, dynamic=False)
        self.step = 0
        self.best = -math.inf
        self.elapsed = 0.0
        self.interrupted = False
        self.stop_requested = False
        self.tracker: Tracker | None = None

    def request_stop(self) -> None:
        """Stop at the next step boundary, after the current step's validation and checkpoint.

        Safe to call from a signal handler (``fewshot train`` does, on SIGTERM and Ctrl-C): a stop in
        the middle of a step or a validation would checkpoint a state no uninterrupted run passes through.
        """
        self.stop_requested = True

    def fit(self, resume: bool = False, allow_different_episodes: bool = False) -> dict[str, Any]:
        """Train until ``config.steps`` or ``config.time_limit``; returns a summary dict.

        ``resume`` continues from the checkpoint, which must be of as many processes and episodes per
        step as now unless ``allow_different_episodes``. Under several processes, the failure of
        another one raises :class:`~fewshot.distributed.RankFailure` naming it.
        """
        with self.group.failures():
            if resume:
                self._restore(allow_different_episodes)
            if self.config.tracker is not None and self.group.is_main:
                self.tracker = open_tracker(self.config.tracker, self.run_dir, self.config)
            try:
                return self._fit()
            finally:
                if self.tracker is not None:
                    self.tracker.close()

    def _fit(self) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter() - self.elapsed
        window: list[dict[str, float]] = []
        running: dict[str, float] = {}
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {cfg.method}", unit="step",
                   disable=not self.progress, dynamic_ncols=True)
        self.method.train()
        try:
            while self.step < cfg.steps:
                time_up = cfg.time_limit is not None and time.perf_counter() - started >= cfg.time_limit * 60
                stop, time_up = self.group.any(self.stop_requested, time_up)
                if stop:
                    self.interrupted = True
                    break
                if time_up:
                    break
                metrics = self._train_step()
                self.step += 1
                self.elapsed = time.perf_counter() - started
                window.append(metrics)
                for key in ("loss", "accuracy"):
                    value = metrics[key]
                    running[key] = value if key not in running else 0.95 * running[key] + 0.05 * value
                bar.update(1)
                bar.set_postfix(loss=f"{running['loss']:.3f}", acc=f"{running['accuracy']:.3f}")
                if self.step % LOG_EVERY == 0 or self.step == cfg.steps:
                    self._log_window(window)
                    window = []
                if cfg.val_every and self.step % cfg.val_every == 0:
                    self._validate()
                if self.step % cfg.checkpoint_every == 0:
                    self._checkpoint()
        except KeyboardInterrupt:
            if self.group.distributed:  # the processes stopped at different points: keep the last checkpoint
                raise
            self.interrupted = True
        finally:
            bar.close()
        self._log_window(window)
        self.elapsed = time.perf_counter() - started
        if not self.interrupted and (self.val_set is not None and cfg.val_every):
            if not self._last_validated_at_current_step():
                self._validate()
        if (self.val_set is None or not cfg.val_every) and self.group.is_main:
            save_weights(self.trained_method, self.run_dir / MODEL_FILE)
        self._checkpoint()
        summary = {"step": self.step, "steps": cfg.steps, "elapsed_s": round(self.elapsed, 1),
                   "best_val_accuracy": None if self.best == -math.inf else self.best,
                   "interrupted": self.interrupted}
        self._append({"event": "end", **summary})
        return summary

    def _train_step(self) -> dict[str, float]:
        """One optimiser step on ``episodes_per_step`` batches of each process, the loss their mean.

        DDP averages the gradients over the processes in the backward pass of the last batch (the
        others run under ``no_sync``); the logged metrics are the means over all batches of all processes.
        """
        n, group = self.config.episodes_per_step, self.group
        first = (self.step * group.world_size + group.rank) * n
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        for j in range(n):
            batch = self.batches(first + j).to(self.device)
            if self.config.channels_last:
                batch = _channels_last(batch)
            accumulate = group.distributed and j < n - 1
            with self.model.no_sync() if accumulate else contextlib.nullcontext():
                with autocast(self.config, self.device):
                    loss, metrics = self.training_loss(batch)
                (loss / n).backward()
            for key, value in {"loss": loss, **metrics}.items():
                sums[key] = sums.get(key, 0) + value.detach().float()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.method.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.average is not None:
            self.average.update(self.step)
        means = dict(zip(sums, group.mean(torch.stack(list(sums.values())) / n).tolist()))
        if not math.isfinite(means["loss"]):
            raise FewShotError(f"the loss became {means['loss']} at step {self.step}, and training stopped (the last "
                               "checkpoint is intact); lower the learning rate (--lr) or set --grad-clip and train "
                               "again with --overwrite: a resumed run would repeat the same steps")
        return {"loss": means["loss"], "accuracy": math.nan, **means}

    @property
    def trained_method(self) -> Method:
        """The model training produced: the weight average with ``ema_decay``, else the method itself."""
        return self.method if self.average is None else self.average.method

    def _validate(self) -> None:
        cfg = self.config
        if self.val_set is None or not self.group.is_main:
            return
        self.trained_method.calibrate_on_validation(self.val_set, cfg.seed)
        accuracy = validation_accuracy(self.trained_method, self.val_set, cfg)
        self.method.train()
        improved = accuracy > self.best
        if improved:
            self.best = accuracy
            save_weights(self.trained_method, self.run_dir / MODEL_FILE)
        self._append({"event": "validation", "step": self.step, "val_accuracy": accuracy,
                      "best": self.best, "elapsed_s": round(self.elapsed, 1)})
        if self.progress:
            tqdm.write(f"step {self.step}: validation accuracy {accuracy:.4f}{' (best)' if improved else ''}")

    def _last_validated_at_current_step(self) -> bool:
        return bool(self.config.val_every) and self.step % self.config.val_every == 0 and self.step > 0

    def _log_window(self, window: list[dict[str, float]]) -> None:
        """One log record: every training metric averaged over the steps since the last one."""
        if not window:
            return
        means = {key: sum(w[key] for w in window) / len(window) for key in window[0]}
        self._append({"event": "train", "step": self.step, **means,
                      "lr": self.optimizer.param_groups[0]["lr"], "elapsed_s": round(self.elapsed, 1)})

    def _append(self, record: dict[str, Any]) -> None:
        if not self.group.is_main:
            return
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tracker is not None:
            self.tracker.log(record)

    def _checkpoint(self) -> None:
        """Rank 0 writes the state, with every process's RNG state and the counts a resume must match."""
        rngs = self.group.gather(torch.get_rng_state())
        if not self.group.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT_FILE, {
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best": self.best,
            "elapsed": self.elapsed,
            "rng": rngs[0],
            "world_size": self.group.world_size,
            "episodes_per_step": self.config.episodes_per_step,
            **({"rng_ranks": rngs} if self.group.distributed else {}),
            **({} if self.average is None else {"average": self.average.method.state_dict()}),
        })

    def _restore(self, allow_different_episodes: bool) -> None:
        path = self.run_dir / CHECKPOINT_FILE
        state = parse_checkpoint(self.group.from_main(lambda: read_checkpoint(path)), path)
        saved = int(state.get("world_size", 1)), int(state.get("episodes_per_step", 1))
        now = self.group.world_size, self.config.episodes_per_step
        if saved != now and not allow_different_episodes:
            raise FewShotError(
                f"{self.run_dir} was trained by {saved[0]} process(es) of {saved[1]} episode(s) per step, this run "
                f"has {now[0]} process(es) of {now[1]}: resume with {saved[0]} process(es) (torchrun --nnodes x "
                f"--nproc-per-node) and --episodes-per-step {saved[1]}, or pass --allow-different-episodes to go "
                "on with other episodes (the run will then differ from an uninterrupted one)")
        annealed_over = state["scheduler"].get("T_max")
        if self.config.lr_schedule == "cosine" and annealed_over != self.config.steps:
            raise FewShotError(f"{self.run_dir} anneals its learning rate over {annealed_over} steps (lr_schedule "
                               f"cosine): resume it with --steps {annealed_over}, or start a new run for "
                               f"{self.config.steps} steps")
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.average is not None:
            self.average.method.load_state_dict(state["average"])
        self.step, self.best, self.elapsed = int(state["step"]), float(state["best"]), float(state["elapsed"])
        same_ranks = "rng_ranks" in state and saved[0] == now[0]
        rng = state["rng_ranks"][self.group.rank] if same_ranks else state["rng"]
        torch.set_rng_state(rng.clone())  # a row of the stacked states: set_rng_state needs its own storage
        if self.group.is_main:
            self._truncate_log()

    def _truncate_log(self) -> None:
        """Drop log records written after the checkpoint, which the resumed run will write again."""
        path = self.run_dir / METRICS_FILE
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") != "end" and record.get("step", 0) <= self.step:
                kept.append(line + "\n")
        atomic_write_text(path, "".join(kept))


class WeightAverage:
    """An exponential moving average of a method's weights and buffers, updated after each step.

    The decay warms up as ``min(decay, (1 + step) / (10 + step))``, so early steps are not
    dominated by the initial weights. Buffers that are not floating point are copied.

    Example:
        >>> average = WeightAverage(method, decay=0.9995)
        >>> average.update(step)  # after each optimizer step; average.method is the averaged model
    """

    def __init__(self, method: Method, decay: float) -> None:
        self.method = copy.deepcopy(method).eval().requires_grad_(False)
        self.decay = decay
        self._pairs = list(zip(_tensors(self.method), _tensors(method)))

    @torch.no_grad()
    def update(self, step: int) -> None:
        weight = 1 - min(self.decay, (1 + step) / (10 + step))
        for averaged, current in self._pairs:
            if averaged.is_floating_point():
                averaged.lerp_(current, weight)
            else:
                averaged.copy_(current)


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """A module's parameters and buffers, each shared tensor once (so it is averaged once)."""
    return [t.detach() for t in (*module.parameters(), *module.buffers())]


def _channels_last(batch: Any) -> Any:
    for name, value in vars(batch).items():
        if isinstance(value, torch.Tensor) and value.dim() == 4:
            setattr(batch, name, value.contiguous(memory_format=torch.channels_last))
    return batch
