"""Adversarial training of a spec's two networks (`adversarial { }`: a GAN), and `nnspec sample`.

Per batch of real samples: `d_steps` discriminator steps (real scored against 1 - label_smoothing,
generated against 0), then one generator step. Objectives (on the discriminator's raw score s):
- non_saturating (default): D minimises BCE; G minimises -log sigmoid(s(G(z))) (Goodfellow et al.'s fix);
- minimax: G minimises log(1 - sigmoid(s(G(z)))), the original game;
- least_squares (LSGAN): D minimises ((s_real - 1)^2 + s_fake^2) / 2; G minimises (s(G(z)) - 1)^2 / 2.
The data's labels are ignored. Its values are scaled min-max into the generator's output range (sigmoid
[0, 1], tanh [-1, 1]); the scaling is kept in the run (data meta "gan") so `sample` writes the data's
own units (sklearn.digits: 0..16). Seeded: torch's global stream (initialisation, dropout), the
shuffling stream and the noise stream are all in the checkpoint, so `--resume` equals an
uninterrupted run.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..diagnostics import UserError
from . import checkpoint as ckpt_io
from .data import Data, Expect, Split, load_arrays
from .interrupts import epoch_commit

# the units a source's loader rescaled its values from (nnspec reads sklearn's digits as pixels / 16)
SOURCE_UNITS = {"sklearn.digits": 16.0}
MAX_GRIDS = 20  # epoch grids kept in samples/: about every epochs/20 epochs, and the last


def roles(checked) -> tuple[Any, Any]:
    adv = checked.adversarial
    return checked.networks[adv["generator"]], checked.networks[adv["discriminator"]]


def noise_shape(gen_checked) -> tuple[int, ...]:
    g = gen_checked.graph
    return tuple(g.node(g.inputs[0]).out.shape)


# ------------------------------------------------------------------ data and its scaling
def load_real(config, disc_checked) -> tuple[Data, dict]:
    """The real samples scaled into the generator's range, and the scaling (JSON-safe)."""
    g = disc_checked.graph
    name = g.inputs[0]
    shape = tuple(g.node(name).out.shape)
    if None in shape:
        raise UserError(f"the discriminator's input '{name}' has a dimension known only at run time",
                        help="declare every dimension of the sample, e.g. [1, 8, 8]")
    expect = Expect(((name, shape, "float"),), "regression", None, shape, {}, target_input=True)
    arrays = load_arrays(config.data, expect, config.base_dir, where=config.data_where)
    raw = arrays.inputs[0].astype(np.float32) * SOURCE_UNITS.get(arrays.origin, 1.0)
    low, high = float(raw.min()), float(raw.max())
    if not high > low:
        raise UserError(f"{arrays.origin}: every value is {low}; a GAN needs data that varies",
                        help="check the data source")
    out_low, out_high = config.checked.adversarial["output_range"]
    scale = {"data_low": low, "data_high": high, "output_low": out_low, "output_high": out_high,
             "shape": list(shape)}
    x = torch.from_numpy(to_model_units(raw, scale))
    meta = dict(arrays.meta, gan=scale)
    return Data(Split([x], torch.zeros(len(x))), None, arrays.origin, {}, None, meta), scale


def to_model_units(raw, scale: dict):
    span = (scale["output_high"] - scale["output_low"]) / (scale["data_high"] - scale["data_low"])
    return ((raw - scale["data_low"]) * span + scale["output_low"]).astype(np.float32)


def to_data_units(x: np.ndarray, scale: dict) -> np.ndarray:
    span = (scale["data_high"] - scale["data_low"]) / (scale["output_high"] - scale["output_low"])
    return ((x - scale["output_low"]) * span + scale["data_low"]).astype(np.float32)


# ------------------------------------------------------------------ the game
def d_loss_of(objective: str, real_score, fake_score, real_target: float):
    if objective == "least_squares":
        return 0.5 * ((real_score - real_target) ** 2).mean() + 0.5 * (fake_score ** 2).mean()
    return (F.binary_cross_entropy_with_logits(real_score, torch.full_like(real_score, real_target))
            + F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score)))


