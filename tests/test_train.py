"""The training loop and run folder: determinism, resume, the Perceptron, schedules, stopping, checkpoints."""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nnspec.diagnostics import UserError
from nnspec.pipeline import check_file, check_text
from nnspec.train import checkpoint as ckpt_io
from nnspec.train.loop import TrainingDiverged
from nnspec.train.optim import PerceptronRule, Schedule
from nnspec.train.run import evaluate_spec, predict_spec, train_spec

# Tiny models: one thread is faster than several contending for two cores.
torch.set_num_threads(1)

SPECS = Path(__file__).resolve().parent.parent / "specs"


def result_of(name: str, edit=None):
    text = (SPECS / name).read_text()
    if edit:
        text = edit(text)
    result = check_text(text, str(SPECS / name))
    assert result.ok, result.render()
    return result


def without_time(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_perceptron_learns_and_to_100_percent(tmp_path):
    run = train_spec(check_file(SPECS / "perceptron.nn"), out_dir=tmp_path)
    assert run.final["loss"] == 0.0  # mse of the step output on the 4 rows
    np.savez(tmp_path / "rows.npz", x=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32))
    header, rows = predict_spec(check_file(SPECS / "perceptron.nn"), tmp_path / "last.pt", tmp_path / "rows.npz")
    assert header == ["p_1", "predicted"] and [r[1] for r in rows] == [0, 0, 0, 1]


def test_perceptron_rule_is_rosenblatts_update():
    layer = torch.nn.Linear(2, 1)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    y = torch.tensor([[1.0], [0.0]])
    y_hat = (layer(x) >= 0).float()
    PerceptronRule(layer, lr=0.1).step_on(x, y, y_hat)
    err = (y - y_hat)
    assert torch.allclose(layer.weight, w0 + 0.1 * (err * x).sum(0, keepdim=True))
    assert torch.allclose(layer.bias, b0 + 0.1 * err.sum(0))


def test_same_seed_same_history(tmp_path):
    a = train_spec(result_of("breast_cancer_mlp.nn"), out_dir=tmp_path / "a", epochs=3)
    b = train_spec(result_of("breast_cancer_mlp.nn"), out_dir=tmp_path / "b", epochs=3)
    c = train_spec(result_of("breast_cancer_mlp.nn"), out_dir=tmp_path / "c", epochs=3, seed=1)
    assert without_time(a.history) == without_time(b.history)
    assert without_time(a.history) != without_time(c.history)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = train_spec(result_of("breast_cancer_mlp.nn"), out_dir=tmp_path / "whole", epochs=4)
    train_spec(result_of("breast_cancer_mlp.nn"), out_dir=tmp_path / "parts", epochs=2)
    resumed = train_spec(result_of("breast_cancer_mlp.nn"), out_dir=tmp_path / "parts", epochs=4, resume=True)
    assert without_time(resumed.history) == without_time(whole.history)  # dropout + shuffling continue exactly
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_folder_files(tmp_path):
    run = train_spec(result_of("iris_mlp.nn"), out_dir=tmp_path, epochs=3)
    assert {p.name for p in tmp_path.iterdir()} >= {"best.pt", "curves.png", "history.csv", "last.pt",
                                                   "metrics.json", "spec.nn"}
    assert (tmp_path / "spec.nn").read_text() == (SPECS / "iris_mlp.nn").read_text()
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "lr", "seconds"]
    assert [float(r["val_loss"]) for r in rows] == [r["val_loss"] for r in run.history]
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["final"]["epoch"] == 3 and report["monitor"] == "val_loss"
    assert report["best"]["val_loss"] == min(r["val_loss"] for r in run.history)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    state = torch.load(tmp_path / "best.pt", weights_only=True)  # only tensors and plain containers
    assert state["ir_hash"] == ckpt_io.ir_hash(result_of("iris_mlp.nn").checked)
    assert state["spec_source"] == (SPECS / "iris_mlp.nn").read_text()
    assert set(state) >= {"model", "optimizer", "schedule", "rng", "epoch", "progress"}


def test_evaluate_reproduces_the_runs_validation_metrics(tmp_path):
    run = train_spec(result_of("iris_mlp.nn"), out_dir=tmp_path, epochs=3)
    values = evaluate_spec(result_of("iris_mlp.nn"), tmp_path / "best.pt")
    assert values["samples"] == 30
    assert values["accuracy"] == pytest.approx(run.best["val_accuracy"])
    assert values["loss"] == pytest.approx(run.best["val_loss"], rel=1e-5)


def test_a_checkpoint_of_another_spec_is_refused(tmp_path):
    train_spec(result_of("iris_mlp.nn"), out_dir=tmp_path, epochs=1)
    other = result_of("iris_mlp.nn", lambda t: t.replace("Dense(16) -> relu", "Dense(12) -> relu"))
    with pytest.raises(UserError, match="trained from a different spec"):
        evaluate_spec(other, tmp_path / "last.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt (is not a readable nnspec checkpoint|is truncated or corrupt)"):
        evaluate_spec(result_of("iris_mlp.nn"), tmp_path / "junk.pt")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    # The learning rate grows 1000x per epoch: fine in epoch 1, divergent soon after.
    edit = lambda t: t.replace("Adam(lr=0.01)", "SGD(lr=0.001)").replace("early_stopping 30", "schedule exponential(gamma=1000)")
    with pytest.raises(TrainingDiverged, match=r"the loss became (nan|inf) in epoch (\d+)") as err:
        train_spec(result_of("diabetes_mlp.nn", edit), out_dir=tmp_path, epochs=10, fold=(0, 5))
    failed_epoch = int(err.value.message.split("epoch ")[1].split(";")[0])
    assert failed_epoch >= 2
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == failed_epoch - 1
    assert all(torch.isfinite(t).all() for t in last["model"].values())


