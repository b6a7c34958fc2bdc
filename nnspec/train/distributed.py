"""Data-parallel training on PyTorch's own engine: torchrun's elastic launcher + DistributedDataParallel.

Everything the training loop needs to run as one of several workers, as small functions:

- `worker_from_env()`: are we a worker started by torchrun (RANK / WORLD_SIZE / LOCAL_RANK)?
- `start(worker, device)` / `stop()`: the process group (gloo on CPU, nccl on CUDA) with a timeout,
  so a dead or stuck peer ends the run with an error instead of a hang.
- `shard(global_batch)`: this rank's contiguous chunk of a GLOBAL batch and the loss weight that
  makes DDP's gradient average equal the single-process mean over the whole global batch.
- `ddp_forward(model, device)`: the training forward through DistributedDataParallel.
- `all_sum`, `gather_rows`, `broadcast`, `is_main`: metric aggregation and rank-0-only writing.
- `launch(...)`: `nnspec train --nproc-per-node N` re-runs nnspec under torch.distributed.run.

Global batch semantics (`--batch-size` is the GLOBAL batch): every rank computes the same seeded
permutation of the training set each epoch and cuts it into the same global batches a single process
would use; rank r takes the r-th of `world` contiguous chunks of each global batch. With equal chunks
DDP's average of the per-rank mean gradients IS the mean over the global batch. When a global batch
does not divide evenly (the last one of an epoch, usually) each rank's loss is multiplied by
`world * len(chunk) / len(batch)`, which makes the average exact again; a rank whose chunk is empty
(a global batch smaller than the world) runs one sample with weight 0 so the all-reduce still meets.
This is exact for losses that are means over samples (all but class-weighted cross-entropy);
BatchNorm normalises with each rank's own chunk (as in plain DDP; running statistics follow rank 0).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence

from ..diagnostics import UserError

# A peer that stops answering for this long ends the run (seconds). Long enough for a slow epoch's
# validation on rank 0, short enough that a dead node is noticed. NNSPEC_DIST_TIMEOUT overrides it.
DEFAULT_TIMEOUT_S = 300.0


def timeout_from_env(env=None) -> float:
    env = os.environ if env is None else env
    text = env.get("NNSPEC_DIST_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"NNSPEC_DIST_TIMEOUT must be a number of seconds above 0; received '{text}'")
    return value


@dataclass(frozen=True)
class Worker:
    """Who this process is in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def worker_from_env(env=None) -> Worker | None:
    """The Worker torchrun describes in the environment, or None for a plain single-process run."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise UserError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers; received RANK={env.get('RANK')!r} "
                        f"WORLD_SIZE={env.get('WORLD_SIZE')!r} LOCAL_RANK={env.get('LOCAL_RANK')!r}",
                        help="start workers with `torchrun` or `nnspec train --nproc-per-node N`") from None
    if not 0 <= rank < world:
        raise UserError(f"RANK must be in [0, WORLD_SIZE); received RANK={rank}, WORLD_SIZE={world}")
    return Worker(rank, world, local)


# ---- the process group -------------------------------------------------------------------------

def device_for(worker: Worker | None, requested: str = "auto"):
    """The torch device of this worker: its local GPU under CUDA, else the CPU."""
    import torch

    if requested not in ("auto", "cpu") and not requested.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda; received '{requested}'")
    use_cuda = requested != "cpu" and torch.cuda.is_available()
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested} was asked for but no CUDA GPU is available",
                        help="use --device cpu (or auto)")
    if not use_cuda:
        return torch.device("cpu")
    if worker is None:
        return torch.device(requested if requested.startswith("cuda") else "cuda")
    count = torch.cuda.device_count()
    if worker.local_rank >= count:
        raise UserError(f"worker with LOCAL_RANK={worker.local_rank} has no GPU of its own "
                        f"(this node has {count})",
                        help=f"use --nproc-per-node {count} or fewer on this node, or --device cpu")
    return torch.device("cuda", worker.local_rank)


def backend_for(device) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def start(worker: Worker, device, timeout_s: float | None = None) -> None:
    """Join the process group torchrun set up (MASTER_ADDR/PORT in the environment)."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    timeout_s = timeout_from_env() if timeout_s is None else timeout_s
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        kwargs["device_id"] = device  # binds the communicator to this GPU at once
    try:
        dist.init_process_group(backend=backend_for(device), rank=worker.rank, world_size=worker.world_size,
                                timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    except (RuntimeError, ValueError) as err:  # torch raises DistStoreError / RuntimeError subclasses
        raise UserError(f"could not join the distributed run as rank {worker.rank} of {worker.world_size}: {err}",
                        help="check MASTER_ADDR/MASTER_PORT and that every node was started "
                             "(see docs/distributed.md)") from None


@contextlib.contextmanager
def session(worker: Worker | None, device, timeout_s: float | None = None):
    """The process group for the duration of a run when started by torchrun; nothing otherwise.
    A peer that died or stopped answering surfaces as a UserError naming this rank, not a traceback."""
    if worker is None:
        yield None
        return
    timeout_s = timeout_from_env() if timeout_s is None else timeout_s
    start(worker, device, timeout_s)
    try:
        with peer_errors(worker.rank, timeout_s):
            yield worker
            # Every rank waits here until all have finished their collectives: a rank that tore
            # its group down while a peer still used it aborted at exit ("terminate called
            # without an active exception", SIGABRT) after a run that had trained correctly.
            barrier()
    finally:
        stop()


@contextlib.contextmanager
def peer_errors(rank_: int, timeout_s: float | None = None):
    """A failed collective becomes a UserError naming this rank (not 'internal error' + traceback)."""
    try:
        yield
    except RuntimeError as err:
        if not is_peer_failure(err):
            raise
        raise UserError(f"worker rank {rank_} lost contact with the other workers of the run: "
                        f"{_first_line(err)}",
                        help="another worker died or stopped answering (its own message says why); "
                             f"the collective timeout is {timeout_s or timeout_from_env():g} s "
                             "(NNSPEC_DIST_TIMEOUT)") from None


def is_peer_failure(err: BaseException) -> bool:
    """A failed collective (a peer died, a connection closed, a timeout) rather than a bug here."""
    import torch.distributed as dist

    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err)
    return any(mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed",
                                          "Broken pipe", "timed out", "Timed out"))


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else type(err).__name__


