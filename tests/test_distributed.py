"""Data-parallel training (issue 6): torch.distributed with gloo on CPU, nccl on CUDA.

The references are PyTorch's own: autograd on the whole global batch for the sharding rule, torch's
elastic launcher and process groups for the runs, and a single-process nnspec run for the weights.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from nnspec.diagnostics import UserError  # noqa: E402
from nnspec.train import distributed as D  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")


@contextlib.contextmanager
def reserved_port():
    """A port number for a process that binds it itself later (a static rendezvous needs the number
    before node 0 starts, and --master-port takes no 0). Binding port 0 and closing the socket would
    leave the port free for anyone until then; instead it stays bound here, with SO_REUSEADDR and never
    listening, until the block ends: the kernel gives it to no other bind(0) nor outgoing connection,
    a bind without SO_REUSEADDR is refused, and torch's TCPStore (libuv sets SO_REUSEADDR) can listen on it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# ---- the global-batch rule -------------------------------------------------------------------

@pytest.mark.parametrize("batch, world", [(8, 2), (7, 2), (1, 2), (5, 4), (3, 4), (16, 3)])
def test_shard_weights_make_the_rank_average_equal_the_global_mean_gradient(batch, world):
    """What DDP computes (the mean over ranks of each rank's weighted mean-loss gradient) equals
    autograd's gradient of the mean loss over the whole global batch, also for uneven and empty chunks
    and with a regularisation term added to every rank's loss."""
    gen = torch.Generator().manual_seed(batch * 10 + world)
    x, y = torch.randn(batch, 5, generator=gen), torch.randn(batch, 2, generator=gen)
    layer = torch.nn.Linear(5, 2)
    ids = list(range(batch))

    def grads(loss):
        layer.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in layer.parameters()]).clone()

    def loss_on(rows):
        return torch.nn.functional.mse_loss(layer(x[rows]), y[rows]) + 1e-2 * layer.weight.square().sum()

    expected = grads(loss_on(ids))
    averaged = torch.zeros_like(expected)
    covered = []
    for r in range(world):
        rows, weight = D.shard(ids, r, world)
        averaged += grads(loss_on(rows) * weight) / world
        if weight:
            covered += rows
    assert covered == ids  # contiguous chunks in rank order rebuild the global batch
    torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-6)


def test_worker_from_env_reads_torchrun_variables_and_rejects_nonsense():
    assert D.worker_from_env({}) is None
    worker = D.worker_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (worker.rank, worker.world_size, worker.local_rank, worker.is_main) == (3, 4, 1, False)
    with pytest.raises(UserError, match="RANK must be in"):
        D.worker_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(UserError, match="integers"):
        D.worker_from_env({"RANK": "x", "WORLD_SIZE": "4"})


def test_the_collective_timeout_comes_from_the_environment():
    assert D.timeout_from_env({}) == D.DEFAULT_TIMEOUT_S
    assert D.timeout_from_env({"NNSPEC_DIST_TIMEOUT": "45"}) == 45.0
    for bad in ("soon", "0", "-3"):
        with pytest.raises(UserError, match="NNSPEC_DIST_TIMEOUT must be a number of seconds"):
            D.timeout_from_env({"NNSPEC_DIST_TIMEOUT": bad})


def test_launch_flags_are_stripped_and_translated_for_torchrun():
    argv = ["train", "m.nn", "--nproc-per-node", "2", "--master_port=5", "--epochs", "3", "--node-rank", "0"]
    assert D.strip_launch_flags(argv) == ["train", "m.nn", "--epochs", "3"]
    local = D.torchrun_args(["train", "m.nn"], 2)
    assert "--standalone" in local and local[-3:] == ["nnspec", "train", "m.nn"]
    multi = D.torchrun_args(["train", "m.nn"], 2, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=1234)
    assert multi[multi.index("--master-addr") + 1] == "10.0.0.1" and multi[multi.index("--node-rank") + 1] == "1"
    with pytest.raises(UserError, match="--master-addr"):
        D.torchrun_args(["train"], 2, nnodes=2, node_rank=1)
    with pytest.raises(UserError, match="--node-rank"):
        D.torchrun_args(["train"], 2, nnodes=2, node_rank=2, master_addr="h")