def test_search_spaces_need_defaults(tmp_path):
    with pytest.raises(UserError, match="search space") as err:
        train_spec(check_file(SPECS / "tune_mlp.nn"), out_dir=tmp_path)
    assert "nnspec tune" in err.value.help
    run = train_spec(check_file(SPECS / "tune_mlp.nn"), out_dir=tmp_path, epochs=1, defaults=True)
    assert "Dense.units=16" in run.notes[0]


def test_on_epoch_exceptions_propagate_unchanged(tmp_path):
    class Pruned(Exception):
        pass

    seen = []

    def on_epoch(epoch, logs):
        seen.append((epoch, set(logs)))
        raise Pruned()

    with pytest.raises(Pruned):
        train_spec(result_of("iris_mlp.nn"), out_dir=tmp_path, on_epoch=on_epoch)
    assert seen == [(1, {"epoch", "loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "lr", "seconds"})]


@pytest.mark.parametrize("batch, steps_per_epoch", [(None, 1), (1, 120), (50, 3)])
def test_batch_size_full_one_and_n(tmp_path, batch, steps_per_epoch):
    edit = lambda t: t.replace("batch_size  16", f"batch_size {'full' if batch is None else batch}")
    train_spec(result_of("iris_mlp.nn", edit), out_dir=tmp_path, epochs=2)
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 2 * steps_per_epoch


def test_steps_and_early_stopping(tmp_path):
    run = train_spec(result_of("iris_mlp.nn", lambda t: t.replace("seed        0", "seed 0; steps 10")),
                     out_dir=tmp_path / "steps")
    assert len(run.history) == 2  # 8 steps per epoch: stops inside the second epoch
    stop = train_spec(result_of("iris_mlp.nn", lambda t: t.replace("seed        0", "seed 0; early_stopping 2; monitor val_accuracy")),
                      out_dir=tmp_path / "early")
    best = max(r["val_accuracy"] for r in stop.history)
    first_best = next(r["epoch"] for r in stop.history if r["val_accuracy"] == best)
    assert len(stop.history) == first_best + 2 < 100


@pytest.mark.parametrize("schedule, reference", [
    ("step(every=3, gamma=0.5)", lambda opt: torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)),
    ("exponential(gamma=0.9)", lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.9)),
    ("cosine(min_lr=0.001)", lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10, eta_min=0.001)),
])
def test_schedules_match_torch_schedulers(schedule, reference):
    from nnspec.catalog.settings import SCHEDULES

    name = schedule.split("(")[0]
    args = {p.name: p.default for e in SCHEDULES if e.name == name for p in e.params}
    args.update(eval("dict" + schedule[len(name):]))
    ours_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ours, ref = Schedule(ours_opt, (name, args), warmup=0, epochs=10), reference(ref_opt)
    for epoch in range(10):
        assert ours.lr == pytest.approx(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
        ours.end_epoch(epoch, None)


def test_warmup_and_reduce_on_plateau():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = Schedule(opt, ("reduce_on_plateau", {"factor": 0.5, "patience": 1, "min_lr": 0.0}), warmup=2, epochs=20)
    lrs = []
    for epoch, loss in enumerate([5, 4, 3, 3, 3, 3, 3]):
        lrs.append(sched.lr)
        sched.end_epoch(epoch, loss)
    assert lrs[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, factor=0.5, patience=1)
    ref_lrs = []
    for loss in [3, 3, 3, 3, 3]:  # the epochs after warm-up
        ref_lrs.append(ref_opt.param_groups[0]["lr"])
        ref.step(loss)
    assert lrs[2:] == pytest.approx(ref_lrs)


def test_class_weights_balanced_and_clipping_train(tmp_path):
    edit = lambda t: t.replace("seed 0 }", "seed 0; class_weights balanced; clip_grad_norm 1.0; clip_grad_value 0.5 }")
    run = train_spec(result_of("breast_cancer_mlp.nn", edit), out_dir=tmp_path, epochs=2)
    assert math.isfinite(run.final["loss"])
    bad = lambda t: t.replace("seed 0 }", "seed 0; class_weights [1, 2, 3] }")
    with pytest.raises(UserError, match="class_weights has 3 value"):
        train_spec(result_of("breast_cancer_mlp.nn", bad), out_dir=tmp_path / "bad", epochs=1)


def test_device_and_amp_errors_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="CUDA is not available"):
        train_spec(result_of("iris_mlp.nn"), out_dir=tmp_path, device="cuda")
    # --amp on the CPU trains (bf16 autocast, or fp32 with a note): tests/test_amp_cpu.py
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        train_spec(result_of("iris_mlp.nn"), out_dir=tmp_path, device="tpu")