def g_loss_of(objective: str, fake_score):
    if objective == "least_squares":
        return 0.5 * ((fake_score - 1.0) ** 2).mean()
    if objective == "minimax":
        return -F.softplus(fake_score).mean()  # log(1 - sigmoid(s)) = -softplus(s): minimised
    return F.binary_cross_entropy_with_logits(fake_score, torch.ones_like(fake_score))


class Game:
    """Both networks, both optimizers and the noise stream of one run."""

    def __init__(self, config, noise_seed: int):
        from ..backends.torch_model import build_model
        from .optim import build_optimizer

        self.adv = config.checked.adversarial
        gen_checked, disc_checked = roles(config.checked)
        self.z_shape = noise_shape(gen_checked)
        torch.manual_seed(config.seed)
        self.G = build_model(gen_checked)
        self.D = build_model(disc_checked)
        self.opt_g = build_optimizer(*gen_checked.optimizer, self.G, config.lr)
        self.opt_d = build_optimizer(*disc_checked.optimizer, self.D, config.lr)
        self.noise = torch.Generator().manual_seed(noise_seed)

    def z(self, n: int):
        return torch.randn((n, *self.z_shape), generator=self.noise)

    def step(self, real) -> tuple[float, float]:
        objective, target = self.adv["objective"], 1.0 - self.adv["label_smoothing"]
        for _ in range(self.adv["d_steps"]):
            with torch.no_grad():
                fake = self.G(self.z(len(real)))
            d_loss = d_loss_of(objective, self.D(real), self.D(fake), target)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        g_loss = g_loss_of(objective, self.D(self.G(self.z(len(real)))))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()  # D's gradients from this step are cleared before D's next step
        self.opt_g.step()
        return d_loss.item(), g_loss.item()

    def state(self) -> dict:
        return {"model": {"generator": self.G.state_dict(), "discriminator": self.D.state_dict()},
                "optimizer": {"generator": self.opt_g.state_dict(), "discriminator": self.opt_d.state_dict()},
                "noise": self.noise.get_state()}

    def load(self, state: dict) -> None:
        self.G.load_state_dict(state["model"]["generator"])
        self.D.load_state_dict(state["model"]["discriminator"])
        self.opt_g.load_state_dict(state["optimizer"]["generator"])
        self.opt_d.load_state_dict(state["optimizer"]["discriminator"])
        self.noise.set_state(state["noise"])


# ------------------------------------------------------------------ a run
HISTORY_KEYS = ["epoch", "d_loss", "g_loss", "lr", "seconds"]


