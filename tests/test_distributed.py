"""Training and evaluating on two processes (gloo, on the CPU), spawned here on a free loopback port:
the same arithmetic as one process with two episodes per step, only rank 0 writes, sharded evaluation
gives one process's figures, a SIGKILLed rank is named and its run resumes exactly, two "nodes" train."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from gallery_support import write_shapes
from synthetic import make_dataset

from fewshot.cli.main import main
from fewshot.distributed import start_group
from fewshot.evaluation.evaluator import Evaluator
from fewshot.evaluation.sharded import ShardedEvaluator
from fewshot.files import atomic_write_json
from fewshot.runs import CHECKPOINT_FILE, METRICS_FILE, MODEL_FILE, build_method, load_weights
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.config import RunConfig
from fewshot.training.trainer import Trainer

DATA = make_dataset(n_classes=16, per_class=8, size=16, seed=2)
TRAIN, VAL = DATA.subset(range(10)), DATA.subset(range(10, 16))
CONFIG = dict(image_size=16, steps=4, val_every=2, val_episodes=10, val_way=3, val_query=3, checkpoint_every=2,
              threads=1, options=dict(n_way=5, k_shot=1, n_query=2))
EVALUATION = dict(n_way=3, k_shot=1, n_query=3, n_episodes=41, seed=1)  # 41: the ranks get 21 and 20 episodes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_and_evaluate(rank: int, world_size: int, port: int, out: Path) -> None:
    """One process of a run: train into ``out/rank{rank}``, then evaluate rank 0's model sharded."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    group = start_group()
    try:
        config = RunConfig(**CONFIG)
        Trainer(build_method(config), config, TRAIN, VAL, out / f"rank{rank}", progress=False, group=group).fit()
        model = build_method(config)
        load_weights(model, out / "rank0" / MODEL_FILE, config)
        result = ShardedEvaluator(model, VAL, group, progress=False).evaluate(**EVALUATION)
        if group.is_main:
            atomic_write_json(out / "evaluation.json", result.to_dict())
    finally:
        group.close()


def records(run: Path, event: str) -> list[dict]:
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows if r["event"] == event]


def test_two_processes_train_as_one_with_two_episodes_per_step(tmp_path, one_thread):
    """Exact (to float rounding): the parameters, the optimiser's steps and the logged losses. Not exact: batch
    norm running statistics, which are per process (rank 0's are saved: 4 updates here, against 8 in one process
    that sees both episodes of a step), and so the validation scores that use them."""
    for rank in range(2):
        (tmp_path / f"rank{rank}").mkdir()
    context = multiprocessing.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=train_and_evaluate, args=(rank, 2, port, tmp_path)) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]

    one = tmp_path / "one"
    one.mkdir()
    config = RunConfig(**CONFIG, episodes_per_step=2)
    method = build_method(config)
    Trainer(method, config, TRAIN, VAL, one, progress=False).fit()
    state = load_checkpoint(tmp_path / "rank0" / CHECKPOINT_FILE)
    for name, parameter in method.named_parameters():
        assert torch.allclose(parameter, state["model"][name], rtol=0, atol=1e-6), name
    tracked = [n for n in state["model"] if n.endswith("num_batches_tracked")]
    assert tracked and all(int(state["model"][n]) == 4 and int(method.state_dict()[n]) == 8 for n in tracked)
    assert [r["loss"] for r in records(tmp_path / "rank0", "train")] == pytest.approx(
        [r["loss"] for r in records(one, "train")], rel=1e-6)
    assert (state["world_size"], state["episodes_per_step"], tuple(state["rng_ranks"].shape[:1])) == (2, 1, (2,))
    assert not any((tmp_path / "rank1").iterdir())  # only rank 0 writes the run directory

    model = build_method(RunConfig(**CONFIG))
    load_weights(model, tmp_path / "rank0" / MODEL_FILE, RunConfig(**CONFIG))
    alone = Evaluator(model, VAL, progress=False).evaluate(**EVALUATION)
    sharded = json.loads((tmp_path / "evaluation.json").read_text())
    assert (sharded["mean"], sharded["ci95"], sharded["std"]) == (alone.mean, alone.ci95, alone.std)


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A private decode cache, which the torchrun processes inherit."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes(tmp_path_factory.mktemp("shapes"))


