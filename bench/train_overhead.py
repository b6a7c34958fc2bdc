"""Training throughput of `nnspec train` vs a hand-written PyTorch loop on the same model and data.

    .venv/bin/python bench/train_overhead.py [--repeats 5] [--epochs N] [--device cpu|cuda] [--amp] [--compile]
                                             [--threads N] [--keras [--keras-path DIR]] [--case NAME]
    .venv/bin/python bench/train_overhead.py --amp-report [--case NAME] [--threads N]   # four sides, see run_four

Cases: the MNIST convnet (specs/mnist_convnet.nn, batch 128) and a small MLP at batch 32, where the
per-batch overhead of a framework dominates. Both sides train the same architecture on the same
in-memory tensors, batched by indexing (no DataLoader), from the same initial weights.

nnspec is measured end to end through `train_spec` (the function `nnspec train` runs): an epoch's
time runs until its end-of-epoch callback, so it includes everything nnspec does per epoch
(training metrics, history.csv, metrics.json, last.pt/best.pt). The hand-written loop accumulates
the loss on the device (no `.item()` per batch): the strongest simple baseline; it enters no
autocast context unless --amp asks for one (nor does nnspec). It computes no training metrics and
writes no files: whatever nnspec does per epoch counts against nnspec.

The hand-written loops run in a Python process of their own (`--hand-worker`), started fresh once
per nnspec run, as a user's own script would run: torch's defaults, the same --threads, the same
data (`data_for`) and initial seed. Nothing nnspec sets for its process while it trains (allocator
tuning such as glibc's mallopt thresholds, or any other process-wide setting) reaches them, so the
comparison stays nnspec against a user's hand-written script, not against a loop that quietly
shares nnspec's tuning.

The two sides are still paired epoch by epoch, through a pipe: inside each of nnspec's end-of-epoch
callbacks (after its files are written) nnspec's process asks the worker for one epoch of each
hand-written loop, and waits for it; the worker times that epoch itself and answers with one JSON
line, and nnspec's next epoch is timed from when the answers arrive. Epochs a few seconds apart see
the same machine, so the ratio (nnspec / hand-written, epoch by epoch, then the median) does not
measure drift in the load of a shared machine, which separate runs of each side did (±3 % from run
to run). The first epoch of each run (warm-up) is not counted; samples/s is the median over the
other epochs of all repeats.

Every epoch is timed twice: by the wall clock and by the CPU time of the process that ran it
(nnspec's, or the worker's own; all its threads; waiting for the disk or for a core another
process holds is not counted). On a machine other jobs load, the wall-clock ratio measures them as
much as the code: compare the CPU-time ratio, and the load averages printed before and after each case.

Keras 3 (`--keras`, when `import keras` works; `--keras-path DIR` adds a separate install to the
path): `model.fit` on the torch backend, same architecture, data, batch size and optimizer, its
epoch times taken from a callback, in a subprocess with KERAS_BACKEND=torch.

Peak memory: each side runs once more in a fresh subprocess and reports its peak RSS (CPU) or
torch.cuda.max_memory_allocated (CUDA); the ratio is printed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MLP_SPEC = """model SmallMLP {
    input x: [32]
    layers {
        Dense(64) -> relu
        Dense(64) -> relu
        Dense(10) -> softmax
    }
    loss      categorical_crossentropy
    optimizer Adam(lr=0.001)
    metrics   [accuracy]
    train { batch_size 32; seed 0 }
}
"""

CASES = {
    # epochs: per run, the first one warm-up (an MLP epoch lasts 0.4 s on 2 cores: more of them)
    "mnist_convnet": {"spec": (ROOT / "specs" / "mnist_convnet.nn").read_text(), "batch": 128, "n_cpu": 4096,
                      "n_cuda": 16384, "epochs": 4},
    "mlp_batch32": {"spec": MLP_SPEC, "batch": 32, "n_cpu": 16384, "n_cuda": 16384, "epochs": 8},
}


def hand_model(case: str) -> nn.Module:
    if case == "mnist_convnet":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def result_for(case: str):
    from nnspec.pipeline import check_text

    result = check_text(CASES[case]["spec"], str(ROOT / "specs" / f"{case}.nn"))
    assert result.ok, result.render()
    return result


def data_for(case: str, device: torch.device):
    from nnspec.train.data import load_data

    n = CASES[case]["n_cuda" if device.type == "cuda" else "n_cpu"]
    result = result_for(case)
    data = load_data(result.checked, result.filename, f"synthetic(n={n}, seed=0)", validation=0.0)
    return data.train.inputs[0].to(device), data.train.y.to(device), f"synthetic(n={n}, seed=0)"


class HandLoop:
    """The hand-written side: the model, optimizer and loop a PyTorch user writes; one epoch per call."""

    def __init__(self, case: str, device: torch.device, amp: bool, compile_: bool, channels_last: bool = False):
        self.x, self.y, _ = data_for(case, device)
        self.device = device
        torch.manual_seed(0)
        self.model = hand_model(case).to(device)
        if channels_last and self.x.dim() == 4:  # the expert loop: model and data channels-last
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.001)
        self.forward = torch.compile(self.model) if compile_ else self.model
        self.dtype = _amp_dtype(device) if amp else None
        self.batch = CASES[case]["batch"]
        self.gen = torch.Generator().manual_seed(0)

    def epoch(self) -> float:
        x, y, model, forward, optimizer, dtype = self.x, self.y, self.model, self.forward, self.optimizer, self.dtype
        model.train()
        perm = torch.randperm(len(x), generator=self.gen).to(self.device)
        total = torch.zeros((), device=self.device)
        for s in range(0, len(x), self.batch):
            idx = perm[s:s + self.batch]
            if dtype is None:  # no autocast context at all when it is off, as nnspec (and a CPU loop)
                loss = F.cross_entropy(forward(x[idx]), y[idx])
            else:
                with torch.autocast(self.device.type, dtype=dtype):
                    loss = F.cross_entropy(forward(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        loss = float(total) / len(x)  # the epoch's loss, read once (as nnspec does)
        _sync(self.device)
        return loss


def run_paired(case: str, epochs: int, device: torch.device, amp: bool, compile_: bool,
               threads: int | None = None) -> list[tuple]:
    """One `nnspec train` run, with an epoch of the hand-written loop (in its worker process) after each
    of its epochs (inside the end-of-epoch callback, once nnspec has written its files) -> per epoch
    after the warm-up, ((nnspec wall, nnspec CPU), (hand wall, hand CPU)) samples/s. Pairing epochs
    that run seconds apart cancels the drift in machine load that separate runs suffer from."""
    pairs: list[tuple] = []
    with HandWorker(case, device, ["hand"], amp, compile_, threads) as hand:
        mark = [now()]  # when nnspec's current epoch began: after the previous hand-written epoch

        def on_epoch(epoch: int, logs: dict) -> None:
            _sync(device)
            ours = now()
            theirs = hand.epoch("hand")
            pairs.append((rates(hand.n, [mark[0], ours])[0], theirs))
            mark[0] = now()

        _train(case, hand.n, epochs, device, amp, compile_, on_epoch)
    return pairs[1:]


def _train(case: str, n: int, epochs: int, device: torch.device, amp: bool, compile_: bool, on_epoch) -> None:
    """One `nnspec train` run, in this process, into a temporary folder."""
    from nnspec.train.run import train_spec

    with tempfile.TemporaryDirectory() as out:
        train_spec(result_for(case), out_dir=out, epochs=epochs, data=f"synthetic(n={n}, seed=0)",
                   device=str(device), amp=amp, compile=compile_, on_epoch=on_epoch)


def _amp_dtype(device: torch.device) -> torch.dtype:
    """What a hand-written loop autocasts to: bf16 on the CPU, bf16 or fp16 on CUDA."""
    if device.type == "cpu":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def run_four(case: str, epochs: int, device: torch.device, compile_: bool,
             threads: int | None = None) -> tuple[list[dict], list[dict]]:
    """The --amp report's two runs: nnspec default with the standard fp32 hand loop after each of its
    epochs, then nnspec --amp with the standard loop and the expert loop (bf16 autocast + channels-last)
    after each of its epochs, both loops in one worker process per run -> per epoch after the warm-up,
    {side: (wall, CPU) samples/s} of each run."""

    def run(amp: bool, loops: list[str]) -> list[dict]:
        rows: list[dict] = []
        with HandWorker(case, device, loops, False, compile_, threads) as hands:
            mark = [now()]

            def on_epoch(epoch: int, logs: dict) -> None:
                _sync(device)
                row = {"nnspec": rates(hands.n, [mark[0], now()])[0]}
                for name in loops:
                    row[name] = hands.epoch(name)
                rows.append(row)
                mark[0] = now()

            _train(case, hands.n, epochs, device, amp, compile_, on_epoch)
        return rows[1:]

    return run(False, ["hand"]), run(True, ["hand", "expert"])


class HandWorker:
    """nnspec's end of a `--hand-worker` process: the hand-written loops, run as a user's own script runs
    (a fresh Python with torch's defaults). `with` it; `epoch(name)` -> (wall, CPU) samples/s of one
    epoch of that loop, timed in the worker. On any error the worker is killed; its failures raise
    RuntimeError with the tail of its stderr."""

    def __init__(self, case: str, device: torch.device, loops: list[str], amp: bool, compile_: bool,
                 threads: int | None):
        cmd = [sys.executable, __file__, "--hand-worker", ",".join(loops), "--case", case, "--device", str(device)]
        cmd += (["--amp"] if amp else []) + (["--compile"] if compile_ else [])
        cmd += ["--threads", str(threads)] if threads else []
        self.err = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty worker never blocks on it
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.n = 0

    def __enter__(self) -> HandWorker:
        try:
            self.n = self._reply()["n"]  # the ready line: the loops are built
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self._kill()

    def epoch(self, loop: str) -> tuple[float, float]:
        try:
            self.proc.stdin.write(loop + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._failure("closed its input") from None
        return tuple(self._reply()["rate"])

    def close(self) -> None:
        """End of input: the worker exits; a failure to do so cleanly raises."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.returncode != 0:
            raise self._failure("did not exit cleanly")
        self._release()

    def _reply(self) -> dict:
        while line := self.proc.stdout.readline():  # only protocol lines start with '{'
            if line.startswith("{"):
                return json.loads(line)
        raise self._failure("stopped answering")

    def _failure(self, what: str) -> RuntimeError:
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.seek(0)
        tail = self.err.read().strip().splitlines()[-20:]
        self._kill()
        return RuntimeError(f"hand-written loop worker {what} (exit {self.proc.returncode}):\n" + "\n".join(tail))

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._release()

    def _release(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.err):
            with contextlib.suppress(OSError):
                f.close()


def hand_worker(case: str, device: str, loops: list[str], amp: bool, compile_: bool) -> None:
    """--hand-worker: build the named loops, print a ready line, then for each loop name read on stdin run
    one epoch of it and answer one JSON line with its (wall, CPU) samples/s, timed here (this process's
    CPU time); exit at the end of input. Only protocol lines go to stdout: anything else, torch's
    messages included, is sent to stderr."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # file descriptor 1 (print, C code) now writes to stderr
    dev = torch.device(device)
    hands = {name: _hand_loop(name, case, dev, amp, compile_) for name in loops}
    n = len(next(iter(hands.values())).x)
    _answer(proto, {"ready": loops, "n": n})
    for line in sys.stdin:
        name = line.strip()
        if name:
            started = now()
            loss = hands[name].epoch()
            _answer(proto, {"loop": name, "rate": rates(n, [started, now()])[0], "loss": loss})


def _hand_loop(name: str, case: str, device: torch.device, amp: bool, compile_: bool) -> HandLoop:
    if name == "hand":  # the standard loop: autocast only when --amp asks for it
        return HandLoop(case, device, amp, compile_)
    if name == "expert":  # bf16 autocast + channels-last
        return HandLoop(case, device, True, compile_, channels_last=True)
    raise ValueError(f"unknown hand-written loop {name!r} (hand, expert)")


def _answer(proto, message: dict) -> None:
    proto.write(json.dumps(message) + "\n")
    proto.flush()


def report_four(case: str, args, device: torch.device) -> None:
    default, amp = [], []
    load_before = load_average()
    for _ in range(args.repeats):
        d, a = run_four(case, epochs_for(case, args), device, args.compile, args.threads)
        default, amp = default + d, amp + a

    def med(rows, side):
        return _medians([r[side] for r in rows])

    def ratio(rows, a, b):  # epoch by epoch, then the median
        return _medians([(r[a][0] / r[b][0], r[a][1] / r[b][1]) for r in rows])

    sides = [("nnspec default", med(default, "nnspec")), ("nnspec --amp", med(amp, "nnspec")),
             ("hand fp32", med(default + amp, "hand")), ("expert bf16+CL", med(amp, "expert"))]
    print(f"{case} batch {CASES[case]['batch']}: " + "   ".join(f"{name} {w:,.0f} [{c:,.0f}]" for name, (w, c) in sides))
    for label, rows, a, b in [("nnspec default / hand fp32", default, "nnspec", "hand"),
                              ("nnspec --amp / hand fp32", amp, "nnspec", "hand"),
                              ("nnspec --amp / expert", amp, "nnspec", "expert"),
                              ("expert / hand fp32", amp, "expert", "hand")]:
        w, c = ratio(rows, a, b)
        print(f"    {label:<28} wall {w:.3f}, CPU {c:.3f}")
    print(f"    load average {load_before} -> {load_average()}", flush=True)


def now() -> tuple[float, float]:
    """(wall clock, this process's CPU seconds)."""
    return time.perf_counter(), time.process_time()


def rates(n: int, stamps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Samples/s of each interval between consecutive stamps, by the wall clock and by CPU time."""
    return [(n / (b[0] - a[0]), n / (b[1] - a[1])) for a, b in zip(stamps, stamps[1:])]


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def keras_model(case: str):
    import keras
    from keras import layers

    if case == "mnist_convnet":
        net = [keras.Input((1, 28, 28)), layers.Conv2D(32, 3, activation="relu", data_format="channels_first"),
               layers.MaxPooling2D(2, data_format="channels_first"),
               layers.Conv2D(64, 3, activation="relu", data_format="channels_first"),
               layers.MaxPooling2D(2, data_format="channels_first"), layers.Flatten(), layers.Dropout(0.5),
               layers.Dense(10, activation="softmax")]
    else:
        net = [keras.Input((32,)), layers.Dense(64, activation="relu"), layers.Dense(64, activation="relu"),
               layers.Dense(10, activation="softmax")]
    model = keras.Sequential(net)
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def keras_worker(case: str, epochs: int, device: str) -> None:
    import keras

    dev = torch.device(device)
    x, y, _ = data_for(case, dev)
    x, y = x.cpu().numpy(), y.cpu().numpy()
    stamps = [now()]
    model = keras_model(case)
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: stamps.append(now()))
    model.fit(x, y, batch_size=CASES[case]["batch"], epochs=epochs, shuffle=True, verbose=0, callbacks=[cb])
    print(json.dumps({"rates": rates(len(x), stamps)[1:], "keras": keras.__version__}))


def run_keras(case: str, args) -> tuple[list[tuple[float, float]], str]:
    env = dict(os.environ, KERAS_BACKEND="torch")
    cmd = [sys.executable, __file__, "--keras-worker", "--case", case, "--epochs", str(epochs_for(case, args)),
           "--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
    if args.keras_path:
        cmd += ["--keras-path", args.keras_path]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "keras worker failed")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return [tuple(r) for r in out["rates"]], out["keras"]


def memory_worker(side: str, case: str, epochs: int, device: str, amp: bool, compile_: bool) -> None:
    dev = torch.device(device)
    if side == "nnspec":
        from nnspec.train.run import train_spec

        n = CASES[case]["n_cuda" if dev.type == "cuda" else "n_cpu"]
        with tempfile.TemporaryDirectory() as out:
            train_spec(result_for(case), out_dir=out, epochs=epochs, data=f"synthetic(n={n}, seed=0)", device=device,
                       amp=amp, compile=compile_)
    else:
        hand = HandLoop(case, dev, amp, compile_)
        for _ in range(epochs):
            hand.epoch()
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_bytes": peak}))


def peak_memory(side: str, case: str, args) -> int:
    cmd = [sys.executable, __file__, "--memory-worker", side, "--case", case, "--epochs", "2", "--device", args.device]
    cmd += ["--amp"] if args.amp else []
    cmd += ["--compile"] if args.compile else []
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return json.loads(out)["peak_bytes"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, help="epochs per run, the first is warm-up (default: 4 convnet, 8 MLP)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--amp-report", action="store_true",
                   help="nnspec default and --amp, the fp32 hand loop and the expert loop (bf16 + channels-last)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--case", choices=sorted(CASES), action="append")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-worker", choices=("nnspec", "hand"))
    p.add_argument("--keras", action="store_true", help="also time Keras 3 fit on the torch backend")
    p.add_argument("--keras-path", help="a folder holding a separate Keras install (appended to sys.path)")
    p.add_argument("--keras-worker", action="store_true")
    p.add_argument("--hand-worker", metavar="LOOPS", help="internal: the hand-written loops (hand,expert), fed by a pipe")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = args.case or list(CASES)
    if args.keras_path:
        sys.path.append(args.keras_path)
    if args.keras_worker:
        keras_worker(cases[0], epochs_for(cases[0], args), args.device)
        return
    if args.hand_worker:
        hand_worker(cases[0], args.device, args.hand_worker.split(","), args.amp, args.compile)
        return
    if args.memory_worker:
        memory_worker(args.memory_worker, cases[0], args.epochs, args.device, args.amp, args.compile)
        return
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})"
          f", torch {torch.__version__}, amp={args.amp}, compile={args.compile}, repeats={args.repeats}, "
          "epochs/run: " + ", ".join(f"{c} {epochs_for(c, args)}" for c in cases)
          + " (the first is warm-up); samples/s by the wall clock [by CPU time]")
    if args.amp_report:
        for case in cases:
            report_four(case, args, device)
        return
    for case in cases:
        pairs, kr = [], []
        load_before = load_average()
        for _ in range(args.repeats):
            pairs += run_paired(case, epochs_for(case, args), device, args.amp, args.compile, args.threads)
            if args.keras:
                keras_rates, version = run_keras(case, args)
                kr += keras_rates
        a, b = _medians([ours for ours, _ in pairs]), _medians([hand for _, hand in pairs])
        ratio = _medians([(o[0] / h[0], o[1] / h[1]) for o, h in pairs])  # epoch by epoch, then the median
        line = (f"{case:<14} batch {CASES[case]['batch']:>3}: nnspec {a[0]:>9,.0f} [{a[1]:>9,.0f}]   "
                f"hand-written {b[0]:>9,.0f} [{b[1]:>9,.0f}]   ratio wall {ratio[0]:.3f}, CPU {ratio[1]:.3f}")
        if kr:
            k = _medians(kr)
            line += f"   keras {version} fit {k[0]:,.0f} [{k[1]:,.0f}], nnspec/keras wall {a[0] / k[0]:.2f}, CPU {a[1] / k[1]:.2f}"
        line += f"   load average {load_before} -> {load_average()}"
        if not args.no_memory:
            m_ours, m_hand = peak_memory("nnspec", case, args), peak_memory("hand", case, args)
            kind = "cuda max allocated" if device.type == "cuda" else "peak RSS"
            line += f"   {kind} {m_ours / 2**20:,.0f} / {m_hand / 2**20:,.0f} MiB = {m_ours / m_hand:.3f}"
        print(line, flush=True)


def epochs_for(case: str, args) -> int:
    return args.epochs or CASES[case]["epochs"]


def _medians(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


if __name__ == "__main__":
    main()
