"""GANs written as specs: `network`s, `adversarial { }`, adversarial training and `nnspec sample`."""
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nnspec import fastparse, parse
from nnspec.cli import main
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text
from nnspec.syntax import first_difference
from nnspec.train import checkpoint as ckpt_io
from nnspec.train.gan import d_loss_of, g_loss_of
from nnspec.train.run import train_spec

torch.set_num_threads(1)

SPECS = Path(__file__).resolve().parent.parent / "specs"

TINY = """model TinyGAN {{
    optimizer Adam(lr=0.001, beta1=0.5)
    network generator {{
        input noise: [4]
        layers {{ Dense(16) -> leaky_relu(0.2); Dense(64) -> {act}; Reshape([1, 8, 8]) }}
    }}
    network discriminator {{
        input image: [1, 8, 8]
        layers {{ Flatten(); Dropout(0.2); Dense(16) -> leaky_relu(0.2); Dense(1) }}
    }}
    adversarial {{ generator generator; discriminator discriminator; objective {objective}; label_smoothing 0.1; grid 4 }}
    train {{ data sklearn.digits; epochs {epochs}; batch_size 256; seed 3 }}
}}
"""


def tiny(epochs=2, act="sigmoid", objective="non_saturating"):
    result = check_text(TINY.format(epochs=epochs, act=act, objective=objective), "tiny.nn")
    assert result.ok, result.render()
    return result