def train_gan(config, *, out_dir=None, resume=False, overwrite=False, on_epoch=None, on_batch=None,
              on_start=None):
    """One adversarial run (`nnspec train` of a spec with `adversarial { }`); returns a RunSummary."""
    from .run import RunSummary, own_run_dir, start_over, write_curves, write_data_facts
    from .precision import keep_freed_memory

    checked, name = config.checked, config.checked.spec.name
    if config.steps is not None:
        raise UserError("`steps` is not supported for adversarial training", help="give `epochs`")
    keep_freed_memory()  # adversarial runs train on the CPU; exact and faster (precision.py)
    dataset, scale = load_real(config, roles(checked)[1])
    real = dataset.train.inputs[0]
    batch = config.step_rows(len(real))
    game = Game(config, config.seed + 1)
    shuffle = torch.Generator().manual_seed(config.seed)
    digest = ckpt_io.ir_hash(checked)
    lock = own_run_dir(out_dir, name, resume)
    notes = list(config.notes)
    try:
        run_dir = lock.folder
        history: list[dict] = []
        if resume:
            state, more = ckpt_io.load_for_resume(run_dir, digest, name)
            notes.extend(more)
            game.load(state)
            ckpt_io.restore_rng(state["rng"], shuffle)
            history = [dict(r) for r in state["progress"]["history"]]
            notes.append(f"resumed from {run_dir / 'last.pt'} after epoch {len(history)}")
            _refuse_finished(history, config, run_dir)  # before anything is written or printed, as run.py does
        else:
            notes.extend(start_over(run_dir, digest, name, overwrite, config.check_source))
            shutil.rmtree(run_dir / "samples", ignore_errors=True)
            torch.manual_seed(config.seed)
        ckpt_io.write_text(run_dir / "spec.nn", config.source)
        write_data_facts(run_dir / "data.json", dataset)
        if on_start is not None:
            on_start(run_dir, dataset, notes, config.epochs, len(history))
        try:
            _play(config, game, real, batch, shuffle, history, run_dir, scale, on_batch, on_epoch,
                  dict(digest=digest, name=name, dataset=dataset))
        except KeyboardInterrupt:  # Ctrl-C: last.pt and history.csv are of the last finished epoch
            from .run import TrainingInterrupted

            if history:
                write_curves(run_dir / "curves.png", history, name)
            raise TrainingInterrupted(run_dir, len(history), config.epochs) from None
        write_curves(run_dir / "curves.png", history, name)
        report = {"finished": True, "final": history[-1], "epochs": len(history), "data": dataset.origin,
                  "train_samples": len(real), "scaling": scale}
        ckpt_io.write_text(run_dir / "metrics.json", json.dumps(report, indent=2) + "\n")
        return RunSummary(run_dir, history, dict(history[-1]), dict(history[-1]), "g_loss", notes)
    finally:
        lock.release()


def _refuse_finished(history: list, config, run_dir: Path) -> None:
    if len(history) >= config.epochs:
        spec = config.filename or "SPEC"
        raise UserError(f"{run_dir} is finished: it trained {len(history)} of {config.epochs} epochs; "
                        "nothing is left to train",
                        help=f"to train more, raise `epochs` above {len(history)} in {spec} and run "
                             f"`nnspec train {spec} --out {run_dir} --resume` (or add --epochs N to that command)")


def _play(config, game, real, batch: int, shuffle, history: list, run_dir: Path, scale: dict, on_batch, on_epoch,
          run: dict) -> None:
    """The epochs left: discriminator and generator steps per batch; after each epoch, last.pt,
    history.csv and the sample grid (so Ctrl-C loses at most the epoch in progress)."""
    from .run import write_history  # run.py hands GAN specs to this module: imported when used

    digest, name, dataset = run["digest"], run["name"], run["dataset"]
    lr = game.opt_g.param_groups[0]["lr"]
    for epoch in range(len(history) + 1, config.epochs + 1):
        t0 = time.perf_counter()
        d_sum = g_sum = 0.0
        order = torch.randperm(len(real), generator=shuffle) if config.shuffle else torch.arange(len(real))
        steps = 0
        for start in range(0, len(real), batch):
            d_loss, g_loss = game.step(real[order[start:start + batch]])
            if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
                raise UserError(f"training diverged in epoch {epoch}: a loss is not finite",
                                help="lower the learning rates")
            d_sum, g_sum, steps = d_sum + d_loss, g_sum + g_loss, steps + 1
            if on_batch is not None:
                on_batch(min(start + batch, len(real)), len(real))
        row = {"epoch": epoch, "d_loss": d_sum / steps, "g_loss": g_sum / steps, "lr": lr,
               "seconds": time.perf_counter() - t0}
        with epoch_commit():  # the history and the run folder move to this epoch together
            history.append(row)
            state = dict(game.state(), rng=ckpt_io.rng_state(shuffle), progress={"history": history},
                         epoch=epoch, spec_source=config.source, spec_name=name, ir_hash=digest,
                         data_origin=dataset.origin, data_target=None, data_stats={}, data_meta=dataset.meta,
                         seed=config.seed, monitor="g_loss", fold=None)
            ckpt_io.save_encoded(run_dir / "last.pt", ckpt_io.encode(state))
            write_history(run_dir / "history.csv", history, HISTORY_KEYS)
            write_grids(run_dir, game, scale, epoch, config.epochs, config.seed)
            if on_epoch is not None:
                on_epoch(epoch, dict(row))


