"""Quality under `--amp`: validation accuracy of fp32 vs bf16 autocast, same spec, data and seed.

    .venv/bin/python bench/amp_quality.py                      # 3 seeds, the epochs below
    .venv/bin/python bench/amp_quality.py --seeds 0 1 2 3 4 --case digits_cnn

Cases: specs/digits_cnn.nn and specs/breast_cancer_mlp.nn as written (their own data, validation
split and batch size; fewer epochs than the specs' own, the same for both precisions), and the
sentiment_lstm architecture (Embedding, two bidirectional LSTMs, Dense -> sigmoid) on the
synthetic reviews of bench/text_sentiment.py at that benchmark's widths (vocab 200, dim 32,
units 32: specs/sentiment_lstm.nn's own widths take minutes an epoch on 2 cores). Each run reports
its last epoch's val_accuracy and its best; the difference is amp - fp32 in points.
On a CPU without AMX, `--amp` keeps float32 arithmetic (a note says so) with its other speedups
(channels-last, fused Adam, the 16-bit dropout mask); `--as-amx` makes `--amp` autocast to bf16
as it does on a CPU with AMX (the same numbers, slower here), to measure that path's quality.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CASES = {"digits_cnn": 10, "breast_cancer_mlp": 30, "sentiment_lstm": 4}  # epochs per run


def result_for(case: str, folder: Path, seed: int):
    from nnspec.pipeline import check_text

    if case != "sentiment_lstm":
        path = ROOT / "specs" / f"{case}.nn"
        return check_text(path.read_text(), str(path))
    import text_sentiment as ts

    ts.write_csv(folder / "train.csv", ts.reviews(1000, seed=7))
    source = ts.SPEC.format(vocab=200, dim=32, units=32, lr=0.003, epochs=CASES[case], seed=seed)
    (folder / "sentiment.nn").write_text(source, encoding="utf-8")
    return check_text(source, str(folder / "sentiment.nn"))


def one_run(case: str, seed: int, amp: bool) -> tuple[float, float, list[str]]:
    """(last val_accuracy, best val_accuracy, notes) of one training run."""
    from nnspec.train.run import train_spec

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = train_spec(result_for(case, folder, seed), out_dir=folder / "run", epochs=CASES[case], seed=seed,
                         amp=amp)
        scores = [row["val_accuracy"] for row in run.history]
        return scores[-1], max(scores), run.notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--case", choices=sorted(CASES), action="append")
    p.add_argument("--as-amx", action="store_true", help="--amp autocasts to bf16 as on a CPU with AMX")
    args = p.parse_args()
    if args.as_amx:
        from nnspec.train import precision

        precision.cpu_bf16_pays = lambda: True
    print("case, seed: val_accuracy fp32 -> amp (last epoch; best epoch), amp - fp32 in points", flush=True)
    for case in args.case or list(CASES):
        diffs = []
        for seed in args.seeds:
            (f_last, f_best, _), (a_last, a_best, notes) = one_run(case, seed, False), one_run(case, seed, True)
            diffs.append(100 * (a_last - f_last))
            print(f"{case:<18} seed {seed}: last {f_last:.4f} -> {a_last:.4f} ({diffs[-1]:+.2f}); "
                  f"best {f_best:.4f} -> {a_best:.4f} ({100 * (a_best - f_best):+.2f})"
                  + (f"   [{'; '.join(notes)}]" if notes else ""), flush=True)
        print(f"{case:<18} {CASES[case]} epochs: mean difference {statistics.mean(diffs):+.2f} points "
              f"(last epoch, {len(diffs)} seeds)", flush=True)


if __name__ == "__main__":
    main()
