"""Training throughput of `nnspec train` vs a hand-written PyTorch loop on the same model and data.

    .venv/bin/python bench/train_overhead.py [--repeats 3] [--epochs 4] [--device cpu|cuda] [--amp] [--compile]

Cases: the MNIST convnet (specs/mnist_convnet.nn, batch 128) and a small MLP at batch 32, where the
per-batch overhead of a framework dominates. Both sides train the same architecture on the same
in-memory tensors, batched by indexing (no DataLoader), from the same initial weights.

nnspec is measured end to end through `train_spec` (the function `nnspec train` runs): an epoch's
time is the wall time between two consecutive end-of-epoch callbacks, so it includes everything
nnspec does per epoch (training metrics, history.csv, metrics.json, last.pt/best.pt). The
hand-written loop accumulates the loss on the device (no `.item()` per batch): the strongest
simple baseline. The first epoch of each run (warm-up) is not counted; samples/s is the median
over the remaining epochs of all repeats; the two sides alternate to share any drift in machine load.

Keras 3 (`--keras`, when `import keras` works; `--keras-path DIR` adds a separate install to the
path): `model.fit` on the torch backend, same architecture, data, batch size and optimizer, its
epoch times taken from a callback, in a subprocess with KERAS_BACKEND=torch.

Peak memory: each side runs once more in a fresh subprocess and reports its peak RSS (CPU) or
torch.cuda.max_memory_allocated (CUDA); the ratio is printed.
"""
from __future__ import annotations

import argparse
import json
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
    "mnist_convnet": {"spec": (ROOT / "specs" / "mnist_convnet.nn").read_text(), "batch": 128, "n_cpu": 4096,
                      "n_cuda": 16384},
    "mlp_batch32": {"spec": MLP_SPEC, "batch": 32, "n_cpu": 16384, "n_cuda": 16384},
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


def run_nnspec(case: str, epochs: int, device: torch.device, amp: bool, compile_: bool) -> list[float]:
    from nnspec.train.run import train_spec

    _, _, source = data_for(case, device)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        start = CLOCK()
        train_spec(result_for(case), out_dir=out, epochs=epochs, data=source, device=str(device), amp=amp,
                   compile=compile_, on_epoch=lambda e, logs: (_sync(device), stamps.append(CLOCK())))
    n = CASES[case]["n_cuda" if device.type == "cuda" else "n_cpu"]
    times = [b - a for a, b in zip([start, *stamps], stamps)]
    return [n / t for t in times[1:]]


def run_hand(case: str, epochs: int, device: torch.device, amp: bool, compile_: bool) -> list[float]:
    x, y, _ = data_for(case, device)
    torch.manual_seed(0)
    model = hand_model(case).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    forward = torch.compile(model) if compile_ else model
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None
    batch = CASES[case]["batch"]
    gen = torch.Generator().manual_seed(0)
    rates = []
    for epoch in range(epochs):
        start = CLOCK()
        model.train()
        perm = torch.randperm(len(x), generator=gen).to(device)
        total = torch.zeros((), device=device)
        for s in range(0, len(x), batch):
            idx = perm[s:s + batch]
            if dtype is None:  # no autocast context at all when it is off, as nnspec (and a CPU loop)
                loss = F.cross_entropy(forward(x[idx]), y[idx])
            else:
                with torch.autocast("cuda", dtype=dtype):
                    loss = F.cross_entropy(forward(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        float(total)  # the epoch's loss, read once (as nnspec does)
        _sync(device)
        if epoch:
            rates.append(len(x) / (CLOCK() - start))
    return rates


CLOCK = time.perf_counter  # --cpu-time: time.process_time (this process's CPU seconds)


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
    stamps: list[float] = []
    model = keras_model(case)
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: stamps.append(CLOCK()))
    start = CLOCK()
    model.fit(x, y, batch_size=CASES[case]["batch"], epochs=epochs, shuffle=True, verbose=0, callbacks=[cb])
    times = [b - a for a, b in zip([start, *stamps], stamps)]
    print(json.dumps({"rates": [len(x) / t for t in times[1:]], "keras": keras.__version__}))


def run_keras(case: str, args) -> tuple[list[float], str]:
    import os

    env = dict(os.environ, KERAS_BACKEND="torch")
    cmd = [sys.executable, __file__, "--keras-worker", "--case", case, "--epochs", str(args.epochs),
           "--device", args.device] + (["--cpu-time"] if args.cpu_time else []) + \
        (["--threads", str(args.threads)] if args.threads else [])
    if args.keras_path:
        cmd += ["--keras-path", args.keras_path]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "keras worker failed")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["rates"], out["keras"]


def memory_worker(side: str, case: str, epochs: int, device: str, amp: bool, compile_: bool) -> None:
    dev = torch.device(device)
    (run_nnspec if side == "nnspec" else run_hand)(case, epochs, dev, amp, compile_)
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
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is warm-up)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--case", choices=sorted(CASES), action="append")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-worker", choices=("nnspec", "hand"))
    p.add_argument("--keras", action="store_true", help="also time Keras 3 fit on the torch backend")
    p.add_argument("--keras-path", help="a folder holding a separate Keras install (appended to sys.path)")
    p.add_argument("--keras-worker", action="store_true")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with this process's CPU seconds instead of the wall clock (for a loaded machine)")
    args = p.parse_args()
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = args.case or list(CASES)
    if args.keras_path:
        sys.path.append(args.keras_path)
    if args.keras_worker:
        keras_worker(cases[0], args.epochs, args.device)
        return
    if args.memory_worker:
        memory_worker(args.memory_worker, cases[0], args.epochs, args.device, args.amp, args.compile)
        return
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})"
          f", torch {torch.__version__}, clock={'cpu' if args.cpu_time else 'wall'}, amp={args.amp}, compile={args.compile}, repeats={args.repeats}, "
          f"epochs/run={args.epochs} (first is warm-up)")
    for case in cases:
        ours, hand, kr = [], [], []
        for _ in range(args.repeats):
            ours += run_nnspec(case, args.epochs, device, args.amp, args.compile)
            hand += run_hand(case, args.epochs, device, args.amp, args.compile)
            if args.keras:
                rates, version = run_keras(case, args)
                kr += rates
        a, b = statistics.median(ours), statistics.median(hand)
        line = f"{case:<14} batch {CASES[case]['batch']:>3}: nnspec {a:>10,.0f} samples/s   hand-written {b:>10,.0f} samples/s   ratio {a / b:.3f}"
        if kr:
            k = statistics.median(kr)
            line += f"   keras {version} fit {k:,.0f} samples/s, nnspec/keras {a / k:.2f}"
        if not args.no_memory:
            m_ours, m_hand = peak_memory("nnspec", case, args), peak_memory("hand", case, args)
            kind = "cuda max allocated" if device.type == "cuda" else "peak RSS"
            line += f"   {kind} {m_ours / 2**20:,.0f} / {m_hand / 2**20:,.0f} MiB = {m_ours / m_hand:.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