def stop() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True inside an initialised process group with more than one rank... or with one (a 1-GPU DDP run)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Only rank 0 writes the run directory, logs, checkpoints and the progress bar."""
    return rank() == 0


def barrier() -> None:
    import torch.distributed as dist

    if active():
        dist.barrier()


# ---- sharding a global batch -------------------------------------------------------------------

def chunk_bounds(n: int, rank_: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous chunk when n items are split over world ranks as evenly as
    possible (the first n % world chunks get one more); concatenating chunks in rank order is the whole."""
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (1 if rank_ < extra else 0)


def shard(global_batch: Sequence[int], rank_: int | None = None, world: int | None = None):
    """This rank's part of one GLOBAL batch of sample indices, and the weight for its mean loss.

    Returns (indices, weight). DDP averages gradients over ranks, so multiplying each rank's mean loss
    by weight = world * len(indices) / len(global_batch) makes the averaged gradient equal the gradient
    of the mean loss over the whole global batch. A rank with nothing to do gets the batch's first
    sample and weight 0: it must still run backward so that the gradient all-reduce meets.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    n = len(global_batch)
    if n == 0:
        raise ValueError("empty global batch")
    start, stop_ = chunk_bounds(n, rank_, world)
    if start == stop_:
        return global_batch[:1], 0.0
    return global_batch[start:stop_], world * (stop_ - start) / n


def eval_range(n: int) -> tuple[int, int, bool]:
    """This rank's contiguous [start, stop) of an n-sample evaluation split, and whether the split is
    sharded (then outputs must be gathered: contiguous chunks in rank order rebuild the split's order).
    A split smaller than the world is evaluated whole by every rank instead."""
    world = world_size()
    if world == 1 or n < world:
        return 0, n, False
    return (*chunk_bounds(n, rank(), world), True)


# ---- the model -------------------------------------------------------------------------------

def ddp_forward(model, device, compile_: bool = False):
    """A callable like `model.forward_train` that runs through DistributedDataParallel, so that
    backward all-reduces the gradients. The model itself stays unwrapped (checkpoints, evaluation).
    DDP broadcasts rank 0's parameters and buffers when it is built: every rank starts equal."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    class TrainForward(torch.nn.Module):  # DDP hooks `forward`; nnspec trains through forward_train
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner.forward_train(*inputs)

    if device.type == "cuda":
        wrapped = DistributedDataParallel(TrainForward(model), device_ids=[device.index], output_device=device.index)
    else:
        wrapped = DistributedDataParallel(TrainForward(model))
    return torch.compile(wrapped) if compile_ else wrapped


# ---- aggregation across ranks -------------------------------------------------------------------

def all_sum(values: Sequence[float], device=None) -> list[float]:
    """Element-wise sum of a few numbers over all ranks (float64, so counts stay exact)."""
    if not active():
        return [float(v) for v in values]
    import torch
    import torch.distributed as dist

    device = device or _comm_device()
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def gather_rows(tensor):
    """Concatenate every rank's tensor along dim 0, in rank order (chunks may differ in length).

    Used to compute validation metrics over the WHOLE validation set: AUC, F1 and the like are not
    averages of per-shard values, so predictions and targets are gathered, then scored once.
    """
    if not active():
        return tensor
    import torch
    import torch.distributed as dist

    device = _comm_device()
    world = dist.get_world_size()
    local = tensor.to(device).contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], dtype=torch.long, device=device))
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[:local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]).to(tensor.device)