def test_the_root_cause_is_named_first_when_several_workers_failed():
    from types import SimpleNamespace as NS

    def failure(pid, exitcode, signal=None):
        return NS(pid=pid, exitcode=exitcode, timestamp=100, signal_name=lambda: signal)

    stopped, lost, killed = failure(10, -15, "SIGTERM"), failure(11, 1), failure(12, -9, "SIGKILL")
    text = D.describe_failure(NS(failures={0: stopped, 1: lost, 2: killed}))
    assert text == ("the distributed run failed: worker rank 2 (pid 12) was killed by SIGKILL "
                    "(then rank 1 exited with code 1, rank 0 was killed by SIGTERM)")
    assert "worker rank 1 (pid 11) exited with code 1 (then rank 0" in D.describe_failure(
        NS(failures={0: stopped, 1: lost}))


def test_a_run_every_worker_would_refuse_is_refused_before_launching():
    from nnspec.pipeline import check_file

    with pytest.raises(UserError, match="Perceptron rule is not a gradient method"):
        D.check_launch(check_file(str(ROOT / "specs" / "perceptron.nn")).checked, "cpu", 2)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            D.check_launch(check_file(str(ROOT / "specs" / "iris_mlp.nn")).checked, "cuda", 2)


# ---- real process groups (gloo) ------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import os, sys, torch
    from nnspec.train import distributed as D
    from nnspec.diagnostics import UserError
    worker = D.worker_from_env()
    try:
        with D.session(worker, torch.device("cpu"), timeout_s=20):
            rows = torch.arange(6.0).reshape(3, 2)[: 3 - worker.rank] + 10 * worker.rank
            print("gathered", D.gather_rows(rows).tolist())
            print("sum", D.all_sum([1.0, worker.rank]))
            print("broadcast", D.broadcast({"rank": worker.rank, "main": D.is_main()}), flush=True)
            if worker.rank == 1:  # then dies without a word while rank 0 waits for it in a collective
                os._exit(9)
            D.all_sum([1.0])
            print("rank 0 finished without its peer")
    except UserError as err:
        print(err.render(), file=sys.stderr)
        sys.exit(1)
""")


def run_workers(tmp_path, world=2):
    """The workers as torchrun starts them: the launching process (here, the test) hosts the store on a
    port it binds itself (port 0, so the system picks one no one holds), and every worker joins it as a
    client (TORCHELASTIC_USE_AGENT_STORE), with MASTER_PORT the port that store listens on."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    procs = []
    for r in range(world):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(store.port), TORCHELASTIC_USE_AGENT_STORE="True", OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = [(p.wait(timeout=90), *p.communicate()) for p in procs]
    del store  # the workers are done with it
    return results


def test_gloo_gather_sum_broadcast_then_a_dead_peer_is_an_error_not_a_hang(tmp_path):
    """Two gloo processes: gathering rows of different lengths, summing and broadcasting agree on
    both; then rank 1 dies and rank 0, waiting in a collective, ends with a clear error."""
    (rc0, out0, err0), (rc1, out1, _) = run_workers(tmp_path)
    whole = [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [10.0, 11.0], [12.0, 13.0]]  # 3 rows from rank 0, 2 from rank 1
    for out in (out0, out1):
        assert f"gathered {whole}" in out
        assert "sum [2.0, 1.0]" in out
        assert "broadcast {'rank': 0, 'main': True}" in out
    assert rc1 == 9
    assert rc0 == 1, out0 + err0
    assert "worker rank 0 lost contact with the other workers" in err0
    assert "Traceback" not in err0 and "finished without its peer" not in out0