def train_argv(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "protonet", "--dataset", "folder", "--data-dir", str(folder), "--split", "0-5/6-7/8-11",
            "--image-size", "16", "--steps", "12", "--n-way", "3", "--k-shot", "1", "--n-query", "2",
            "--val-every", "2", "--val-way", "2", "--val-query", "2", "--val-episodes", "5",
            "--checkpoint-every", "4", "--device", "cpu", "--threads", "1", "--no-progress", "--out", str(out), *extra]


def torchrun(launch: list[str], port: int, argv: list[str]) -> subprocess.Popen:
    """``torchrun LAUNCH -m fewshot ARGV`` on 127.0.0.1:PORT, in its own session (so it can be killed whole)."""
    command = [sys.executable, "-m", "torch.distributed.run", *launch, "--master-addr", "127.0.0.1",
               "--master-port", str(port), "-m", "fewshot", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process.returncode, out + err


@pytest.fixture(scope="module")
def two_nodes(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run on two "nodes": two torchrun launches on localhost, one process each."""
    run = tmp_path_factory.mktemp("nodes") / "run"
    port = free_port()
    launches = [torchrun(["--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1"], port,
                         train_argv(folder, run)) for node in range(2)]
    for launch in launches:
        code, output = finish(launch)
        assert code == 0, output
    return run


def test_two_nodes_train_and_save(two_nodes):
    assert {"config.yaml", "model.safetensors", "checkpoint.pt", "metrics.jsonl"} <= {p.name for p in two_nodes.iterdir()}
    state = load_checkpoint(two_nodes / CHECKPOINT_FILE)
    assert (state["step"], state["world_size"]) == (12, 2)
    assert [r["step"] for r in records(two_nodes, "validation")] == [2, 4, 6, 8, 10, 12]


def worker_pid(launcher: int, rank: int) -> int:
    """The process of ``rank`` among the children of a torchrun (read from /proc: Linux)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no rank {rank} among the children {children} of torchrun {launcher}")


def test_a_killed_rank_is_named_and_the_run_resumes_exactly(folder, two_nodes, tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    launch = ["--nnodes", "1", "--nproc-per-node", "2"]
    process = torchrun(launch, free_port(), train_argv(folder, run))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        lines = (run / METRICS_FILE).read_text().splitlines() if (run / METRICS_FILE).exists() else []
        if any('"validation", "step": 6' in line for line in lines):  # after the checkpoint of step 4
            os.kill(worker_pid(process.pid, 1), signal.SIGKILL)
            break
        time.sleep(0.002)
    code, output = finish(process)
    assert code != 0 and "rank 1 stopped without an error" in output, output
    killed_at = load_checkpoint(run / CHECKPOINT_FILE)["step"]  # the last checkpoint is intact
    assert killed_at in (4, 8)

    assert main(train_argv(folder, run, "--resume")) == 2  # one process: refused, naming both counts
    error = capsys.readouterr().err
    assert "trained by 2 process(es) of 1 episode(s) per step, this run has 1 process(es) of 1" in error, error

    code, output = finish(torchrun(launch, free_port(), train_argv(folder, run, "--resume")))
    assert code == 0, output
    resumed, reference = (load_checkpoint(r / CHECKPOINT_FILE) for r in (run, two_nodes))
    for name, value in reference["model"].items():
        assert torch.allclose(value.float(), resumed["model"][name].float(), rtol=0, atol=1e-6), name
    assert records(run, "validation") == records(two_nodes, "validation")
    train, uninterrupted = records(run, "train"), records(two_nodes, "train")
    assert [(r["step"], r["lr"]) for r in train] == [(r["step"], r["lr"]) for r in uninterrupted]
    assert train[-1]["loss"] == pytest.approx(uninterrupted[-1]["loss"])  # steps 11-12 (earlier windows span the kill)
    assert len(records(run, "end")) == 1


EVERY_METHOD = {
    "protonet": dict(n_way=5, k_shot=1, n_query=2),
    "metric": dict(loss="triplet_margin", miner="batch_hard", classes_per_batch=4, images_per_class=2),
    "triplet": dict(batch_size=8),
    "siamese": dict(variant="koch-l1", batch_size=8),
    "mann": dict(n_classes=3, instances=2, batch_size=2, controller_size=16, slots=8, width=8),
    "matching": dict(fce=True, n_way=5, k_shot=1, n_query=2),
    "relation": dict(n_way=5, k_shot=1, n_query=2),
    "mahalanobis": dict(n_way=4, k_shot=2, n_query=2),
    "transfer": dict(n_classes=10, classes_per_batch=4, images_per_class=2),
    "maml": dict(n_way=5, k_shot=1, n_query=1),
    "meta_lstm": dict(n_way=5, k_shot=1, n_query=1, inner_steps=2),
}
WIDE = make_dataset(n_classes=10, per_class=6, size=24, seed=3)


def train_every_method(rank: int, world_size: int, port: int, out: Path) -> None:
    """Two steps of every method under DDP; each rank writes the sum of its parameters."""
    from fewshot.methods import METHODS

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    group = start_group()
    try:
        sums = {}
        for name, options in EVERY_METHOD.items():
            config = RunConfig(method=name, encoder=METHODS.get(name).default_encoder, image_size=24, steps=2,
                               val_every=0, checkpoint_every=2, threads=1, options=options)
            method = build_method(config, WIDE.image_shape)
            before = sum(p.double().sum().item() for p in method.parameters())
            (out / name).mkdir(parents=True, exist_ok=True)
            Trainer(method, config, WIDE, None, out / name, progress=False, group=group).fit()
            sums[name] = (before, [p.double().sum().item() for p in method.parameters()])
        atomic_write_json(out / f"sums{rank}.json", sums)
    finally:
        group.close()


def test_every_method_trains_under_two_processes_with_synchronised_gradients(tmp_path):
    port = free_port()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=train_every_method, args=(r, 2, port, tmp_path)) for r in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(180)
    assert [w.exitcode for w in workers] == [0, 0]
    ranks = [json.loads((tmp_path / f"sums{r}.json").read_text()) for r in range(2)]
    for name in EVERY_METHOD:
        (before, zero), (_, one) = ranks[0][name], ranks[1][name]
        assert zero == one, f"{name}: the two processes hold different weights after two steps"
        assert sum(zero) != before, f"{name}: training changed nothing"
        assert (tmp_path / name / MODEL_FILE).exists()


def test_the_loss_is_wrapped_in_ddp_only_when_there_are_several_processes(tmp_path):
    """In this process: a one-process gloo group stands in for the default group DDP reduces over."""
    from torch import distributed as dist

    from fewshot.distributed import Group
    from fewshot.errors import FewShotError
    from fewshot.training.distributed import TrainingLoss, wrap_for_training

    config = RunConfig(**CONFIG)
    method = build_method(config)
    batch = Trainer(method, config, TRAIN, None, tmp_path, progress=False).batches(0)
    alone = wrap_for_training(method, Group(), sync_bn=True)  # sync_bn means nothing for one process
    assert type(alone) is TrainingLoss and alone.method is method
    expected, metrics = method.training_loss(batch)
    loss, same = alone(batch)
    assert torch.equal(loss, expected) and same.keys() == metrics.keys()
    with pytest.raises(FewShotError, match=(r"^--sync-bn needs CUDA GPUs \(torch's SyncBatchNorm runs on CUDA "
                                            r"only\): use --device cuda, or leave --sync-bn out and batch norm "
                                            r"statistics stay per process$")):
        wrap_for_training(method, Group(rank=0, world_size=2), sync_bn=True)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        wrapped = wrap_for_training(method, Group(rank=0, world_size=2), sync_bn=False)
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
        assert type(wrapped.module) is TrainingLoss and wrapped.module.method is method
        loss, _ = wrapped(batch)
        loss.backward()
        assert all(p.grad is not None for p in method.parameters() if p.requires_grad)
        assert torch.equal(loss.detach(), expected.detach())
    finally:
        dist.destroy_process_group()