# ------------------------------------------------------------------ samples
def generate(G, z_shape, n: int, seed: int, scale: dict) -> np.ndarray:
    """n samples in the data's units, from noise drawn by its own generator seeded `seed`."""
    noise = torch.Generator().manual_seed(seed)
    G.eval()
    with torch.no_grad():
        out = G(torch.randn((n, *z_shape), generator=noise)).numpy()
    G.train()
    return to_data_units(out, scale)


def write_grids(run_dir: Path, game: Game, scale: dict, epoch: int, epochs: int, seed: int) -> None:
    """samples.png (this epoch's) and, about MAX_GRIDS times a run, samples/epoch_NNN.png: the same
    noise every epoch, so the grids show one set of samples improving."""
    images = grid_image(generate(game.G, game.z_shape, game.adv["grid"], seed, scale), scale)
    if images is None:
        return
    ckpt_io.atomic_write(run_dir / "samples.png", lambda tmp: images.save(tmp, format="png"))
    every = max(1, math.ceil(epochs / MAX_GRIDS))
    if epoch % every == 0 or epoch == epochs:
        ckpt_io.atomic_write(run_dir / "samples" / f"epoch_{epoch:03d}.png", lambda tmp: images.save(tmp, format="png"))


def grid_image(samples: np.ndarray, scale: dict, cell: int = 32):
    """A square grid of image samples ([C, H, W] with C 1 or 3, or [H, W]) as a PIL image; None
    for samples that are not images."""
    from PIL import Image

    if samples.ndim == 3:
        samples = samples[:, None]
    if samples.ndim != 4 or samples.shape[1] not in (1, 3):
        return None
    unit = np.clip((samples - scale["data_low"]) / (scale["data_high"] - scale["data_low"]), 0, 1)
    n, c, h, w = unit.shape
    side = math.ceil(math.sqrt(n))
    zoom = max(1, cell // max(h, w))
    canvas = np.ones((side * (h * zoom + 2), side * (w * zoom + 2), c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, side)
        img = unit[i].transpose(1, 2, 0).repeat(zoom, 0).repeat(zoom, 1)
        canvas[r * (h * zoom + 2) + 1: r * (h * zoom + 2) + 1 + h * zoom,
               col * (w * zoom + 2) + 1: col * (w * zoom + 2) + 1 + w * zoom] = img
    pixels = (canvas * 255).round().astype(np.uint8)
    return Image.fromarray(pixels[:, :, 0] if c == 1 else pixels, mode="L" if c == 1 else "RGB")


def sample_run(run_dir: str, n: int, output: str, seed: int, check_source) -> tuple[Path, tuple]:
    """`nnspec sample`: n samples of a trained GAN run (its last.pt) in the data's units, to an .npz (`x`)."""
    from ..backends.torch_model import build_model

    path = Path(run_dir)
    ckpt = path / "last.pt" if path.is_dir() else path
    state = ckpt_io.load(ckpt)
    result = check_source(str(state.get("spec_source", "")), str(ckpt.parent / "spec.nn"))
    checked = result.checked if result.ok else None
    if checked is None or not checked.networks or "gan" not in (state.get("data_meta") or {}):
        raise UserError(f"{ckpt} is not a run of a spec with `adversarial {{ }}` (a GAN): there is no generator to "
                        "sample from", help="give the run folder of `nnspec train` on a GAN spec")
    if ckpt_io.ir_hash(checked) != state["ir_hash"]:
        raise UserError(f"{ckpt} does not match the spec saved in it (its IR hash differs)",
                        help="the checkpoint was written by another nnspec version or changed; retrain")
    gen_checked, _ = roles(checked)
    G = build_model(gen_checked)
    G.load_state_dict(state["model"]["generator"])
    x = generate(G, noise_shape(gen_checked), n, seed, state["data_meta"]["gan"])
    out = Path(output)
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, x=x)
    ckpt_io.atomic_write(out, write, help=None)
    return out, x.shape