def test_the_launcher_names_the_failed_worker(tmp_path, capfd, monkeypatch):
    """torch's elastic launcher starts the workers; one that fails stops the run with its rank named."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the launcher would set it in this process otherwise
    with pytest.raises(UserError, match=r"worker rank \d \(pid \d+\) exited with code 1"):
        D.launch(["check", str(tmp_path / "missing.nn")], 2)
    assert "no such file" in capfd.readouterr().err


def test_a_master_port_in_use_is_named_not_an_internal_error(tmp_path, monkeypatch):
    """The launcher listens on --master-port itself; when another process holds it, the run stops
    before any worker starts, saying so (a busy port is the user's to change, not a bug)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} is in use by another process") as err:
            D.launch(["check", str(ROOT / "specs" / "iris_mlp.nn")], 1, master_addr="127.0.0.1", master_port=port)
    assert "--master-port" in err.value.help


# ---- nnspec train on two CPU workers vs one process --------------------------------------------

MNIST_NO_DROPOUT = """
model MnistConvNet {
    input image: [1, 28, 28]
    layers {
        Conv2D(32, kernel=3) -> relu
        MaxPool2D(2)
        Conv2D(64, kernel=3) -> relu
        MaxPool2D(2)
        Flatten()
        Dense(10) -> softmax
    }
    loss      categorical_crossentropy
    optimizer Adam(lr=0.001)
    metrics   [accuracy, top_k_accuracy(k=3)]
    train { data synthetic(n=120); epochs 2; batch_size 40; validation 0.2; seed 3 }
}
"""


def nnspec_cmd(*args, cwd, timeout=240, launcher=()):
    env = dict(os.environ, OMP_NUM_THREADS="1", NNSPEC_DIST_TIMEOUT="60")
    cmd = [sys.executable, *launcher, "-m", "nnspec", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)


def single_process(spec_path, out_dir, **options):
    """The reference: the same spec, seed and global batch trained by one process, in this one."""
    from nnspec.pipeline import check_file
    from nnspec.train.run import train_spec

    train_spec(check_file(str(spec_path)), out_dir=out_dir, device="cpu", **options)
    return load_checkpoint(Path(out_dir) / "last.pt")


def load_checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def max_weight_diff(a, b) -> float:
    assert sorted(a) == sorted(b)
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def history(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_iris_on_two_workers_equals_one_process_and_resumes_on_two_nodes(tmp_path):
    """Two gloo workers, global batch 17 (chunks of 9 and 8, and a last global batch of 1 that one
    worker sits out with weight 0), 2 epochs, then --resume to 4 as two 'machines' of one worker:
    the weights equal a 4-epoch single-process run to 1e-5, validation metrics are the whole set's,
    and one run folder exists."""
    spec = ROOT / "specs" / "iris_mlp.nn"
    first = nnspec_cmd("train", str(spec), "--epochs", "2", "--batch-size", "17", "--nproc-per-node", "2",
                       cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    runs = sorted(p.name for p in (tmp_path / "runs" / "IrisMLP").iterdir())
    assert runs == ["1"]  # rank 1 did not pick a run folder of its own
    assert first.stdout.count("training IrisMLP") == 1 and first.stdout.count("epoch=2/2") == 1
    assert "data-parallel: 2 workers (gloo)" in first.stdout

    # resumed as if on two machines (static rendezvous on this one): --nnodes 2, one worker each
    run_dir = tmp_path / "runs" / "IrisMLP" / "1"
    with reserved_port() as number:  # node 0's launcher listens on it; held until both nodes are done
        port = str(number)
        node_1 = subprocess.Popen([sys.executable, "-m", "nnspec", "train", str(spec), "--epochs", "4",
                                   "--batch-size", "17", "--resume", "--out", str(run_dir), "--nnodes", "2",
                                   "--node-rank", "1", "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
                                   "--master-port", port],
                                  cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        resumed = nnspec_cmd("train", str(spec), "--epochs", "4", "--batch-size", "17", "--resume", "--out",
                             str(run_dir), "--nnodes", "2", "--node-rank", "0", "--nproc-per-node", "1",
                             "--master-addr", "127.0.0.1", "--master-port", port, cwd=tmp_path)
        out_1, err_1 = node_1.communicate(timeout=120)
    assert resumed.returncode == 0 and node_1.returncode == 0, resumed.stdout + resumed.stderr + err_1
    assert "resumed from" in resumed.stdout and "data-parallel: 2 workers" in resumed.stdout
    assert out_1 == ""  # the second machine's worker is rank 1: silent

    reference_dir = tmp_path / "single"
    reference = single_process(spec, reference_dir, epochs=4, batch_size=17)
    trained = load_checkpoint(run_dir / "last.pt")
    assert max_weight_diff(trained["model"], reference["model"]) < 1e-5
    assert trained["progress"]["epoch"] == 4

    rows, expected = history(run_dir / "history.csv"), history(reference_dir / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]  # written once per epoch, by rank 0
    for row, want in zip(rows, expected):  # the whole validation set (30 samples), not a shard
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_f1"):
            assert float(row[key]) == pytest.approx(float(want[key]), abs=1e-5), key
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in reference_dir.iterdir())


@pytest.mark.slow
def test_mnist_convnet_started_by_torchrun_equals_one_process(tmp_path):
    """The MNIST convnet (without Dropout) on workers started by torch.distributed.run itself."""
    spec = tmp_path / "mnist.nn"
    spec.write_text(MNIST_NO_DROPOUT)
    out = tmp_path / "ddp"
    launcher = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")
    done = nnspec_cmd("train", str(spec), "--out", str(out), "-q", cwd=tmp_path, launcher=launcher)
    assert done.returncode == 0, done.stdout + done.stderr
    reference = single_process(spec, tmp_path / "single")
    assert max_weight_diff(load_checkpoint(out / "last.pt")["model"], reference["model"]) < 1e-5
    assert [r["epoch"] for r in history(out / "history.csv")] == ["1", "2"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_gpu_ddp_run_uses_nccl_and_equals_one_gpu_process(tmp_path):
    spec = ROOT / "specs" / "iris_mlp.nn"
    done = nnspec_cmd("train", str(spec), "--epochs", "3", "--nproc-per-node", "1", "--device", "cuda",
                      "--out", str(tmp_path / "ddp"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "data-parallel: 1 worker (nccl), rank 0 on cuda:0" in done.stdout
    from nnspec.pipeline import check_file
    from nnspec.train.run import train_spec

    train_spec(check_file(str(spec)), out_dir=tmp_path / "single", device="cuda", epochs=3)
    reference = load_checkpoint(tmp_path / "single" / "last.pt")
    assert max_weight_diff(load_checkpoint(tmp_path / "ddp" / "last.pt")["model"], reference["model"]) < 1e-5


# ---- failures --------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def worker_pid(launcher_pid: int, rank_: int) -> int | None:
    for pid in descendants(launcher_pid):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank_}".encode() in env and b"TORCHELASTIC_RUN_ID" in b"".join(env):
            return pid
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc")
def test_a_killed_worker_ends_the_run_with_a_clear_error(tmp_path):
    """SIGKILL one worker in the middle of training: the launcher stops the other and reports which
    worker died and how, within a bounded time, without a traceback."""
    import signal
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1", NNSPEC_DIST_TIMEOUT="60")
    proc = subprocess.Popen([sys.executable, "-m", "nnspec", "train", str(ROOT / "specs" / "iris_mlp.nn"),
                             "--epochs", "100000", "--nproc-per-node", "2", "--out", str(tmp_path / "run"), "-q"],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "history.csv").exists():  # training is under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        victim = worker_pid(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert f"the distributed run failed: worker rank 1 (pid {victim}) was killed by SIGKILL" in err
    assert "Traceback" not in err


# ---- predict streams its rows ------------------------------------------------------------------

def test_predict_streams_a_csv_in_batches_and_matches_the_model_on_all_rows(tmp_path):
    """`nnspec predict` reads a CSV and writes predictions batch by batch (never all rows at once);
    the rows equal the torch model's forward on the whole standardised input."""
    import numpy as np
    from click.testing import CliRunner
    from sklearn.datasets import load_iris

    from nnspec.backends.torch_model import build_model
    from nnspec.cli import main
    from nnspec.pipeline import check_file
    from nnspec.train.run import predict_batches

    spec = ROOT / "specs" / "iris_mlp.nn"
    result = check_file(str(spec))
    single_process(spec, tmp_path / "run", epochs=2)
    x = load_iris().data.astype(np.float32)
    rows_csv = tmp_path / "rows.csv"
    rows_csv.write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:g}" for v in row) for row in x) + "\n")

    checkpoint = tmp_path / "run" / "last.pt"
    batches = list(predict_batches(result, str(checkpoint), str(rows_csv), device="cpu", batch_size=32))
    assert [len(rows) for _, rows in batches] == [32, 32, 32, 32, 22]

    state = load_checkpoint(checkpoint)
    model = build_model(result.checked)
    model.load_state_dict(state["model"])
    stats = state["data_stats"]["features"]
    with torch.no_grad():
        expected = model(torch.from_numpy((x - stats["mean"].numpy()) / stats["std"].numpy()).float())
    streamed = np.array([row[:3] for _, rows in batches for row in rows])
    np.testing.assert_allclose(streamed, expected.numpy(), atol=1e-5)

    out = tmp_path / "pred.csv"
    done = CliRunner().invoke(main, ["predict", str(spec), "--checkpoint", str(checkpoint), "--input", str(rows_csv),
                                     "-o", str(out)])
    assert done.exit_code == 0, done.output
    lines = out.read_text().splitlines()
    assert lines[0] == "p_0,p_1,p_2,predicted,label" and len(lines) == 151  # iris's class names
    assert [int(line.split(",")[3]) for line in lines[1:]] == expected.argmax(1).tolist()