def nnspec(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_both_parsers_build_the_same_tree_for_a_gan_spec():
    text = (SPECS / "digits_gan.nn").read_text()
    fast = fastparse.parse(text)
    assert fast is not None
    parse.FAST_PATH = False
    try:
        lark = parse.parse_text(text)
    finally:
        parse.FAST_PATH = True
    assert first_difference(fast[0], lark.tree) is None


def test_the_new_keywords_still_name_arguments():
    assert check_text("model M { input x: [2]; layers { Dense(2) }; loss mse; optimizer Adam(lr=0.1) }").ok
    tree = fastparse.parse("model M { layers { f(network=1, adversarial=2) } }")
    assert tree is not None


def test_shape_mismatch_names_both_shapes():
    text = TINY.format(epochs=1, act="sigmoid", objective="minimax").replace("Reshape([1, 8, 8])", "Reshape([64])")
    result = check_text(text)
    errors = [d for d in result.diagnostics if d.code == "E210"]
    assert len(errors) == 1 and "[64]" in errors[0].message and "[1, 8, 8]" in errors[0].message
    assert errors[0].span.line == 5  # the generator's last layer


def test_summary_lists_both_networks_with_their_parameters(tmp_path):
    spec = tmp_path / "tiny.nn"
    spec.write_text(TINY.format(epochs=1, act="sigmoid", objective="minimax"))
    out = nnspec("summary", spec)
    assert out.exit_code == 0, out.output
    g = 4 * 16 + 16 + 16 * 64 + 64  # two Dense layers, by hand
    d = 64 * 16 + 16 + 16 + 1
    assert f"network generator: {g:,} params" in out.output
    assert f"network discriminator: {d:,} params" in out.output
    assert "generator.dense_1" in out.output and "discriminator.dense_1" in out.output


def test_losses_match_their_formulas():
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    sig = torch.sigmoid
    d = -(0.9 * torch.log(sig(real)) + 0.1 * torch.log(1 - sig(real))).mean() - torch.log(1 - sig(fake)).mean()
    assert torch.allclose(d_loss_of("non_saturating", real, fake, 0.9), d)
    assert torch.allclose(g_loss_of("non_saturating", fake), -torch.log(sig(fake)).mean())
    assert torch.allclose(g_loss_of("minimax", fake), torch.log(1 - sig(fake)).mean())
    assert torch.allclose(d_loss_of("least_squares", real, fake, 1.0),
                          0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean())
    assert torch.allclose(g_loss_of("least_squares", fake), 0.5 * ((fake - 1) ** 2).mean())


@pytest.mark.parametrize("objective", ["non_saturating", "least_squares"])
def test_training_records_both_losses_and_sample_grids(tmp_path, objective):
    run = train_spec(tiny(objective=objective), out_dir=tmp_path / "run")
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
    assert header.split(",")[:3] == ["epoch", "d_loss", "g_loss"]
    assert len(run.history) == 2 and all(np.isfinite([r["d_loss"], r["g_loss"]]).all() for r in run.history)
    assert (tmp_path / "run" / "samples" / "epoch_002.png").is_file()
    assert (tmp_path / "run" / "curves.png").is_file()


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = train_spec(tiny(epochs=3), out_dir=tmp_path / "whole")
    train_spec(tiny(epochs=3), out_dir=tmp_path / "parts", epochs=1)
    parts = train_spec(tiny(epochs=3), out_dir=tmp_path / "parts", resume=True)
    a, b = (ckpt_io.load(p / "last.pt") for p in (whole.out_dir, parts.out_dir))
    for net in ("generator", "discriminator"):
        for key, value in a["model"][net].items():
            assert torch.equal(value, b["model"][net][key]), (net, key)
    assert [r["d_loss"] for r in whole.history] == [r["d_loss"] for r in parts.history]
    assert a["optimizer"]["generator"]["state"][0]["step"] == b["optimizer"]["generator"]["state"][0]["step"]


def test_a_checkpoint_is_refused_by_a_different_spec(tmp_path):
    train_spec(tiny(epochs=1), out_dir=tmp_path / "run")
    with pytest.raises(UserError, match="different spec"):
        train_spec(tiny(epochs=2, objective="minimax"), out_dir=tmp_path / "run", resume=True)


@pytest.mark.parametrize("act, low", [("sigmoid", 0.0), ("tanh", 0.0)])
def test_sample_writes_data_units_seeded(tmp_path, act, low):
    run = train_spec(tiny(epochs=1, act=act), out_dir=tmp_path / "run")
    outs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        res = nnspec("sample", run.out_dir, "-n", 7, "-o", tmp_path / f"{name}.npz", "--seed", seed)
        assert res.exit_code == 0, res.output
        outs.append(np.load(tmp_path / f"{name}.npz")["x"])
    assert outs[0].shape == (7, 1, 8, 8)
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    assert outs[0].min() >= low - 1e-4 and outs[0].max() <= 16.0 + 1e-4  # digits' units: 0..16
    meta = ckpt_io.load(run.out_dir / "last.pt")["data_meta"]["gan"]
    assert (meta["data_low"], meta["data_high"]) == (0.0, 16.0)
    assert (meta["output_low"], meta["output_high"]) == ((0.0, 1.0) if act == "sigmoid" else (-1.0, 1.0))


def test_sample_refuses_a_run_of_one_network(tmp_path):
    spec = check_text("model M { input x: [4]; layers { Dense(3) -> softmax }; loss categorical_crossentropy\n"
                      "optimizer Adam(lr=0.01); train { data sklearn.iris; epochs 1 } }")
    run = train_spec(spec, out_dir=tmp_path / "run")
    res = nnspec("sample", run.out_dir, "-o", tmp_path / "s.npz")
    assert res.exit_code == 1 and "not a run of a spec with `adversarial" in res.output


def test_viz_draws_each_network_as_a_cluster():
    from nnspec.backends.dot import to_dot
    from nnspec.pipeline import check_file

    source = to_dot(check_file(SPECS / "digits_gan.nn").checked)
    assert "cluster_generator" in source and "cluster_discriminator" in source
    assert "generator : network" in source and "discriminator : network" in source


def test_resuming_a_finished_run_says_nothing_is_left_to_train(tmp_path):
    train_spec(tiny(epochs=1), out_dir=tmp_path / "run")
    with pytest.raises(UserError, match="nothing is left to train") as err:
        train_spec(tiny(epochs=1), out_dir=tmp_path / "run", resume=True)
    assert "--resume" in err.value.help


def test_ctrl_c_keeps_the_finished_epochs_and_draws_their_curves(tmp_path):
    from nnspec.train.run import TrainingInterrupted

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as stop:
        train_spec(tiny(epochs=3), out_dir=tmp_path / "run", on_epoch=stop_after_first)
    assert (stop.value.epoch, stop.value.epochs) == (1, 3)
    assert (tmp_path / "run" / "curves.png").is_file()
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = train_spec(tiny(epochs=3), out_dir=tmp_path / "run", resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]


def test_ctrl_c_while_an_epoch_is_written_keeps_that_epoch_whole(tmp_path, monkeypatch):
    """SIGINT inside the epoch's writes (after the history grew, before history.csv): it waits for them."""
    import os
    import signal

    from nnspec.train import run as run_module
    from nnspec.train.run import TrainingInterrupted

    write_history = run_module.write_history

    def interrupted_while_writing(path, history, keys):
        if len(history) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        write_history(path, history, keys)

    monkeypatch.setattr(run_module, "write_history", interrupted_while_writing)
    with pytest.raises(TrainingInterrupted) as stop:
        train_spec(tiny(epochs=4), out_dir=tmp_path / "run")
    assert (stop.value.epoch, stop.value.epochs) == (2, 4)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 2
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) == 1 + 2


@pytest.mark.parametrize("flags, named", [({"amp": True}, "--amp"), ({"compile": True}, "--compile"),
                                          ({"device": "cuda"}, "--device cuda")])
def test_flags_adversarial_training_does_not_support_are_refused_not_dropped(tmp_path, flags, named):
    with pytest.raises(UserError, match=f"adversarial training runs in float32 on the CPU: {named}") as err:
        train_spec(tiny(epochs=1), out_dir=tmp_path / "run", **flags)
    assert named in err.value.help
    assert not (tmp_path / "run").exists()  # refused before anything is written