def broadcast(obj: Any, src: int = 0) -> Any:
    """rank src's Python object on every rank (e.g. the resumed epoch or the run directory)."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def _comm_device():
    """nccl only moves CUDA tensors; gloo moves CPU ones."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ---- the launcher ------------------------------------------------------------------------------

LAUNCH_FLAGS = ("--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port")
LAUNCH_PARAMS = tuple(flag[2:].replace("-", "_") for flag in LAUNCH_FLAGS)


def strip_launch_flags(argv: Sequence[str]) -> list[str]:
    """argv without the launcher's own flags (the workers must not launch again)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        alias = name.replace("_", "-")
        if alias in LAUNCH_FLAGS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def argv_from_click(ctx, skip: Sequence[str] = ()) -> list[str]:
    """The command line that reproduces a click command's call (the root's --debug, the command name,
    its arguments, and every option not at its default), without the options named in skip."""
    import click

    argv = ["--debug"] if (ctx.find_root().params or {}).get("debug") else []
    argv.append(ctx.info_name)
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in skip or value is None:
            continue
        if isinstance(param, click.Argument):
            argv += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
        elif getattr(param, "is_flag", False):
            if value:
                argv.append(param.opts[0])
        elif getattr(param, "multiple", False):  # the option once per value (none: not at all)
            for v in value:
                argv += [param.opts[0], str(v)]
        elif value != param.default:
            argv += [param.opts[0], str(value)]
    return argv


def check_launch(checked, device: str, nproc_per_node: int) -> None:
    """What would make every worker fail, said once before any worker starts."""
    if checked.optimizer is not None and checked.optimizer[0] == "Perceptron":
        raise UserError("the Perceptron rule is not a gradient method, so it cannot be trained data-parallel",
                        help="train it in one process (drop --nproc-per-node), or use SGD")
    device_for(Worker(0, nproc_per_node, nproc_per_node - 1), device)  # enough GPUs for every local rank?


def torchrun_args(worker_argv: Sequence[str], nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                  master_addr: str | None = None, master_port: int | None = None) -> list[str]:
    """The torch.distributed.run command line that starts `python -m nnspec <worker_argv>` workers."""
    if nproc_per_node < 1 or nnodes < 1:
        raise UserError(f"--nproc-per-node and --nnodes must be at least 1; received "
                        f"{nproc_per_node} and {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise UserError(f"--node-rank must be in [0, --nnodes); received {node_rank} with --nnodes {nnodes}")
    args = ["--nproc-per-node", str(nproc_per_node), "--nnodes", str(nnodes), "--max-restarts", "0"]
    if nnodes == 1 and master_addr is None and master_port is None:
        # a free local port, nothing to set: torch binds its stores to port 0 and hands the workers the
        # port the system gave it (no port is picked first and bound later, which another process could take)
        args.append("--standalone")
    else:
        if nnodes > 1 and master_addr is None:
            raise UserError("a run over several nodes needs --master-addr (the address of the node with "
                            "--node-rank 0, reachable from every node)",
                            help="e.g. --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500")
        args += ["--node-rank", str(node_rank), "--master-addr", master_addr or "127.0.0.1",
                 "--master-port", str(master_port or 29500)]
    return args + ["--module", "nnspec", *worker_argv]


def launch(worker_argv: Sequence[str], nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
           master_addr: str | None = None, master_port: int | None = None) -> None:
    """Run `nnspec <worker_argv>` as nproc_per_node workers on this node with torch's elastic launcher
    (exactly what `torchrun` does). Returns when all workers finished; raises UserError naming the
    first failed worker when one fails (the launcher then stops the others: no hang)."""
    import logging

    import torch.distributed
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun's own chatter (OMP_NUM_THREADS notice, rendezvous banners) is not for nnspec's users.
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
    args = parse_args(torchrun_args(worker_argv, nproc_per_node, nnodes, node_rank, master_addr, master_port))
    try:
        run(args)
    except ChildFailedError as err:
        raise UserError(describe_failure(err), help="the failed worker's own message is printed above; "
                        "the other workers were stopped") from None
    except getattr(torch.distributed, "DistNetworkError", ()) as err:  # the launchers' own meeting point
        raise rendezvous_failure(err, args.master_addr, args.master_port, args.standalone) from None


def rendezvous_failure(err: BaseException, addr: str | None, port: int | None, standalone: bool) -> UserError:
    """A UserError for a rendezvous port that node 0 cannot listen on, or that another node cannot reach."""
    where = "a free local port" if standalone else f"{addr}:{port}"
    if "EADDRINUSE" in str(err) or "address already in use" in str(err).lower():
        return UserError(f"the workers cannot meet at {where}: port {port} is in use by another process",
                         help="give another --master-port (the same on every node); on one machine, leave out "
                              "--master-addr and --master-port and a free port is picked")
    return UserError(f"the workers could not meet at {where}: {_first_line(err)}",
                     help="check that the node with --node-rank 0 is running and that --master-addr and "
                          "--master-port reach it from every node")


def describe_failure(err) -> str:
    """'worker rank 1 (pid 123) was killed by SIGKILL' from torch's ChildFailedError.

    The launcher stops the other workers once one fails, and a survivor may fail on its own first
    (it lost its peer), so the root cause is chosen as: killed by a signal other than the launcher's
    SIGTERM, then the earliest; the others are listed after it."""
    failures = getattr(err, "failures", {}) or {}
    if not failures:
        return f"the distributed run failed: {err}"

    def how(failure) -> str:
        if failure.exitcode < 0:
            return f"was killed by {failure.signal_name()}"
        return f"exited with code {failure.exitcode}"

    def cause_first(item):  # killed by a signal > exited with an error > stopped by the launcher (SIGTERM)
        failure = item[1]
        stopped = failure.exitcode < 0 and failure.signal_name() == "SIGTERM"
        return (2 if stopped else 0 if failure.exitcode < 0 else 1, failure.timestamp, item[0])

    ordered = sorted(failures.items(), key=cause_first)
    rank_, first = ordered[0]
    text = f"the distributed run failed: worker rank {rank_} (pid {first.pid}) {how(first)}"
    if len(ordered) > 1:
        text += " (then " + ", ".join(f"rank {r} {how(f)}" for r, f in ordered[1:]) + ")"
    return text
